"""Images/s, FLOPs and % of the float32 matmul peak of the real training step (1 D + 2 G updates).

    python bench/train_throughput.py [--dataset cifar10|places365] [--batch-size N]
        [--mixed-precision off|bfloat16|float16] [--jit-compile] [--iterations 10] [--json OUT]
        [--intra-op N] [--inter-op N] [--fused-bn] [--profile-ops] [--no-flop-check]
    python bench/train_throughput.py --compare [--iterations 10] [--slow-iterations 3] [--json OUT]

Times `Run.train_step` (colorgan/training.py) on random batches already in memory: 2 warm-up
iterations (the first traces and compiles), then the median of --iterations timed ones. FLOPs per
training image are counted from the Keras layers (convolutions only: 2 x MACs) and checked against
TensorFlow's own counters (tf.compat.v1.profiler on the traced graph, and the convolutions of the
XLA HLO). The float32 peak is a 2048x2048 tf.matmul loop measured in the same process, best of
several. The CPU time of the *other* processes during the timed loop is printed, so a noisy run
shows. --compare runs the variants oneDNN on/off x XLA on/off as subprocesses (TF_ENABLE_ONEDNN_OPTS
must be set before TensorFlow is imported) and prints one table with ratios to the default.
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


# ------------------------------------------------------------------------------------------------
# CPU use of the other processes (a noisy shared machine)

def _proc_stat_busy():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class CpuWatch:
    """Cores used by this process (and its children) and by everything else between start and stop."""

    def __init__(self):
        import psutil
        self.psutil = psutil
        self.me = psutil.Process()

    def _others(self):
        own = {self.me.pid} | {c.pid for c in self.me.children(recursive=True)}
        times = {}
        for p in self.psutil.process_iter(["pid", "name", "cmdline"]):
            if p.pid in own:
                continue
            try:
                t = p.cpu_times()
                times[p.pid] = (t.user + t.system, " ".join(p.info["cmdline"] or [p.info["name"] or "?"])[:70])
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                pass
        return times

    def start(self):
        self.t0 = time.perf_counter()
        self.busy0, self.total0 = _proc_stat_busy()
        t = self.me.cpu_times()
        self.own0 = t.user + t.system
        self.others0 = self._others()
        self.load0 = os.getloadavg()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        busy, total = _proc_stat_busy()
        t = self.me.cpu_times()
        own = t.user + t.system - self.own0
        hz = os.sysconf("SC_CLK_TCK")
        machine_busy = (busy - self.busy0) / hz
        others = self._others()
        # processes that started during the loop count with all their CPU time (pytest workers, ...)
        top = sorted(((others[p][0] - self.others0.get(p, (0.0,))[0], others[p][1]) for p in others),
                     reverse=True)[:3]
        return dict(wall_s=wall, own_cores=own / wall, machine_busy_cores=machine_busy / wall,
                    others_cores=max(0.0, (machine_busy - own) / wall), cpu_count=os.cpu_count(),
                    loadavg_start=self.load0, loadavg_end=os.getloadavg(),
                    top_others=[dict(cores=round(c / wall, 3), cmd=cmd) for c, cmd in top if c > 0])


# ------------------------------------------------------------------------------------------------
# FLOPs

def conv_layers_with_shapes(model, input_shape):
    """[(layer, input_shape, output_shape)] of every Conv2D / Conv2DTranspose for one image."""
    import keras
    import numpy as np
    convs = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    probe = keras.Model(model.inputs, [l.input for l in convs] + [l.output for l in convs])
    outs = probe(np.zeros((1,) + tuple(input_shape), "float32"), training=False)
    n = len(convs)
    return [(l, tuple(outs[i].shape[1:]), tuple(outs[n + i].shape[1:])) for i, l in enumerate(convs)]


def conv_flops(layer, in_shape, out_shape):
    """2 x multiply-adds of one forward pass for one image (padding taps included, as computed)."""
    import keras
    kh, kw = layer.kernel_size
    cin, cout = in_shape[-1], out_shape[-1]
    if isinstance(layer, keras.layers.Conv2DTranspose):  # every input pixel scatters a kh x kw x cout patch
        pixels = in_shape[0] * in_shape[1]
    else:
        pixels = out_shape[0] * out_shape[1]
    return 2 * pixels * kh * kw * cin * cout


def analytic_flops(generator, discriminator, image_size, gen_out_channels):
    """Per training image: forward FLOPs of G and D, and the whole iteration counted two ways."""
    g = conv_layers_with_shapes(generator, (image_size, image_size, 1))
    d = conv_layers_with_shapes(discriminator, (image_size, image_size, 4))
    g_layers = [(l.name, type(l).__name__, i, o, conv_flops(l, i, o)) for l, i, o in g]
    d_layers = [(l.name, type(l).__name__, i, o, conv_flops(l, i, o)) for l, i, o in d]
    G = sum(x[-1] for x in g_layers)
    D = sum(x[-1] for x in d_layers)
    g_first, d_first = g_layers[0][-1], d_layers[0][-1]
    # Exact graph: a backward pass = weight gradient (1x forward) + input gradient (1x forward, not
    # needed for a net's first layer when its input needs no gradient). TF prunes unused gradients.
    # D update: G forward; D forward on real and on fake; D weight + input gradients for both.
    d_update = G + 2 * (D + D + (D - d_first))
    # G update (x2): G forward, D forward, D input gradients only (all layers: the gradient flows
    # into the fake image), G weight + input gradients (none for enc0's input).
    g_update = G + D + D + G + (G - g_first)
    # colorgan's step computes the G forward once for the D update and the first G update.
    exact = d_update + 2 * g_update - G
    # Convention "training = 3x forward" for every net on the path: D update 6D; G update 3G + 3D.
    convention = 6 * D + 2 * (3 * G + 3 * D)
    return dict(generator_forward=G, discriminator_forward=D, iteration_exact=exact,
                iteration_3x_convention=convention, generator_layers=g_layers, discriminator_layers=d_layers,
                formula_exact="2*(3D - D_conv0) + 2*(3G - G_enc0 + 2D) (G forward shared by D and first G update)",
                formula_3x="6G + 12D", authors_iteration_exact=exact + G)


def tf_graph_flops(concrete_fn):
    """TensorFlow's own FLOP statistics (the ones tf.compat.v1.profiler sums) over the traced graph:
    all of it, and only the ops that feed an output or a stateful op (what the runtime executes
    after pruning: gradients that nobody uses, e.g. G's weight gradients in the D update, go)."""
    import tensorflow as tf
    from tensorflow.python.framework import ops as tf_ops
    graph = concrete_fn.graph
    result = {}
    try:
        opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        result["profiler_total"] = tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops
    except Exception as error:  # noqa: BLE001
        result["profiler_error"] = f"{type(error).__name__}: {error}"[:300]
    stack = [t.op for t in concrete_fn.outputs] + [op for op in graph.get_operations() if op.op_def.is_stateful]
    seen = set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    total = pruned = 0
    by_type, counts = {}, {}
    for op in graph.get_operations():
        try:
            flops = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value or 0
        except Exception:  # noqa: BLE001  (no statistics registered for this op type)
            continue
        total += flops
        if op.name in seen and flops:
            pruned += flops
            by_type[op.type] = by_type.get(op.type, 0) + flops
            counts[op.type] = counts.get(op.type, 0) + 1
    result.update(all_ops=total, executed_ops=pruned, executed_by_type=by_type, executed_counts=counts)
    return result


_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\w+)\[([\d,]*)\]\S*\s+([\w\-]+)\((.*?)\)(.*)$")


