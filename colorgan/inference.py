"""Loading a trained generator and colourising with it (test_eval.py, test_turing.py)."""
import collections
import concurrent.futures
import math
import os
import time
import zipfile

import numpy as np

import keras
import tensorflow as tf

from colorgan import color, devices, files, images, models, progress
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


def colorize_batch(generator: keras.Model, config: Config, gray, keep_l: bool = False) -> tf.Tensor:
    """Normalised L (bs, H, W, 1) -> sRGB float (bs, H, W, 3) in [0, 1], BatchNorm in inference mode.

    keep_l: the input's own L with the generator's a and b, out-of-gamut chroma shrunk (color.fit_gamut),
    as colorize_image gives a user; otherwise the generator's whole output (the paper's protocol).
    """
    gray = tf.convert_to_tensor(gray, tf.float32)
    colour = _colorize(generator, gray, config.generator_output)
    if not keep_l:
        return color.postprocess(colour, config.color_space)
    return color.fit_gamut((gray + 1.0) * color.L_SCALE, _ab(colour, config))


@tf.function(reduce_retracing=True)  # a graph per generator: fused kernels, 1.4x eager's speed here
def _colorize(generator, gray, generator_output: str):
    return models.colorize(generator, gray, generator_output, training=False)


def in_precision(generator: keras.Model, config: Config) -> tuple[keras.Model, str]:
    """(generator, or a copy computing in the precision --mixed-precision picks, why) for colourising
    photos: bfloat16 is 1.8x faster on a CPU with native bfloat16 and moves the colours of trained
    runs by 0.2-0.3 CIEDE2000 on average (1 is a just noticeable difference; bench/README.md).
    Test-split metrics stay in float32, comparable across machines."""
    policy, why = devices.precision_policy(config)
    if policy == "float32":
        return generator, f"float32 ({why})"
    copy = models.rebuild(lambda: models.generator_for(config, pretrained=False), generator, policy)
    return copy, f"{policy.removeprefix('mixed_')} ({why})"


def _ab(colour, config: Config) -> tf.Tensor:
    """The a and b channels (CIELAB units) of the generator's output in its colour space."""
    if config.color_space == "rgb":
        colour = color.normalize_lab(color.rgb_to_lab(color.postprocess(colour, "rgb")))
    return tf.cast(colour[..., 1:], tf.float32) * color.AB_SCALE


def gray_to_rgb(gray) -> np.ndarray:
    """Normalised L (..., 1) -> the gray image as 8-bit RGB (what a person would see): the one way
    colorgan shows gray, in sample grids, tables and pictures alike."""
    lab = tf.concat([tf.cast(gray, tf.float32), tf.zeros_like(gray, tf.float32), tf.zeros_like(gray, tf.float32)], -1)
    return color.to_uint8(color.postprocess(lab, "lab")).numpy()


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """8-bit RGB (..., H, W, 3) -> the gray image the generator sees (its L, a = b = 0), as 8-bit RGB."""
    return gray_to_rgb(_lightness(rgb) / color.L_SCALE - 1.0)


# The generator's input at most: memory stays bounded for any photo. Half a megapixel, because on
# an AVX2 CPU oneDNN's 4x4 stride-2 convolution of 64 channels turns ~25x slower above ~0.8 Mpixel
# (864x1184: minutes instead of seconds; measured, see the README).
MAX_RENDER_PIXELS = 512 * 1024
STRIPE_ROWS = 256  # full-resolution colour conversion in stripes, for the same reason


def _lab_stripes(fn, *arrays):
    """Apply fn to row stripes of full-resolution arrays (..., H, W, C) and stack the results."""
    return np.concatenate([fn(*(a[..., i:i + STRIPE_ROWS, :, :] for a in arrays))
                           for i in range(0, arrays[0].shape[-3], STRIPE_ROWS)], axis=-3)


def colorize_image(generator: keras.Model, config: Config, rgb: np.ndarray, render_size: int = 0) -> np.ndarray:
    """Colourise one photo of any size: uint8 RGB (H, W, 3) -> uint8 RGB (H, W, 3).

    The output keeps the input's own full-resolution L channel; a and b come from the generator,
    run on the gray image with its shorter side at render_size (0: at full resolution, up to
    MAX_RENDER_PIXELS), padded by reflection to a multiple of the network's stride, and resized
    back to full resolution.
    """
    return colorize_images(generator, config, rgb[None], render_size)[0]


