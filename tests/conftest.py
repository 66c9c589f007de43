import pathlib

import pytest

import colorgan  # noqa: F401  (TensorFlow's environment first)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def float32_afterwards():
    """A run sets Keras' global dtype policy (bfloat16 on some CPUs): no test inherits it."""
    yield
    import keras
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"the real test images are expected in {SHARED_DATA} (see README)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained(tmp_path_factory, shared_data):
    """Two one-step runs (L, a, b and a, b output) on 48 real CIFAR-10 test JPEGs, split into a
    train/ and a test/ folder: what test_eval.py, test_turing.py and bad-input tests run on."""
    from PIL import Image

    from colorgan import config, images, training
    root = tmp_path_factory.mktemp("eval")
    folder = root / "data"
    sources = images.list_images(str(shared_data / "cifar10" / "test"))[::200][:48]
    for i, path in enumerate(sources):
        split = "test" if i % 4 == 0 else "train"
        (folder / split).mkdir(parents=True, exist_ok=True)
        Image.open(path).save(folder / split / f"{i:03d}.png")
    for name, extra in (("run", []), ("ab", ["--generator-output", "ab"])):
        training.train(config.parse_args([
            "--dataset", "cifar10", "--dataset-path", str(folder), "--checkpoints-path", str(root / "runs"),
            "--name", name, "--batch-size", "4", "--sample-size", "2", "--max-steps", "1", "--validate", "false",
            "--mixed-precision", "off", *extra]))
    return root
