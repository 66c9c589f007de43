"""Streaming tf.data pipelines of (gray, colour) batches from any source (colorgan.sources).

make_dataset builds the pipeline in the canonical order: indices -> shuffle -> read + crop, flip
(parallel map, in chunks) -> batch -> Lab (per batch, XLA) -> prefetch. All randomness is stateless
and seeded by (seed, epoch, index), so the same seed gives the same batches, and the pipeline of any
epoch can be rebuilt.
"""
import dataclasses
import functools
import threading

import numpy as np

import tensorflow as tf

from colorgan import color, images
from colorgan.config import Config
from colorgan.sources import DataError, Source, load_source

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class Skipped:
    """Images a pipeline left out; filled while it streams, reported once per epoch."""
    gray: int = 0
    unreadable: list = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def __str__(self):
        text = f"skipped {self.gray} grayscale and {len(self.unreadable)} unreadable images"
        if self.unreadable:
            text += ": " + "; ".join(self.unreadable[:5]) + (" ..." if len(self.unreadable) > 5 else "")
        return text


# ----------------------------------------------------------------------------------------------
# The pipeline

CHUNK = 64  # images per Python call: a call per image costs more than decoding a 32x32 JPEG


def _chunk_reader(source: Source, size: int, random: bool, skipped: Skipped):
    """read(indices, uniforms[, pixels]) -> (images (k, size, size, 3), keep (k,)); runs in
    tf.numpy_function, several chunks at once; uniforms (k, 3) place the random crops."""
    def read(indices, uniforms, pixels=None):
        out = np.zeros((len(indices), size, size, 3), np.uint8)
        keep = np.zeros(len(indices), bool)
        for n, i in enumerate(indices):
            if pixels is not None:
                rgb = pixels[n]
            elif source.images is not None:
                rgb = source.images[i]
            else:
                try:
                    rgb = images.read_image(source.paths[i], size)
                except images.ImageError as error:
                    with skipped.lock:
                        skipped.unreadable.append(str(error))
                    continue
            if source.images is None and images.is_gray(rgb):
                with skipped.lock:
                    skipped.gray += 1
                continue
            out[n] = images.crop_square(rgb, size, uniforms[n, :2] if random else None)
            keep[n] = True
        return out, keep
    return read


@functools.lru_cache(maxsize=4)
def _images_tensor(source: Source) -> tf.Tensor:
    """A source's images in TensorFlow, made once, not every epoch."""
    return tf.constant(source.images)


@functools.partial(tf.function, jit_compile=True)  # TF's plain uint8 where/reverse: 3x slower (bench/README.md)
def _flip(rgb, flip):
    return tf.where(flip[:, None, None, None], tf.reverse(rgb, [2]), rgb)  # (k, S, S, 3)


@functools.partial(tf.function, jit_compile=True)  # 2x faster on CPU than the plain graph
def _to_model_input(rgb, color_space):
    return color.preprocess(rgb, color_space)


@dataclasses.dataclass(frozen=True)
class Part:
    """One of several input pipelines' part of a training epoch (input_pipeline): shard index of
    count of the shuffled indices, the first skip of them left unread (steps already done), and
    exactly batches batches of batch_size."""
    count: int = 1
    index: int = 0
    skip: int = 0
    batches: int = 0
    batch_size: int = 0


