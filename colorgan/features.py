"""Small classifiers whose features judge colourisations: FID, class accuracy and C2ST.

Per-pixel distances to the one true colour reward leaving an image gray. A network trained to
recognise a dataset in true colour tells plausible colour from gray or wrong colour instead, as
Zhang, Isola & Efros (2016) use a classifier and FID uses Inception. colorgan trains two, each only
on its training split in colour, and ships their weights (colorgan/assets/), so no metric needs a
download: "cifar10" (objects, 32x32) judges CIFAR-10, "scenes" (MiniPlaces' 100 scene categories,
64x64) judges photographs.

    python -m colorgan.features --network cifar10 --dataset-path CIFAR10
    python -m colorgan.features --network scenes --dataset-path DIR   # MiniPlaces

Seeded, resumable (at epoch ends: run the same command again), with a progress line.
"""
import argparse
import concurrent.futures
import dataclasses
import functools
import json
import os
import sys
import time

import numpy as np

import keras
import tensorflow as tf
from keras import layers

from colorgan import color, data, files, images, inference, models, sources
from colorgan.config import UserError

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")


def _conv(x, filters, name, strides=1):  # 3x3 conv -> BatchNorm -> ReLU
    x = layers.Conv2D(filters, 3, strides, padding="same", use_bias=False, name=name)(x)
    return layers.ReLU(name=name + "_relu")(layers.BatchNormalization(name=name + "_bn")(x))


def _cifar10_classifier() -> keras.Model:
    """8-bit RGB (bs, 32, 32, 3) in 0..255 -> logits (bs, 10). A ResNet-9-like net at half width:
    0.7 M parameters."""
    rgb = keras.Input((32, 32, 3), name="rgb")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(rgb)
    x = _conv(x, 32, "stem")                                         # (bs, 32, 32, 32)
    x = layers.MaxPooling2D(name="pool1")(_conv(x, 64, "conv1"))     # (bs, 16, 16, 64)
    x = layers.MaxPooling2D(name="pool2")(_conv(x, 128, "conv2"))    # (bs, 8, 8, 128)
    x = layers.Add(name="res2")([x, _conv(_conv(x, 128, "res2a"), 128, "res2b")])
    x = layers.MaxPooling2D(name="pool3")(_conv(x, 256, "conv3"))    # (bs, 4, 4, 256)
    features = layers.GlobalMaxPooling2D(name="features")(x)         # (bs, 256)
    logits = layers.Dense(10, dtype="float32", name="logits")(features)
    return keras.Model(rgb, logits, name="cifar10_features")


def _scenes_classifier() -> keras.Model:
    """8-bit RGB (bs, 64, 64, 3) in 0..255 -> logits (bs, 100): the CIFAR-10 net behind a stride-2
    stem, with a second residual stage for 100 scenes. 1.9 M parameters, about 0.14 GFLOP an image."""
    rgb = keras.Input((64, 64, 3), name="rgb")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(rgb)
    x = _conv(x, 32, "stem", strides=2)                              # (bs, 32, 32, 32)
    x = layers.MaxPooling2D(name="pool1")(_conv(x, 64, "conv1"))     # (bs, 16, 16, 64)
    x = layers.MaxPooling2D(name="pool2")(_conv(x, 128, "conv2"))    # (bs, 8, 8, 128)
    x = layers.Add(name="res2")([x, _conv(_conv(x, 128, "res2a"), 128, "res2b")])
    x = layers.MaxPooling2D(name="pool3")(_conv(x, 256, "conv3"))    # (bs, 4, 4, 256)
    x = layers.Add(name="res3")([x, _conv(_conv(x, 256, "res3a"), 256, "res3b")])
    features = layers.GlobalAveragePooling2D(name="features")(x)     # (bs, 256)
    logits = layers.Dense(100, dtype="float32", name="logits")(layers.Dropout(0.2, name="drop")(features))
    return keras.Model(rgb, logits, name="scenes_features")


