"""Where images come from: each dataset's split as a Source, "example i of n".

A Source is an in-memory uint8 array (CIFAR-10 archives and TFDS cifar10), a list of image files
decoded while streaming (Places365, MiniPlaces, image folders), or a TFDS stream (places365_small).
colorgan.data turns any of them into the training and test pipelines.
"""
import dataclasses
import functools
import io
import os
import pickle
import socket
import tarfile
import zlib

import numpy as np

from colorgan import files, images
from colorgan.config import UserError

SPLITS = ("train", "test")
TEST_FRACTION = 0.1  # of an image folder without train/ and test/ subfolders
# CIFAR-10's label order, which is also the alphabetical order of its class folders
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataError(UserError):
    """Missing, empty or unreadable data."""


@dataclasses.dataclass(eq=False)  # hashed by identity: the pipeline keeps one tensor per source
class Source:
    """One split of one dataset: exactly one of images, paths or stream is set."""
    description: str
    size: int
    images: np.ndarray | None = None  # (n, h, w, 3) uint8, pure-gray images already removed
    gray_removed: int = 0
    paths: list | None = None
    stream: object = None  # a callable returning a tf.data.Dataset of uint8 images
    labels: np.ndarray | None = None  # (size,) class of each image, where the source has them
    classes: tuple = CIFAR10_CLASSES  # the labels' names



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


# What numpy's own pickles of arrays name (old and new numpy, protocols 2 to 5): constructors of
# arrays and dtypes from plain data. Anything else, as a pickle that runs code must name, is refused.
_ARRAY_GLOBALS = {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype")}
for _module in ("numpy.core", "numpy._core"):
    _ARRAY_GLOBALS |= {(f"{_module}.multiarray", "_reconstruct"), (f"{_module}.multiarray", "ndarray"),
                       (f"{_module}.multiarray", "dtype"), (f"{_module}.numeric", "_frombuffer")}


class _DataOnlyUnpickler(pickle.Unpickler):
    """The standard library's way to restrict what a pickle may load (pickle docs, "Restricting
    Globals"): plain containers, bytes, strings and numbers, and numpy arrays of them."""

    def find_class(self, module, name):
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only data")


def _read_cifar_python_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _DataOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
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
        bad = batches[-1][1][(batches[-1][1] < 0) | (batches[-1][1] >= len(CIFAR10_CLASSES))]
        if len(bad):
            raise DataError(f"{path}: {name} holds label {bad[0]}: CIFAR-10's labels are 0-9")
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
# MiniPlaces: the official data.tar.gz (images/) with its development kit's lists beside it

MINIPLACES_LISTS = {"train": "train.txt", "test": "val.txt"}  # val is labelled: colorgan's test split
MINIPLACES_HELP = ("MiniPlaces (MIT's 100 scene categories of Places at 128x128: 100,000 train, 10,000 val, 10,000 "
                   "test photos, 530 MB) is downloaded from http://miniplaces.csail.mit.edu/data/data.tar.gz, with "
                   "the lists train.txt, val.txt and categories.txt of its development kit "
                   "(https://github.com/CSAILVision/miniplaces, data/). Extract the archive and copy the lists so "
                   "that DIR/images/train/, DIR/images/val/, DIR/train.txt, DIR/val.txt and DIR/categories.txt "
                   "exist, then pass --dataset-path DIR (or use DIR = ./datasets/miniplaces).")


def _miniplaces(root: str, split: str) -> Source:
    """One split of MiniPlaces from its official layout: the lists' paths (relative to images/) and labels."""
    lists = [os.path.join(root, name) for name in ("categories.txt", MINIPLACES_LISTS[split])]
    missing = [p for p in lists + [os.path.join(root, "images")] if not os.path.exists(p)]
    if missing:
        raise DataError(f"{root}: not the MiniPlaces layout ({', '.join(missing)} missing). {MINIPLACES_HELP}")
    try:
        with open(lists[0]) as f:
            classes = tuple(line.split()[0].split("/", 2)[-1] for line in f if line.strip())  # /c/church/outdoor
        with open(lists[1]) as f:
            rows = [line.split() for line in f if line.strip()]
        paths = [os.path.join(root, "images", path) for path, _ in rows]
        labels = np.array([int(label) for _, label in rows], np.int64)
    except (OSError, UnicodeDecodeError, ValueError) as error:  # also a row that is not "path label"
        raise DataError(f"{lists[1]}: not a MiniPlaces list of 'path label' rows ({error})") from None
    if not rows:
        raise DataError(f"{lists[1]}: no images listed")
    bad = labels[(labels < 0) | (labels >= len(classes))]
    if len(bad):
        raise DataError(f"{lists[1]}: label {bad[0]} is not one of the {len(classes)} categories of {lists[0]}")
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise DataError(f"{root}: {len(absent)} of the {len(paths)} photos {os.path.basename(lists[1])} lists are "
                        f"missing, {absent[0]} first: an incomplete copy. {MINIPLACES_HELP}")
    return Source(f"MiniPlaces [{split}: {os.path.basename(lists[1])}] {root}", len(paths), paths=paths,
                  labels=labels, classes=classes)


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
    if not path and dataset in ("places365", "miniplaces") and os.path.isdir(f"./datasets/{dataset}"):
        path = f"./datasets/{dataset}"
    if dataset == "miniplaces":
        if not path:
            raise DataError("MiniPlaces is not in ./datasets/miniplaces and no --dataset-path was given. "
                            f"{MINIPLACES_HELP}")
        if not os.path.isdir(path):
            raise DataError(f"{path}: no such folder. {MINIPLACES_HELP}")
        return _miniplaces(path, split)
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

