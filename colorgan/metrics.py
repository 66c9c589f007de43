"""Colourisation quality metrics: pure functions of (real, fake) colour images.

The image metrics take batches of 8-bit sRGB images (bs, H, W, 3), uint8 or float in 0..255, as a
user saves them, and return one value per image (bs,), so that a caller can aggregate a whole test
split with bounded memory and rank the images. All are TensorFlow ops: they run eagerly, inside a
tf.function and inside tf.data.Dataset.map.
"""
import math
import os

import numpy as np

import keras
import tensorflow as tf

from colorgan import color

ACCURACY_EPS = (1, 2, 5, 10)


def to_lab(colour, color_space: str):
    """The networks' colour images in [-1, 1] -> CIELAB units (L 0-100, a and b about -110-110)."""
    colour = tf.cast(colour, tf.float32)
    if color_space == "lab":
        return color.denormalize_lab(colour)
    return color.rgb_to_lab(tf.clip_by_value((colour + 1.0) / 2.0, 0.0, 1.0))


def _lab(rgb):
    """8-bit sRGB values (0..255) -> CIELAB."""
    return color.rgb_to_lab(tf.cast(rgb, tf.float32) / 255.0)


def _within(lab_real, lab_fake, eps):
    """Per-image share of pixels whose rounded CIELAB values are all within the threshold,
    |dL| <= eps, |da| <= 2.2 eps and |db| <= 2.2 eps (a and b span 2.2x the range of L)."""
    diff = tf.abs(tf.round(lab_real) - tf.round(lab_fake))
    limit = tf.constant([1.0, 2.2, 2.2]) * tf.cast(eps, tf.float32)
    hit = tf.cast(tf.reduce_all(diff <= limit, axis=-1), tf.float32)
    return tf.reduce_mean(hit, axis=[-2, -1])


def pixel_accuracy(real, fake, color_space: str = "lab", thresh: float = 2.0):
    """The paper's accuracy over a batch of the networks' [-1, 1] outputs: one scalar."""
    return tf.reduce_mean(_within(to_lab(real, color_space), to_lab(fake, color_space), thresh))


def accuracy_curve(real_rgb, fake_rgb, eps_list=ACCURACY_EPS):
    """{eps: the paper's accuracy per image (the share of pixels within eps: _within)} for several
    thresholds, converting to Lab once."""
    lab_real, lab_fake = _lab(real_rgb), _lab(fake_rgb)
    return {eps: _within(lab_real, lab_fake, eps) for eps in eps_list}


def ab_error(real_rgb, fake_rgb):
    """Per-image mean absolute a and b errors in CIELAB units: (bs, 2), columns a, b."""
    diff = tf.abs(_lab(real_rgb) - _lab(fake_rgb))[..., 1:]
    return tf.reduce_mean(diff, axis=[-3, -2])


def mae_rgb(real_rgb, fake_rgb):
    """Per-image mean absolute error over RGB intensities 0..255: the one figure the authors published
    for CIFAR-10 (5.1 after 200 epochs, ImagingLab/Colorizing-with-GANs issue #13)."""
    diff = tf.abs(tf.cast(real_rgb, tf.float32) - tf.cast(fake_rgb, tf.float32))
    return tf.reduce_mean(diff, axis=[-3, -2, -1])


def psnr(real_rgb, fake_rgb):
    """Per-image PSNR in dB on 0..255 RGB (inf for identical images)."""
    return tf.image.psnr(tf.cast(real_rgb, tf.float32), tf.cast(fake_rgb, tf.float32), max_val=255.0)


def ssim(real_rgb, fake_rgb):
    """Per-image SSIM on 0..255 RGB: 11x11 Gaussian window (sigma 1.5), channel mean.
    Images must be at least 11x11."""
    return tf.image.ssim(tf.cast(real_rgb, tf.float32), tf.cast(fake_rgb, tf.float32), max_val=255.0)


def _deg(radians):
    return radians * (180.0 / math.pi)


def _rad(degrees):
    return degrees * (math.pi / 180.0)


