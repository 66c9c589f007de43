"""Models on real photographs of any size, as `test_eval.py --test-input` colourises them: every
per-image figure, paired against gray and against the first model, at several render sizes.

    python -m studies.photos --photos BSDS --models checkpoints/colorgan-places@64,96,128,192 \
        checkpoints/colorgan-cifar10@32 --out docs/photos/bsds.json [--grid docs/photos/bsds.png]

A model is RUN_DIR@SIZES: the shorter side its generator runs at (0: the photo's own). Each photo is
read at full resolution; its colourisation keeps its own L. Writes the table as JSON and Markdown.
"""
import argparse
import json
import os

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
import numpy as np

from colorgan import evaluation, files, images, inference, metrics, plots

FIGURES = (("delta_e", "CIEDE2000", "lower"), ("mae_rgb", "MAE RGB", "lower"), ("psnr", "PSNR", "higher"),
           ("ssim", "SSIM", "higher"), ("acc", "acc@2", "higher"), ("colourfulness", "colourfulness", "1 is the truth"))


def paired(mine, other) -> tuple[float, float]:
    difference = np.asarray(mine, np.float64) - np.asarray(other, np.float64)
    return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))


def per_photo(photos, colorize) -> dict:
    """Per-photo figures of colorize(rgb) against each photo."""
    values = {}
    for rgb in photos:
        for key, value in evaluation.image_metrics(rgb[None], colorize(rgb)[None], 2.0).items():
            values.setdefault(key, []).append(float(value[0]))
    return {k: np.array(v) for k, v in values.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True, help="a folder of colour photographs")
    parser.add_argument("--models", nargs="+", required=True, help="RUN_DIR@SIZE,SIZE,... (render sizes)")
    parser.add_argument("--out", required=True, help="JSON file (and .md beside it)")
    parser.add_argument("--grid", default="", help="PNG: four photos, gray | each model at its first size | original")
    args = parser.parse_args()
    paths = images.list_images(args.photos)
    photos = [images.read_image(p) for p in paths]
    rows = {"gray": per_photo(photos, inference.grayscale)}
    truth = float(np.mean([float(metrics.colourfulness(rgb[None])[0]) for rgb in photos]))
    shape = max({p.shape for p in photos}, key=lambda s: sum(p.shape == s for p in photos))
    shown = [rgb for rgb in photos if rgb.shape == shape][:4]  # a grid of one orientation
    grid = {"gray input": [inference.grayscale(rgb) for rgb in shown]}
    for item in args.models:
        run_dir, _, sizes = item.partition("@")
        colorizer = inference.load(run_dir)
        for n, size in enumerate(int(s) for s in (sizes or str(colorizer.config.image_size)).split(",")):
            name = f"{'/'.join(os.path.normpath(run_dir).split(os.sep)[-2:])} @ {size or 'full'} px"
            rows[name] = per_photo(photos, lambda rgb: colorizer.image(rgb, size))
            print(f"{name}: dE00 {rows[name]['delta_e'].mean():.2f}", flush=True)
            if n == 0:  # a short title: the columns are narrow
                grid[f"{os.path.basename(os.path.normpath(run_dir))} @ {size or 'full'} px"] = [
                    colorizer.image(rgb, size) for rgb in shown]
    first = next(name for name in rows if name != "gray")
    table = {"photos": args.photos, "count": len(photos), "truth_colourfulness": truth, "rows": {}}
    for name, values in rows.items():
        row = {k: float(values[k].mean()) for k, _, _ in FIGURES}
        row["colourfulness_ratio"] = row["colourfulness"] / truth
        for other in ("gray", first):
            if other != name:
                for k, _, _ in FIGURES:
                    row[f"{k}_vs_{other}"], row[f"{k}_vs_{other}_se"] = paired(values[k], rows[other][k])
        closer = values["delta_e"] < rows["gray"]["delta_e"]
        row["closer_than_gray"] = float(np.mean(closer)) if name != "gray" else None
        table["rows"][name] = row
    files.write_text(args.out, json.dumps(table, indent=1))
    lines = [f"{len(photos)} photos in {args.photos}; each figure the mean per photo, the input's L kept; paired "
             f"differences with their standard errors. Ground truth colourfulness {truth:.1f}.", "",
             "| model | " + " | ".join(label for _, label, _ in FIGURES) + " | dE00 minus gray | closer than gray "
             f"| dE00 minus {first} |", "|---" * (len(FIGURES) + 4) + "|"]
    for name, row in table["rows"].items():
        cells = [f"{row[k]:.3f}" if k in ("ssim", "acc") else f"{row[k]:.2f}" for k, _, _ in FIGURES]
        vs = lambda k: f"{row[k]:+.2f} ± {row[k + '_se']:.2f}" if k in row else ""  # noqa: E731
        closer = "" if row["closer_than_gray"] is None else f"{100 * row['closer_than_gray']:.0f}%"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {vs('delta_e_vs_gray')} | {closer} | "
                     f"{vs('delta_e_vs_' + first)} |")
    files.write_text(os.path.splitext(args.out)[0] + ".md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.grid:
        grid["original"] = shown
        print(f"grid: {plots.image_grid(grid, args.grid, f'{os.path.basename(args.photos)}: gray, models, original')}")


if __name__ == "__main__":
    main()
