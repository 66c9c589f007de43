"""Loading a trained generator and colourising with it: a Colorizer holds a generator with its config
and the compiled functions that run it, for batches of normalised L and for photos of any size."""
import logging
import os
import zipfile

import numpy as np

import keras
import tensorflow as tf

from colorgan import color, devices, models
from colorgan.config import Config, UserError, first_line, load_config
from colorgan.runs import find_run


def load_run(path: str, name: str = "") -> tuple[keras.Model, Config]:
    """(generator, the run's config) from a run folder written by train.py.

    Uses the exported generator.keras, or the latest checkpoint when the run was never exported.
    """
    run_dir = find_run(path, name)
    config = load_config(os.path.join(run_dir, "config.json"))
    exported = os.path.join(run_dir, "generator.keras")
    out_channels = 2 if config.generator_output == "ab" else 3
    try:
        if os.path.isfile(exported):
            if not zipfile.is_zipfile(exported):  # Keras would say "File not found"
                raise ValueError(f"{exported} is not a .keras file (corrupt or truncated?)")
            generator = keras.saving.load_model(exported, compile=False)
        else:
            latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
            if not latest:
                raise FileNotFoundError("neither generator.keras nor a checkpoint")
            with models.dtype_policy("float32"):  # as export saves it
                generator = models.generator_for(config, pretrained=False)
            tf.train.Checkpoint(generator=generator).read(latest).expect_partial().assert_existing_objects_matched()
    except Exception as error:  # Keras and TF raise many kinds on a corrupt or foreign file
        raise UserError(f"cannot load the generator of {run_dir}: {first_line(error)}") from None
    if generator.output_shape[-1] != out_channels or generator.input_shape[-1] != 1:
        raise UserError(f"{run_dir}: the generator does not fit its config.json "
                        f"(outputs {generator.output_shape[-1]} channels, config says {out_channels})")
    if mismatch := models.encoder_mismatch(generator, config):
        raise UserError(f"{run_dir}: the generator does not fit its config.json: {mismatch}")
    return generator, config


class _EachColorizerTracesItsOwn(logging.Filter):
    """TensorFlow counts the traces of every Colorizer's functions together (one Python method) and
    warns of "retracing" when a study loads several generators in turn: each traces once, as meant."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_EachColorizerTracesItsOwn())


def load(path: str, name: str = "") -> "Colorizer":
    """The Colorizer of a run folder written by train.py (load_run)."""
    return Colorizer(*load_run(path, name))


class Colorizer:
    """A generator and its run's config. Its functions are traced for it alone, once per shape."""

    def __init__(self, generator: keras.Model, config: Config):
        self.generator, self.config = generator, config
        self.stride = models.total_stride(config.dataset, config.model, config.backbone)
        # Graphs, not op by op: fused kernels, 1.4x eager's speed here; the render traced once per size
        self._colour = tf.function(self._generate, reduce_retracing=True)
        self._render = tf.function(self._render_ab, reduce_retracing=True)

    def _generate(self, gray):
        return models.colorize(self.generator, gray, self.config.generator_output, training=False)

    def batch(self, gray, keep_l: bool = False) -> tf.Tensor:
        """Normalised L (bs, H, W, 1) -> sRGB float (bs, H, W, 3) in [0, 1], BatchNorm in inference mode.

        keep_l: the input's own L with the generator's a and b, out-of-gamut chroma shrunk
        (color.fit_gamut), as image() gives a user; otherwise the generator's whole output (the
        paper's protocol).
        """
        gray = tf.convert_to_tensor(gray, tf.float32)
        colour = self._colour(gray)
        if not keep_l:
            return color.postprocess(colour, self.config.color_space)
        return color.fit_gamut((gray + 1.0) * color.L_SCALE, self._ab(colour))

    def in_precision(self) -> tuple["Colorizer", str]:
        """(self, or a Colorizer computing in the precision --mixed-precision picks, why) for
        colourising photos: bfloat16 is 1.8x faster on a CPU with native bfloat16 and moves the colours
        of trained runs by 0.2-0.3 CIEDE2000 on average (1 is a just noticeable difference;
        bench/README.md). Test-split metrics stay in float32, comparable across machines."""
        policy, why = devices.precision_policy(self.config)
        if policy == "float32":
            return self, f"float32 ({why})"
        build = lambda: models.generator_for(self.config, pretrained=False)  # noqa: E731
        return Colorizer(models.rebuild(build, self.generator, policy), self.config), \
            f"{policy.removeprefix('mixed_')} ({why})"

    def _ab(self, colour) -> tf.Tensor:
        """The a and b channels (CIELAB units) of the generator's output in its colour space."""
        if self.config.color_space == "rgb":
            colour = color.normalize_lab(color.rgb_to_lab(color.postprocess(colour, "rgb")))
        return tf.cast(colour[..., 1:], tf.float32) * color.AB_SCALE

    def image(self, rgb: np.ndarray, render_size: int = 0) -> np.ndarray:
        """Colourise one photo of any size: uint8 RGB (H, W, 3) -> uint8 RGB (H, W, 3).

        The output keeps the input's own full-resolution L channel; a and b come from the generator,
        run on the gray image with its shorter side at render_size (0: at full resolution, up to
        MAX_RENDER_PIXELS), padded by reflection to a multiple of the network's stride, and resized
        back to full resolution.
        """
        return self.images(rgb[None], render_size)[0]

    def images(self, rgbs: np.ndarray, render_size: int = 0) -> np.ndarray:
        """image() for photos of one size at once: uint8 (n, H, W, 3) -> uint8 (n, H, W, 3)."""
        h, w = rgbs.shape[1:3]
        L = _lab_stripes(lambda x: _lightness(x).numpy(), rgbs)  # (n, H, W, 1)
        size = render_shape(h, w, render_size, self.stride)
        ab = self._render(tf.constant(L), size).numpy()  # (n, H, W, 2)
        return _lab_stripes(lambda l, a: _to_srgb8(l, a).numpy(), L, ab)

    def _render_ab(self, L, size: tuple):
        """a and b (n, H, W, 2) for full-resolution L (n, H, W, 1), the generator run at size."""
        gray = tf.image.resize(L / color.L_SCALE - 1.0, size, antialias=True)  # (n, h', w', 1)
        pad = [(0, 0), (0, -size[0] % self.stride), (0, -size[1] % self.stride), (0, 0)]
        gray = tf.pad(gray, pad, mode="SYMMETRIC")  # size >= stride > padding: always valid
        colour = self._generate(gray)[:, :size[0], :size[1]]
        return tf.image.resize(self._ab(colour), tf.shape(L)[1:3])


