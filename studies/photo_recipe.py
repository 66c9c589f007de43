"""The photo recipe at equal CPU: variants of the MiniPlaces model trained in turns, each to the same
CPU-minutes at every point, their generators kept at each point for measuring.

    python -m studies.photo_recipe train --dataset-path DIR --out OUT [--points 10 20 40] [--methods ...]
    python -m studies.photo_recipe long --methods NAME --dataset-path DIR --out OUT --points 100 200 400
    python -m studies.photo_recipe measure --dataset-path DIR --out OUT [--test-images 2000]

train: each method ("NAME=train.py flags") advances to the next point of CPU-minutes before any goes
further, so that stopping at any time leaves comparable points; the same command again continues
from the checkpoints. A point's steps come from the method's CPU per step measured so far (the first
from FIRST_GUESS), and the CPU-minutes it really took are recorded: OUT/spent.json. Each point's
exported generator (float32, BatchNorm re-estimated) is copied to OUT/points/NAME/cpuMMM/ with its
config.json, a run that test_eval.py can load.

long: one method trained on, resumably, to points counted in thousands of images (imgNNNNk/).

measure: every point's generator on the same test images spread over MiniPlaces val, the input's L
kept: CIEDE2000 paired against gray (mean and standard error), colourfulness against the truth's,
and the scene network's FID, scene accuracy, C2ST and fooled where it has been trained
(colorgan/assets). Writes OUT/photo_recipe.json and .md and a PNG per metric against CPU-minutes.
"""
import argparse
import gc
import json
import math
import os
import shlex
import shutil
import time

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
import keras
import numpy as np
import tensorflow as tf

from colorgan import color, config as cfg, data, evaluation, features, files, inference, metrics, plots, sources
from colorgan import training

COMMON = ("--dataset miniplaces --generator-output ab --ema 0.995 --batch-size 16 "
          # the paper's decay per image, as the CIFAR recipe counts it: tenfold per 1.28 million images
          "--lr-decay-steps 80000")
METHODS = {
    "w50-l1-100": "--width 0.5 --l1-weight 100",
    "w50-l1-300": "--width 0.5 --l1-weight 300",
    "w25-l1-100": "--width 0.25 --l1-weight 100",
}
# CPU-seconds per step of batch 16 before a method has measured its own (2-core Zen 5, bfloat16)
FIRST_GUESS = {"0.5": 1.0, "0.25": 0.4}


def parse_methods(items):
    methods = {}
    for item in items:
        name, sep, flags = item.partition("=")
        methods[name] = shlex.split(COMMON) + shlex.split(flags if sep else METHODS[name])
    return methods


def method_config(args, name, flags, steps):
    return cfg.parse_args([*flags, "--dataset-path", args.dataset_path, "--name", name,
                           "--checkpoints-path", os.path.join(args.out, "runs"), "--max-steps", str(steps),
                           "--validate", "false", "--keep-checkpoints", "1", "--save-interval", "250",
                           "--sample-interval", "1000000", "--log-interval", "50"])


def trained_steps(config):
    latest = tf.train.latest_checkpoint(os.path.join(config.run_dir, "checkpoints"))
    return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE")) if latest else 0


def advance(args, name: str, flags: list, steps: int, label: str, spent: dict) -> dict:
    """Train (or resume) one method to steps iterations and keep its exported generator as
    points/name/label; returns the point's record (steps, images, CPU and wall minutes so far)."""
    spent_path = os.path.join(args.out, "spent.json")
    mine = spent.setdefault(name, {"cpu_seconds": 0.0, "wall_seconds": 0.0, "steps": 0, "points": {}})
    config = method_config(args, name, flags, steps)
    cpu, wall = time.process_time(), time.perf_counter()
    training.train(config)
    mine["cpu_seconds"] += time.process_time() - cpu
    mine["wall_seconds"] += time.perf_counter() - wall
    mine["steps"] = trained_steps(config)
    keras.backend.clear_session()
    gc.collect()
    if mine["steps"] < steps:  # Ctrl-C or SIGTERM: keep the CPU spent, measure nothing
        files.write_text(spent_path, json.dumps(spent, indent=1))
        raise SystemExit(f"{name} stopped at step {mine['steps']} of {steps}; run again to continue")
    target = os.path.join(args.out, "points", name, label)
    os.makedirs(target, exist_ok=True)
    for file in ("generator.keras", "config.json"):
        shutil.copy2(os.path.join(config.run_dir, file), os.path.join(target, file))
    mine["points"][label] = {"steps": mine["steps"], "images": mine["steps"] * config.batch_size,
                             "cpu_minutes": round(mine["cpu_seconds"] / 60, 2),
                             "wall_minutes": round(mine["wall_seconds"] / 60, 2)}
    files.write_text(spent_path, json.dumps(spent, indent=1))
    print(f"== {name} at {label}: {mine['points'][label]}", flush=True)
    return mine["points"][label]