def make_dataset(config: Config, split: str, epoch: int = 0, skipped: Skipped | None = None,
                 source: Source | None = None, part: Part = Part()) -> tf.data.Dataset:
    """Batches of one epoch of one split, as dicts: "gray" (bs, S, S, 1) and "colour" (bs, S, S, 3)
    in [-1, 1] (the model's input and target), "rgb" (bs, S, S, 3) the 8-bit sRGB images and
    "index" (bs,) each image's place in the source.

    Training batches are shuffled and augmented by (seed, epoch) and all full; test batches come in
    a fixed order, centre-cropped, the last one possibly smaller. skipped collects what was left out.
    source: a part of the split (spread) instead of all of it; part: one input pipeline's part.
    """
    source = source or load_source(config.dataset, config.dataset_path, split, config.seed)
    skipped = skipped if skipped is not None else Skipped()
    skipped.gray += source.gray_removed
    train = split == "train"
    size = config.image_size
    shuffle_seed = config.seed * 1000003 + epoch
    read = _chunk_reader(source, size, train and config.augment, skipped)
    seed = tf.constant([config.seed, epoch], tf.int64)
    # Arrays at the training size (CIFAR-10 archives and TFDS): gathered by TensorFlow, without a
    # Python call per chunk; other images read, resized and cropped by _chunk_reader.
    arrays = _images_tensor(source) if source.images is not None and source.images.shape[1:3] == (size, size) \
        else None

    def with_uniforms(i, *pixels):  # seeded by (seed, epoch, index): the same crop whatever the order
        return (i, tf.random.stateless_uniform([3], tf.random.experimental.stateless_fold_in(seed, i)), *pixels)

    def read_chunk(indices, uniforms, *pixels):
        if arrays is not None:
            rgb, keep = tf.gather(arrays, indices), tf.ones_like(indices, tf.bool)  # (k, S, S, 3), (k,)
        else:
            rgb, keep = tf.numpy_function(read, [indices, uniforms, *pixels], (tf.uint8, tf.bool), stateful=False)
            rgb, keep = tf.ensure_shape(rgb, (None, size, size, 3)), tf.ensure_shape(keep, (None,))
        if train and config.augment:
            rgb = _flip(rgb, uniforms[:, 2] < 0.5)
        return dict(rgb=rgb, keep=keep, index=indices)

    def outputs(batch):
        gray, colour = _to_model_input(batch["rgb"], config.color_space)
        return dict(gray=gray, colour=colour, rgb=batch["rgb"], index=batch["index"])

    if source.stream is not None:  # TFDS places365_small: 256x256 images, too many to index
        ds = source.stream().enumerate()
        if train:
            ds = ds.shuffle(1000, seed=shuffle_seed)
    else:  # shuffling indices keeps the buffer (and a saved iterator) small
        ds = tf.data.Dataset.range(source.size)
        if train:
            ds = ds.shuffle(source.size, seed=shuffle_seed, reshuffle_each_iteration=False)
    if part.count > 1:  # before reading: each pipeline decodes only its own images
        ds = ds.shard(part.count, part.index)
    # By position, not ds.skip: tf.data drops a skip(0), and a saved iterator restores only into a
    # pipeline of the same parts, whatever the epoch skipped when it was saved.
    ds = ds.enumerate().filter(lambda position, _: position >= part.skip).map(lambda _, element: element)
    ds = ds.map(with_uniforms).batch(CHUNK)
    if part.batches:  # images left out (gray, unreadable) must not cost a worker a step: the others would wait
        ds = ds.repeat()
    ds = ds.map(read_chunk, num_parallel_calls=AUTOTUNE).unbatch()
    ds = ds.filter(lambda image: image["keep"])
    ds = ds.map(lambda kept: dict(rgb=kept["rgb"], index=kept["index"]))
    ds = ds.batch(part.batch_size or config.batch_size, drop_remainder=train)
    if part.batches:
        ds = ds.take(part.batches)
    return ds.map(outputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def input_pipeline(config: Config, epoch: int, context: tf.distribute.InputContext, done: int = 0,
                   skipped: Skipped | None = None) -> tf.data.Dataset:
    """One input pipeline's share of a training epoch under a distribution strategy, as per-replica
    batches (strategy.distribute_datasets_from_function).

    The shuffled indices are sharded before any image is read, so that every training image is seen
    once per epoch across pipelines; an epoch resumed after `done` steps skips their indices unread.
    Every pipeline gives the same number of batches, the epoch's steps (as on one device) times its
    replicas. Exact for arrays (CIFAR-10); a folder whose images are left out while reading repeats
    a few of them instead, and a TFDS stream is read whole by every pipeline and then sharded.
    """
    source = load_source(config.dataset, config.dataset_path, "train", config.seed)
    pipelines = context.num_input_pipelines
    per_replica = context.get_per_replica_batch_size(config.batch_size)
    share = config.batch_size // pipelines  # images per step in this pipeline
    steps = max(1, source.size // config.batch_size)
    part = Part(pipelines, context.input_pipeline_id, skip=done * share,
                batches=(steps - done) * (share // per_replica), batch_size=per_replica)
    return make_dataset(config, "train", epoch, skipped, part=part)


def check_not_empty(batches: int, skipped: Skipped, config: Config, split: str) -> None:
    """After an epoch: a source whose every image was left out is an error, not a silent no-op."""
    if batches == 0:
        raise DataError(f"{describe(config, split)}, but no usable batch of {config.batch_size} in the "
                        f"{split} split ({skipped})")


def describe(config: Config, split: str) -> str:
    source = load_source(config.dataset, config.dataset_path, split, config.seed)
    return f"{source.description}: {source.size} images"
