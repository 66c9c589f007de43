"""The other methods as options of train.py: each trains a few real steps on tiny data, resumes from
its checkpoint, and is evaluated by test_eval.py."""
import json

import numpy as np
import pytest

import keras
import tensorflow as tf

from colorgan import config, evaluation, models, resume, training
from colorgan.config import UserError
from tests.conftest import tiny_args


def train(folder, root, name, *extra):
    args = tiny_args(folder, root, *extra)
    args[args.index("--name") + 1] = name
    training.train(config.parse_args(args))
    return root / name


def checkpoint_keys(run_dir):
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    return {name.split("/")[0] for name, _ in tf.train.list_variables(latest)}


@pytest.mark.slow
@pytest.mark.parametrize("name, extra", [
    ("unet", ["--model", "unet", "--color-space", "rgb"]),
    ("encdec", ["--model", "encoder-decoder", "--gan-loss", "lsgan"]),
    ("mobilenet", ["--backbone", "mobilenetv2", "--model", "unet", "--color-space", "rgb"]),
])
def test_method_trains_restores_and_evaluates(tiny_folder, tmp_path, capsys, name, extra):  # noqa: F811
    run_dir = train(tiny_folder, tmp_path, name, "--max-steps", "2", *extra)
    out = capsys.readouterr().out
    phase = "gan" if name == "encdec" else "generator"
    assert f"phase {phase}" in out and f" {phase} step 2/2" in out
    keys = checkpoint_keys(run_dir)
    assert ("discriminator" in keys) == (name == "encdec"), keys
    rows = [json.loads(line) for line in open(run_dir / "history.jsonl")]
    assert [(r["step"], r["phase"]) for r in rows] == [(1, phase), (2, phase)]
    assert all(np.isfinite(v) for r in rows for k, v in r.items() if k not in ("split", "phase"))
    # What resuming does before its first step (the GAN's whole resume is tested in test_training):
    # a fresh Run of the same flags restores the newest checkpoint into every network it holds.
    args = tiny_args(tiny_folder, tmp_path, "--max-steps", "3", *extra)
    args[args.index("--name") + 1] = name
    run_config = config.parse_args(args)
    fresh = training.create_train_state(run_config, tf.distribute.get_strategy(), pretrained=False)
    initial = [w.numpy() for w in fresh.generator.trainable_weights]  # seeded: the run's own start
    assert resume.restore_newest(fresh, run_config, str(run_dir / "checkpoints")).endswith("ckpt-2")
    assert int(fresh.step) == 2
    exported = keras.saving.load_model(str(run_dir / "generator.keras"), compile=False)
    for restored, saved in zip(fresh.generator.trainable_weights, exported.trainable_weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(initial, fresh.generator.trainable_weights)), "trained"
    if name == "unet":  # test_eval.py reads any method's run the same way: once is enough here
        report = evaluation.main(["--checkpoints-path", str(run_dir), "--max-images", "8"])
        assert [row["name"] for row in report["rows"]] == [name, "gray baseline", "ground truth"]
        assert 0 <= report["rows"][0]["acc"] <= 1 and np.isfinite(report["rows"][0]["delta_e"])


