"""Colourisation quality metrics: pure functions of (real, fake) colour images."""
import colorgan  # noqa: F401  (sets TensorFlow's environment before it is imported)
import tensorflow as tf

from colorgan import color


def to_lab(colour, color_space: str):
    """The networks' colour images in [-1, 1] -> CIELAB units (L 0-100, a and b about -110-110)."""
    colour = tf.cast(colour, tf.float32)
    if color_space == "lab":
        return color.denormalize_lab(colour)
    return color.rgb_to_lab(tf.clip_by_value((colour + 1.0) / 2.0, 0.0, 1.0))


def pixel_accuracy(real, fake, color_space: str = "lab", thresh: float = 2.0):
    """The paper's accuracy: share of pixels whose rounded CIELAB values are all within the threshold,
    |dL| <= eps, |da| <= 2.2 eps and |db| <= 2.2 eps (a and b span 2.2x the range of L)."""
    diff = tf.abs(tf.round(to_lab(real, color_space)) - tf.round(to_lab(fake, color_space)))
    limit = tf.constant([1.0, 2.2, 2.2]) * thresh
    return tf.reduce_mean(tf.cast(tf.reduce_all(diff <= limit, axis=-1), tf.float32))