@dataclasses.dataclass(frozen=True)
class Network:
    name: str
    size: int  # the side it sees; other images are resized to it
    build: object
    # The metrics' features: each stage's activations averaged over the image, from shallow (colour
    # statistics) to deep (objects, scenes). For CIFAR-10, measured on 2,000 test images, in FID
    # between the truth's two halves and the truth against gray, they separate gray 13x (3.40
    # against 0.26); the classifier's own last, max-pooled 256 separate it 2.5x (3.40 against 1.38).
    feature_layers: tuple
    dataset: str  # what it learned, as --dataset names it
    fid_key: str  # its FID's name in test_eval.py's table

    @property
    def weights(self) -> str:
        return os.path.join(ASSETS, f"{self.name}_features.weights.h5")

    @property
    def metadata(self) -> str:
        return os.path.join(ASSETS, f"{self.name}_features.json")


NETWORKS = {
    "cifar10": Network("cifar10", 32, _cifar10_classifier, ("conv1_relu", "conv2_relu", "res2", "conv3_relu"),
                       "cifar10", "fid_c10"),
    "scenes": Network("scenes", 64, _scenes_classifier, ("conv1_relu", "conv2_relu", "res2", "conv3_relu", "res3"),
                      "miniplaces", "fid_scenes"),
}
# What judges a test set: CIFAR-10's network for CIFAR-10, the scene network for photographs
SIZE, WEIGHTS, METADATA = 32, NETWORKS["cifar10"].weights, NETWORKS["cifar10"].metadata


def network_for(dataset: str) -> str:
    return "cifar10" if dataset == "cifar10" else "scenes"


def build_classifier(network: str = "cifar10") -> keras.Model:
    return NETWORKS[network].build()


@functools.cache
def load(network: str = "cifar10") -> keras.Model:
    """A shipped network, in float32, with outputs (logits (bs, classes), features (bs, F))."""
    spec = NETWORKS[network]
    if not os.path.isfile(spec.weights):
        raise UserError(f"{spec.weights} is missing: train it with python -m colorgan.features --network {network}")
    with models.dtype_policy("float32"):
        model = spec.build()
    model.load_weights(spec.weights)
    pooled = [layers.GlobalAveragePooling2D(name=f"{n}_mean")(model.get_layer(n).output) for n in spec.feature_layers]
    return keras.Model(model.input, [model.output, layers.Concatenate(name="metric_features")(pooled)])


@tf.function(reduce_retracing=True)
def _run(model, rgb):
    rgb = tf.cast(rgb, tf.float32)
    size = model.input.shape[1]
    if rgb.shape[1] > size and rgb.shape[2] > size:
        # Box averaging, as the training images were shrunk (JPEG's DCT scaling): a softer filter
        # costs the scene network a sixth of its accuracy (MiniPlaces val: 46.3% against 37.8%)
        rgb = tf.image.resize(rgb, (size, size), method="area")
    elif rgb.shape[1] != size or rgb.shape[2] != size:
        rgb = tf.image.resize(rgb, (size, size), antialias=True)
    return model(rgb, training=False)


def logits_and_features(rgb, network: str = "cifar10") -> tuple[np.ndarray, np.ndarray]:
    """(logits (bs, classes), features (bs, F)) of 8-bit RGB images (bs, H, W, 3), resized to the
    network's size."""
    logits, features = _run(load(network), tf.convert_to_tensor(rgb))
    return logits.numpy(), features.numpy()


# ------------------------------------------------------------------------------------------------
# Training

