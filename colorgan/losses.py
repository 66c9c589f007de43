"""GAN losses as pure functions of discriminator logits (TF-GAN style).

Every loss is first reduced to one value per example (mean over its patches or pixels) and then
averaged with tf.nn.compute_average_loss, so under tf.distribute the sum over replicas is the
mean over the global batch. Everything is computed in float32, whatever the model's policy.
"""
import numpy as np

import colorgan  # noqa: F401  (sets TF env vars before TensorFlow loads)
import tensorflow as tf

from colorgan import color
from colorgan.config import GAN_LOSSES


def _per_example_mean(x):
    """(bs, ...) -> (bs,): mean over everything but the batch axis."""
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.reduce_mean(x, axis=1)


def _bce(logits, label, global_batch_size):
    """Batch average of the per-example mean sigmoid cross-entropy against a constant label."""
    logits = tf.cast(logits, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits)
    return _mean(ce, global_batch_size)


def _mean(per_patch, global_batch_size):
    """Batch average of the per-example mean of a per-patch loss."""
    return tf.nn.compute_average_loss(_per_example_mean(per_patch), global_batch_size=global_batch_size)


def discriminator_loss(real_logits, fake_logits, label_smoothing: bool = False, global_batch_size=None,
                       kind: str = "bce") -> dict:
    """D loss: real patches -> 1 (0.9 with one-sided label smoothing), fake patches -> 0.

    kind "bce" is the paper's cross-entropy; "lsgan" the least-squares loss of Mao et al. 2017,
    0.5 (D(real) - 1)^2 + 0.5 D(fake)^2; "hinge" the hinge loss of Lim & Ye 2017 / SAGAN,
    max(0, 1 - D(real)) + max(0, 1 + D(fake)), which has no labels to smooth.
    """
    # one-sided: only the real target is softened, so D is not taught to let fakes pass
    target = 0.9 if label_smoothing else 1.0
    real_logits, fake_logits = tf.cast(real_logits, tf.float32), tf.cast(fake_logits, tf.float32)
    if kind == "bce":
        real, fake = _bce(real_logits, target, global_batch_size), _bce(fake_logits, 0.0, global_batch_size)
    elif kind == "lsgan":
        real = _mean(0.5 * tf.square(real_logits - target), global_batch_size)
        fake = _mean(0.5 * tf.square(fake_logits), global_batch_size)
    elif kind == "hinge":
        if label_smoothing:
            raise ValueError("the hinge loss has no labels to smooth")
        real = _mean(tf.nn.relu(1.0 - real_logits), global_batch_size)
        fake = _mean(tf.nn.relu(1.0 + fake_logits), global_batch_size)
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; expected one of {GAN_LOSSES}")
    return {"real": real, "fake": fake, "total": real + fake}


def l1_loss(fake, real, global_batch_size=None, pixel_weights=None):
    """Batch average of the per-example mean absolute difference; pixel_weights (bs, H, W, 1), if
    given, weigh each pixel's difference (colour rebalancing)."""
    diff = tf.abs(tf.cast(fake, tf.float32) - tf.cast(real, tf.float32))
    return _mean(diff if pixel_weights is None else diff * pixel_weights, global_batch_size)


AB_BIN = 10.0  # CIELAB units per side of a rebalancing bin (Zhang et al. 2016 use 10)
AB_BINS = 22  # bins per axis, covering a and b in [-110, 110]


def rebalancing_table(histogram, strength: float, sigma_bins: float = 0.5):
    """Weights (AB_BINS, AB_BINS) of each ab bin against the pull to the common colours (Zhang,
    Isola & Efros 2016, eq. 4): w ~ ((1 - strength) p + strength / Q)^-1, p the training pixels'
    ab distribution smoothed by a Gaussian of sigma_bins bins, Q the bins with any pixel, scaled
    so that the expected weight of a training pixel is 1."""
    p = np.asarray(histogram, np.float64)
    p = p / p.sum()
    k = np.arange(-3, 4)
    kernel = np.exp(-0.5 * (k / sigma_bins) ** 2)
    kernel /= kernel.sum()
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 0, p)
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 1, smooth)
    seen = p > 0
    weights = np.where(seen, 1.0 / ((1 - strength) * smooth + strength / seen.sum()), 0.0)
    return weights / np.sum(p * weights)


def pixel_weights(colour, table):
    """The rebalancing weight (bs, H, W, 1) of each pixel of normalised Lab colours (bs, H, W, 3)."""
    ab = tf.cast(colour[..., 1:], tf.float32) * color.AB_SCALE  # CIELAB units
    index = tf.clip_by_value(tf.cast(tf.floor((ab + 110.0) / AB_BIN), tf.int32), 0, AB_BINS - 1)
    return tf.gather_nd(tf.cast(table, tf.float32), index)[..., None]


def generator_loss(fake_logits, fake, real, l1_weight: float, global_batch_size=None, kind: str = "bce",
                   pixel_weights=None) -> dict:
    """G loss: fool D plus l1_weight times the L1 distance to the true colours.

    Fooling D means fake patches -> 1 for "bce" and "lsgan" (0.5 (D(fake) - 1)^2), and a high
    score, -D(fake), for "hinge".
    """
    fake_logits = tf.cast(fake_logits, tf.float32)
    if kind == "bce":
        gan = _bce(fake_logits, 1.0, global_batch_size)
    elif kind == "lsgan":
        gan = _mean(0.5 * tf.square(fake_logits - 1.0), global_batch_size)
    elif kind == "hinge":
        gan = _mean(-fake_logits, global_batch_size)
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; expected one of {GAN_LOSSES}")
    l1 = l1_loss(fake, real, global_batch_size, pixel_weights)
    return {"gan": gan, "l1": l1, "total": gan + l1_weight * l1}
