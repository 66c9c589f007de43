"""Colourisation speed and peak memory on this machine: 32x32 batches, whole photos, and a folder
of CIFAR-10 test JPEGs colourised one by one and in batches (test_eval.py --test-input).

    python -m bench.inference [--dataset cifar10] [--repeats 5] [--folder-images 1000] [--json OUT]
    python -m bench.inference --render-sizes --run DIR [--photos BSDS]

Each case runs in its own process so that its peak resident memory is its own. The generator has
random weights: speed and memory do not depend on what it learned. --render-sizes instead compares,
for a trained run, the mean CIEDE2000 on real photos of colourising at full resolution against
colourising at the run's training size (test_eval.py's --render-size).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


BATCHES = {"cifar10": ("batch 128 of 32x32", (128, 32, 32)), "places365": ("batch 16 of 256x256", (16, 256, 256))}
PHOTOS = {"photo 512x512": (1, 512, 512), "photo 2048x1536": (1, 1536, 2048)}
FOLDER = {"folder, one by one, float32": (None, 32, 32), "folder, batched, float32": (None, 32, 32),
          "folder, batched, --mixed-precision auto": (None, 32, 32)}
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def cases(dataset: str) -> dict:
    name, shape = BATCHES[dataset]
    return {name: shape, **PHOTOS, **(FOLDER if dataset == "cifar10" else {})}


def colourise_folder(name: str, generator, cfg, render_size: int, count: int) -> float:
    """Seconds to colourise count CIFAR-10 test JPEGs from a folder into PNG files."""
    import dataclasses
    import tempfile

    from colorgan import folders, images, inference

    paths = images.list_images(os.path.join(SHARED, "cifar10", "test"))
    paths = paths[::max(1, len(paths) // count)][:count]
    with tempfile.TemporaryDirectory() as work:
        folder, out = os.path.join(work, "in"), os.path.join(work, "out")
        os.makedirs(folder)
        for i, path in enumerate(paths):  # links, not copies
            os.symlink(os.path.abspath(path), os.path.join(folder, f"{i:05d}.jpg"))
        start = time.perf_counter()
        if "one by one" in name:  # what test_eval.py did before batching
            for i, path in enumerate(sorted(os.listdir(folder))):
                rgb = images.read_image(os.path.join(folder, path))
                images.write_png(inference.Colorizer(generator, cfg).image(rgb, render_size),
                                 os.path.join(work, f"{i:05d}.png"))
        else:  # float32, or the precision auto picks on this machine (bfloat16 with native bfloat16)
            precision = "auto" if "auto" in name else "off"
            folders.colorize_files(inference.Colorizer(generator, dataclasses.replace(cfg, mixed_precision=precision)),
                                   folder, out, render_size)
        return time.perf_counter() - start


def run_case(name: str, dataset: str, repeats: int, render_size: int, folder_images: int = 0) -> dict:
    import numpy as np

    import colorgan  # noqa: F401
    import tensorflow as tf
    from colorgan import config, inference, models

    cfg = config.make_config(dataset=dataset)
    generator = models.build_generator(dataset)
    colorizer = inference.Colorizer(generator, cfg)
    batch, h, w = cases(dataset)[name]
    rng = np.random.default_rng(0)
    times = []
    if batch is None:  # a folder of files, read and written: timed once, it is long enough
        seconds = colourise_folder(name, generator, cfg, render_size, folder_images)
        return dict(case=name, dataset=dataset, render_size=render_size, seconds=seconds, images=folder_images,
                    images_per_s=folder_images / seconds,
                    peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, repeats=1)
    if batch > 1:  # the evaluation path: a batch of test images through the generator
        gray = tf.constant(rng.uniform(-1, 1, (batch, h, w, 1)), tf.float32)
        work = lambda: colorizer.batch(gray).numpy()  # noqa: E731
    else:  # the photo path: full-resolution L kept, a and b from the generator, gamut fit
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        work = lambda: colorizer.image(rgb, render_size)  # noqa: E731
    work()  # warm-up: traces and allocates
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return dict(case=name, dataset=dataset, render_size=render_size, seconds=seconds, images_per_s=batch / seconds,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, repeats=repeats)


def compare_render_sizes(run: str, photos: str, limit: int) -> list:
    import numpy as np

    import colorgan  # noqa: F401
    from colorgan import images, inference, metrics

    colorizer = inference.load(run)
    cfg = colorizer.config
    paths = images.list_images(photos)[:limit]
    rows = []
    for render in (0, cfg.image_size, 2 * cfg.image_size, 256):
        errors, start = [], time.perf_counter()
        for path in paths:
            rgb = images.read_image(path)
            out = colorizer.image(rgb, render)
            errors.append(float(metrics.mean_delta_e(rgb[None], out[None])[0]))
        rows.append(dict(render_size=render, mean_delta_e=float(np.mean(errors)), photos=len(paths),
                         seconds_per_photo=(time.perf_counter() - start) / len(paths)))
        print(f"| {render or 'full resolution'} | {rows[-1]['mean_delta_e']:.3f} | "
              f"{rows[-1]['seconds_per_photo']:.2f} |", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "places365"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--render-size", type=int, default=None,
                        help="generator size for photos (default: the dataset's image size; 0: full resolution)")
    parser.add_argument("--render-sizes", action="store_true")
    parser.add_argument("--run", default="", help="trained run folder, for --render-sizes")
    parser.add_argument("--photos", default=os.path.join(SHARED, "cbsd68"))
    parser.add_argument("--folder-images", type=int, default=1000, help="CIFAR-10 test JPEGs in the folder cases")
    parser.add_argument("--limit", type=int, default=68, help="photos to use, for --render-sizes")
    args = parser.parse_args()
    render = {"cifar10": 32, "places365": 256}[args.dataset] if args.render_size is None else args.render_size
    if args.case:
        print(json.dumps(run_case(args.case, args.dataset, args.repeats, render, args.folder_images)))
        return
    if args.render_sizes:
        print(f"mean CIEDE2000 of {args.run} on {args.photos}\n| render size | dE00 | s/photo |\n|---|---|---|")
        results = compare_render_sizes(args.run, args.photos, args.limit)
    else:
        print(f"{args.dataset} generator, photos rendered at {render or 'full resolution'}\n"
              "| case | images/s | s/image | peak memory MiB |\n|---|---|---|---|")
        results = []
        for name, shape in cases(args.dataset).items():
            out = subprocess.run([sys.executable, __file__, "--case", name, "--dataset", args.dataset,
                                  "--repeats", str(args.repeats), "--render-size", str(render),
                                  "--folder-images", str(args.folder_images)],
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(row)
            print(f"| {name} | {row['images_per_s']:.2f} | {row['seconds'] / (shape[0] or row['images']):.3f} | "
                  f"{row['peak_rss_mib']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