def ciede2000(lab1, lab2, kL=1.0, kC=1.0, kH=1.0):
    """CIEDE2000 colour difference, elementwise on (..., 3) CIELAB tensors -> (...).

    Follows Sharma, Wu & Dalal (2005), equations 2-22; float64 input is kept as float64.
    """
    lab1 = tf.convert_to_tensor(lab1)
    dtype = lab1.dtype if lab1.dtype.is_floating else tf.float32
    L1, a1, b1 = tf.unstack(tf.cast(lab1, dtype), axis=-1)
    L2, a2, b2 = tf.unstack(tf.cast(lab2, dtype), axis=-1)
    zero = tf.zeros_like(L1)

    # a' stretches a for near-neutral colours, where the original CIELAB hue scale is too coarse.
    c_mean7 = ((tf.sqrt(a1 ** 2 + b1 ** 2) + tf.sqrt(a2 ** 2 + b2 ** 2)) / 2.0) ** 7
    g = 0.5 * (1.0 - tf.sqrt(c_mean7 / (c_mean7 + 25.0 ** 7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = tf.sqrt(a1p ** 2 + b1 ** 2), tf.sqrt(a2p ** 2 + b2 ** 2)
    # Achromatic colours have no hue: h' = 0 by definition (atan2(0, -0.0) would give 180).
    h1p = tf.where(c1p == 0.0, zero, tf.math.floormod(_deg(tf.atan2(b1, a1p)), 360.0))
    h2p = tf.where(c2p == 0.0, zero, tf.math.floormod(_deg(tf.atan2(b2, a2p)), 360.0))

    chromatic = c1p * c2p != 0.0
    dh = h2p - h1p
    # Opposite hues (|dh| = 180, Sharma's pairs 10 and 14) sit on the formula's discontinuity and
    # round-off decides which side: count differences within round-off of 180 as exactly 180.
    # The slack, 1e4 ulps of 1 degree, is ~1e-3 degrees in float32 and ~2e-12 in float64.
    half_turn = 180.0 + 1e4 * float(np.finfo(dtype.as_numpy_dtype).eps)
    # Hue difference the short way round the circle; none if either colour is achromatic.
    dh_wrapped = tf.where(dh > half_turn, dh - 360.0, tf.where(dh < -half_turn, dh + 360.0, dh))
    dh_wrapped = tf.where(chromatic, dh_wrapped, zero)
    dL, dC = L2 - L1, c2p - c1p
    dH = 2.0 * tf.sqrt(c1p * c2p) * tf.sin(_rad(dh_wrapped) / 2.0)

    # Mean hue, also the short way round; if either is achromatic it is the other's hue (the sum).
    h_sum = h1p + h2p
    h_mean = tf.where(tf.abs(dh) <= half_turn, h_sum / 2.0,
                      tf.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0))
    h_mean = tf.where(chromatic, h_mean, h_sum)
    L_mean, c_mean = (L1 + L2) / 2.0, (c1p + c2p) / 2.0

    t = (1.0 - 0.17 * tf.cos(_rad(h_mean - 30.0)) + 0.24 * tf.cos(_rad(2.0 * h_mean))
         + 0.32 * tf.cos(_rad(3.0 * h_mean + 6.0)) - 0.20 * tf.cos(_rad(4.0 * h_mean - 63.0)))
    d_theta = 30.0 * tf.exp(-(((h_mean - 275.0) / 25.0) ** 2))
    rc = 2.0 * tf.sqrt(c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7))
    sl = 1.0 + 0.015 * (L_mean - 50.0) ** 2 / tf.sqrt(20.0 + (L_mean - 50.0) ** 2)
    sc = 1.0 + 0.045 * c_mean
    sh = 1.0 + 0.015 * c_mean * t
    rt = -tf.sin(_rad(2.0 * d_theta)) * rc  # the blue-region chroma-hue interaction

    l_term, c_term, h_term = dL / (kL * sl), dC / (kC * sc), dH / (kH * sh)
    return tf.sqrt(l_term ** 2 + c_term ** 2 + h_term ** 2 + rt * c_term * h_term)


def mean_delta_e(real_rgb, fake_rgb):
    """Per-image mean CIEDE2000 difference between real and fake pixels."""
    return tf.reduce_mean(ciede2000(_lab(real_rgb), _lab(fake_rgb)), axis=[-2, -1])


def colourfulness(rgb):
    """Per-image colourfulness of Hasler & Suesstrunk (2003) on 0..255 RGB:
    M = sigma_rgyb + 0.3 mu_rgyb with rg = R - G, yb = (R + G) / 2 - B (population std)."""
    R, G, B = tf.unstack(tf.cast(rgb, tf.float32), axis=-1)
    rg, yb = R - G, 0.5 * (R + G) - B
    axes = [-2, -1]
    sigma = tf.sqrt(tf.math.reduce_variance(rg, axes) + tf.math.reduce_variance(yb, axes))
    return sigma + 0.3 * tf.sqrt(tf.reduce_mean(rg, axes) ** 2 + tf.reduce_mean(yb, axes) ** 2)


def _sqrt_psd(matrix):
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    w, v = tf.linalg.eigh(matrix)
    return (v * tf.sqrt(tf.maximum(w, 0.0))) @ tf.transpose(v)


def fid_from_stats(mu1, sigma1, mu2, sigma2):
    """Frechet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Tr sqrt(sigma1 sigma2) = Tr sqrt(s sigma2 s) with s = sqrt(sigma1): the latter is symmetric PSD,
    so its eigenvalues are real and non-negative (up to round-off, clipped) and no complex sqrtm
    is needed.
    """
    mu1, mu2, sigma1, sigma2 = (tf.cast(x, tf.float64) for x in (mu1, mu2, sigma1, sigma2))
    s = _sqrt_psd(sigma1)
    product = s @ sigma2 @ s
    eig = tf.linalg.eigvalsh((product + tf.transpose(product)) / 2.0)
    tr_sqrt = tf.reduce_sum(tf.sqrt(tf.maximum(eig, 0.0)))
    return (tf.reduce_sum(tf.square(mu1 - mu2)) + tf.linalg.trace(sigma1) + tf.linalg.trace(sigma2)
            - 2.0 * tr_sqrt)


def inception_features(weights_path):
    """A function mapping 8-bit RGB batches (bs, H, W, 3) to (bs, 2048) InceptionV3 pool features.

    weights_path: a Keras InceptionV3 (include_top=False) weights file, or None for random weights
    (tests only). Keras' ImageNet weights are not the TTUR Inception graph that published FIDs use,
    so FIDs from these features compare only with each other.
    """
    weights_path = None if weights_path is None else os.fspath(weights_path)
    if weights_path is not None and not os.path.isfile(weights_path):
        raise FileNotFoundError(f"InceptionV3 weights file not found: {weights_path} (download "
                                "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 elsewhere)")
    model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=weights_path,
                                           input_shape=(299, 299, 3))

    def features(rgb):
        images = tf.image.resize(tf.cast(rgb, tf.float32), (299, 299))
        return model(keras.applications.inception_v3.preprocess_input(images), training=False)

    return features