def spent_so_far(args) -> dict:
    path = os.path.join(args.out, "spent.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def label_of(key: str) -> str:
    """A point's folder: cpuMMM (equal CPU-minutes) or imgNNNNk (images, a long run)."""
    return key if not key.isdigit() else f"cpu{int(key):03d}"


def train(args):
    """Every method to each point of CPU-minutes in turn."""
    methods, spent = parse_methods(args.methods), spent_so_far(args)
    for point in args.points:
        for name, flags in methods.items():
            mine = spent.get(name, {"cpu_seconds": 0.0, "steps": 0, "points": {}})
            if any(label_of(k) == f"cpu{point:03d}" for k in mine["points"]):
                continue
            width = method_config(args, name, flags, 1).width
            per_step = mine["cpu_seconds"] / mine["steps"] if mine["steps"] else FIRST_GUESS.get(f"{width:g}", 1.0)
            advance(args, name, flags, max(mine["steps"] + 1, round(point * 60 / per_step)), f"cpu{point:03d}", spent)


def long(args):
    """One method on to points counted in images (--points in thousands), resumable."""
    (name, flags), = parse_methods(args.methods).items()
    spent = spent_so_far(args)
    batch_size = method_config(args, name, flags, 1).batch_size
    for thousands in args.points:
        label = f"img{thousands:04d}k"
        if label not in spent.get(name, {}).get("points", {}):
            advance(args, name, flags, math.ceil(thousands * 1000 / batch_size), label, spent)


def load_test(args):
    """The test images (spread over MiniPlaces val) as batches of (normalised gray, 8-bit RGB), their
    labels, and the scene network's view of the truth."""
    config = cfg.make_config(dataset="miniplaces", dataset_path=args.dataset_path, batch_size=100)
    source = sources.spread(sources.load_source("miniplaces", args.dataset_path, "test"), args.test_images)
    batches, labels = [], []
    for batch in data.make_dataset(config, "test", source=source):
        batches.append((batch["gray"], batch["rgb"].numpy()))
        labels.append(source.labels[np.asarray(batch["index"])])
    return batches, np.concatenate(labels)


def per_image(batches, colorize, scenes: bool) -> dict:
    """Per-image CIEDE2000 and colourfulness, and the scene network's logits and features."""
    out = {"delta_e": [], "colourfulness": [], "logits": [], "features": []}
    for gray, real in batches:
        fake = colorize(gray)
        values = evaluation.image_metrics(real, fake, 2.0)
        out["delta_e"].append(values["delta_e"]), out["colourfulness"].append(values["colourfulness"])
        if scenes:
            logits, feats = features.logits_and_features(fake, "scenes")
            out["logits"].append(logits), out["features"].append(feats)
    return {k: np.concatenate(v) if v else None for k, v in out.items()}


def paired(mine, other) -> tuple[float, float]:
    """Mean of the per-image differences and its standard error."""
    difference = np.asarray(mine, np.float64) - other
    return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))


def figures(seen, gray, truth, labels) -> dict:
    row = {"delta_e": float(seen["delta_e"].mean()),
           "colourfulness_ratio": float(seen["colourfulness"].mean() / truth["colourfulness"].mean())}
    row["delta_e_vs_gray"], row["delta_e_vs_gray_se"] = paired(seen["delta_e"], gray["delta_e"])
    if seen["logits"] is not None:
        right = np.argmax(seen["logits"], -1) == labels
        row |= evaluation.feature_metrics(seen, truth, labels, "scenes")
        row["scene_acc_vs_gray"], row["scene_acc_vs_gray_se"] = paired(right, np.argmax(gray["logits"], -1) == labels)
    return row


