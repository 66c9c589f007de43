import json
import subprocess
import sys

import pytest

from colorgan import config
from tests.conftest import ROOT


def test_presets_follow_the_authors_and_flags_win():
    cifar = config.parse_args(["--dataset", "cifar10"])
    assert ((cifar.batch_size, cifar.epochs, cifar.image_size, cifar.lr_decay_steps, cifar.augment)
            == (128, 200, 32, 1e4, True))
    places = config.parse_args(["--dataset", "places365"])
    assert (places.batch_size, places.epochs, places.image_size, places.label_smoothing) == (16, 10, 256, True)
    # the authors' field default; only their CIFAR-10 command passes 1e4
    assert places.lr_decay_steps == config.parse_args(["--dataset", "folder"]).lr_decay_steps == 5e5
    mixed = config.parse_args(["--dataset", "places365", "--batch-size", "4", "--label-smoothing", "no"])
    assert (mixed.batch_size, mixed.label_smoothing, mixed.epochs) == (4, False, 10)


def test_authors_defaults():
    c = config.make_config()
    assert (c.lr, c.lr_decay, c.lr_decay_rate, c.beta1, c.l1_weight, c.acc_thresh) == (3e-4, True, 0.1, 0.0, 100.0, 2.0)
    assert (c.color_space, c.label_smoothing) == ("lab", False)


@pytest.mark.parametrize("text,value", [("true", True), ("1", True), ("YES", True), ("false", False),
                                        ("0", False), ("no", False)])
def test_booleans(text, value):
    assert config.parse_args(["--augment", text]).augment is value


def test_bad_values_are_rejected(capsys):
    with pytest.raises(SystemExit):
        config.parse_args(["--augment", "maybe"])
    with pytest.raises(SystemExit):
        config.parse_args(["--color-space", "hsv"])
    with pytest.raises(config.UserError):
        config.make_config(batch_size=0)
    with pytest.raises(config.UserError):
        config.make_config(no_such_field=1)


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        config.parse_args(["--help"])
    text = capsys.readouterr().out
    for name, f in config.FIELDS.items():  # every field but the shipped model's own render size
        assert ("--" + name.replace("_", "-") in text) == f.metadata.get("flag", True), name
    assert "cifar10 128, places365 16" in text  # presets are shown where they apply



@pytest.mark.slow
@pytest.mark.parametrize("command, own", [("train.py", "--fresh"), ("test_eval.py", "--test-input"),
                                          ("test_turing.py", "--turing-test-delay")])
def test_each_commands_own_flags_come_first_in_its_help(command, own):
    text = subprocess.run([sys.executable, command, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True).stdout
    assert own in text and text.index(own) < text.index("--seed")
    if command == "train.py":
        assert "training settings" in text and text.index("--seed") < text.index("--log-interval")
    else:  # its own flags and those that choose the run and its data, not the 45 of training
        assert "which model" in text and "the run and its data" in text  # the rule that picks the model
        assert "--checkpoints-path" in text and "--dataset-path" in text
        assert "--log-interval" not in text and "--l1-weight" not in text


def test_json_round_trip_and_differences(tmp_path):
    c = config.parse_args(["--dataset", "cifar10", "--lr", "1e-3", "--name", "run"])
    path = c.save(str(tmp_path))
    assert json.load(open(path))["lr"] == 1e-3
    loaded = config.load_config(path)
    assert loaded == c
    other = config.make_config(dataset="cifar10", lr=2e-4, name="run")
    assert config.differences(loaded, other) == {"lr": (1e-3, 2e-4)}
    with pytest.raises(Exception):
        c.lr = 1.0  # frozen: one source of truth


def test_the_guide_documents_every_flag():
    from tests.conftest import ROOT
    guide = (ROOT / "docs" / "guide.md").read_text()
    missing = [name for name, f in config.FIELDS.items()
               if f.metadata.get("flag", True) and f"`--{name.replace('_', '-')}`" not in guide]
    assert not missing, f"flags missing from the table in docs/guide.md: {missing}"