def hlo_conv_flops(hlo_text):
    """Sum of 2 x MACs of every convolution (and dot) in an HLO module, parsed from its text.
    Returns nominal FLOPs (including the zeros an lhs_dilation inserts) and useful FLOPs (without)."""
    shapes, instrs = {}, []
    for line in hlo_text.splitlines():
        m = _INSTR.match(line)
        if m:
            name, _, dims, op, operands, attrs = m.groups()
            shapes[name] = [int(x) for x in dims.split(",") if x]
            instrs.append((op, shapes[name], operands, attrs))

    def operand_shapes(text):
        found = []
        for part in text.split(", "):
            inline = re.match(r"\s*\w+\[([\d,]*)\]", part)
            ref = re.search(r"%?([\w.\-]+)\s*$", part)
            if inline:
                found.append([int(x) for x in inline.group(1).split(",") if x])
            elif ref and ref.group(1) in shapes:
                found.append(shapes[ref.group(1)])
        return found

    nominal = useful = 0
    convs = dots = 0
    for op, out, operands, attrs in instrs:
        if op == "convolution":
            ops_ = operand_shapes(operands)
            labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", attrs)
            if len(ops_) < 2 or not labels:
                continue
            rhs, rhs_labels = ops_[1], labels.group(2)
            contracted = rhs[rhs_labels.index("i")]
            for label, size in zip(rhs_labels, rhs):
                if label.isdigit():
                    contracted *= size
            flops = 2 * contracted * _prod(out)
            nominal += flops
            dil = re.search(r"lhs_dilate=([\dx]+)", attrs)
            useful += flops / (_prod(int(x) for x in dil.group(1).split("x")) if dil else 1)
            convs += 1
        elif op == "dot":
            ops_ = operand_shapes(operands)
            k = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", attrs)
            if ops_ and k:
                flops = 2 * _prod(ops_[0][int(i)] for i in k.group(1).split(",") if i) * _prod(out)
                nominal += flops
                useful += flops
                dots += 1
    return dict(nominal=nominal, useful=useful, convolutions=convs, dots=dots)


