"""A small CIFAR-10 classifier whose features judge colourisations: FID-C10, class accuracy and C2ST.

Per-pixel distances to the one true colour reward leaving an image gray. A network trained to
recognise CIFAR-10 in true colour tells plausible colour from gray or wrong colour instead, as
Zhang, Isola & Efros (2016) use a classifier and FID uses Inception. colorgan trains it only on the
training split in colour and ships its weights (colorgan/assets/), so no metric needs a download:

    python -m colorgan.features --dataset-path ../shared/data/cifar10

Seeded, resumable (at epoch ends: run the same command again), with a progress line.
"""
import argparse
import functools
import json
import os
import sys
import time

import numpy as np

import keras
import tensorflow as tf
from keras import layers

from colorgan import color, data, files, images, inference, models
from colorgan.config import UserError

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
WEIGHTS = os.path.join(ASSETS, "cifar10_features.weights.h5")
METADATA = os.path.join(ASSETS, "cifar10_features.json")
SIZE = 32  # the network sees 32x32 images; larger ones are resized to it
FIXTURE = os.path.join(os.path.dirname(ASSETS), "..", "tests", "data", "cifar10", "test")


def build_classifier() -> keras.Model:
    """8-bit RGB (bs, 32, 32, 3) in 0..255 -> logits (bs, 10). A ResNet-9-like net at half width:
    0.7 M parameters."""
    def conv(x, filters, name):  # 3x3 conv -> BatchNorm -> ReLU
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
        return layers.ReLU(name=name + "_relu")(layers.BatchNormalization(name=name + "_bn")(x))

    rgb = keras.Input((SIZE, SIZE, 3), name="rgb")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(rgb)
    x = conv(x, 32, "stem")                                        # (bs, 32, 32, 32)
    x = layers.MaxPooling2D(name="pool1")(conv(x, 64, "conv1"))    # (bs, 16, 16, 64)
    x = layers.MaxPooling2D(name="pool2")(conv(x, 128, "conv2"))   # (bs, 8, 8, 128)
    x = layers.Add(name="res2")([x, conv(conv(x, 128, "res2a"), 128, "res2b")])
    x = layers.MaxPooling2D(name="pool3")(conv(x, 256, "conv3"))   # (bs, 4, 4, 256)
    features = layers.GlobalMaxPooling2D(name="features")(x)       # (bs, 256)
    logits = layers.Dense(10, dtype="float32", name="logits")(features)
    return keras.Model(rgb, logits, name="cifar10_features")


# The metrics' features: each stage's activations averaged over the image, 576 numbers from shallow
# (colour statistics) to deep (objects). Measured on 2,000 test images, in FID between the truth's two
# halves and the truth against gray, they separate gray 13x (3.40 against 0.26); the classifier's
# own last, max-pooled 256 separate it 2.5x (3.40 against 1.38).
FEATURE_LAYERS = ("conv1_relu", "conv2_relu", "res2", "conv3_relu")


@functools.cache
def load() -> keras.Model:
    """The shipped network, in float32, with outputs (logits (bs, 10), features (bs, 576))."""
    if not os.path.isfile(WEIGHTS):
        raise UserError(f"{WEIGHTS} is missing: train it with python -m colorgan.features")
    with models.dtype_policy("float32"):
        model = build_classifier()
    model.load_weights(WEIGHTS)
    pooled = [layers.GlobalAveragePooling2D(name=f"{n}_mean")(model.get_layer(n).output) for n in FEATURE_LAYERS]
    return keras.Model(model.input, [model.output, layers.Concatenate(name="metric_features")(pooled)])


@tf.function(reduce_retracing=True)
def _run(model, rgb):
    rgb = tf.cast(rgb, tf.float32)
    if rgb.shape[1] != SIZE or rgb.shape[2] != SIZE:
        rgb = tf.image.resize(rgb, (SIZE, SIZE), antialias=True)
    return model(rgb, training=False)


def logits_and_features(rgb) -> tuple[np.ndarray, np.ndarray]:
    """(logits (bs, 10), features (bs, 576)) of 8-bit RGB images (bs, H, W, 3), resized to 32x32."""
    logits, features = _run(load(), tf.convert_to_tensor(rgb))
    return logits.numpy(), features.numpy()


# ------------------------------------------------------------------------------------------------
# Training

