"""Quality against compute: methods trained on CIFAR-10 at an equal budget of training images seen,
evaluated at doubling points along the way, with the gray baseline.

    python -m studies.quality [--budget-images 92000] [--methods gan-lab unet-lab ... "NAME=FLAGS"]
        [--test-images 2000] [--dataset-path CIFAR10] [--out studies/results/quality]

A method is a name and its train.py flags: the four defaults are the paper's GAN and its U-Net
baseline, each predicting L, a, b (the authors) and a, b (the input's L kept); add your own as
"NAME=--gan-loss lsgan --generator-output ab". The methods advance in turns, each to the next point
(1k, 2k, 4k ... images, then the budget) before any goes further, so that stopping at any time
leaves comparable points; running the same command again continues from the checkpoints.

Each point is measured on the same test images, spread evenly over the test split (all classes), in
two settings: the model's own output (the paper's protocol; acc@2 the headline) and the input's own
L with the model's a and b (what colourising a photo gives a user; CIEDE2000 the headline). Writes
quality.json, quality.md, a PNG per headline metric against images seen, and a grid of the same
test images colourised by every method at each point.
"""
import argparse
import gc
import json
import math
import os
import shlex
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
import keras
import tensorflow as tf

from colorgan import color, config as cfg, data, evaluation, features, inference, metrics, plots, sources, training

METHODS = {
    "gan-lab": "",
    "gan-ab": "--generator-output ab",
    "unet-lab": "--model unet",
    "unet-ab": "--model unet --generator-output ab",
}
# (setting, metric key, label, better): the headline metrics, one PNG each
HEADLINES = [("own_l", "acc@2", "acc@2, model's own L (the paper's protocol)", "higher"),
             ("input_l", "delta_e", "CIEDE2000, input's L (what a user gets)", "lower"),
             ("input_l", "ab_error", "mean |da|, |db|, input's L", "lower"),
             ("input_l", "colourfulness_ratio", "colourfulness / ground truth's, input's L", "1 is the truth"),
             ("input_l", "fid_c10", "FID-C10 (CIFAR-10 network's features), input's L", "lower"),
             ("input_l", "class_acc", "class accuracy of the CIFAR-10 network, input's L", "higher"),
             ("input_l", "c2st", "C2ST accuracy, true vs colourised, input's L", "0.5 is best")]
GRID_IMAGES = 10
# Points measured before export re-estimated BatchNorm statistics (training.export) used the
# moving averages; they stay in the report, marked, beside the re-estimated one where a checkpoint allowed.
REESTIMATED, MOVING_AVERAGES = "re-estimated", "moving averages"


def points(budget: int, first: int = 1000) -> list[int]:
    """Images seen at each evaluation: first, twice first, four times ... below the budget, then the budget."""
    marks = [first * 2 ** k for k in range(max(0, math.ceil(math.log2(max(budget, 1) / first))))]
    return [m for m in marks if m < budget] + [budget]


def parse_methods(items: list[str]) -> dict:
    methods = {}
    for item in items:
        name, sep, flags = item.partition("=")
        if not sep and name not in METHODS:
            raise SystemExit(f"unknown method {name!r}: one of {sorted(METHODS)} or NAME=FLAGS")
        methods[name] = shlex.split(flags if sep else METHODS[name])
    return methods


def method_config(args, name: str, flags: list[str], steps: int) -> cfg.Config:
    return cfg.parse_args(["--dataset", "cifar10", "--dataset-path", args.dataset_path, "--name", name,
                           "--checkpoints-path", os.path.join(args.out, "runs"), "--batch-size", str(args.batch_size),
                           "--max-steps", str(steps), "--validate", "false", "--keep-checkpoints", "1",
                           "--save-interval", "100", "--sample-interval", "1000000", "--log-interval", "20",
                           *shlex.split(args.train_flags), *flags])


def trained_steps(config: cfg.Config) -> int:
    latest = tf.train.latest_checkpoint(os.path.join(config.run_dir, "checkpoints"))
    return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE")) if latest else 0


