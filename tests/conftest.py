import os
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
