"""Colourising the photos of a file or folder into another folder: photos of one size a batch at a
time, decoded ahead and written behind in threads; a file that cannot be read or written is listed."""
import collections
import concurrent.futures
import math
import os
import time

import numpy as np

from colorgan import files, images, progress
from colorgan.config import UserError
from colorgan.inference import MAX_RENDER_PIXELS, Colorizer, render_shape

MAX_BATCH_PIXELS = 4 * 1024 * 1024  # full-resolution pixels colourised at once: bounded memory
IO_THREADS = 2
IO_AHEAD = 16  # images decoded ahead, and written behind, at most (a few: photos can be large)


def colorize_files(colorizer: Colorizer, source: str, destination: str, render_size: int) -> list:
    """Colourise every image below source into destination (same relative names, PNG), photos of
    one size --batch-size at a time; returns the files not colourised, which are listed, not fatal."""
    jobs, failed = plan_outputs(source, destination)
    files.remove_debris(destination, min_age_s=600)  # younger ones may be another job's writes in progress
    colorizer, precision = colorizer.in_precision()
    batch_size = colorizer.config.batch_size
    print(f"colourising {len(jobs)} image(s) in {precision}", flush=True)

    def batch_limit(h, w):  # memory stays bounded at full resolution and in the generator
        rendered = math.prod(render_shape(h, w, render_size))
        return max(1, min(batch_size, MAX_BATCH_PIXELS // (h * w), int(MAX_RENDER_PIXELS // rendered)))

    # Files are decoded ahead and encoded behind in threads (Pillow and file calls release the GIL)
    # while the generator computes: for small images they cost as much as the network.
    pool, writes = concurrent.futures.ThreadPoolExecutor(IO_THREADS), collections.deque()
    unreadable, unwritten = [], []
    written, started, line = 0, time.perf_counter(), progress.Progress()
    try:
        rgbs = _read_ahead(pool, [path for path, _ in jobs])
        for shape, batch in _size_batches(jobs, rgbs, batch_limit, batch_size, unreadable):
            colourised = colorizer.images(np.stack([rgb for rgb, _ in batch]), render_size)
            writes.extend(pool.submit(_write, out, target) for (_, target), out in zip(batch, colourised))
            while writes and (writes[0].done() or len(writes) > IO_AHEAD):
                unwritten += filter(None, [writes.popleft().result()])
            written += len(batch)
            rate = written / (time.perf_counter() - started)
            left = len(jobs) - written - len(unreadable)
            line.show(f"colourised {written}/{len(jobs)} ({shape[1]}x{shape[0]}) | {rate:.1f} img/s | "
                      f"ETA {left / rate:.0f}s", done=left == 0)
        unwritten += filter(None, [write.result() for write in writes])
        line.finish()
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
