"""Streaming tf.data pipelines of (gray, colour) batches from CIFAR-10, Places365 or any image folder.

Every source is one split seen as "example i of n": an in-memory uint8 array (CIFAR-10 archives and
TFDS cifar10), a list of image files decoded while streaming (Places365 folders, image folders), or
a TFDS stream (places365_small). make_dataset builds the pipeline in the canonical order:
indices -> shuffle -> read + crop + flip (parallel map, in chunks) -> batch -> Lab (per batch,
XLA) -> prefetch. All randomness is stateless and seeded by (seed, epoch, index), so the same seed
gives the same batches, and the pipeline of any epoch can be rebuilt.
"""
import dataclasses
import functools
import io
import os
import pickle
import socket
import tarfile
import threading
import weakref
import zlib

import numpy as np

import tensorflow as tf

from colorgan import color, files, images
from colorgan.config import Config, UserError

AUTOTUNE = tf.data.AUTOTUNE
SPLITS = ("train", "test")
TEST_FRACTION = 0.1  # of an image folder without train/ and test/ subfolders
# CIFAR-10's label order, which is also the alphabetical order of its class folders
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataError(UserError):
    """Missing, empty or unreadable data."""


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


@dataclasses.dataclass
class Source:
    """One split of one dataset: exactly one of images, paths or stream is set."""
    description: str
    size: int
    images: np.ndarray | None = None  # (n, h, w, 3) uint8, pure-gray images already removed
    gray_removed: int = 0
    paths: list | None = None
    stream: object = None  # a callable returning a tf.data.Dataset of uint8 images
    labels: np.ndarray | None = None  # (size,) CIFAR-10 class of each image, where the source has them



# ----------------------------------------------------------------------------------------------
# CIFAR-10 archives: the binary and the python (pickle) versions, as archive or extracted folder

CIFAR_FILES = {
    "binary": {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
    "python": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
}
CIFAR_ARCHIVES = {"binary": "cifar-10-binary.tar.gz", "python": "cifar-10-python.tar.gz"}
CIFAR_FOLDERS = {"binary": "cifar-10-batches-bin", "python": "cifar-10-batches-py"}


def _find_cifar(path: str):
    """(format, read(name) -> bytes) when path is an official CIFAR-10 archive or folder, else None."""
    if os.path.isfile(path) and tarfile.is_tarfile(path):
        try:
            with tarfile.open(path) as tar:
                members = {os.path.basename(m.name): m.name for m in tar.getmembers() if m.isfile()}
        except (OSError, EOFError, tarfile.TarError, zlib.error) as error:  # a truncated download
            raise DataError(f"{path}: a damaged archive, truncated perhaps ({error})") from None
        for fmt, names in CIFAR_FILES.items():
            if names["test"][0] in members:
                def read(name, path=path, members=members):
                    with tarfile.open(path) as tar:
                        return tar.extractfile(members[name]).read()
                return fmt, read
        return None
    if os.path.isdir(path):
        for fmt, names in CIFAR_FILES.items():
            if os.path.isfile(os.path.join(path, names["test"][0])):
                def read(name, path=path):
                    with open(os.path.join(path, name), "rb") as f:
                        return f.read()
                return fmt, read
        for fmt in CIFAR_FILES:
            for inner in (CIFAR_FOLDERS[fmt], CIFAR_ARCHIVES[fmt]):
                found = _find_cifar(os.path.join(path, inner))
                if found:
                    return found
    return None


class _ArrayStub:
    """Stands in for numpy's pickled ndarray: takes its state as plain data, runs no numpy code."""

    def __init__(self, *args):
        self.array = None

    def __setstate__(self, state):  # (version, shape, dtype, is_fortran, raw bytes)
        _, shape, dtype, fortran, raw = state
        self.array = np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order="F" if fortran else "C")


class _DtypeStub:
    def __init__(self, code, align=False, copy=True):
        code = code.decode() if isinstance(code, bytes) else str(code)
        self.dtype = np.dtype(code)
        if self.dtype.kind not in "biuf":
            raise pickle.UnpicklingError(f"unexpected array type {code!r}")

    def __setstate__(self, state):
        order = state[1].decode() if isinstance(state[1], bytes) else state[1]
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _frombuffer(buffer, dtype, shape, order="C"):  # numpy's own pickles at protocol 5
    return np.frombuffer(bytes(buffer), dtype=dtype.dtype).reshape(shape, order=order)


def _latin1_bytes(text, encoding):  # how Python 3 writes bytes at pickle protocol 2
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"unexpected encoding {encoding!r}")
    return text.encode("latin1")