@pytest.mark.slow
def test_nogan_phases_run_in_order_and_resume_across_them(tiny_folder, tmp_path, capsys):  # noqa: F811
    # 32 images / batch 8 = 4 steps an epoch: G alone for 4 steps, D alone for 4, then GAN for 4.
    staged = ["--batch-size", "8", "--pretrain-generator-epochs", "1", "--pretrain-discriminator-epochs", "1",
              "--epochs", "1", "--keep-checkpoints", "20", "--gan-loss", "hinge"]
    run_dir = train(tiny_folder, tmp_path, "nogan", *staged, "--max-steps", "6")  # stops inside phase 2
    first = capsys.readouterr().out
    assert "phase generator" in first and "epochs 1-1 of 3" in first and "phase discriminator" in first
    generator_at_6 = [w.numpy() for w in keras.saving.load_model(str(run_dir / "generator.keras")).weights]
    train(tiny_folder, tmp_path, "nogan", *staged)
    second = capsys.readouterr().out
    assert "resumed from" in second and "at step 6" in second and "phase discriminator" in second
    assert "phase gan" in second and "step 12/12" in second
    rows = [json.loads(line) for line in open(run_dir / "history.jsonl") if '"train"' in line]
    assert [r["phase"] for r in rows] == ["generator"] * 4 + ["discriminator"] * 4 + ["gan"] * 4
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert "disc_loss" not in rows[0] and "gen_l1" not in rows[4] and "gen_gan" in rows[8]
    # the discriminator phase leaves the generator's weights alone (BatchNorm statistics aside)
    at_8 = models.build_generator("cifar10", width=0.125)
    tf.train.Checkpoint(generator=at_8).read(str(run_dir / "checkpoints" / "ckpt-8")).expect_partial()
    final = keras.saving.load_model(str(run_dir / "generator.keras"))
    trainable = [i for i, w in enumerate(final.weights) if w.trainable]
    assert all(np.array_equal(generator_at_6[i], at_8.weights[i].numpy()) for i in trainable)
    assert not all(np.array_equal(generator_at_6[i], final.weights[i].numpy()) for i in trainable), "GAN trains G"


def test_backbone_weights_from_a_local_file(tmp_path):
    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(None, None, 3))
    path = str(tmp_path / "mobilenet_no_top.weights.h5")
    source.save_weights(path)
    generator = models.build_backbone_generator("mobilenetv2", path)
    features = generator.get_layer("mobilenetv2_features")
    expected = {w.path: w.numpy() for w in source.weights}
    loaded = {w.path: w.numpy() for w in features.weights}
    assert expected.keys() == loaded.keys() and all(np.array_equal(expected[k], loaded[k]) for k in expected)
    assert generator(np.zeros((1, 32, 64, 1), "float32")).shape == (1, 32, 64, 3)
    with pytest.raises(UserError, match=r"cannot load .*missing\.h5.* --backbone mobilenetv2.*--backbone-weights"):
        models.build_backbone_generator("mobilenetv2", str(tmp_path / "missing.h5"))


def test_backbone_skips_are_the_deepest_map_at_each_stride():
    assert models.backbone_skips("mobilenetv2") == (
        "block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu", "out_relu")
    assert models.backbone_skips("resnet50v2") == (
        "conv1_conv", "conv2_block3_1_relu", "conv3_block4_1_relu", "conv4_block6_1_relu", "post_relu")
    assert set(models.BACKBONES) == set(config.BACKBONES) - {"none"}


def test_encoder_decoder_has_a_1x1x512_bottleneck_and_no_skips():
    g = models.build_generator("cifar10", skips=False)
    assert models.total_stride("cifar10", "encoder-decoder") == 32
    assert g(np.zeros((1, 32, 32, 1), "float32")).shape == (1, 32, 32, 3)
    assert not [layer for layer in g.layers if isinstance(layer, keras.layers.Concatenate)]
    encoder = keras.Model(g.input, g.get_layer("enc5_act").output)
    assert encoder(np.zeros((1, 32, 32, 1), "float32")).shape == (1, 1, 1, 512)


@pytest.mark.parametrize("flags, message", [
    (dict(model="unet", pretrain_discriminator_epochs=1), "no discriminator to pretrain"),
    (dict(model="encoder-decoder", backbone="mobilenetv2"), "--backbone makes a U-Net encoder"),
    (dict(backbone_weights="imagenet"), "--backbone-weights needs a --backbone"),
    (dict(gan_loss="hinge", label_smoothing=True), "no labels to smooth"),
])
def test_conflicting_method_flags_are_clear_errors(flags, message):
    with pytest.raises(UserError, match=message):
        config.make_config(**flags)


def test_hinge_turns_off_the_preset_label_smoothing():
    assert config.make_config(dataset="places365").label_smoothing
    assert not config.make_config(dataset="places365", gan_loss="hinge").label_smoothing
