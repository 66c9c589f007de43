"""Images/s of the real training step (1 D + 2 G updates), its FLOPs per image, and its share of the
matmul peak of the dtype it computes in, measured in the same run.

    python -m bench.train_throughput [--dataset cifar10|places365|miniplaces] [--batch-size N]
        [--mixed-precision auto|off|bfloat16|float16] [--jit-compile] [--iterations 10]
        [--train-flags "--width 0.5 --batch-size 32 --generator-output ab"]
        [--compare] [--compare-ops] [--compare-jit] [--profile-iterations 2] [--json OUT]

Times the GAN step (training.compile_step, colorgan/training.py) on random batches already in
memory: 2 warm-up iterations (the first traces), then the median of --iterations timed ones. The precision is the one
train.py would use (auto: devices.precision_policy); --compare also times float32 in the same
process and prints the ratio; --compare-ops also times the step with Keras' and TensorFlow's own
ops in place of colorgan's kernel gradients, fused BatchNorm and fused Adam (the switches in
cpu_kernels; bench/kernel_choices.py times each alone, interleaved). Then a profile of a few
iterations (TensorFlow's profiler) gives the ten costliest op types and the share of op time
that is neither convolution nor matmul, where a
regression would show. FLOPs are the convolutions' (2 x multiply-adds) counted from the Keras layers:
the cross-checks against TensorFlow's own counters and XLA's HLO, and the oneDNN and XLA variants, are
in bench/README.md. The peak is a 2048^3 tf.matmul in the step's compute dtype, best of
several. The CPU the *other* processes used during the timed loop is printed: on a 2-core machine
one busy neighbour halves the figure.
"""
import argparse
import dataclasses
import glob
import json
import os
import shlex
import statistics
import tempfile
import time


import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
import keras
import numpy as np
import tensorflow as tf

from colorgan import config as cfg, cpu_kernels, devices, training

# --dataset miniplaces times the photo step: the shipped photo model's recipe at its preset's 128 px, batch 16
PHOTO_RECIPE = "--width 0.25 --generator-output ab --ema 0.995"
MATMUL_OPS = ("Conv2D", "MatMul", "ExtractImagePatches")  # op types that are convolution work
SWITCHES = ("MATMUL_KERNEL_GRADIENT", "FUSED_BATCHNORM", "FUSED_ADAM", "HEADS_IN_COMPUTE_DTYPE",
            "ZERO_BIAS_GRADIENT")  # colorgan's kernel choices (cpu_kernels)


def ops_name(off: tuple) -> str:
    return "Keras' and TensorFlow's own" if off else "colorgan's"


def machine_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used since boot (/proc/stat, not idle or iowait)."""
    with open("/proc/stat") as f:
        jiffies = [int(x) for x in f.readline().split()[1:]]
    return (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")


def conv_flops(model: keras.Model, input_shape) -> list[int]:
    """2 x multiply-adds of each convolution of model for one image, in layer order."""
    convs = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    shapes = keras.Model(model.inputs, [l.input for l in convs] + [l.output for l in convs])(
        np.zeros((1, *input_shape), "float32"), training=False)
    flops = []
    for layer, x, y in zip(convs, shapes[:len(convs)], shapes[len(convs):]):
        kh, kw = layer.kernel_size
        pixels = x.shape[1] * x.shape[2] if isinstance(layer, keras.layers.Conv2DTranspose) else y.shape[1] * y.shape[2]
        flops.append(2 * pixels * kh * kw * x.shape[-1] * y.shape[-1])  # a transposed conv scatters per input pixel
    return flops


def iteration_flops(run: training.TrainState, size: int) -> int:
    """Per training image of size x size, for colorgan's iteration as TensorFlow runs it (unused
    gradients pruned)."""
    g = conv_flops(run.generator, (size, size, 1))
    d = conv_flops(run.discriminator, (size, size, run.discriminator.input_shape[-1]))
    G, D = sum(g), sum(d)
    # D update: D forward on real and fake, its weight and input gradients (none into the images).
    d_update = 2 * (D + D + (D - d[0]))
    # G update (x2): G forward, D forward, D input gradients, G weight + input gradients (none into gray).
    g_update = G + D + D + G + (G - g[0])
    return d_update + 2 * g_update  # the D update reuses the first G update's forward pass


def matmul_peak(dtype, n: int = 2048, reps: int = 8, trials: int = 5) -> float:
    """Best GFLOP/s of n x n x n tf.matmul in dtype, reps per timed call."""
    a, b = (tf.cast(tf.random.stateless_normal((n, n), (s, 0)), dtype) for s in (1, 2))

    @tf.function
    def loop(a, b):
        total = tf.zeros((), dtype)
        for i in range(reps):  # each product feeds the sum, so none is pruned
            total += tf.matmul(a + tf.cast(i, dtype), b)[0, 0]
        return total

    loop(a, b).numpy()
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        loop(a, b).numpy()
        best = max(best, reps * 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def op_profile(step, batch, iterations: int) -> dict:
    """Self time per op type over a profile of iterations (TensorFlow's profiler, its op-stats
    tool), as shares of all op time: {"ops": [(type, share), ...], "not_matmul": share, "idle": share}."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin  # no public converter in TF 2.21
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(iterations):
            {k: float(v) for k, v in step(batch).items()}
        tf.profiler.experimental.stop()
        table, _ = _pywrap_profiler_plugin.xspace_to_tools_data(
            glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True), "framework_op_stats", {})
    table = json.loads(table)[0]
    column = {c["id"]: i for i, c in enumerate(table["cols"])}
    times = {}
    for row in table["rows"]:
        op = row["c"][column["type"]]["v"].replace("_MklNative", "").replace("_Mkl", "")  # oneDNN's names
        times[op] = times.get(op, 0.0) + row["c"][column["total_self_time"]]["v"]
    idle = times.pop("IDLE", 0.0)  # an inter-op thread without an op (its cores may still run one)
    total = sum(times.values())
    ops = sorted(((op, t / total) for op, t in times.items()), key=lambda kv: -kv[1])
    return dict(ops=ops[:10], idle=idle / (total + idle),
                not_matmul=sum(share for op, share in ops if not any(m in op for m in MATMUL_OPS)))


