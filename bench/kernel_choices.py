"""Each of colorgan's CPU kernel choices (cpu_kernels: the kernel gradient as one matmul, fused
BatchNorm, fused Adam) on against off, timed interleaved in one process: the two steps are built
side by side and run in alternating blocks of iterations, so that the machine's drift (10-20% between
consecutive measurements on a shared 2-core VM) falls on both alike.

    python -m bench.kernel_choices [--dataset cifar10|miniplaces]
        [--train-flags "--width 0.5 --batch-size 32 --generator-output ab --ema 0.995"]
        [--mixed-precision bfloat16 off] [--choices FUSED_ADAM ...] [--blocks 8] [--block 5] [--json OUT]
"""
import argparse
import json
import shlex
import statistics
import time

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
import tensorflow as tf

from bench.train_throughput import PHOTO_RECIPE, SWITCHES, machine_cpu_seconds, random_batch
from colorgan import config as cfg, cpu_kernels, devices, training

RECIPE = "--width 0.5 --batch-size 32 --generator-output ab --ema 0.995"


def traced_step(config: cfg.Config, batch: dict, on: bool, choice: str):
    """The GAN step with choice on or off, traced and warmed up (the switches are read when it is traced)."""
    setattr(cpu_kernels, choice, on)
    try:
        strategy = tf.distribute.get_strategy()
        step = training.compile_step("gan", training.create_train_state(config, strategy), config, strategy)
        for _ in range(3):
            float(step(batch)["gen_loss"])
        return step
    finally:
        setattr(cpu_kernels, choice, True)


def compare(config: cfg.Config, choice: str, blocks: int, block: int) -> dict:
    bs, batch = config.batch_size, random_batch(config)
    steps = {on: traced_step(config, batch, on, choice) for on in (True, False)}
    times = {True: [], False: []}
    wall, cpu, mine = time.perf_counter(), machine_cpu_seconds(), time.process_time()
    for _ in range(blocks):
        for on, step in steps.items():
            for _ in range(block):
                start = time.perf_counter()
                float(step(batch)["gen_loss"])
                times[on].append(time.perf_counter() - start)
    wall = time.perf_counter() - wall
    on, off = (bs / statistics.median(times[k]) for k in (True, False))
    return dict(choice=choice, on_images_per_s=on, off_images_per_s=off, ratio=on / off,
                others_cores=max(0.0, (machine_cpu_seconds() - cpu) - (time.process_time() - mine)) / wall)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "miniplaces"),
                        help="its preset's shapes (miniplaces: the photo step, 128 px)")
    parser.add_argument("--train-flags", default=None, help="train.py flags (default: the README's CPU recipe; "
                        "for miniplaces the photo model's)")
    parser.add_argument("--mixed-precision", nargs="+", default=["bfloat16", "off"])
    parser.add_argument("--choices", nargs="+", default=list(SWITCHES), choices=SWITCHES)
    parser.add_argument("--blocks", type=int, default=8, help="alternations of the two steps")
    parser.add_argument("--block", type=int, default=5, help="iterations per block")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    train_flags = args.train_flags if args.train_flags is not None else \
        PHOTO_RECIPE if args.dataset == "miniplaces" else RECIPE
    results = []
    print("| precision | choice | on, images/s | off, images/s | on / off | others' CPU (cores) |\n"
          "|---|---|---|---|---|---|")
    for precision in args.mixed_precision:
        config = cfg.parse_args(["--dataset", args.dataset, *shlex.split(train_flags), "--mixed-precision", precision])
        policy = devices.precision_policy(config)[0]
        for choice in args.choices:
            r = dict(policy=policy, flags=cfg.as_flags(config), **compare(config, choice, args.blocks, args.block))
            results.append(r)
            print(f"| {policy} | {choice} | {r['on_images_per_s']:.1f} | {r['off_images_per_s']:.1f} | "
                  f"{r['ratio']:.3f} | {r['others_cores']:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