_ARRAY_GLOBALS = {("_codecs", "encode"): _latin1_bytes}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ARRAY_GLOBALS[(_module, "_reconstruct")] = _ArrayStub
for _module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
    _ARRAY_GLOBALS[(_module, "ndarray")] = _ArrayStub
    _ARRAY_GLOBALS[(_module, "dtype")] = _DtypeStub
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ARRAY_GLOBALS[(_module, "_frombuffer")] = _frombuffer


class _PlainDataUnpickler(pickle.Unpickler):
    """Admits only plain containers, bytes, strings and numbers (and arrays, as data):
    a pickle that names any other global, as one that runs code must, is refused."""

    def find_class(self, module, name):
        if (module, name) in _ARRAY_GLOBALS:
            return _ARRAY_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only data")


def _read_cifar_python_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _PlainDataUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
        data = data.array if isinstance(data, _ArrayStub) else data
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.size % 3072:
            raise ValueError("no uint8 'data' array of 3072 values per image")
        labels = np.asarray(batch.get(b"labels", batch.get("labels", [])), np.int64)
        if labels.shape != (len(data),):
            raise ValueError("no label for every image")
        return data.reshape(-1, 3, 32, 32), labels
    except Exception as error:
        raise DataError(f"{name}: not a CIFAR-10 python batch ({error})") from None


def _read_cifar_binary_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if len(raw) == 0 or len(raw) % 3073:
        raise DataError(f"{name}: not a CIFAR-10 binary batch ({len(raw)} bytes is not a multiple of 3073)")
    rows = np.frombuffer(raw, np.uint8).reshape(-1, 3073)  # a label byte, then the image
    return rows[:, 1:].reshape(-1, 3, 32, 32), rows[:, 0].astype(np.int64)