# ------------------------------------------------------------------------------------------------
# Distribution metrics on feature vectors (bs, d): numpy in, float64 arithmetic

def frechet_distance(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two sets of feature vectors (FID's formula)."""
    stats = [(np.mean(f, axis=0), np.cov(np.asarray(f, np.float64), rowvar=False)) for f in (features_a, features_b)]
    return float(fid_from_stats(*stats[0], *stats[1]))


def _logistic_fit(x, y, l2: float = 1.0, iterations: int = 25):
    """Weights (d + 1,) of an L2-regularised logistic regression, by Newton's method."""
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def c2st(real, fake, folds: int = 5, seed: int = 0) -> dict:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): a logistic probe tells real from fake
    feature vectors, cross-validated over `folds` folds of images.

    real[i] and fake[i] are two versions of image i (the truth and its colourisation) and share a
    fold. Returns the held-out accuracy (0.5: a machine cannot tell them apart; 1: it always can)
    with its binomial standard error, and the machine's "fooled rate": the share of held-out pairs
    in which the probe finds the colourised version the more real one (ties count half), the
    paper's two-alternative visual Turing test with the probe as the participant (0.5 at best).
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    n = len(real)
    folds = min(folds, n // 2)  # a few images (a smoke test) still get a figure, a noisy one
    if fake.shape != real.shape or folds < 2:
        raise ValueError("c2st needs two sets of the same shape with at least 4 rows")
    fold = np.random.default_rng(seed).permutation(n) % folds
    correct, fooled = 0.0, 0.0
    for k in range(folds):
        train, held = fold != k, fold == k
        x = np.concatenate([real[train], fake[train]])
        mean, std = x.mean(0), x.std(0) + 1e-8
        y = np.concatenate([np.ones(train.sum()), np.zeros(train.sum())])
        w = _logistic_fit((x - mean) / std, y)
        score = lambda f: np.hstack([(f - mean) / std, np.ones((len(f), 1))]) @ w  # noqa: E731  (> 0: real)
        real_score, fake_score = score(real[held]), score(fake[held])
        correct += np.sum(real_score > 0) + np.sum(fake_score <= 0)
        fooled += np.sum(fake_score > real_score) + 0.5 * np.sum(fake_score == real_score)
    accuracy = correct / (2 * n)
    return {"accuracy": float(accuracy), "stderr": float(np.sqrt(accuracy * (1 - accuracy) / (2 * n))),
            "fooled": float(fooled / n)}