def load_test(args) -> tuple[list, np.ndarray, dict]:
    """The fixed test images as batches of (normalised gray, 8-bit RGB), the grid's picks, and the
    CIFAR-10 network's view of the true images ({"features", "logits"}) with their labels."""
    config = cfg.make_config(dataset="cifar10", dataset_path=args.dataset_path, batch_size=250)
    source = sources.spread(sources.load_source(config.dataset, config.dataset_path, "test", config.seed),
                            args.test_images)
    batches, truth = [], {"features": [], "logits": [], "labels": []}
    for batch in data.make_dataset(config, "test", source=source):
        gray, real, index = batch["gray"], batch["rgb"], batch["index"]
        batches.append((gray, real))
        logits, feats = features.logits_and_features(real)
        truth["features"].append(feats), truth["logits"].append(logits)
        truth["labels"].append(source.labels[np.asarray(index)] if source.labels is not None else [])
    count = sum(len(gray) for gray, _ in batches)
    grid = np.arange(GRID_IMAGES) * count // GRID_IMAGES  # every class of a class-ordered folder
    return batches, grid, {k: np.concatenate(v) for k, v in truth.items()}


def measure(batches, colorize, truth: float, reference: dict) -> dict:
    """Mean of every test_eval.py metric over the batches, colourised by colorize(gray), and the
    CIFAR-10 network's FID-C10, class accuracy and C2ST against the reference (load_test)."""
    per_image, seen = {}, {"features": [], "logits": []}
    for gray, real in batches:
        fake = colorize(gray)
        for k, v in evaluation.image_metrics(real, fake, 2.0).items():
            per_image.setdefault(k, []).append(v)
        logits, feats = features.logits_and_features(fake)
        seen["features"].append(feats), seen["logits"].append(logits)
    row = {k: float(np.mean(np.concatenate(v))) for k, v in per_image.items()}
    row["ab_error"] = (row["ab_error_a"] + row["ab_error_b"]) / 2
    row["colourfulness_ratio"] = row["colourfulness"] / truth
    labels = reference["labels"] if len(reference["labels"]) else None
    return row | evaluation.feature_metrics({k: np.concatenate(v) for k, v in seen.items()}, reference, labels)


def train_to(args, name: str, flags: list[str], steps: int, results: dict) -> dict:
    """Train (or resume) one method up to steps iterations; returns its config."""
    config = method_config(args, name, flags, steps)
    spent = results["spent"].setdefault(name, {"cpu_seconds": 0.0, "wall_seconds": 0.0})
    if trained_steps(config) < steps:
        cpu, wall = time.process_time(), time.perf_counter()
        training.train(config)
        spent["cpu_seconds"] += time.process_time() - cpu
        spent["wall_seconds"] += time.perf_counter() - wall
        keras.backend.clear_session()
        gc.collect()
        if trained_steps(config) < steps:  # Ctrl-C or SIGTERM: keep the CPU time spent so far
            write_report(args, results)
            raise SystemExit(f"{name} stopped at step {trained_steps(config)} of {steps}; run again to continue")
    return config


