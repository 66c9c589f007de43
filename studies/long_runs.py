"""The long runs side by side against the CIFAR-10 model's goals (docs/results.md): per-pixel
CIEDE2000 minus gray's (paired, with its standard error where studies/against_gray.py measured it),
colourfulness, C2ST and FID-C10 against the images seen, from the quality.json and
against_gray_<N>k.json files that each run's folder keeps.

    python -m studies.long_runs [FOLDER ...] [--out docs/quality/long_runs/curves.png] [--json OUT]
"""
import argparse
import collections
import glob
import json
import os
import re

from studies import quality
from colorgan import plots

LONG_RUNS = os.path.join(quality.ROOT, "docs", "quality", "long_runs")
# (key in a point's input_l, title, the goal: (value, "above" or "below"))
PANELS = (("minus_gray", "CIEDE2000 minus gray's, paired (lower is better; goal: 2 s.e. below 0)", (0.0, "below")),
          ("colourfulness_ratio", "colourfulness / the truth's (1 is the truth)", (0.8, "above")),
          ("c2st", "C2ST accuracy (0.5: indistinguishable from real)", (0.72, "below")),
          ("fid_c10", "FID-C10 (lower is better)", (0.30, "below")))


def read_folder(folder: str) -> list[dict]:
    """One row per measured point (input's L, BatchNorm re-estimated where measured both ways)."""
    results = json.load(open(os.path.join(folder, "quality.json")))
    paired = {}
    for path in glob.glob(os.path.join(folder, "against_gray_*k.json")):
        (run,) = json.load(open(path))["runs"]
        paired[int(re.search(r"against_gray_(\d+)k", path).group(1)) * 1000] = run
    rows = {}
    for point in results["points"]:
        key = (point["method"], point["images"])
        if key in rows and point.get("batchnorm") != quality.REESTIMATED:
            continue
        measured = point["input_l"]
        row = dict(method=point["method"], images=point["images"], cpu_minutes=point["cpu_minutes"],
                   host=results["host"], delta_e=measured["delta_e"],
                   minus_gray=measured["delta_e"] - results["gray"]["delta_e"], minus_gray_stderr=None,
                   **{k: measured[k] for k in ("colourfulness_ratio", "c2st", "c2st_stderr", "fid_c10")})
        if point["images"] in paired:  # the same images, per image: its mean is the table's, with an error bar
            row.update(minus_gray=paired[point["images"]]["minus_gray"],
                       minus_gray_stderr=paired[point["images"]]["standard_error"])
        rows[key] = row
    return sorted(rows.values(), key=lambda r: (r["method"], r["images"]))


def draw(rows: list[dict], path: str) -> str:
    fig, axes = plots.plt.subplots(2, 2, figsize=(12, 8))
    series = list(dict.fromkeys(r["series"] for r in rows))
    for ax, (key, title, (goal, side)) in zip(axes.flat, PANELS):
        for n, name in enumerate(series):
            mine = [r for r in rows if r["series"] == name]
            errors = {"minus_gray": "minus_gray_stderr", "c2st": "c2st_stderr"}.get(key)
            ax.errorbar([r["images"] for r in mine], [r[key] for r in mine],
                        yerr=[(r[errors] or 0.0) if errors else 0.0 for r in mine], marker="o", markersize=4,
                        capsize=3, color=plots.plt.cm.tab10(n), label=name)
        ax.axhline(goal, color="black", linestyle=":", label=f"goal: {side} {goal:g}")
        ax.set_xscale("log")
        if key == "fid_c10":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plots.matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(plots.matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("training images seen")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Long runs on the 1,973 spread CIFAR-10 test images, the input's L kept (the goals dotted)")
    fig.tight_layout()
    return plots.save_figure(fig, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=[os.path.join(LONG_RUNS, name) for name in
                                                       ("", "l1_300", "l1_300_s1", "l1_300_s1_long", "paper_gan")])
    parser.add_argument("--out", default=os.path.join(LONG_RUNS, "curves.png"))
    parser.add_argument("--from-images", type=int, default=16000, help="leave out the first, far-off points")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    per_folder = {folder: read_folder(folder) for folder in args.folders}
    folders = collections.Counter(method for rows in per_folder.values() for method in {r["method"] for r in rows})
    rows = [dict(row, series=row["method"] if folders[row["method"]] == 1 else  # a rerun: its folder tells it apart
                 f"{row['method']} ({os.path.basename(os.path.normpath(folder))})")
            for folder, folder_rows in per_folder.items() for row in folder_rows if row["images"] >= args.from_images]
    print("| run | images | CPU-min | dE00 | minus gray (s.e.) | colourful | C2ST | FID-C10 |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        error = f" ({r['minus_gray_stderr']:.2f})" if r["minus_gray_stderr"] is not None else ""
        print(f"| {r['series']} | {r['images']:,} | {r['cpu_minutes']:.0f} | {r['delta_e']:.2f} | "
              f"{r['minus_gray']:+.2f}{error} | {r['colourfulness_ratio']:.2f} | {r['c2st']:.3f} | "
              f"{r['fid_c10']:.2f} |")
    print(f"wrote {draw(rows, args.out)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
