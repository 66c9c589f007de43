"""Colour conversion between 8-bit sRGB and the networks' normalised colour spaces.

Lab is normalised as the authors do: L/50 - 1, a/110, b/110, so every channel lies in about
[-1, 1] and matches the generator's tanh. The "rgb" space is RGB scaled to [-1, 1]. Either way
the generator's input is the normalised L channel (the authors fed raw 0-255 gray: a defect).
"""
import warnings

import numpy as np

import tensorflow as tf

with warnings.catch_warnings():
    # tensorflow-io's compiled file-system plugins do not load with TF 2.21 and it warns about
    # it on import; the colour ops are plain TensorFlow and work.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"tensorflow_io(\.|$)")
    import tensorflow_io as tfio

L_SCALE, AB_SCALE = 50.0, 110.0


def rgb_to_lab(rgb):
    """sRGB in [0, 1] (..., 3) -> CIELAB (D65): L in [0, 100], a and b in about [-110, 110]."""
    return tfio.experimental.color.rgb_to_lab(tf.convert_to_tensor(rgb, tf.float32))


def lab_to_rgb(lab):
    """CIELAB (D65) -> sRGB in [0, 1], clipped (out-of-gamut Lab has no exact sRGB value)."""
    rgb = tfio.experimental.color.lab_to_rgb(tf.convert_to_tensor(lab, tf.float32))
    return tf.clip_by_value(rgb, 0.0, 1.0)


# numpy, not tf.constant: a TF op at import would start TensorFlow's runtime before
# MultiWorkerMirroredStrategy can configure it ("Collective ops must be configured at program startup").
_XYZ_TO_LINEAR_RGB = np.array([[3.2404542, -0.9692660, 0.0556434],
                               [-1.5371385, 1.8760108, -0.2040259],
                               [-0.4985314, 0.0415560, 1.0572252]], np.float32)  # sRGB, D65 (as skimage)


def lab_to_linear_rgb(lab):
    """CIELAB -> linear sRGB without clipping: values outside [0, 1] mark out-of-gamut colours
    (tensorflow-io's lab_to_rgb clips, which hides them)."""
    L, a, b = tf.unstack(tf.convert_to_tensor(lab, tf.float32), axis=-1)
    fy = (L + 16.0) / 116.0
    f = tf.stack([fy + a / 500.0, fy, fy - b / 200.0], axis=-1)
    xyz = tf.where(f > 6.0 / 29.0, f ** 3, (f - 16.0 / 116.0) * 3 * (6.0 / 29.0) ** 2)
    xyz = xyz * tf.constant([0.95047, 1.0, 1.08883])
    return tf.tensordot(xyz, _XYZ_TO_LINEAR_RGB, axes=1)


@tf.function(reduce_retracing=True)  # a graph: 2.5x faster than op by op (ten small bisection steps)
def fit_gamut(L, ab, iterations: int = 10):
    """Lab -> sRGB in [0, 1], shrinking the chroma of out-of-gamut pixels (bisection on a and b
    towards 0) instead of clipping R, G and B: clipping would change lightness and hue."""
    shape = tf.shape(L)
    L, ab = tf.reshape(tf.cast(L, tf.float32), (-1, 1)), tf.reshape(tf.cast(ab, tf.float32), (-1, 2))  # any rank

    def inside(L, ab):
        rgb = lab_to_linear_rgb(tf.concat([L, ab], -1))
        return tf.reduce_all((rgb >= 0.0) & (rgb <= 1.0), axis=-1)

    outside = tf.where(~inside(L, ab))  # (n, 1) indices of the pixels to fix: usually few
    L_out, ab_out = tf.gather_nd(L, outside), tf.gather_nd(ab, outside)  # (n, 1), (n, 2)
    low, high = tf.zeros_like(L_out), tf.ones_like(L_out)  # gray (k = 0) is always inside
    for _ in range(iterations):
        middle = (low + high) / 2
        ok = inside(L_out, ab_out * middle)[:, None]
        low, high = tf.where(ok, middle, low), tf.where(ok, high, middle)
    ab = tf.tensor_scatter_nd_update(ab, outside, ab_out * low)
    return tf.reshape(lab_to_rgb(tf.concat([L, ab], -1)), tf.concat([shape[:-1], [3]], 0))


def normalize_lab(lab):
    L, a, b = tf.unstack(lab, axis=-1)
    return tf.stack([L / L_SCALE - 1.0, a / AB_SCALE, b / AB_SCALE], axis=-1)


def denormalize_lab(lab):
    L, a, b = tf.unstack(lab, axis=-1)
    return tf.stack([(L + 1.0) * L_SCALE, a * AB_SCALE, b * AB_SCALE], axis=-1)


def preprocess(rgb_uint8, color_space: str = "lab"):
    """8-bit sRGB images (..., H, W, 3) -> (gray (..., H, W, 1), colour (..., H, W, 3)) in [-1, 1].

    gray is the normalised L channel in both colour spaces; colour is normalised Lab or RGB.
    """
    rgb = tf.cast(rgb_uint8, tf.float32) / 255.0
    lab = normalize_lab(rgb_to_lab(rgb))
    gray = lab[..., :1]
    if color_space == "lab":
        return gray, lab
    if color_space == "rgb":
        return gray, rgb * 2.0 - 1.0
    raise ValueError(f"unknown colour space {color_space!r}")


def postprocess(colour, color_space: str = "lab"):
    """The generator's output in [-1, 1] -> sRGB float in [0, 1]."""
    colour = tf.cast(colour, tf.float32)
    if color_space == "lab":
        return lab_to_rgb(denormalize_lab(colour))
    if color_space == "rgb":
        return tf.clip_by_value((colour + 1.0) / 2.0, 0.0, 1.0)
    raise ValueError(f"unknown colour space {color_space!r}")


def to_uint8(rgb):
    """sRGB float in [0, 1] -> uint8, rounded as image files store it."""
    return tf.cast(tf.round(tf.clip_by_value(rgb, 0.0, 1.0) * 255.0), tf.uint8)