def labelled_split(dataset_path: str, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(images (n, 32, 32, 3) uint8, labels (n,), description) of a CIFAR-10 split from any source
    colorgan reads (archives, class folders, TFDS)."""
    source = data.load_source("cifar10", dataset_path, split)
    if source.labels is None:
        raise UserError(f"{source.description}: no CIFAR-10 labels (class folders named airplane ... truck, "
                        "an official archive, or TFDS)")
    if source.images is not None:
        return source.images, source.labels, source.description
    rgb = np.stack([images.crop_square(images.read_image(p, SIZE), SIZE) for p in source.paths])
    return rgb, source.labels, source.description


def _augmented(x, y, seed: int, epoch: int, batch_size: int) -> tf.data.Dataset:
    """One epoch of shuffled batches, randomly cropped from a 4-pixel reflected border and flipped,
    all seeded by (seed, epoch, index)."""
    x, y = tf.constant(x), tf.constant(y)
    key = tf.constant([seed, epoch], tf.int64)

    def augment(i):
        s = tf.random.experimental.stateless_fold_in(key, i)
        padded = tf.pad(x[i], [[4, 4], [4, 4], [0, 0]], mode="REFLECT")
        crop = tf.image.stateless_random_crop(padded, (SIZE, SIZE, 3), s)
        return tf.image.stateless_random_flip_left_right(crop, s + 1), y[i]

    ds = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=seed * 1000003 + epoch)
    return ds.map(augment, num_parallel_calls=data.AUTOTUNE).batch(batch_size, drop_remainder=True).prefetch(2)


def accuracy(model, x, y, batch_size: int = 500) -> float:
    """Top-1 accuracy of a classifier (or of load()'s (logits, features) model) on 8-bit RGB images."""
    hits = 0
    for start in range(0, len(x), batch_size):
        out = _run(model, tf.constant(x[start:start + batch_size]))
        logits = out[0] if isinstance(out, (list, tuple)) else out
        hits += int(np.sum(np.argmax(logits, -1) == y[start:start + batch_size]))
    return hits / len(x)


def train(args) -> dict:
    """Train the classifier on the training split in colour; write the weights and their metadata."""
    from colorgan import config, devices
    keras.utils.set_random_seed(args.seed)
    policy, why = devices.precision_policy(config.make_config(mixed_precision=args.mixed_precision))
    x, y, description = labelled_split(args.dataset_path, "train")
    x_test, y_test, _ = labelled_split(args.dataset_path, "test")
    print(f"{description}: {len(x)} training images; dtype policy {policy} ({why})", flush=True)
    steps_per_epoch = len(x) // args.batch_size
    total = steps_per_epoch * args.epochs
    # one cycle: a linear warm-up over the first fifth, then linearly down to zero
    schedule = lambda step: args.lr * tf.minimum(step / (0.2 * total), (total - step) / (0.8 * total))  # noqa: E731
    with models.dtype_policy(policy):
        model = build_classifier()
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    optimizer = keras.optimizers.SGD(lambda: schedule(tf.cast(step, tf.float32)), momentum=0.9, nesterov=True,
                                     weight_decay=args.weight_decay)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, args.out, max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        print(f"resumed from {manager.latest_checkpoint} at step {int(step)}", flush=True)

    @tf.function
    def train_step(rgb, labels):
        with tf.GradientTape() as tape:
            logits = model(tf.cast(rgb, tf.float32), training=True)
            loss = loss_fn(tf.one_hot(labels, 10), logits)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        step.assign_add(1)
        return loss, tf.reduce_mean(tf.cast(tf.argmax(logits, -1) == labels, tf.float32))

    started, cpu_started = time.perf_counter(), time.process_time()
    for epoch in range(int(step) // steps_per_epoch, args.epochs):
        window, seen = time.perf_counter(), 0
        for n, (rgb, labels) in enumerate(_augmented(x, y, args.seed, epoch, args.batch_size), 1):
            loss, acc = train_step(rgb, labels)
            seen += args.batch_size
            if n % 50 == 0 or n == steps_per_epoch:
                rate = seen / (time.perf_counter() - window)
                eta = (total - int(step)) * args.batch_size / rate
                print(f"epoch {epoch + 1}/{args.epochs} step {int(step)}/{total} | loss {float(loss):.3f} "
                      f"acc {float(acc):.3f} | {rate:.0f} img/s | ETA {eta / 60:.1f} min", flush=True)
        manager.save(checkpoint_number=int(step))
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model, x_test, y_test):.4f}", flush=True)

    final = models.rebuild(build_classifier, model)  # float32, as load() builds it
    os.makedirs(ASSETS, exist_ok=True)
    with files.atomic_path(WEIGHTS) as temporary:
        final.save_weights(temporary + ".weights.h5")
        os.replace(temporary + ".weights.h5", temporary)
    load.cache_clear()
    metadata = {
        "command": "python -m colorgan.features " + " ".join(sys.argv[1:]),
        "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "dtype_policy": policy, "source": description,
        "train_images": len(x), "test_images": len(x_test),
        "test_top1_colour": accuracy(final, x_test, y_test),
        "test_top1_gray": accuracy(final, inference.gray_to_rgb(color.preprocess(x_test)[0]), y_test),
        "parameters": final.count_params(), "weights_bytes": os.path.getsize(WEIGHTS),
        "train_minutes": round((time.perf_counter() - started) / 60, 1),
        "train_cpu_minutes": round((time.process_time() - cpu_started) / 60, 1),
        "fixture": fixture_predictions(),
    }
    files.write_text(METADATA, json.dumps(metadata, indent=1) + "\n")
    print(json.dumps({k: v for k, v in metadata.items() if k != "fixture"}, indent=1))
    return metadata


def fixture_predictions() -> dict:
    """{file: [predicted class, logit margin over the runner-up]} for the test images committed with
    the tests: a test checks that the shipped weights still classify them so."""
    paths = images.list_images(FIXTURE) if os.path.isdir(FIXTURE) else []
    if not paths:
        return {}
    logits, _ = logits_and_features(np.stack([images.read_image(p) for p in paths]))
    top2 = np.sort(logits, -1)[:, -2:]
    return {os.path.relpath(p, FIXTURE): [data.CIFAR10_CLASSES[int(np.argmax(l))], round(float(m), 4)]
            for p, l, m in zip(paths, logits, top2[:, 1] - top2[:, 0])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-path", default="", help="CIFAR-10: archive, class folders (default: TFDS)")
    parser.add_argument("--out", default="checkpoints/features", help="folder for its checkpoints")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.2, help="peak SGD learning rate (Nesterov momentum 0.9)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed-precision", default="auto", choices=("auto", "off", "bfloat16"))
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0 or args.seed < 0:
        parser.error("--epochs and --batch-size must be at least 1, --lr positive, --seed not negative")
    try:
        train(args)
    except UserError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