def measure(args):
    scenes = os.path.isfile(features.NETWORKS["scenes"].weights)
    if not scenes:
        print("note: no scene network yet (python -m colorgan.features --network scenes): per-pixel figures only")
    batches, labels = load_test(args)
    truth = {"colourfulness": np.concatenate([np.asarray(metrics.colourfulness(real)) for _, real in batches])}
    if scenes:
        logits, feats = zip(*(features.logits_and_features(real, "scenes") for _, real in batches))
        truth |= {"logits": np.concatenate(logits), "features": np.concatenate(feats)}
    gray = per_image(batches, inference.gray_to_rgb, scenes)
    results = {"test_images": len(labels), "dataset": args.dataset_path, "host": host(), "rows": []}
    results["gray"] = figures(gray, gray, truth, labels)
    if scenes:
        results["truth"] = evaluation.feature_metrics(*evaluation.halves(truth), None, "scenes")
        results["truth"]["class_acc"] = float(np.mean(np.argmax(truth["logits"], -1) == labels))
    spent = json.load(open(os.path.join(args.out, "spent.json")))
    for name, mine in spent.items():
        for point, info in sorted(mine["points"].items(), key=lambda item: item[1]["steps"]):
            if args.only and label_of(point) not in args.only:
                continue
            colorizer = inference.load(os.path.join(args.out, "points", name, label_of(point)))
            colorize = lambda gray: color.to_uint8(colorizer.batch(gray, keep_l=True)).numpy()  # noqa: E731
            row = {"method": name, "point": label_of(point), **info, **figures(per_image(batches, colorize, scenes),
                                                                              gray, truth, labels)}
            results["rows"].append(row)
            judged = (f", FID-scene {row['fid_scenes']:.2f}, C2ST {row['c2st']:.3f}, scene acc {row['class_acc']:.3f}"
                      if scenes else "")
            print(f"{name} @ {label_of(point)} ({info['images']:,} images, {info['cpu_minutes']:.0f} CPU-min): "
                  f"dE00 {row['delta_e']:.2f} "
                  f"({row['delta_e_vs_gray']:+.2f} +- {row['delta_e_vs_gray_se']:.2f} vs gray), colourful "
                  f"{row['colourfulness_ratio']:.2f}{judged}", flush=True)
            keras.backend.clear_session()
    files.write_text(os.path.join(args.out, "photo_recipe.json"), json.dumps(results, indent=1))
    report(args, results)


def host() -> str:
    first_cpu = open("/proc/cpuinfo").read().split("\n\n")[0]
    info = dict(line.split(":", 1) for line in first_cpu.splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    return (f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}), {os.cpu_count()} cores")


PLOTS = [("delta_e_vs_gray", "CIEDE2000 minus gray's, paired (lower is better; 0: as gray)"),
         ("colourfulness_ratio", "colourfulness / the truth's (1 is the truth)"),
         ("fid_scenes", "FID in the scene network's features (lower is better)"),
         ("c2st", "C2ST accuracy, true vs colourised (0.5 is best)"),
         ("scene_acc_vs_gray", "scene accuracy minus gray's, paired (higher is better)")]


def report(args, results):
    rows, gray = results["rows"], results["gray"]
    keys = [k for k, _ in PLOTS if k in gray or any(k in r for r in rows)]
    lines = [f"MiniPlaces val, {results['test_images']} photos spread over it, the input's L kept; host: "
             f"{results['host']}; every method: `{COMMON}`", "",
             "| method | CPU-min | images | dE00 | " + " | ".join(keys) + " |", "|---" * (4 + len(keys)) + "|"]
    cell = lambda r, k: (f"{r[k]:+.2f} ± {r[k + '_se']:.2f}" if k + "_se" in r else f"{r[k]:.3f}") if k in r else ""  # noqa: E731
    for r in rows:
        lines.append(f"| {r['method']} | {r['cpu_minutes']:.1f} | {r['images']:,} | {r['delta_e']:.2f} | "
                     + " | ".join(cell(r, k) for k in keys) + " |")
    lines.append(f"| gray | | | {gray['delta_e']:.2f} | " + " | ".join(cell(gray, k) for k in keys) + " |")
    if "truth" in results:
        lines.append("| truth (two halves) | | | | " + " | ".join(cell(results["truth"], k) for k in keys) + " |")
    files.write_text(os.path.join(args.out, "photo_recipe.md"), "\n".join(lines) + "\n")
    fig, axes = plots.plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8))
    for ax, key in zip(np.atleast_1d(axes), keys):
        for name in dict.fromkeys(r["method"] for r in rows):
            mine = sorted((r["cpu_minutes"], r[key]) for r in rows if r["method"] == name and key in r)
            ax.plot(*zip(*mine), marker="o", label=name)
        if key in gray and not key.endswith("vs_gray"):
            ax.axhline(gray[key], color="gray", linestyle="--", label="gray")
        if key.endswith("vs_gray"):
            ax.axhline(0, color="gray", linestyle="--", label="gray")
        ax.set_title(dict(PLOTS)[key], fontsize=8)
        ax.set_xlabel("CPU-minutes of training")
        ax.grid(True, alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    plots.save_figure(fig, os.path.join(args.out, "photo_recipe.png"))
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("train", "long", "measure"))
    parser.add_argument("--dataset-path", required=True, help="MiniPlaces (its official layout)")
    parser.add_argument("--out", required=True, help="folder for the runs, points and results (outside the repo)")
    parser.add_argument("--points", type=int, nargs="+", default=[10, 20, 40],
                        help="train: CPU-minutes per method; long: thousands of images")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="names above, or NAME=FLAGS")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--only", nargs="+", default=[], help="measure: only these points (e.g. img0200k)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    {"train": train, "long": long, "measure": measure}[args.mode](args)


if __name__ == "__main__":
    main()
