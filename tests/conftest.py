import pathlib
import socket

import numpy as np
import pytest
from PIL import Image

import colorgan  # noqa: F401  (TensorFlow's environment first)

ROOT = pathlib.Path(__file__).resolve().parents[1]
# 150 real CIFAR-10 JPEGs committed with the tests (tests/data/README.md): a clone needs nothing else
CIFAR = ROOT / "tests" / "data" / "cifar10"
# Real colour photographs that scikit-image (a test requirement) installs with itself
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(autouse=True)
def policy_left_alone():
    """Training, colourising and evaluating build their networks in their own dtype policy (bfloat16
    on some CPUs) and leave Keras' global one as the caller had it."""
    yield
    import keras
    policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")  # the next test's start, whatever happened here
    assert policy == "float32", f"Keras' global dtype policy was left at {policy}"


@pytest.fixture(scope="module", autouse=True)
def no_graphs_left_behind():
    """Keras' global state (layer names, graphs of tf.functions it holds) is freed after each module."""
    yield
    import keras
    keras.backend.clear_session()


def skip_where_onednn_lacks_bfloat16(policy: str = "bfloat16") -> None:
    """Skip a bfloat16 test where ONEDNN_MAX_CPU_ISA caps oneDNN below bfloat16 (an AVX2 host imitated
    on a bigger CPU): TensorFlow still sends bfloat16 convolutions to oneDNN, which aborts the process.
    A real AVX2 CPU runs them through Eigen, and CI sets no cap."""
    import os
    from colorgan import devices
    if "bfloat16" in policy and os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in devices._ISAS_WITHOUT_BFLOAT16:
        pytest.skip(f"ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']} leaves oneDNN without bfloat16, "
                    "and TensorFlow still routes bfloat16 to it")


def photo(name: str):
    """An RGB uint8 photograph from skimage.data, e.g. "astronaut" (512x512)."""
    import skimage.data
    return getattr(skimage.data, name)()


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """The PHOTOS as PNG files in a folder: [path, ...]."""
    from PIL import Image
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name in PHOTOS:
        paths.append(folder / f"{name}.png")
        Image.fromarray(photo(name)).save(paths[-1])
    return paths


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Two one-step runs (L, a, b and a, b output) of the paper's networks at an eighth of their
    width, on 48 real CIFAR-10 JPEGs split into train/<class>/ and test/<class>/ (12 images): what
    test_eval.py, test_turing.py and the bad-input tests run on."""
    from PIL import Image

    from colorgan import config, images, training
    root = tmp_path_factory.mktemp("eval")
    folder = root / "data"
    sources = images.list_images(str(CIFAR / "test"))[::2][:48]
    for i, path in enumerate(sources):  # in class folders: the Turing test and class accuracy read them
        split = "test" if i % 4 == 0 else "train"
        (folder / split / pathlib.Path(path).parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(path).save(folder / split / pathlib.Path(path).parent.name / f"{i:03d}.png")
    for name, extra in (("run", []), ("ab", ["--generator-output", "ab"])):
        training.train(config.parse_args([
            "--dataset", "cifar10", "--dataset-path", str(folder), "--checkpoints-path", str(root / "runs"),
            "--name", name, "--batch-size", "4", "--sample-size", "2", "--max-steps", "1", "--validate", "false",
            "--mixed-precision", "off", "--width", "0.125", *extra]))
    return root


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """32 train and 8 test colour images of 32x32, written as PNG files."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("test", 8)):
        (root / split).mkdir()
        for i in range(n):
            y, x = np.mgrid[0:32, 0:32]
            base = rng.integers(0, 256, 3)
            image = (base + np.dstack([x * 4, y * 4, (x + y) * 2])) % 256
            Image.fromarray(image.astype(np.uint8)).save(root / split / f"{i:03d}.png")
    return root


# The paper's networks at an eighth of their channels: what these tests check (resuming, signals,
# phases, errors) does not depend on the width, and each step and checkpoint costs 1/64 as much.
TINY = ["--width", "0.125"]


def tiny_args(folder, run_dir, *extra):
    return ["--dataset", "cifar10", "--dataset-path", str(folder), "--checkpoints-path", str(run_dir),
            "--name", "run", "--batch-size", "4", "--sample-size", "2", "--log-interval", "1",
            "--save-interval", "1", "--sample-interval", "1000", "--validate", "false",
            "--mixed-precision", "off", *TINY, *extra]  # the same numbers on every host


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports



@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the marks to group
def pytest_collection_modifyitems(items):
    """Under pytest-xdist, the tests of the `trained` runs go to one worker: built once, not per worker."""
    for item in items:
        if "trained" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("trained"))