def gray_to_rgb(gray) -> np.ndarray:
    """Normalised L (..., 1) -> the gray image as 8-bit RGB (what a person would see): the one way
    colorgan shows gray, in sample grids, tables and pictures alike."""
    lab = tf.concat([tf.cast(gray, tf.float32), tf.zeros_like(gray, tf.float32), tf.zeros_like(gray, tf.float32)], -1)
    return color.to_uint8(color.postprocess(lab, "lab")).numpy()


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """8-bit RGB (H, W, 3) or (n, H, W, 3) -> the gray image the generator sees (its L, a = b = 0),
    as 8-bit RGB."""
    rgb = np.asarray(rgb, np.uint8)
    gray = gray_to_rgb(_lightness(rgb.reshape((-1,) + rgb.shape[-3:])) / color.L_SCALE - 1.0)
    return gray.reshape(rgb.shape)


# The generator's input at most: memory stays bounded for any photo. Half a megapixel, because on
# an AVX2 CPU oneDNN's 4x4 stride-2 convolution of 64 channels turns ~25x slower above ~0.8 Mpixel
# (864x1184: minutes instead of seconds; measured, see the README).
MAX_RENDER_PIXELS = 512 * 1024
STRIPE_ROWS = 256  # full-resolution colour conversion in stripes, for the same reason


def _lab_stripes(fn, *arrays):
    """Apply fn to row stripes of full-resolution arrays (..., H, W, C) and stack the results."""
    return np.concatenate([fn(*(a[..., i:i + STRIPE_ROWS, :, :] for a in arrays))
                           for i in range(0, arrays[0].shape[-3], STRIPE_ROWS)], axis=-3)


def render_shape(h: int, w: int, render_size: int, stride: int = 1) -> tuple[int, int]:
    """(h', w') the generator runs at for an h x w photo: its shorter side at render_size (0: full
    resolution) but at least the network's stride, the aspect ratio kept, and never more than
    MAX_RENDER_PIXELS, whatever the render size and the shape (a 1 x 100,000 strip at 32 px would be
    102 megapixels)."""
    scale = max(render_size / min(h, w) if render_size else 1.0, stride / min(h, w))  # not squashed to the stride
    scale = min(scale, (MAX_RENDER_PIXELS / (h * w)) ** 0.5)
    rh, rw = max(stride, round(h * scale)), max(stride, round(w * scale))
    if rh * rw > MAX_RENDER_PIXELS:  # a strip whose short side was raised to the stride: shorten the long one
        rh, rw = (rh, max(stride, MAX_RENDER_PIXELS // rh)) if rw >= rh else (max(stride, MAX_RENDER_PIXELS // rw), rw)
    return rh, rw


# Graphs rather than op by op: the colour conversions around the generator took a third of the time.
# One graph for every size: tfio's conversions need the channels' count, which a relaxed trace loses
@tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
def _lightness(rgb):
    return color.rgb_to_lab(tf.cast(rgb, tf.float32) / 255.0)[..., :1]  # L in CIELAB units


@tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32),
                              tf.TensorSpec([None, None, None, 2], tf.float32)])
def _to_srgb8(L, ab):
    return color.to_uint8(color.fit_gamut(L, ab))
