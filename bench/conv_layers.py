"""Each convolution of the training step's networks alone, at the step's shapes and dtypes: its forward
op, input gradient and kernel gradient (TensorFlow's ops, as oneDNN runs them), in ms and GFLOP/s.
Where the step's time goes, layer by layer: which shapes run far below the matmul peak.

    python -m bench.conv_layers [--dataset miniplaces] [--train-flags "--width 0.25 ..."]
        [--mixed-precision auto|off|bfloat16] [--repeats 20] [--json OUT]

The median of --repeats calls of each op (each a tf.function, after two warm-up calls).
"""
import argparse
import json
import math
import shlex
import statistics
import time

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
import keras
import tensorflow as tf

from bench.train_throughput import PHOTO_RECIPE
from colorgan import config as cfg, training


def convolutions(model: keras.Model, image_shape) -> list[dict]:
    """Every Conv2D and Conv2DTranspose of model with its input and output shapes for a batch of image_shape."""
    convs = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    probe = keras.Model(model.inputs, [t for l in convs for t in (l.input, l.output)])
    shapes = [tuple(t.shape) for t in probe(tf.zeros(image_shape), training=True)]
    return [dict(network=model.name.split("_")[0], layer=l.name, transpose=isinstance(l, keras.layers.Conv2DTranspose),
                 kernel=tuple(l.kernel.shape), stride=l.strides[0], dtype=l.compute_dtype,
                 input=shapes[2 * i], output=shapes[2 * i + 1]) for i, l in enumerate(convs)]


def ops(conv: dict) -> dict:
    """The three ops of conv as tf.functions. A transposed convolution is the input gradient of the
    convolution from its output to its input, so its forward op is Conv2DBackpropInput and its input
    gradient a convolution."""
    dtype, s = tf.as_dtype(conv["dtype"]), conv["stride"]
    big, small = (conv["output"], conv["input"]) if conv["transpose"] else (conv["input"], conv["output"])
    x, y = (tf.cast(tf.random.stateless_normal(shape, (1, i)), dtype) for i, shape in enumerate((big, small)))
    k = tf.cast(tf.random.stateless_normal(conv["kernel"], (2, 0)), dtype)  # (k, k, big channels, small channels)
    strides, kernel_shape = [1, s, s, 1], list(conv["kernel"])
    down = tf.function(lambda: tf.nn.conv2d(x, k, s, "SAME"))  # big -> small
    up = tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(input_sizes=big, filter=k, out_backprop=y,
                                                            strides=strides, padding="SAME"))  # small -> big
    kernel = tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=kernel_shape, out_backprop=y,
                                                                 strides=strides, padding="SAME"))
    return dict(forward=up if conv["transpose"] else down, input_gradient=down if conv["transpose"] else up,
                kernel_gradient=kernel)


def median_seconds(fn, repeats: int) -> float:
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn().numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="miniplaces", choices=("cifar10", "miniplaces"))
    parser.add_argument("--train-flags", default=None, help="train.py flags (miniplaces: the photo model's)")
    parser.add_argument("--mixed-precision", default="auto", choices=("auto", "off", "bfloat16"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    flags = args.train_flags if args.train_flags is not None else PHOTO_RECIPE if args.dataset == "miniplaces" else ""
    config = cfg.parse_args(["--dataset", args.dataset, *shlex.split(flags), "--mixed-precision", args.mixed_precision])
    state = training.create_train_state(config, tf.distribute.get_strategy())
    size, bs = config.image_size, config.batch_size
    rows = convolutions(state.generator, (bs, size, size, 1)) + \
        convolutions(state.discriminator, (bs, size, size, state.discriminator.inputs[0].shape[-1]))
    print(f"{config.dataset} ({cfg.as_flags(config)}), batch {bs}, {size} px; ms (GFLOP/s) per op, median of "
          f"{args.repeats}\n| network | layer | input -> output | dtype | forward | input gradient | kernel gradient |"
          "\n|---|---|---|---|---|---|---|")
    for row in rows:
        small = row["input"] if row["transpose"] else row["output"]
        flops = 2 * small[0] * small[1] * small[2] * math.prod(row["kernel"])  # 2 x multiply-adds
        row.update(flops=flops, **{name: median_seconds(fn, args.repeats) for name, fn in ops(row).items()})
        cells = " | ".join(f"{1e3 * row[op]:.2f} ({flops / row[op] / 1e9:.0f})"
                           for op in ("forward", "input_gradient", "kernel_gradient"))
        print(f"| {row['network']} | {row['layer']} | {row['input'][1:]} -> {row['output'][1:]} | {row['dtype']} | "
              f"{cells} |", flush=True)
    total = {op: sum(r[op] for r in rows) for op in ("forward", "input_gradient", "kernel_gradient")}
    print("all layers once: " + ", ".join(f"{op} {1e3 * t:.1f} ms" for op, t in total.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(flags=cfg.as_flags(config), batch_size=bs, image_size=size, layers=rows), f, indent=2)


if __name__ == "__main__":
    main()