def _prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


# ------------------------------------------------------------------------------------------------
# Peak

def matmul_peak(n=2048, reps=8, trials=5):
    """Best float32 GFLOP/s of n x n x n tf.matmul, reps per timed call, best of trials."""
    import tensorflow as tf
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))

    @tf.function
    def loop(a, b):
        acc = tf.zeros(())
        for i in range(reps):  # unrolled; each product feeds the sum so none is pruned
            acc += tf.matmul(a + float(i), b)[0, 0]
        return acc

    loop(a, b).numpy()
    best = 0.0
    for _ in range(trials):
        t = time.perf_counter()
        loop(a, b).numpy()
        best = max(best, reps * 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


# ------------------------------------------------------------------------------------------------
# Prototypes of possible changes to colorgan (monkeypatches; colorgan itself is not edited)

def patch_fused_batchnorm():
    """BatchNormalization in training mode through FusedBatchNormV3 (one op forward, one backward)
    instead of Keras 3's moments + batch_normalization (about 10 element-wise ops each way)."""
    import keras
    import tensorflow as tf
    original = keras.layers.BatchNormalization.call

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and mask is None and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.scale and self.center and not self.renorm):
            return original(self, inputs, training=training, mask=mask)
        y, mean, var, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
            mean=tf.zeros([0]), variance=tf.zeros([0]), epsilon=self.epsilon, data_format="NHWC",
            is_training=True)
        n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        var = var * (n - 1.0) / n  # FusedBatchNorm returns the unbiased variance; Keras keeps the biased one
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + var * (1.0 - self.momentum))
        return tf.cast(y, self.compute_dtype)

    keras.layers.BatchNormalization.call = call


# ------------------------------------------------------------------------------------------------
# Op-level profile