def read_cifar(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 32, 32, 3) uint8, labels (n,)) of one split of an official CIFAR-10 archive or folder."""
    found = _find_cifar(path)
    if not found:
        raise DataError(f"{path}: no CIFAR-10 batches found")
    fmt, read = found
    parse = _read_cifar_binary_batch if fmt == "binary" else _read_cifar_python_batch
    batches = []
    for name in CIFAR_FILES[fmt][split]:
        try:
            batches.append(parse(read(name), name))
        except (OSError, EOFError, KeyError, tarfile.TarError, zlib.error) as error:
            raise DataError(f"{path}: cannot read {name} ({error})") from None
    images, labels = zip(*batches)
    return np.ascontiguousarray(np.concatenate(images).transpose(0, 2, 3, 1)), np.concatenate(labels)  # (n, 32, 32, 3)


# ----------------------------------------------------------------------------------------------
# Places365 (official folder layout, with the authors' file-list caches) and any image folder

def _places_paths(root: str, split: str) -> list[str]:
    """data_256/**/*.jpg (train) or val_256/*.jpg (test), cached in train.flist / test.flist."""
    folder = os.path.join(root, "data_256" if split == "train" else "val_256")
    if not os.path.isdir(folder):
        raise DataError(f"{root}: Places365 layout needs a {os.path.basename(folder)}/ folder")
    flist = os.path.join(root, "train.flist" if split == "train" else "test.flist")
    if _flist_is_fresh(flist, folder):
        with open(flist) as f:
            return [os.path.join(root, line.rstrip("\n")) for line in f if line.strip()]
    if split == "train":
        paths = images.list_images(folder)
    else:
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if images.is_image_file(f))
    try:
        files.write_text(flist, "".join(os.path.relpath(p, root) + "\n" for p in paths))
    except OSError as error:  # a read-only dataset folder still works, only slower to start
        print(f"note: cannot write the file list {flist} ({error})")
    return paths


def _flist_is_fresh(flist: str, folder: str) -> bool:
    """A cache is stale when any folder below the split is newer (a file was added or removed)."""
    if not os.path.isfile(flist):
        return False
    written = os.path.getmtime(flist)
    return all(os.path.getmtime(d) <= written for d, _, _ in os.walk(folder, followlinks=True))


def _folder_paths(root: str, split: str, seed: int) -> list[str]:
    """train/ and test/ subfolders when both exist, otherwise a split of everything by seed."""
    if all(os.path.isdir(os.path.join(root, s)) for s in SPLITS):
        paths = images.list_images(os.path.join(root, split))
        if split == "train":  # a link inside train/ must not bring test images into training
            test = {os.path.realpath(p) for p in images.list_images(os.path.join(root, "test"))}
            paths = [p for p in paths if os.path.realpath(p) not in test]
        return paths
    paths = images.list_images(root)
    if len(paths) < 2:
        return paths if split == "train" else []
    order = np.random.default_rng(seed).permutation(len(paths))
    n_test = max(1, int(len(paths) * TEST_FRACTION))
    chosen = order[:n_test] if split == "test" else order[n_test:]
    return [paths[i] for i in sorted(chosen)]


# ----------------------------------------------------------------------------------------------
# TensorFlow Datasets

def _tfds_source(name: str, split: str) -> Source:
    import tensorflow_datasets as tfds

    data_dir = os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        manual_dir = os.path.join(data_dir, "downloads", "manual")
        has_manual = os.path.isdir(manual_dir) and os.listdir(manual_dir)
        if not has_manual and not _online(name):
            raise DataError(_offline_message(name, data_dir, manual_dir))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    tfds_split = {"cifar10": {"train": "train", "test": "test"},
                  "places365_small": {"train": "train", "test": "validation"}}[name][split]
    size = builder.info.splits[tfds_split].num_examples
    description = f"TFDS {name} [{tfds_split}] in {data_dir}"
    if name == "cifar10":  # 180 MB: keep it in memory, like the archives
        split = tfds.as_numpy(builder.as_dataset(split=tfds_split, batch_size=-1))
        return _array_source(split["image"], description, split["label"])
    def stream():
        return builder.as_dataset(split=tfds_split, shuffle_files=False).map(lambda example: example["image"])
    return Source(description, size, stream=stream)


DOWNLOAD_HOSTS = {"cifar10": "www.cs.toronto.edu", "places365_small": "data.csail.mit.edu"}


def _online(name: str, timeout: float = 3.0) -> bool:
    """Can the dataset's download host be reached? Offline, TFDS retries for minutes before failing."""
    try:
        socket.create_connection((DOWNLOAD_HOSTS[name], 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline_message(name: str, data_dir: str, manual_dir: str) -> str:
    if name == "cifar10":
        return (f"CIFAR-10 is not prepared in TensorFlow Datasets' folder {data_dir} and this machine is "
                "offline. Provide it in one of these ways:\n"
                "  * put the official cifar-10-python.tar.gz or cifar-10-binary.tar.gz (or its extracted "
                "folder) in ./datasets/cifar10, or pass it with --dataset-path;\n"
                "  * pass any image folder with train/ and test/ subfolders with --dataset-path;\n"
                f"  * put cifar-10-binary.tar.gz in {manual_dir} for TensorFlow Datasets to prepare;\n"
                "  * or run once on a machine that is online.")
    return (f"{name} is not prepared in TensorFlow Datasets' folder {data_dir} and this machine is offline. "
            "Pass the official Places365 folder (data_256/, val_256/) or any image folder with --dataset-path, "
            f"or put the official archives in {manual_dir}.")


# ----------------------------------------------------------------------------------------------
# Choosing the source

def _array_source(array: np.ndarray, description: str, labels: np.ndarray | None = None) -> Source:
    spread = array.max(axis=-1).astype(np.int16) - array.min(axis=-1)
    colour = spread.reshape(len(array), -1).max(axis=1) > 2  # same test as images.is_gray
    return Source(description, int(colour.sum()), images=array[colour], gray_removed=int((~colour).sum()),
                  labels=None if labels is None else np.asarray(labels, np.int64)[colour])


def _folder_labels(paths: list[str]) -> np.ndarray | None:
    """CIFAR-10 classes of files in folders named after them (<split>/<class>/<image>), else None."""
    names = [os.path.basename(os.path.dirname(p)) for p in paths]
    if not names or not set(names) <= set(CIFAR10_CLASSES):
        return None
    return np.array([CIFAR10_CLASSES.index(n) for n in names], np.int64)


@functools.lru_cache(maxsize=8)
def load_source(dataset: str, dataset_path: str, split: str, seed: int = 0) -> Source:
    """Find the data for --dataset / --dataset-path and one split of it (cached per process)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    path = dataset_path
    if not path and dataset == "cifar10" and os.path.isdir("./datasets/cifar10"):
        path = "./datasets/cifar10"
    if not path and dataset == "places365" and os.path.isdir("./datasets/places365"):
        path = "./datasets/places365"
    if not path:
        if dataset == "folder":
            raise DataError("--dataset folder needs --dataset-path DIR (a folder of images)")
        return _tfds_source({"cifar10": "cifar10", "places365": "places365_small"}[dataset], split)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    if _find_cifar(path):
        array, labels = read_cifar(path, split)
        return _array_source(array, f"CIFAR-10 [{split}] from {path}", labels)
    if any(os.path.isdir(os.path.join(path, d)) for d in ("data_256", "val_256")):
        paths = _places_paths(path, split)
        kind = "Places365"
    elif os.path.isdir(path):
        paths = _folder_paths(path, split, seed)
        kind = "image folder"
    else:
        raise DataError(f"{path}: not a CIFAR-10 archive and not a folder")
    if not paths:
        raise DataError(f"{path}: no images ({', '.join(images.IMAGE_EXTENSIONS)}) for the {split} split")
    return Source(f"{kind} [{split}] {path}", len(paths), paths=paths, labels=_folder_labels(paths))


def spread(source: Source, n: int) -> Source:
    """n images evenly spaced over a split: every class of a class-ordered folder, not the first one.
    A streamed (TFDS) split is shuffled already: its first n."""
    if n >= source.size:
        return source
    if source.stream is not None:
        return dataclasses.replace(source, size=n, stream=lambda: source.stream().take(n))
    chosen = np.arange(n) * source.size // n
    labels = None if source.labels is None else source.labels[chosen]
    if source.images is not None:
        return dataclasses.replace(source, size=n, images=source.images[chosen], gray_removed=0, labels=labels)
    return dataclasses.replace(source, size=n, paths=[source.paths[i] for i in chosen], labels=labels)


# ----------------------------------------------------------------------------------------------
# The pipeline

CHUNK = 64  # images per Python call: a call per image costs more than decoding a 32x32 JPEG


def _chunk_reader(source: Source, size: int, random: bool, skipped: Skipped):
    """read(indices, uniforms[, pixels]) -> (images (k, size, size, 3), keep (k,)); runs in
    tf.numpy_function, several chunks at once; uniforms (k, 3) place the random crops and flips."""
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
            out[n] = images.crop_square(rgb, size, uniforms[n] if random else None)
            keep[n] = True
        return out, keep
    return read


_TENSORS = {}  # id(array) -> its copy in TensorFlow, made once, not every epoch


def _as_tensor(array: np.ndarray) -> tf.Tensor:
    if id(array) not in _TENSORS:
        _TENSORS[id(array)] = tf.constant(array)
        weakref.finalize(array, _TENSORS.pop, id(array), None)
    return _TENSORS[id(array)]


@functools.partial(tf.function, jit_compile=True)  # 2x faster than numpy_function, 3x TF's plain uint8 ops
def _gather_and_flip(arrays, indices, flip):
    rgb = tf.gather(arrays, indices)  # (k, S, S, 3); arrays is an argument: XLA does not compile it in
    return tf.where(flip[:, None, None, None], tf.reverse(rgb, [2]), rgb)


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
    # Arrays at the training size (CIFAR-10 archives and TFDS): gathered and flipped by TensorFlow
    # ops, the very crops and flips _chunk_reader makes, without a Python call per chunk.
    arrays = _as_tensor(source.images) if source.images is not None and source.images.shape[1:3] == (size, size) \
        else None

    def with_uniforms(i, *pixels):  # seeded by (seed, epoch, index): the same crop whatever the order
        return (i, tf.random.stateless_uniform([3], tf.random.experimental.stateless_fold_in(seed, i)), *pixels)

    def read_chunk(indices, uniforms, *pixels):
        if arrays is not None:
            flip = uniforms[:, 2] < 0.5 if train and config.augment else tf.zeros_like(indices, tf.bool)
            rgb, keep = _gather_and_flip(arrays, indices, flip), tf.ones_like(indices, tf.bool)  # (k, S, S, 3), (k,)
        else:
            rgb, keep = tf.numpy_function(read, [indices, uniforms, *pixels], (tf.uint8, tf.bool), stateful=False)
            rgb, keep = tf.ensure_shape(rgb, (None, size, size, 3)), tf.ensure_shape(keep, (None,))
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


def ab_histogram(config: Config, images: int = 4096) -> tuple[np.ndarray, int]:
    """(counts (AB_BINS, AB_BINS) of the training pixels' a and b, images counted): the first
    images of epoch 0, as training sees them."""
    from colorgan.losses import AB_BIN, AB_BINS
    edges = np.linspace(-AB_BIN * AB_BINS / 2, AB_BIN * AB_BINS / 2, AB_BINS + 1)
    counts, seen = np.zeros((AB_BINS, AB_BINS)), 0
    for batch in make_dataset(config, "train", 0).unbatch().take(images).batch(256):
        colour = batch["colour"]
        ab = colour.numpy()[..., 1:].reshape(-1, 2) * color.AB_SCALE
        counts += np.histogram2d(ab[:, 0], ab[:, 1], bins=[edges, edges])[0]
        seen += len(colour)
    return counts, seen


def check_not_empty(batches: int, skipped: Skipped, config: Config, split: str) -> None:
    """After an epoch: a source whose every image was left out is an error, not a silent no-op."""
    if batches == 0:
        raise DataError(f"{describe(config, split)}, but no usable batch of {config.batch_size} in the "
                        f"{split} split ({skipped})")


def describe(config: Config, split: str) -> str:
    source = load_source(config.dataset, config.dataset_path, split, config.seed)
    return f"{source.description}: {source.size} images"
