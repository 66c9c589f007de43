"""A 4x4 stride-2 'same' convolution (forward, input and kernel gradients) as TensorFlow runs it, against
the same convolution as space-to-depth and a 2x2 stride-1 convolution (the same arithmetic without
strided kernels), at the photo encoder's shapes (width 0.25, batch 16), in bfloat16 and float32,
timed interleaved; the two agree to rounding (printed).

    python -m bench.strided_conv [--json OUT]
"""
import argparse
import json
import statistics
import time

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
import numpy as np
import tensorflow as tf

SHAPES = [(128, 16, 16), (64, 16, 32), (32, 32, 64), (16, 64, 128), (8, 128, 128), (4, 128, 128)]  # (S, C, F)


def direct(x, k):  # (bs, S, S, C) -> (bs, S/2, S/2, F)
    return tf.nn.conv2d(x, k, 2, "SAME")


def space_to_depth(x, k):
    # SAME pads a 4x4 stride-2 convolution of an even size by (1, 1); the kernel (4, 4, C, F) becomes
    # (2, 2, 4C, F) in space_to_depth's channel order (row phase, column phase, channel)
    c, f = k.shape[2], k.shape[3]
    x = tf.nn.space_to_depth(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 2)  # (bs, S/2+1, S/2+1, 4C)
    k = tf.reshape(tf.transpose(tf.reshape(k, (2, 2, 2, 2, c, f)), (0, 2, 1, 3, 4, 5)), (2, 2, 4 * c, f))
    return tf.nn.conv2d(x, k, 1, "VALID")


def with_gradients(conv, g):
    @tf.function
    def step(x, k):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = conv(x, k)
        return (y, *tape.gradient(y, [x, k], output_gradients=g))
    return step


def compare(dtype, size: int, cin: int, cout: int, rounds: int = 6, calls: int = 10) -> dict:
    x = tf.cast(tf.random.stateless_normal((16, size, size, cin), (1, 2)), dtype)
    k = tf.cast(tf.random.stateless_normal((4, 4, cin, cout), (3, 4)) * 0.1, dtype)
    g = tf.cast(tf.random.stateless_normal((16, size // 2, size // 2, cout), (5, 6)), dtype)
    steps = {"direct": with_gradients(direct, g), "space_to_depth": with_gradients(space_to_depth, g)}
    ref, new = ([t.numpy().astype(np.float32) for t in step(x, k)] for step in steps.values())
    difference = max(float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(ref, new))
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(calls):
                out = step(x, k)
            out[0].numpy()
            times[name].append((time.perf_counter() - start) / calls)
    return dict(dtype=dtype.name, size=size, cin=cin, cout=cout, max_relative_difference=difference,
                **{f"{name}_s": statistics.median(t) for name, t in times.items()})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    rows = []
    print("| dtype | input | channels | direct, ms | space-to-depth, ms | direct / space-to-depth "
          "| max rel. difference |\n|---|---|---|---|---|---|---|")
    for dtype in (tf.bfloat16, tf.float32):
        for size, cin, cout in SHAPES:
            try:
                r = compare(dtype, size, cin, cout)
            except tf.errors.AbortedError:  # oneDNN without bfloat16 kernels (an AVX2 path) has no such gradient
                print(f"| {dtype.name} | | | not on this CPU's oneDNN path | | | |")
                break
            rows.append(r)
            print(f"| {r['dtype']} | {size}x{size} | {cin} -> {cout} | {1e3 * r['direct_s']:.2f} | "
                  f"{1e3 * r['space_to_depth_s']:.2f} | {r['direct_s'] / r['space_to_depth_s']:.2f}x | "
                  f"{r['max_relative_difference']:.1e} |", flush=True)
        mine = [r for r in rows if r["dtype"] == dtype.name]
        if mine:
            print(f"| {dtype.name} | all six | | {1e3 * sum(r['direct_s'] for r in mine):.2f} | "
                  f"{1e3 * sum(r['space_to_depth_s'] for r in mine):.2f} | "
                  f"{sum(r['direct_s'] for r in mine) / sum(r['space_to_depth_s'] for r in mine):.2f}x | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
