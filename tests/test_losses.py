"""Losses against numbers worked out by hand with math.log / math.exp."""
import math

import colorgan  # noqa: F401  (before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from colorgan import losses
from colorgan.losses import discriminator_loss, generator_loss


def bce(x, z):
    """Sigmoid cross-entropy of logit x against target z."""
    s = 1 / (1 + math.exp(-x))
    return -(z * math.log(s) + (1 - z) * math.log(1 - s))


def patches(*rows):
    """One (1, 1, n, 1) logit map per row -> (bs, 1, n, 1)."""
    return tf.constant(rows, tf.float32)[:, None, :, None]


def mean_bce(rows, z):
    """Mean over each example's patches, then over the batch."""
    return sum(sum(bce(x, z) for x in r) / len(r) for r in rows) / len(rows)


REAL_ROWS = [[0.0, 2.0, -1.0], [1.0, 1.0, 4.0]]
FAKE_ROWS = [[-1.0, 0.0, 3.0], [-2.0, -2.0, 0.5]]
REAL, FAKE = patches(*REAL_ROWS), patches(*FAKE_ROWS)


def test_bce_of_one_patch_is_the_closed_form():
    for real, fake in ((0.0, -1.0), (2.0, 3.0)):  # log(1 + e^-x) for the real label, log(1 + e^x) for the fake
        out = discriminator_loss(patches([real]), patches([fake]))
        assert float(out["real"]) == pytest.approx(math.log(1 + math.exp(-real)), rel=1e-6)
        assert float(out["fake"]) == pytest.approx(math.log(1 + math.exp(fake)), rel=1e-6)


def test_discriminator_loss():
    out = discriminator_loss(REAL, FAKE)
    assert float(out["real"]) == pytest.approx(mean_bce(REAL_ROWS, 1.0), rel=1e-5)
    assert float(out["fake"]) == pytest.approx(mean_bce(FAKE_ROWS, 0.0), rel=1e-5)
    assert float(out["total"]) == pytest.approx(float(out["real"]) + float(out["fake"]), rel=1e-6)


def test_discriminator_label_smoothing_is_one_sided():
    out = discriminator_loss(REAL, FAKE, label_smoothing=True)
    assert float(out["real"]) == pytest.approx(mean_bce(REAL_ROWS, 0.9), rel=1e-5)
    assert float(out["fake"]) == pytest.approx(mean_bce(FAKE_ROWS, 0.0), rel=1e-5)


def test_generator_loss():
    fake = tf.constant([[[[0.5, -0.5]]], [[[0.0, 1.0]]]])  # (2, 1, 1, 2)
    real = tf.constant([[[[0.0, 0.0]]], [[[0.25, -1.0]]]])
    l1 = ((0.5 + 0.5) / 2 + (0.25 + 2.0) / 2) / 2  # 0.8125
    out = generator_loss(FAKE, fake, real, l1_weight=100.0)
    assert float(out["gan"]) == pytest.approx(mean_bce(FAKE_ROWS, 1.0), rel=1e-5)
    assert float(out["l1"]) == pytest.approx(l1, rel=1e-6)
    assert float(out["total"]) == pytest.approx(mean_bce(FAKE_ROWS, 1.0) + 100.0 * l1, rel=1e-5)


def test_global_batch_size_halves_mean():
    real = patches(*([[0.0, 2.0, -1.0]] * 4))
    fake = tf.ones((4, 2, 2, 3)) * 0.5
    local = discriminator_loss(real, real)
    scaled = discriminator_loss(real, real, global_batch_size=8)
    for k in ("real", "fake", "total"):
        assert float(scaled[k]) == pytest.approx(float(local[k]) / 2, rel=1e-6)
    local = generator_loss(real, fake, tf.zeros_like(fake), 10.0)
    scaled = generator_loss(real, fake, tf.zeros_like(fake), 10.0, global_batch_size=8)
    assert float(local["l1"]) == pytest.approx(0.5)
    for k in ("gan", "l1", "total"):
        assert float(scaled[k]) == pytest.approx(float(local[k]) / 2, rel=1e-6)


def test_graph_mode_and_low_precision_logits():
    @tf.function
    def losses(real, fake):
        d = discriminator_loss(real, fake, label_smoothing=True, global_batch_size=2)
        g = generator_loss(fake, tf.zeros((2, 4, 4, 3), tf.bfloat16), tf.ones((2, 4, 4, 3)), 100.0, global_batch_size=2)
        return d["total"], g["total"]

    eager = [float(v) for v in (discriminator_loss(REAL, FAKE, label_smoothing=True)["total"],
                                 generator_loss(FAKE, tf.zeros((2, 4, 4, 3)), tf.ones((2, 4, 4, 3)), 100.0)["total"])]
    graph = losses(tf.cast(REAL, tf.bfloat16), tf.cast(FAKE, tf.bfloat16))
    assert all(v.dtype == tf.float32 for v in graph)
    # the logits above are exact in bfloat16, so graph and eager agree
    np.testing.assert_allclose([float(v) for v in graph], eager, rtol=1e-5)