def random_batch(config: cfg.Config) -> dict:
    """A fixed batch in the shapes the step takes: speed does not depend on the pixels."""
    shape = (config.batch_size, config.image_size, config.image_size)
    return dict(gray=tf.random.stateless_uniform((*shape, 1), (1, 2), -1.0, 1.0),
                colour=tf.random.stateless_uniform((*shape, 3), (3, 4), -1.0, 1.0))


def measure(config: cfg.Config, iterations: int, profile_iterations: int, off: tuple = ()) -> dict:
    """Time the training step under config's precision with the kernel choices in off switched off;
    float() waits for each step's result."""
    for switch in SWITCHES:  # read when the step is traced
        setattr(cpu_kernels, switch, switch not in off)
    strategy = tf.distribute.get_strategy()
    run = training.create_train_state(config, strategy)
    step = training.compile_step("gan", run, config, strategy)
    policy, reason = devices.precision_policy(config)
    try:
        bs, batch = config.batch_size, random_batch(config)
        for _ in range(2):
            {k: float(v) for k, v in step(batch).items()}
        times, wall, cpu, mine = [], time.perf_counter(), machine_cpu_seconds(), time.process_time()
        for _ in range(iterations):
            start = time.perf_counter()
            losses = {k: float(v) for k, v in step(batch).items()}
            times.append(time.perf_counter() - start)
        wall = time.perf_counter() - wall
        others = max(0.0, (machine_cpu_seconds() - cpu) - (time.process_time() - mine)) / wall
        compute = run.generator.get_layer("enc1").compute_dtype
        peak = matmul_peak(compute)
        seconds = statistics.median(times)
        flops = iteration_flops(run, config.image_size)
        profile = op_profile(step, batch, profile_iterations) if profile_iterations else {}
        return dict(policy=policy, reason=reason, compute_dtype=compute, iteration_s=times,
                    switched_off=list(off), profile=profile,
                    median_iteration_s=seconds, images_per_s=bs / seconds, flops_per_image=flops,
                    achieved_gflops=flops * bs / seconds / 1e9, matmul_peak_gflops=peak,
                    percent_of_peak=100 * flops * bs / seconds / 1e9 / peak, others_cores=others,
                    finite_losses=all(np.isfinite(list(losses.values()))))
    finally:
        for switch in SWITCHES:
            setattr(cpu_kernels, switch, True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "places365", "miniplaces"))
    parser.add_argument("--batch-size", type=int, default=0, help="default: the dataset's preset")
    parser.add_argument("--mixed-precision", default="auto", choices=("auto", "off", "bfloat16", "float16"))
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--compare-jit", action="store_true", help="time the step with and without XLA in the same run")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations after 2 warm-up ones")
    parser.add_argument("--compare", action="store_true", help="also time float32 in the same run")
    parser.add_argument("--compare-ops", action="store_true",
                        help="also time Keras' and TensorFlow's own ops in place of colorgan's "
                             "(kernel gradients, BatchNorm, Adam)")
    parser.add_argument("--profile-iterations", type=int, default=2, help="profiled iterations (0: no profile)")
    parser.add_argument("--train-flags", default=None, help="any other train.py flags, e.g. the README's CPU recipe: "
                        "\"--width 0.5 --batch-size 32 --generator-output ab\" (default: none; for miniplaces "
                        f"the photo model's \"{PHOTO_RECIPE}\")")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.iterations < 3:
        parser.error("at least 3 timed iterations")
    train_flags = args.train_flags if args.train_flags is not None else \
        PHOTO_RECIPE if args.dataset == "miniplaces" else ""
    flags = ["--dataset", args.dataset, "--jit-compile", str(args.jit_compile),
             *(["--batch-size", str(args.batch_size)] if args.batch_size else []), *shlex.split(train_flags)]
    results = []
    for precision in (args.mixed_precision, "off"):
        config = cfg.parse_args([*flags, "--mixed-precision", precision])
        if results and (not args.compare or results[0]["policy"] == "float32"):
            break
        for off in [(), SWITCHES] if args.compare_ops else [()]:
            for jit in (False, True) if args.compare_jit else (config.jit_compile,):
                print(f"timing {config.dataset}, batch {config.batch_size}, --mixed-precision {precision}, "
                      f"{ops_name(off)} ops, XLA {'on' if jit else 'off'} ...", flush=True)
                results.append(dict(mixed_precision=precision, jit_compile=jit, **measure(
                    dataclasses.replace(config, jit_compile=jit), args.iterations, args.profile_iterations, off)))
    host = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                "unknown CPU")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    print(f"\n{host}, {os.cpu_count()} cores, bfloat16 flags {devices.cpu_bfloat16_flags() or 'none'}"
          f"{f', ONEDNN_MAX_CPU_ISA={isa}' if isa else ''}; {config.dataset} ({cfg.as_flags(config) or 'the preset'}), "
          f"batch {config.batch_size}, "
          f"TF {tf.__version__}, {args.iterations} timed iterations (median)\n")
    print("| precision | ops | XLA | images/s | ms/iteration | GFLOP/image | GFLOP/s | matmul peak, same dtype "
          "| % of peak | vs float32 | colorgan's ops vs these | not conv/matmul (of op time) | others' CPU (cores) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = next((r for r in results if r["policy"] == "float32" and not r["switched_off"] and not r["jit_compile"]),
                None)
    for r in results:
        ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}x" if base else "-"
        ours = next(o for o in results if o["policy"] == r["policy"] and o["jit_compile"] == r["jit_compile"]
                    and not o["switched_off"])
        vs_ours = f"{ours['images_per_s'] / r['images_per_s']:.2f}x" if r["switched_off"] else "-"
        share = f"{100 * r['profile']['not_matmul']:.1f}%" if r["profile"] else "-"
        print(f"| {r['policy']} ({r['reason']}) | {ops_name(r['switched_off'])} | "
              f"{'on' if r['jit_compile'] else 'off'} | "
              f"{r['images_per_s']:.1f} | "
              f"{1000 * r['median_iteration_s']:,.0f} | {r['flops_per_image'] / 1e9:.3f} | "
              f"{r['achieved_gflops']:.1f} | "
              f"{r['matmul_peak_gflops']:.1f} ({r['compute_dtype']}) | {r['percent_of_peak']:.1f} | "
              f"{ratio} | {vs_ours} | "
              f"{share} | {r['others_cores']:.2f} |")
    if any(r["others_cores"] > 0.2 for r in results):
        print("\nWARNING: other processes used more than 0.2 cores: a noisy run, repeat it")
    for r in (r for r in results if r["profile"]):
        print(f"\nop profile, {r['policy']}, {ops_name(r['switched_off'])} ops, XLA "
              f"{'on' if r['jit_compile'] else 'off'} "
              f"({args.profile_iterations} iterations; inter-op threads idle "
              f"{100 * r['profile']['idle']:.1f}% of their time):")
        print("| op type | share of op time |\n|---|---|")
        for op, share in r["profile"]["ops"]:
            print(f"| {op} | {100 * share:.1f}% |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(host=host, cores=os.cpu_count(), tensorflow=tf.__version__, flags=cfg.as_flags(config),
                           results=results), f, indent=2)


if __name__ == "__main__":
    main()