def labelled_split(spec: Network, dataset_path: str, split: str, cache: str = "") -> tuple:
    """(images (n, S, S, 3) uint8 at the network's size, labels (n,), class names, description) of a
    split of its dataset from any source colorgan reads; decoded photos are kept in cache (a .npz)."""
    source = sources.load_source(spec.dataset, dataset_path, split)
    if source.labels is None:
        raise UserError(f"{source.description}: no labels (CIFAR-10: class folders named airplane ... truck, an "
                        "official archive, or TFDS; MiniPlaces: its lists)")
    if source.images is not None and source.images.shape[1] == spec.size:
        return source.images, source.labels, source.classes, source.description
    if cache and os.path.isfile(cache):
        stored = np.load(cache)
        if len(stored["labels"]) == source.size:
            return stored["images"], stored["labels"], source.classes, source.description
    read = lambda path: images.crop_square(images.read_image(path, spec.size), spec.size)  # noqa: E731
    rgb = np.empty((source.size, spec.size, spec.size, 3), np.uint8)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:  # Pillow decodes without the GIL
        for n, image in enumerate(pool.map(read, source.paths if source.paths else []), 1):
            rgb[n - 1] = image
            if n % 10000 == 0:
                print(f"decoded {n}/{source.size} {split} images ({n / (time.perf_counter() - started):.0f}/s)",
                      flush=True)
    if source.paths is None:  # arrays at another size
        rgb = np.stack([images.crop_square(x, spec.size) for x in source.images])
    if cache:
        with files.atomic_path(cache) as temporary:
            with open(temporary, "wb") as f:
                np.savez(f, images=rgb, labels=source.labels)
    return rgb, source.labels, source.classes, source.description