def write_report(args, results: dict) -> None:
    rows = results["points"]
    with open(os.path.join(args.out, "quality.json.tmp"), "w") as f:
        json.dump(results, f, indent=2)
    os.replace(os.path.join(args.out, "quality.json.tmp"), os.path.join(args.out, "quality.json"))
    gray = results["gray"]
    lines = [f"CIFAR-10 ({results['dataset']}), batch {args.batch_size}; {results['test_images']} test images "
             f"spread over the test split; host: {results['host']}; train.py flags for all: "
             f"`{results['train_flags'] or 'none'}`", "",
             "| method | images | BatchNorm | G updates | CPU-min | acc@2 own L | dE00 own L "
             "| acc@2 input L | dE00 input L "
             "| \\|da\\| | \\|db\\| | colourful ratio | MAE RGB | FID-C10 | class acc | C2ST | fooled |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    extra = lambda i: " | ".join("" if k not in i else f"{i[k]:.3f}" if k != "fid_c10" and k != "mae_rgb"  # noqa: E731
                                 else f"{i[k]:.2f}" for k in ("mae_rgb", "fid_c10", "class_acc", "c2st", "fooled"))
    for r in sorted(rows, key=lambda r: (r["method"], r["images"], r.get("batchnorm", ""))):
        o, i = r["own_l"], r["input_l"]
        lines.append(f"| {r['method']} | {r['images']:,} | {r.get('batchnorm', MOVING_AVERAGES)} | "
                     f"{r['generator_updates']:,} | {r['cpu_minutes']:.1f} | "
                     f"{o['acc@2']:.3f} | {o['delta_e']:.2f} | {i['acc@2']:.3f} | {i['delta_e']:.2f} | "
                     f"{i['ab_error_a']:.2f} | {i['ab_error_b']:.2f} | {i['colourfulness_ratio']:.2f} | {extra(i)} |")
    lines.append(f"| gray baseline | | | | | {gray['acc@2']:.3f} | {gray['delta_e']:.2f} | {gray['acc@2']:.3f} | "
                 f"{gray['delta_e']:.2f} | {gray['ab_error_a']:.2f} | {gray['ab_error_b']:.2f} | "
                 f"{gray['colourfulness_ratio']:.3f} | {extra(gray)} |")
    truth = results.get("truth", {})
    lines.append(f"| ground truth (two halves) | | | | | | | | | | | 1 | {extra(truth)} |")
    with open(os.path.join(args.out, "quality.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for setting, key, label, better in HEADLINES:
        fig, ax = plots.plt.subplots(figsize=(9.6, 4.8))
        for n, method in enumerate(results["methods"]):
            # tab20's dark shades, then its light ones, then the next marker: 140 methods look apart
            colour, marker = plots.plt.cm.tab20((2 * n + n // 10) % 20), "osD^v<>"[n // 20 % 7]
            for bn, style in ((MOVING_AVERAGES, "-"), (REESTIMATED, "--")):
                mine = sorted((r["images"], r[setting][key]) for r in rows
                              if r["method"] == method and r.get("batchnorm", MOVING_AVERAGES) == bn)
                if mine:
                    ax.plot(*zip(*mine), style, marker=marker, markersize=4, color=colour,
                            label=method if bn == MOVING_AVERAGES else f"{method}, BatchNorm {bn}")
        ax.axhline(gray[key], color="gray", linestyle="--", label="gray baseline")
        if key == "colourfulness_ratio":
            ax.axhline(1.0, color="black", linewidth=0.8, label="ground truth")
        ax.set_xscale("log")
        ax.set_xlabel("training images seen")
        ax.set_title(f"{label} ({better} is better)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot, not over points
        fig.tight_layout()
        plots.save_figure(fig, os.path.join(args.out, f"{setting}_{key.replace('@', '')}.png"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-images", type=int, default=92000, help="training images per method")
    parser.add_argument("--first-point", type=int, default=1000, help="images at the first evaluation; then doubling")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="names above, or NAME=FLAGS")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--dataset-path", default=os.path.join(ROOT, "..", "shared", "data", "cifar10"))
    parser.add_argument("--batch-size", type=int, default=128, help="the cifar10 preset's")
    parser.add_argument("--train-flags", default="", help="train.py flags for every method, e.g. "
                        "\"--mixed-precision bfloat16\" (a method's own flags win)")
    parser.add_argument("--out", default=os.path.join(ROOT, "studies", "results", "quality"))
    args = parser.parse_args()
    if args.budget_images < args.batch_size or args.test_images < GRID_IMAGES:
        parser.error(f"--budget-images must be at least --batch-size; --test-images at least {GRID_IMAGES}")
    methods = parse_methods(args.methods)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "quality.json")
    results = json.load(open(path)) if os.path.exists(path) else {"points": [], "spent": {}}
    batches, grid, reference = load_test(args)
    reals = np.concatenate([real.numpy() for _, real in batches])
    truth = float(np.mean(metrics.colourfulness(reals)))
    gray = measure(batches, inference.gray_to_rgb, truth, reference)
    results["truth"] = evaluation.feature_metrics(*evaluation.halves(reference), None)
    if len(reference["labels"]):
        results["truth"]["class_acc"] = float(np.mean(np.argmax(reference["logits"], -1) == reference["labels"]))
    grid_gray = tf.gather(tf.concat([g for g, _ in batches], 0), grid)  # (GRID_IMAGES, 32, 32, 1)
    cpuinfo = dict(line.split(":", 1) for line in open("/proc/cpuinfo").read().split("\n\n")[0].splitlines()
                   if ":" in line)
    cpuinfo = {k.strip(): v.strip() for k, v in cpuinfo.items()}
    host = (f"{cpuinfo.get('model name', 'unknown CPU')} (family {cpuinfo.get('cpu family', '?')} model "
            f"{cpuinfo.get('model', '?')}), {os.cpu_count()} cores")
    results.update(dataset=args.dataset_path, test_images=len(reals), gray=gray, ground_truth_colourfulness=truth,
                   host=host, batch_size=args.batch_size, train_flags=args.train_flags, methods=list(dict.fromkeys(
                       [*results.get("methods", []), *methods])))
    print(f"{len(reals)} test images; gray baseline: acc@2 {gray['acc@2']:.3f}, dE00 {gray['delta_e']:.2f}")
    batch_sizes = {name: method_config(args, name, flags, 1).batch_size for name, flags in methods.items()}
    for images in points(args.budget_images, args.first_point):
        column = {"gray": inference.gray_to_rgb(grid_gray), "original": reals[grid]}
        for name, flags in methods.items():
            steps = math.ceil(images / batch_sizes[name])  # a method's own --batch-size: more steps, same images
            config = train_to(args, name, flags, steps, results)
            if trained_steps(config) != steps:  # an earlier run went past this point: nothing to measure
                continue
            mine = [r for r in results["points"] if r["method"] == name and r["steps"] == steps]
            if mine and not any(r.get("batchnorm") == REESTIMATED for r in mine):
                training.train(config)  # measured before export re-estimated BatchNorm: export again
            colorizer = inference.load(config.run_dir)
            run_config = colorizer.config
            colorize = lambda gray, keep_l: color.to_uint8(colorizer.batch(gray, keep_l))  # noqa: E731
            if not any(r.get("batchnorm") == REESTIMATED for r in mine):
                own = measure(batches, lambda gray: colorize(gray, False), truth, reference)
                user = measure(batches, lambda gray: colorize(gray, True), truth, reference)
                spent = results["spent"][name]
                results["points"].append(dict(
                    method=name, flags=" ".join(flags), steps=steps, images=steps * run_config.batch_size,
                    generator_updates=steps * (1 if run_config.model == "unet" else 2),
                    cpu_minutes=spent["cpu_seconds"] / 60, wall_minutes=spent["wall_seconds"] / 60,
                    batchnorm=REESTIMATED, own_l=own, input_l=user))
                write_report(args, results)
                print(f"{name} at {steps * run_config.batch_size:,} images: acc@2 own L {own['acc@2']:.3f}, "
                      f"dE00 input L {user['delta_e']:.2f} (gray {gray['delta_e']:.2f})", flush=True)
            column[name] = colorize(grid_gray, True).numpy()
        if len(column) < len(methods) + 2:  # some generators are past this point: keep its grid as it was
            continue
        seen = max(math.ceil(images / size) * size for size in batch_sizes.values())  # as the table counts them
        plots.image_grid(column, os.path.join(args.out, "samples", f"images_{seen:07d}.png"),
                         title=f"after {seen:,} training images (input's L)")
    write_report(args, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
