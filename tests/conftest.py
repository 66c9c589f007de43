import os
import pathlib

import pytest

import colorgan  # noqa: F401  (TensorFlow's environment first)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"the real test images are expected in {SHARED_DATA} (see README)")
    return SHARED_DATA