def _augmented(x, y, seed: int, epoch: int, batch_size: int) -> tf.data.Dataset:
    """One epoch of shuffled batches, randomly cropped from a reflected border of an eighth of the
    side and flipped, all seeded by (seed, epoch, index)."""
    size, pad = x.shape[1], x.shape[1] // 8
    x, y = tf.constant(x), tf.constant(y)
    key = tf.constant([seed, epoch], tf.int64)

    def augment(i):
        s = tf.random.experimental.stateless_fold_in(key, i)
        padded = tf.pad(x[i], [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        crop = tf.image.stateless_random_crop(padded, (size, size, 3), s)
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
    """Train a classifier on its training split in colour; write the weights and their metadata."""
    from colorgan import config, devices
    spec = NETWORKS[args.network]
    keras.utils.set_random_seed(args.seed)
    policy, why = devices.precision_policy(config.make_config(mixed_precision=args.mixed_precision))
    os.makedirs(args.out, exist_ok=True)
    cache = lambda split: os.path.join(args.out, f"{split}_{spec.size}px.npz")  # noqa: E731
    x, y, classes, description = labelled_split(spec, args.dataset_path, "train", cache("train"))
    x_test, y_test, _, _ = labelled_split(spec, args.dataset_path, "test", cache("test"))
    print(f"{description}: {len(x)} training images; dtype policy {policy} ({why})", flush=True)
    steps_per_epoch = len(x) // args.batch_size
    total = steps_per_epoch * args.epochs
    # one cycle: a linear warm-up over the first fifth, then linearly down to zero
    schedule = lambda step: args.lr * tf.minimum(step / (0.2 * total), (total - step) / (0.8 * total))  # noqa: E731
    with models.dtype_policy(policy):
        model = spec.build()
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
            loss = loss_fn(tf.one_hot(labels, len(classes)), logits)
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

    final = models.rebuild(spec.build, model)  # float32, as load() builds it
    os.makedirs(ASSETS, exist_ok=True)
    with files.atomic_path(spec.weights) as temporary:
        final.save_weights(temporary + ".weights.h5")
        os.replace(temporary + ".weights.h5", temporary)
    load.cache_clear()
    metadata = {
        "command": "python -m colorgan.features " + " ".join(sys.argv[1:]),
        "network": spec.name, "input_size": spec.size, "classes": len(classes),
        "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "dtype_policy": policy, "source": description,
        "train_images": len(x), "test_images": len(x_test),
        "test_top1_colour": accuracy(final, x_test, y_test),
        "test_top1_gray": accuracy(final, inference.gray_to_rgb(color.preprocess(x_test)[0]), y_test),
        "parameters": final.count_params(), "weights_bytes": os.path.getsize(spec.weights),
        "train_minutes": round((time.perf_counter() - started) / 60, 1),
        "train_cpu_minutes": round((time.process_time() - cpu_started) / 60, 1),
        "fixture": fixture_predictions(spec.name, classes),
    }
    files.write_text(spec.metadata, json.dumps(metadata, indent=1) + "\n")
    print(json.dumps({k: v for k, v in metadata.items() if k != "fixture"}, indent=1))
    return metadata


def judge_figures(network: str, dataset_path: str, cache: str = "") -> dict:
    """Can the shipped network judge colour? On its test split: top-1 in colour and in gray, and, in
    its metric features, C2ST and FID of gray against the truth and of the truth's two halves."""
    from colorgan import evaluation, metrics
    spec = NETWORKS[network]
    x, y, _, description = labelled_split(spec, dataset_path, "test", cache)
    gray = inference.gray_to_rgb(color.preprocess(x)[0])
    seen = {}
    for name, rgb in (("truth", x), ("gray", gray)):
        parts = [logits_and_features(rgb[i:i + 500], network) for i in range(0, len(rgb), 500)]
        seen[name] = {"logits": np.concatenate([p[0] for p in parts]),
                      "features": np.concatenate([p[1] for p in parts])}
    halves = evaluation.halves(seen["truth"])
    against_gray = metrics.c2st(seen["truth"]["features"], seen["gray"]["features"])
    between_halves = metrics.c2st(halves[0]["features"], halves[1]["features"])
    return {"source": description, "images": len(x),
            "top1_colour": float(np.mean(np.argmax(seen["truth"]["logits"], -1) == y)),
            "top1_gray": float(np.mean(np.argmax(seen["gray"]["logits"], -1) == y)),
            "c2st_gray": against_gray["accuracy"], "c2st_gray_stderr": against_gray["stderr"],
            "c2st_halves": between_halves["accuracy"], "c2st_halves_stderr": between_halves["stderr"],
            "fid_gray": metrics.frechet_distance(seen["gray"]["features"], seen["truth"]["features"]),
            "fid_halves": metrics.frechet_distance(halves[0]["features"], halves[1]["features"])}


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The images committed with the tests that each network's metadata records its predictions on
FIXTURES = {"cifar10": os.path.join(ROOT, "tests", "data", "cifar10", "test"),
            "scenes": os.path.join(ROOT, "tests", "data", "miniplaces", "images", "val")}
FIXTURE = FIXTURES["cifar10"]


def fixture_predictions(network: str = "cifar10", classes=sources.CIFAR10_CLASSES) -> dict:
    """{file: [predicted class, logit margin over the runner-up]} for the test images committed with
    the tests: a test checks that the shipped weights still classify them so."""
    folder = FIXTURES[network]
    paths = images.list_images(folder) if os.path.isdir(folder) else []
    if not paths:
        return {}
    logits, _ = logits_and_features(np.stack([images.read_image(p) for p in paths]), network)
    top2 = np.sort(logits, -1)[:, -2:]
    return {os.path.relpath(p, folder): [classes[int(np.argmax(l))], round(float(m), 4)]
            for p, l, m in zip(paths, logits, top2[:, 1] - top2[:, 0])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="cifar10", choices=sorted(NETWORKS))
    parser.add_argument("--dataset-path", default="", help="its dataset: CIFAR-10 (archive, class folders; default: "
                        "TFDS) or MiniPlaces (its official layout)")
    parser.add_argument("--out", default="checkpoints/features", help="folder for its checkpoints")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.2, help="peak SGD learning rate (Nesterov momentum 0.9)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed-precision", default="auto", choices=("auto", "off", "bfloat16"))
    parser.add_argument("--measure", action="store_true", help="only measure the shipped network on its test split "
                        "(accuracy in colour and gray, C2ST and FID of gray and of the truth's halves) into its JSON")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0 or args.seed < 0:
        parser.error("--epochs and --batch-size must be at least 1, --lr positive, --seed not negative")
    try:
        if args.measure:
            spec = NETWORKS[args.network]
            metadata = json.load(open(spec.metadata))
            metadata["judge"] = judge_figures(args.network, args.dataset_path,
                                              os.path.join(args.out, f"test_{spec.size}px.npz"))
            files.write_text(spec.metadata, json.dumps(metadata, indent=1) + "\n")
            print(json.dumps(metadata["judge"], indent=1))
        else:
            train(args)
    except UserError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