def colorize_images(generator: keras.Model, config: Config, rgbs: np.ndarray, render_size: int = 0) -> np.ndarray:
    """colorize_image for photos of one size at once: uint8 (n, H, W, 3) -> uint8 (n, H, W, 3)."""
    h, w = rgbs.shape[1:3]
    L = _lab_stripes(lambda x: _lightness(x).numpy(), rgbs)  # (n, H, W, 1)
    stride = models.total_stride(config.dataset, config.model, config.backbone)
    size = render_shape(h, w, render_size, stride)
    ab = _render_ab(generator, config, tf.constant(L), size, stride).numpy()  # (n, H, W, 2)
    return _lab_stripes(lambda l, a: _to_srgb8(l, a).numpy(), L, ab)


def render_shape(h: int, w: int, render_size: int, stride: int = 1) -> tuple[int, int]:
    """(h', w') the generator runs at for an h x w photo: its shorter side at render_size (0: full
    resolution), each side at least the network's stride, and never more than MAX_RENDER_PIXELS,
    whatever the render size and the shape (a 1 x 100,000 strip at 32 px would be 102 megapixels)."""
    scale = min(render_size / min(h, w) if render_size else 1.0, (MAX_RENDER_PIXELS / (h * w)) ** 0.5)
    rh, rw = max(stride, round(h * scale)), max(stride, round(w * scale))
    if rh * rw > MAX_RENDER_PIXELS:  # a strip whose short side was raised to the stride: shorten the long one
        rh, rw = (rh, max(stride, MAX_RENDER_PIXELS // rh)) if rw >= rh else (max(stride, MAX_RENDER_PIXELS // rw), rw)
    return rh, rw


# Graphs rather than op by op: the colour conversions around the generator took a third of the time.
@tf.function(reduce_retracing=True)
def _lightness(rgb):
    return color.rgb_to_lab(tf.cast(rgb, tf.float32) / 255.0)[..., :1]  # L in CIELAB units


@tf.function(reduce_retracing=True)
def _to_srgb8(L, ab):
    return color.to_uint8(color.fit_gamut(L, ab))


@tf.function(reduce_retracing=True)  # traced once per render size
def _render_ab(generator, config: Config, L, size: tuple, stride: int):
    """a and b (n, H, W, 2) for full-resolution L (n, H, W, 1), the generator run at size."""
    gray = tf.image.resize(L / color.L_SCALE - 1.0, size, antialias=True)  # (n, h', w', 1)
    pad = [(0, 0), (0, -size[0] % stride), (0, -size[1] % stride), (0, 0)]
    gray = tf.pad(gray, pad, mode="SYMMETRIC")  # size >= stride > padding: always valid
    colour = models.colorize(generator, gray, config.generator_output, training=False)[:, :size[0], :size[1]]
    return tf.image.resize(_ab(colour, config), tf.shape(L)[1:3])


MAX_BATCH_PIXELS = 4 * 1024 * 1024  # full-resolution pixels colourised at once: bounded memory
IO_THREADS = 2
IO_AHEAD = 16  # images decoded ahead, and written behind, at most (a few: photos can be large)


def colorize_files(generator: keras.Model, config: Config, source: str, destination: str, render_size: int) -> list:
    """Colourise every image below source into destination (same relative names, PNG), photos of
    one size --batch-size at a time; returns the files not colourised, which are listed, not fatal."""
    jobs, failed = plan_outputs(source, destination)
    files.remove_debris(destination, min_age_s=600)  # younger ones may be another job's writes in progress
    generator, precision = in_precision(generator, config)
    print(f"colourising {len(jobs)} image(s) in {precision}", flush=True)

    def batch_limit(h, w):  # memory stays bounded at full resolution and in the generator
        rendered = math.prod(render_shape(h, w, render_size))
        return max(1, min(config.batch_size, MAX_BATCH_PIXELS // (h * w), int(MAX_RENDER_PIXELS // rendered)))

    # Files are decoded ahead and encoded behind in threads (Pillow and file calls release the GIL)
    # while the generator computes: for small images they cost as much as the network.
    pool, writes, unreadable, unwritten = concurrent.futures.ThreadPoolExecutor(IO_THREADS), collections.deque(), [], []
    written, started, line = 0, time.perf_counter(), progress.Progress()
    try:
        rgbs = _read_ahead(pool, [path for path, _ in jobs])
        for shape, batch in _size_batches(jobs, rgbs, batch_limit, config.batch_size, unreadable):
            colourised = colorize_images(generator, config, np.stack([rgb for rgb, _ in batch]), render_size)
            writes.extend(pool.submit(_write, out, target) for (_, target), out in zip(batch, colourised))
            while writes and (writes[0].done() or len(writes) > IO_AHEAD):
                unwritten += filter(None, [writes.popleft().result()])
            written += len(batch)
            rate = written / (time.perf_counter() - started)
            left = len(jobs) - written - len(unreadable)
            line.show(f"colourised {written}/{len(jobs)} ({shape[1]}x{shape[0]}) | {rate:.1f} img/s | "
                      f"ETA {left / rate:.0f}s", done=left == 0)
        unwritten += filter(None, [write.result() for write in writes])
    finally:  # after an interrupt, the queued writes are dropped
        pool.shutdown(cancel_futures=True)
    failed += unreadable + unwritten
    if failed:
        print(f"{len(failed)} file(s) not colourised:\n  " + "\n  ".join(failed))
    return failed


def plan_outputs(source: str, destination: str) -> tuple[list, list]:
    """([(input, output)] for every image below source, [why an input is refused]): outputs keep
    the relative names as PNG (inputs that would share one keep their extension), and none may
    leave destination or overwrite an input."""
    source, destination = os.path.abspath(source), os.path.abspath(destination)
    if not os.path.exists(source):
        raise UserError(f"--test-input {source}: no such file or folder")
    if os.path.exists(destination) and not os.path.isdir(destination):
        raise UserError(f"--test-output {destination} is a file: give a folder")
    real = os.path.realpath(destination) + os.sep  # a link to the input folder is the input folder
    if os.path.isdir(source) and (os.path.realpath(source) + os.sep).startswith(real):
        raise UserError(f"--test-output {destination} is --test-input or holds it: give a separate folder")
    if os.path.isdir(source):
        paths = [p for p in images.list_images(source) if not os.path.realpath(p).startswith(real)]
        names = [os.path.relpath(p, source) for p in paths]
    else:
        paths, names = [source], [os.path.basename(source)]
    if not paths:
        raise UserError(f"--test-input {source}: no images ({', '.join(images.IMAGE_EXTENSIONS)})")
    inputs = {os.path.realpath(p) for p in paths}
    outputs = [os.path.splitext(name)[0] + ".png" for name in names]
    shared = {o for o, count in collections.Counter(outputs).items() if count > 1}
    if shared:  # c1.jpg and c1.png: each keeps its whole name, c1.jpg.png and c1.png.png
        print(f"note: {len(shared)} output name(s) shared by several inputs: those keep their extension")
        outputs = [name + ".png" if o in shared else o for name, o in zip(names, outputs)]
    jobs, refused = [], []
    for path, output in zip(paths, outputs):
        target = os.path.realpath(os.path.join(destination, output))
        if not target.startswith(os.path.realpath(destination) + os.sep) or target in inputs:
            refused.append(f"{path}: its output {target} would leave --test-output or overwrite an input")
        elif os.path.exists(target) and not os.path.isfile(target):
            refused.append(f"{path}: its output {target} is taken by a folder (or a device)")
        else:
            jobs.append((path, target))
    return jobs, refused


def _size_batches(jobs, rgbs, limit, batch_size: int, unreadable: list):
    """Yield (shape, [(rgb, output)]) of images of one size: a size's batch once it holds limit(h, w)
    images, the largest waiting one once batch_size images wait in all (memory stays bounded however
    many sizes there are), the rest at the end. Unreadable files are appended to unreadable."""
    pending = {}  # (H, W) -> [(rgb, output)]
    for (_, target), rgb in zip(jobs, rgbs):
        if isinstance(rgb, images.ImageError):
            unreadable.append(str(rgb))
            continue
        shape = rgb.shape[:2]
        pending.setdefault(shape, []).append((rgb, target))
        if len(pending[shape]) >= limit(*shape):
            yield shape, pending.pop(shape)
        elif sum(map(len, pending.values())) >= batch_size:
            largest = max(pending, key=lambda s: len(pending[s]))
            yield largest, pending.pop(largest)
    for shape in list(pending):
        yield shape, pending.pop(shape)


def _read_ahead(pool, paths):
    """Each path's image (uint8 RGB) or its ImageError, in order, IO_AHEAD decoded in advance."""
    futures = collections.deque()
    for path in paths:
        futures.append(pool.submit(_read, path))
        if len(futures) > IO_AHEAD:
            yield futures.popleft().result()
    while futures:
        yield futures.popleft().result()


def _read(path):
    try:
        return images.read_image(path)
    except images.ImageError as error:
        return error


def _write(rgb, target) -> str | None:
    """Write one output; what went wrong (a full disk, a folder in the way), or None."""
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        images.write_png(rgb, target)
    except (OSError, UserError) as error:
        return f"{target}: cannot write it ({getattr(error, 'strerror', None) or error})"
    return None
