"""Losses against numbers worked out by hand with math.log / math.exp."""
import math

import colorgan  # noqa: F401  (before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

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


def test_bce_by_hand():
    assert bce(0.0, 1.0) == pytest.approx(math.log(2))
    assert bce(2.0, 1.0) == pytest.approx(math.log(1 + math.exp(-2)))
    assert bce(-1.0, 0.0) == pytest.approx(math.log(1 + math.exp(-1)))


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
