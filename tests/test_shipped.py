"""The model that ships with colorgan: it loads in a clone with nothing trained, gives the figures
its card states on the committed test images, and test_eval.py and test_turing.py use it only when
the user has no run of their own."""
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from PIL import Image

from bench import ship
from colorgan import color, config, evaluation, training
from tests.conftest import CIFAR, ROOT

CARD = json.load(open(os.path.join(config.SHIPPED, "fixture.json")))
# The card's figures hold on any host: oneDNN's float32 kernels differ by ~1e-5 between CPUs, while
# a change to the loader, the preprocessing or the colour conversion moves dE00 by tenths.
TOLERANCE = {"delta_e": 0.01, "acc": 0.002, "ab_error_a": 0.01, "ab_error_b": 0.01, "mae_rgb": 0.02, "psnr": 0.01,
             "colourfulness": 0.02}


@pytest.fixture
def no_run_of_their_own(tmp_path, monkeypatch):
    """A working folder without ./checkpoints/CGAN: where a newcomer stands."""
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(config.SHIPPED))
    yield tmp_path
    assert sorted(os.listdir(config.SHIPPED)) == before  # nothing is ever written beside the shipped model


def test_the_shipped_model_gives_its_cards_figures(no_run_of_their_own, capsys):
    figures = ship.fixture_figures()
    assert "the shipped model" in capsys.readouterr().out.splitlines()[0]
    assert figures["images"] == CARD["images"] == 100
    assert set(TOLERANCE) == set(ship.KEYS)
    for key, tolerance in TOLERANCE.items():
        assert figures[key] == pytest.approx(CARD[key], abs=tolerance), key
    assert (no_run_of_their_own / config.SHIPPED_OUTPUT / "eval" / "best_median_worst.png").is_file()
    assert os.path.getsize(os.path.join(config.SHIPPED, "generator.keras")) <= 20 * 2**20


def test_a_photo_is_colourised_by_the_shipped_model_keeping_its_l(no_run_of_their_own, photos, capsys):
    assert evaluation.main(["--test-input", str(photos[1]), "--test-output", "out"]) == []  # nothing failed
    assert "the shipped model" in capsys.readouterr().out
    source = np.asarray(Image.open(photos[1]).convert("RGB"))
    result = np.asarray(Image.open(no_run_of_their_own / "out" / photos[1].name))
    assert result.shape == source.shape
    lab_in, lab_out = (color.rgb_to_lab(np.float32(x)[None] / 255).numpy()[0] for x in (source, result))
    assert np.abs(lab_out[..., 0] - lab_in[..., 0]).mean() < 1.0  # the photo's own full-resolution L
    assert np.hypot(lab_out[..., 1], lab_out[..., 2]).mean() > 3.0  # coloured: gray has chroma 0


def test_a_users_own_run_always_comes_first(no_run_of_their_own, trained, capsys):
    data = str(trained / "data")
    with pytest.raises(config.UserError, match="no trained run"):  # a named run is never replaced by the shipped one
        evaluation.main(["--name", "mine", "--dataset-path", data])
    shutil.copytree(trained / "runs" / "ab", no_run_of_their_own / "checkpoints" / "CGAN")
    report = evaluation.main(["--dataset-path", data])  # what `python train.py` wrote is used, not the shipped model
    assert capsys.readouterr().out.splitlines()[0] == f"model: {os.path.join('./checkpoints', 'CGAN')} (your run)"
    assert report["rows"][0]["name"] == "CGAN" and report["images"] == 12


def test_train_refuses_to_write_into_the_shipped_model(no_run_of_their_own):
    with pytest.raises(config.UserError, match="ships with colorgan"):
        training.main(["--checkpoints-path", os.path.dirname(config.SHIPPED), "--name",
                       os.path.basename(config.SHIPPED), "--dataset-path", str(CIFAR), "--max-steps", "1"])
    assert not os.path.exists(os.path.join(os.path.dirname(config.SHIPPED), ".colorgan-cifar10.lock"))


def test_the_turing_test_serves_the_shipped_model_in_a_clone(no_run_of_their_own):
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "test_turing.py"), "--dataset-path", str(CIFAR), "--turing-test-size", "4",
         "--port", "0", "--no-browser"], cwd=no_run_of_their_own, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        out = []
        while not (out and out[-1].startswith("Open ")):
            out.append(server.stdout.readline())
            assert out[-1] or server.poll() is None, "".join(out)
        assert "the shipped model" in out[0] and "prepared 4 trials" in "".join(out)
        with urllib.request.urlopen(out[-1].split()[1], timeout=30) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        server.kill()
        server.communicate(timeout=30)
    assert (no_run_of_their_own / config.SHIPPED_OUTPUT).is_dir()  # its results go there, not into the repo