def op_profile(step, batch, logdir, iterations=2):
    """Seconds per iteration by TF op type, from the profiler's host trace (XPlane)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    tf.profiler.experimental.start(logdir)
    for _ in range(iterations):
        {k: float(v) for k, v in step(batch).items()}
    tf.profiler.experimental.stop()
    files = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not files:
        return dict(error="no xplane.pb written")
    space = xplane_pb2.XSpace()
    with open(max(files, key=os.path.getmtime), "rb") as f:
        space.ParseFromString(f.read())
    totals = {}
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if "tf_Compute" not in line.name and "tf_" not in line.name and "TF" not in line.name:
                pass
            for ev in line.events:
                name = names.get(ev.metadata_id, "")
                if ":" not in name or name.startswith(("EagerExecute", "EagerLocalExecute")):
                    continue
                op_type = name.rsplit(":", 1)[1]
                if not op_type or op_type[0].islower() or op_type in ("__inference", ):
                    continue
                if op_type in ("StatefulPartitionedCall", "PartitionedCall", "__forward", "FunctionRun"):
                    continue
                totals[op_type] = totals.get(op_type, 0.0) + ev.duration_ps / 1e12 / iterations
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


# ------------------------------------------------------------------------------------------------

def measure(args) -> dict:
    import colorgan  # noqa: F401  (sets TF_ENABLE_ONEDNN_OPTS=1 unless set)
    import tensorflow as tf
    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    if args.fused_bn:
        patch_fused_batchnorm()
    import keras
    from colorgan import config as cfgmod
    from colorgan.training import Run

    peak = matmul_peak()
    cfg = cfgmod.make_config(dataset=args.dataset, batch_size=args.batch_size, jit_compile=args.jit_compile,
                             mixed_precision=args.mixed_precision)
    run = Run(cfg, tf.distribute.get_strategy())
    run.compile()
    size = cfg.image_size
    gen = tf.random.stateless_uniform((cfg.batch_size, size, size, 1), (1, 2), -1.0, 1.0)
    col = tf.random.stateless_uniform((cfg.batch_size, size, size, 3), (3, 4), -1.0, 1.0)
    batch = (gen, col)

    times, warm = [], []
    for i in range(2 + args.iterations):
        if i == 2:
            watch = CpuWatch()
            watch.start()
        t = time.perf_counter()
        values = {k: float(v) for k, v in run.train_step(batch).items()}  # float() waits for the result
        (warm if i < 2 else times).append(time.perf_counter() - t)
    cpu = watch.stop()
    seconds = statistics.median(times)

    out_channels = 2 if cfg.generator_output == "ab" else 3
    flops = analytic_flops(run.generator, run.discriminator, size, out_channels)
    per_image = flops["iteration_exact"]
    achieved = per_image * cfg.batch_size / seconds / 1e9
    result = dict(
        dataset=cfg.dataset, batch_size=cfg.batch_size, image_size=size, mixed_precision=args.mixed_precision,
        jit_compile=args.jit_compile, onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        intra_op=tf.config.threading.get_intra_op_parallelism_threads(),
        inter_op=tf.config.threading.get_inter_op_parallelism_threads(), fused_bn=args.fused_bn,
        iterations=len(times), warmup_s=warm, iteration_s=times, median_iteration_s=seconds,
        images_per_s=cfg.batch_size / seconds, best_iteration_s=min(times),
        best_images_per_s=cfg.batch_size / min(times), flops_per_image=per_image,
        flops_per_image_3x_convention=flops["iteration_3x_convention"],
        generator_forward_flops_per_image=flops["generator_forward"],
        discriminator_forward_flops_per_image=flops["discriminator_forward"],
        generator_params=run.generator.count_params(), discriminator_params=run.discriminator.count_params(),
        achieved_gflops=achieved, matmul_peak_gflops=peak, percent_of_peak=100 * achieved / peak,
        cpu=cpu, last_losses=values, tensorflow=tf.__version__, keras=keras.__version__,
        layers=dict(generator=flops["generator_layers"], discriminator=flops["discriminator_layers"]))

    if not args.no_flop_check:
        spec = (tf.TensorSpec(gen.shape, tf.float32), tf.TensorSpec(col.shape, tf.float32))
        t = time.perf_counter()
        result["tf_graph"] = tf_graph_flops(run.train_step.get_concrete_function(spec))
        try:
            jit = tf.function(run.train_step.python_function, jit_compile=True)
            hlo = jit.experimental_get_compiler_ir(batch)(stage="optimized_hlo")
            h = hlo_conv_flops(hlo)
            h["per_image_nominal"] = h["nominal"] / cfg.batch_size
            h["per_image_useful"] = h["useful"] / cfg.batch_size
            result["xla_hlo"] = h
        except Exception as error:  # noqa: BLE001
            result["xla_hlo"] = dict(error=f"{type(error).__name__}: {error}"[:300])
        result["flop_check_s"] = time.perf_counter() - t
    if args.profile_ops:
        with tempfile.TemporaryDirectory() as logdir:
            result["op_seconds_per_iteration"] = op_profile(run.train_step, batch, logdir)
    return result


def print_single(r):
    gf = 1e9
    print(f"\ncolorgan train_step, {r['dataset']} batch {r['batch_size']} ({r['image_size']}px), "
          f"TF {r['tensorflow']}, oneDNN={r['onednn']}, jit_compile={r['jit_compile']}, "
          f"mixed_precision={r['mixed_precision']}, threads intra {r['intra_op']} inter {r['inter_op']}"
          f"{', fused BN' if r['fused_bn'] else ''}")
    print(f"G {r['generator_params']/1e6:.2f}M params, D {r['discriminator_params']/1e6:.2f}M; "
          f"warm-up iterations {', '.join(f'{x:.2f}' for x in r['warmup_s'])} s; "
          f"timed {r['iterations']}: {', '.join(f'{x:.2f}' for x in r['iteration_s'])} s")
    print("\n| images/s | ms/iteration | GFLOP/image | achieved GFLOP/s | fp32 matmul peak GFLOP/s | % of peak "
          "| best iteration: images/s, % of peak |")
    print("|---|---|---|---|---|---|---|")
    best = r['flops_per_image'] * r['batch_size'] / r['best_iteration_s'] / 1e9
    print(f"| {r['images_per_s']:.1f} | {1000 * r['median_iteration_s']:,.0f} | {r['flops_per_image'] / gf:.3f} | "
          f"{r['achieved_gflops']:.1f} | {r['matmul_peak_gflops']:.1f} | {r['percent_of_peak']:.1f} "
          f"| {r['best_images_per_s']:.1f}, {100 * best / r['matmul_peak_gflops']:.1f} |")
    print(f"\nFLOPs per training image (convolutions, 2 x MACs): G forward {r['generator_forward_flops_per_image']/gf:.3f} G, "
          f"D forward {r['discriminator_forward_flops_per_image']/gf:.3f} G; iteration (1 D + 2 G updates) "
          f"exact-graph count {r['flops_per_image']/gf:.3f} G, '3x forward' convention {r['flops_per_image_3x_convention']/gf:.3f} G")
    bs = r["batch_size"]
    if "tf_graph" in r:
        p = r["tf_graph"]
        types = ", ".join(f"{k} x{p['executed_counts'][k]} {v / bs / gf:.3f}" for k, v in p["executed_by_type"].items())
        print(f"check, TensorFlow's FLOP statistics on the traced step graph: {p['executed_ops'] / bs / gf:.3f} GFLOP/image "
              f"over the ops the runtime executes ({types}); {p['all_ops'] / bs / gf:.3f} over every op of the "
              f"unpruned graph" + (f" (tf.compat.v1.profiler: {p['profiler_total'] / bs / gf:.3f})" if "profiler_total" in p
                                   else f" (tf.compat.v1.profiler failed: {p.get('profiler_error')})"))
        h = r.get("xla_hlo", {})
        if "nominal" in h:
            print(f"check, convolutions in XLA's optimised HLO of the same step ({h['convolutions']} convs, {h['dots']} dots): "
                  f"{h['per_image_useful'] / gf:.3f} GFLOP/image; {h['per_image_nominal'] / gf:.3f} counting the zeros that "
                  "its lhs-dilated (transposed) convolutions multiply")
        else:
            print(f"check, XLA HLO: unavailable ({h.get('error')})")
    c = r["cpu"]
    print(f"\nCPU during the timed loop: this process {c['own_cores']:.2f} cores, other processes "
          f"{c['others_cores']:.2f} cores of {c['cpu_count']} (loadavg {c['loadavg_start'][0]:.2f} -> {c['loadavg_end'][0]:.2f})"
          + ("; busiest others: " + "; ".join(f"{t['cores']:.2f} {t['cmd']}" for t in c["top_others"]) if c["top_others"] else ""))
    if c["others_cores"] > 0.2:
        print("WARNING: other processes used more than 0.2 cores: this run is noisy, repeat it")
    if "op_seconds_per_iteration" in r:
        ops = r["op_seconds_per_iteration"]
        total = sum(ops.values()) if isinstance(ops, dict) and "error" not in ops else 0
        print(f"\nop time per iteration (sum over threads, {total:.2f} s):")
        for k, v in list(ops.items())[:15]:
            print(f"  {k:40s} {v:7.3f} s  {100 * v / total:5.1f} %")


# ------------------------------------------------------------------------------------------------

VARIANTS = [  # (label, TF_ENABLE_ONEDNN_OPTS, jit_compile, slow)
    ("oneDNN on, XLA off (default)", "1", False, False),
    ("oneDNN on, XLA on", "1", True, True),
    ("oneDNN off, XLA off", "0", False, True),
    ("oneDNN off, XLA on", "0", True, True),
]


def compare(args):
    results = []
    for label, onednn, jit, slow in VARIANTS:
        iterations = args.slow_iterations if slow else args.iterations
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        cmd = [sys.executable, os.path.abspath(__file__), "--dataset", args.dataset, "--batch-size",
               str(args.batch_size), "--mixed-precision", args.mixed_precision, "--iterations", str(iterations),
               "--json", path, "--no-flop-check"] + (["--jit-compile"] if jit else [])
        for flag in ("intra_op", "inter_op"):
            if getattr(args, flag):
                cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
        if args.fused_bn:
            cmd.append("--fused-bn")
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="2")
        print(f"--- {label}: {iterations} timed iterations", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stdout[-2000:], proc.stderr[-3000:])
            results.append(dict(label=label, error=proc.stderr[-500:]))
            continue
        with open(path) as f:
            r = json.load(f)
        os.unlink(path)
        r["label"], r["subprocess_s"] = label, time.perf_counter() - t
        print(f"    {r['images_per_s']:.1f} images/s, {r['median_iteration_s']:.2f} s/iteration, "
              f"others {r['cpu']['others_cores']:.2f} cores, {r['subprocess_s']:.0f} s in all", flush=True)
        results.append(r)
    ok = [r for r in results if "error" not in r]
    base = ok[0] if ok and ok[0]["label"].endswith("(default)") else None
    peak = max(r["matmul_peak_gflops"] for r in ok) if ok else float("nan")
    print(f"\n{args.dataset} batch {args.batch_size}, mixed_precision={args.mixed_precision}; "
          f"% of peak against the best fp32 matmul peak of the run, {peak:.0f} GFLOP/s")
    print("\n| variant | timed iterations | ms/iteration (median) | images/s | speed vs default | GFLOP/s | % of peak "
          "| best iteration ms | matmul peak in that process | others' CPU (cores) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['label']} | failed | | | | | | | | |")
            continue
        ratio = r["images_per_s"] / base["images_per_s"] if base else float("nan")
        print(f"| {r['label']} | {r['iterations']} | {1000 * r['median_iteration_s']:,.0f} | {r['images_per_s']:.1f} | "
              f"{ratio:.2f}x | {r['achieved_gflops']:.1f} | {100 * r['achieved_gflops'] / peak:.1f} | "
              f"{1000 * r['best_iteration_s']:,.0f} | "
              f"{r['matmul_peak_gflops']:.0f} | {r['cpu']['others_cores']:.2f} |")
    if ok:
        print(f"\nFLOPs per image: {ok[0]['flops_per_image'] / 1e9:.3f} G (exact graph count; see a single run for the check)")
    if any(r.get("iterations", 99) < args.iterations for r in ok):
        print(f"Slow variants ran {args.slow_iterations} timed iterations (after 2 warm-up), the default {args.iterations}.")
    return dict(variants=results, best_matmul_peak_gflops=peak)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "places365"))
    parser.add_argument("--batch-size", type=int, default=None, help="default: the dataset's preset")
    parser.add_argument("--mixed-precision", default="off", choices=("off", "bfloat16", "float16"))
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations after 2 warm-up ones")
    parser.add_argument("--slow-iterations", type=int, default=3, help="--compare: timed iterations of slow variants")
    parser.add_argument("--intra-op", type=int, default=0, help="tf.config.threading intra-op threads (0: TF default)")
    parser.add_argument("--inter-op", type=int, default=0, help="tf.config.threading inter-op threads (0: TF default)")
    parser.add_argument("--fused-bn", action="store_true", help="prototype: BatchNorm through FusedBatchNormV3")
    parser.add_argument("--profile-ops", action="store_true", help="also print time per TF op type (profiler trace)")
    parser.add_argument("--no-flop-check", action="store_true", help="skip TF's own FLOP counters (saves ~1 min)")
    parser.add_argument("--compare", action="store_true", help="oneDNN on/off x XLA on/off in one table")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.batch_size is None:
        args.batch_size = 128 if args.dataset == "cifar10" else 16
    if args.iterations < 3 or args.slow_iterations < 3:
        parser.error("at least 3 timed iterations")
    if args.compare:
        result = compare(args)
    else:
        result = measure(args)
        print_single(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=str)


if __name__ == "__main__":
    main()
