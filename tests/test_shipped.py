"""The models that ship with colorgan: each loads in a clone with nothing trained and gives the
figures its card states on the committed test images; test_eval.py and test_turing.py use the one
for the data (photos or CIFAR-10) only when the user has no run of their own."""
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from PIL import Image

from colorgan import color, config, evaluation, runs, training
from tests.conftest import CIFAR, ROOT

# The card's figures hold on any host: oneDNN's float32 kernels differ by ~1e-5 between CPUs, while
# a change to the loader, the preprocessing or the colour conversion moves dE00 by tenths.
TOLERANCE = {"delta_e": 0.01, "acc": 0.002, "ab_error_a": 0.01, "ab_error_b": 0.01, "mae_rgb": 0.02, "psnr": 0.01,
             "colourfulness": 0.02}


@pytest.fixture
def no_run_of_their_own(tmp_path, monkeypatch):
    """A working folder without ./checkpoints/CGAN: where a newcomer stands."""
    monkeypatch.chdir(tmp_path)
    before = {m.name: sorted(os.listdir(m.path)) for m in runs.SHIPPED}
    yield tmp_path
    # nothing is ever written beside a shipped model
    assert {m.name: sorted(os.listdir(m.path)) for m in runs.SHIPPED} == before


@pytest.mark.parametrize("model", runs.SHIPPED, ids=lambda m: m.name)
def test_each_shipped_model_gives_its_cards_figures(no_run_of_their_own, capsys, model):
    card = json.load(open(os.path.join(model.path, "fixture.json")))
    figures = runs.fixture_figures(model)  # no --checkpoints-path: the rule picks it for its data
    assert f"{model.name}, {model.what}" in capsys.readouterr().out.splitlines()[0]
    assert figures["images"] == card["images"] == {"colorgan-cifar10": 100, "colorgan-places": 14}[model.name]
    assert set(TOLERANCE) == set(runs.FIXTURE_KEYS)
    for key, tolerance in TOLERANCE.items():
        assert figures[key] == pytest.approx(card[key], abs=tolerance), key
    assert (no_run_of_their_own / model.output / "eval" / "best_median_worst.png").is_file()
    assert os.path.getsize(os.path.join(model.path, "generator.keras")) <= 25 * 2**20


def test_a_photo_is_colourised_by_the_photo_model_keeping_its_l(no_run_of_their_own, photos, capsys):
    assert evaluation.main(["--test-input", str(photos[1]), "--test-output", "out"]) == []  # nothing failed
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("model: ") and "colorgan-places, for photographs" in first
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
    shipped = runs.CIFAR10.path
    with pytest.raises(config.UserError, match="ships with colorgan"):
        training.main(["--checkpoints-path", os.path.dirname(shipped), "--name", os.path.basename(shipped),
                       "--dataset-path", str(CIFAR), "--max-steps", "1"])
    with pytest.raises(config.UserError, match="is inside checkpoints/colorgan-cifar10, a model that ships"):
        training.main(["--checkpoints-path", shipped, "--dataset-path", str(CIFAR), "--max-steps", "1"])
    assert not os.path.exists(os.path.join(os.path.dirname(shipped), ".colorgan-cifar10.lock"))
    assert not os.path.exists(os.path.join(shipped, ".CGAN.lock"))


@pytest.mark.slow
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
    assert (no_run_of_their_own / runs.CIFAR10.output).is_dir()  # its results go there, not into the repo


def test_each_data_gets_its_shipped_model_and_a_shipped_model_named_is_said_so(no_run_of_their_own):
    for given, photos, model in (({}, False, runs.CIFAR10), ({}, True, runs.PHOTOS),
                                 ({"dataset": "miniplaces"}, False, runs.PHOTOS),
                                 ({"dataset": "folder"}, False, runs.PHOTOS)):
        run_dir, work_dir, which = runs.choose_run(given, photos)
        assert (run_dir, work_dir) == (model.path, model.output) and "your own run takes its place" in which
    named = runs.choose_run({"checkpoints_path": os.path.dirname(runs.CIFAR10.path), "name": "colorgan-cifar10"})
    assert "a shipped model, named by --checkpoints-path/--name" in named[2] and named[1] == runs.CIFAR10.output


def test_the_turing_test_shows_miniplaces_photos_colourised_by_the_photo_model(no_run_of_their_own):
    from colorgan import inference
    from colorgan.turing import prepare_items
    run_dir, _, _ = runs.choose_run({"dataset": "miniplaces"})
    assert run_dir == runs.PHOTOS.path
    generator, run_config = inference.load_run(run_dir)
    run_config = config.on_run(run_config, {"dataset_path": runs.PHOTOS.fixture}, run_dir)
    items = prepare_items(inference.Colorizer(generator, run_config), 16, display_size=256)
    assert len(items) == 14 and all(item.label in sources_classes() for item in items)  # 2 of the 16 are gray
    for item in items:
        assert Image.open(io.BytesIO(item.real)).size == Image.open(io.BytesIO(item.fake)).size == (256, 256)


def sources_classes():
    from colorgan import sources
    return sources.load_source("miniplaces", runs.PHOTOS.fixture, "test").classes