def per_patch_mean(rows, f):
    return sum(sum(f(x) for x in r) / len(r) for r in rows) / len(rows)


def test_lsgan_losses_by_hand():
    d = discriminator_loss(REAL, FAKE, kind="lsgan")
    # REAL row 0: 0.5 * ((0-1)^2 + (2-1)^2 + (-1-1)^2) / 3 = 1.0; row 1: 0.5 * (0 + 0 + 9) / 3 = 1.5
    assert float(d["real"]) == pytest.approx((1.0 + 1.5) / 2, rel=1e-6)
    assert float(d["fake"]) == pytest.approx(per_patch_mean(FAKE_ROWS, lambda x: 0.5 * x * x), rel=1e-6)
    smooth = discriminator_loss(REAL, FAKE, label_smoothing=True, kind="lsgan")
    assert float(smooth["real"]) == pytest.approx(per_patch_mean(REAL_ROWS, lambda x: 0.5 * (x - 0.9) ** 2), rel=1e-6)
    g = generator_loss(FAKE, tf.zeros((2, 1, 1, 2)), tf.ones((2, 1, 1, 2)), l1_weight=10.0, kind="lsgan")
    assert float(g["gan"]) == pytest.approx(per_patch_mean(FAKE_ROWS, lambda x: 0.5 * (x - 1) ** 2), rel=1e-6)
    assert float(g["total"]) == pytest.approx(float(g["gan"]) + 10.0, rel=1e-6)


def test_hinge_losses_by_hand():
    d = discriminator_loss(REAL, FAKE, kind="hinge")
    # REAL: max(0, 1 - x): row 0 (1 + 0 + 2) / 3 = 1, row 1 (0 + 0 + 0) / 3 = 0
    assert float(d["real"]) == pytest.approx(0.5, rel=1e-6)
    # FAKE: max(0, 1 + x): row 0 (0 + 1 + 4) / 3, row 1 (0 + 0 + 1.5) / 3
    assert float(d["fake"]) == pytest.approx((5 / 3 + 0.5) / 2, rel=1e-6)
    g = generator_loss(FAKE, tf.zeros((2, 1, 1, 2)), tf.zeros((2, 1, 1, 2)), l1_weight=100.0, kind="hinge")
    assert float(g["gan"]) == pytest.approx(-per_patch_mean(FAKE_ROWS, lambda x: x), rel=1e-6)
    with pytest.raises(ValueError, match="no labels to smooth"):
        discriminator_loss(REAL, FAKE, label_smoothing=True, kind="hinge")
    with pytest.raises(ValueError, match="unknown GAN loss"):
        generator_loss(FAKE, FAKE, FAKE, 1.0, kind="wgan")


def test_rebalancing_weighs_the_rare_training_colours_up(tmp_path):
    from PIL import Image

    from colorgan import color, config, training
    red, blue = (200, 30, 30), (30, 30, 200)
    for split, n in (("train", 8), ("test", 2)):  # red images, two of them with a blue corner
        (tmp_path / split).mkdir()
        for i in range(n):
            rgb = np.zeros((32, 32, 3), np.uint8) + np.array(red, np.uint8)
            rgb[:8, :8] = blue if i < 2 else red
            Image.fromarray(rgb).save(tmp_path / split / f"{i}.png")
    cfg = config.make_config(dataset="cifar10", dataset_path=str(tmp_path), batch_size=4, width=0.125,
                             mixed_precision="off", rebalance=0.5)
    histogram, images = losses.ab_histogram(cfg)
    assert images == 8 and histogram.sum() == 8 * 32 * 32
    table = losses.rebalancing_table(histogram, 0.5)
    p = histogram / histogram.sum()
    assert np.sum(p * table) == pytest.approx(1.0)  # a training pixel's expected weight
    lab = lambda rgb: color.normalize_lab(color.rgb_to_lab(np.array([[[rgb]]], np.float32) / 255))  # noqa: E731
    w_red, w_blue = (float(np.squeeze(losses.pixel_weights(lab(c), table))) for c in (red, blue))
    assert w_blue > 1 > w_red and w_blue > 2 * w_red  # 128 blue pixels against 8,064 red ones
    np.testing.assert_allclose(training.ab_weights(cfg).numpy(), table, rtol=1e-6)  # what the steps weigh L1 by
    assert training.ab_weights(config.make_config(dataset="cifar10", width=0.125)) is None
    # the weighted L1 by hand: each pixel's |difference| times its weight, per example, then the batch mean
    fake, real = tf.zeros((2, 2, 2, 3)), tf.ones((2, 2, 2, 3))
    weights = tf.constant([1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 8.0], shape=(2, 2, 2, 1))
    assert float(losses.l1_loss(fake, real, 2, weights)) == pytest.approx(((1 + 2 + 3 + 4) / 4 + 8 / 4) / 2)
