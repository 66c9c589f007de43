"""GAN losses as pure functions of discriminator logits (TF-GAN style).

Every loss is first reduced to one value per example (mean over its patches or pixels) and then
averaged with tf.nn.compute_average_loss, so under tf.distribute the sum over replicas is the
mean over the global batch. Everything is computed in float32, whatever the model's policy.
"""
import numpy as np

import tensorflow as tf

from colorgan import color, data
from colorgan.config import GAN_LOSSES, SMOOTHABLE


def _per_example_mean(x):
    """(bs, ...) -> (bs,): mean over everything but the batch axis."""
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.reduce_mean(x, axis=1)


def _mean(per_patch, global_batch_size):
    """Batch average of the per-example mean of a per-patch loss."""
    return tf.nn.compute_average_loss(_per_example_mean(per_patch), global_batch_size=global_batch_size)


def _cross_entropy(logits, label):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits)


def _bce_fake(fake):
    return _cross_entropy(fake, 0.0)


def _bce_fooled(fake):
    return _cross_entropy(fake, 1.0)


def _ls_real(real, label):
    return 0.5 * tf.square(real - label)


def _ls_fake(fake):
    return 0.5 * tf.square(fake)


def _ls_fooled(fake):
    return 0.5 * tf.square(fake - 1.0)


def _hinge_real(real, label):  # no label to smooth: the margin is 1
    return tf.nn.relu(1.0 - real)


def _hinge_fake(fake):
    return tf.nn.relu(1.0 + fake)


def _hinge_fooled(fake):
    return -fake


# Per-patch losses of float32 logits for each --gan-loss: (D on real patches against the real label,
# D on fake patches, G on fake patches). bce is the paper's cross-entropy; lsgan the least squares of
# Mao et al. 2017; hinge that of Lim & Ye 2017 / SAGAN. Named functions, not lambdas: AutoGraph
# cannot tell apart two lambdas on one line.
PATCH_LOSSES = {"bce": (_cross_entropy, _bce_fake, _bce_fooled), "lsgan": (_ls_real, _ls_fake, _ls_fooled),
                "hinge": (_hinge_real, _hinge_fake, _hinge_fooled)}


def _patch_losses(kind: str):
    if kind not in PATCH_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; expected one of {GAN_LOSSES}")
    return PATCH_LOSSES[kind]


def discriminator_loss(real_logits, fake_logits, label_smoothing: bool = False, global_batch_size=None,
                       kind: str = "bce") -> dict:
    """D loss (PATCH_LOSSES): real patches -> 1 (0.9 with one-sided label smoothing), fake patches -> 0."""
    real_loss, fake_loss, _ = _patch_losses(kind)
    if label_smoothing and kind not in SMOOTHABLE:
        raise ValueError(f"the {kind} loss has no labels to smooth")
    # one-sided: only the real target is softened, so D is not taught to let fakes pass
    label = 0.9 if label_smoothing else 1.0
    real = _mean(real_loss(tf.cast(real_logits, tf.float32), label), global_batch_size)
    fake = _mean(fake_loss(tf.cast(fake_logits, tf.float32)), global_batch_size)
    return {"real": real, "fake": fake, "total": real + fake}


def l1_loss(fake, real, global_batch_size=None, pixel_weights=None):
    """Batch average of the per-example mean absolute difference; pixel_weights (bs, H, W, 1), if
    given, weigh each pixel's difference (colour rebalancing)."""
    diff = tf.abs(tf.cast(fake, tf.float32) - tf.cast(real, tf.float32))
    return _mean(diff if pixel_weights is None else diff * pixel_weights, global_batch_size)


AB_BIN = 10.0  # CIELAB units per side of a rebalancing bin (Zhang et al. 2016 use 10)
AB_BINS = 22  # bins per axis, covering a and b in [-110, 110]


def ab_histogram(config, images: int = 4096) -> tuple[np.ndarray, int]:
    """(counts (AB_BINS, AB_BINS) of the training pixels' a and b, images counted): the first
    images of epoch 0, as training sees them."""
    edges = np.linspace(-AB_BIN * AB_BINS / 2, AB_BIN * AB_BINS / 2, AB_BINS + 1)
    counts, seen = np.zeros((AB_BINS, AB_BINS)), 0
    for batch in data.make_dataset(config, "train", 0).unbatch().take(images).batch(256):
        colour = batch["colour"]
        ab = colour.numpy()[..., 1:].reshape(-1, 2) * color.AB_SCALE
        counts += np.histogram2d(ab[:, 0], ab[:, 1], bins=[edges, edges])[0]
        seen += len(colour)
    return counts, seen


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
    """G loss: fool D (PATCH_LOSSES: fake patches -> 1, or a high hinge score) plus l1_weight times
    the L1 distance to the true colours."""
    gan = _mean(_patch_losses(kind)[2](tf.cast(fake_logits, tf.float32)), global_batch_size)
    l1 = l1_loss(fake, real, global_batch_size, pixel_weights)
    return {"gan": gan, "l1": l1, "total": gan + l1_weight * l1}
