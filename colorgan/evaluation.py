"""test_eval.py: the paper's metrics and better ones over a whole test split, baselines side by side,
and colourising your own photos at any resolution (the authors' test.py)."""
import argparse
import json
import math
import os
import time

import numpy as np

import tensorflow as tf

from colorgan import color, data, features, files, folders, inference, metrics, plots, progress, runs, sources
from colorgan.config import RUN_FLAGS, UserError, on_run, parse_command

COLUMNS = [("acc", "acc@eps"), *[(f"acc@{e}", f"acc@{e}") for e in metrics.ACCURACY_EPS], ("ab_error_a", "|da|"),
           ("ab_error_b", "|db|"), ("mae_rgb", "MAE RGB"), ("psnr", "PSNR"), ("ssim", "SSIM"), ("delta_e", "dE00"),
           ("colourfulness", "colourful"), ("colourfulness_ratio", "ratio"), ("fid_c10", "FID-C10"),
           ("fid_scenes", "FID-scene"),
           ("class_acc", "class acc"), ("c2st", "C2ST"), ("fooled", "fooled"), ("fid", "FID")]
TRUTH = "ground truth"  # its row: the floor of each distribution metric (two halves of the true images)


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative (got {value})")
    return value


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--test-input", default="", help="image file or folder to colourise (instead of evaluating)")
    parser.add_argument("--test-output", default="./output", help="folder for colourised images")
    parser.add_argument("--compare", nargs="+", default=[], metavar="DIR",
                        help="more run folders to evaluate on the same images (a row each)")
    parser.add_argument("--json", default="", help="write the table as JSON to this file")
    parser.add_argument("--eval-output", default="", help="folder for the PNGs (default: <run>/eval; for the shipped "
                        "model output/<its name>/eval)")
    parser.add_argument("--fid-weights", default="", help="local InceptionV3 no-top weights file, for FID")
    parser.add_argument("--max-images", type=_not_negative, default=0,
                        help="evaluate only the first N test images (0: all of them)")
    parser.add_argument("--render-size", dest="render", type=_not_negative, default=None,
                        help="colourise photos with the generator at this shorter side, 0 for full "
                             "resolution (default: the model's own, measured on photos, else its --image-size)")


def main(argv=None) -> dict | list:
    """python test_eval.py: the test-split table of a run (and --compare runs), or --test-input."""
    given, args = parse_command(argv, __doc__ + "\n" + runs.WHICH_MODEL, add_flags, RUN_FLAGS)
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):  # before the work
        raise UserError(f"--json {args.json}: its folder does not exist")
    if args.json and os.path.isdir(args.json):
        raise UserError(f"--json {args.json} is a folder: give a file name")
    if args.json:
        files.refuse_special(args.json, "--json")
        files.check_writable(os.path.dirname(os.path.abspath(args.json)), "--json")
    if args.eval_output and os.path.exists(args.eval_output) and not os.path.isdir(args.eval_output):
        raise UserError(f"--eval-output {args.eval_output} is a file: give a folder")
    run_dir, work_dir, which = runs.choose_run(given, photos=bool(args.test_input))
    print(which)
    if args.test_input:  # every output is checked before the work
        files.check_writable(args.test_output, "--test-output")
    else:
        files.check_writable(args.eval_output or os.path.join(work_dir, "eval"), "--eval-output")
    generator, run_config = inference.load_run(run_dir)
    config = on_run(run_config, given, run_dir)
    if args.test_input:
        render = (config.render_size or config.image_size) if args.render is None else args.render
        colorizer = inference.Colorizer(generator, config)
        return folders.colorize_files(colorizer, args.test_input, args.test_output, render)
    run_dirs = [os.path.normpath(run_dir), *map(os.path.normpath, args.compare)]
    if len({os.path.realpath(f) for f in run_dirs}) < len(run_dirs):
        raise UserError("--compare names a run twice (or the evaluated run itself): give each run once")
    names = [os.path.basename(f) for f in run_dirs]
    if len(set(names)) < len(names):  # every run under the default --name is called CGAN: their paths tell them apart
        names = run_dirs
    evaluated = [(names[0], inference.Colorizer(generator, run_config))]
    for name, path in zip(names[1:], args.compare):
        other, other_config = inference.load_run(path)
        if (other_config.dataset, other_config.image_size) != (config.dataset, config.image_size):
            raise UserError(f"{path} was trained on {other_config.dataset} at {other_config.image_size} px; "
                            f"{run_dir} on {config.dataset} at {config.image_size} px: not comparable")
        evaluated.append((name, inference.Colorizer(other, other_config)))
    output = args.eval_output or os.path.join(work_dir, "eval")
    fid = metrics.inception_features(args.fid_weights) if args.fid_weights else None
    if not args.fid_weights:
        print("note: FID needs local InceptionV3 weights (--fid-weights PATH); skipped")
    judge = features.NETWORKS[features.network_for(config.dataset)]
    print(f"note: FID, class acc and C2ST are measured by colorgan's {judge.name} network (trained on "
          f"{judge.dataset}) on images resized to {judge.size}x{judge.size}; class acc only where the test images "
          f"have {judge.dataset}'s labels")
    report = evaluate(evaluated, config, output, args.max_images, fid)
    print_table(report)
    if args.json:
        files.write_text(args.json, json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return report


def image_metrics(real, fake, acc_thresh: float) -> dict:
    """Per-image metrics of one batch of 8-bit sRGB images (bs, H, W, 3)."""
    curve = metrics.accuracy_curve(real, fake, (acc_thresh, *metrics.ACCURACY_EPS))
    ab = np.asarray(metrics.ab_error(real, fake)).reshape(-1, 2)
    values = {"acc": curve[acc_thresh], **{f"acc@{e}": curve[e] for e in metrics.ACCURACY_EPS},
              "ab_error_a": ab[:, 0], "ab_error_b": ab[:, 1], "psnr": metrics.psnr(real, fake),
              "ssim": metrics.ssim(real, fake), "delta_e": metrics.mean_delta_e(real, fake),
              "mae_rgb": metrics.mae_rgb(real, fake),
              "colourfulness": metrics.colourfulness(fake)}
    return {k: np.asarray(v, np.float64).reshape(-1) for k, v in values.items()}


def evaluate(evaluated, config, output: str, max_images: int = 0, fid=None) -> dict:
    """Every metric for each (name, Colorizer) of evaluated, for the gray baseline and (distribution
    metrics) for the truth over the test split (bounded memory)."""
    names = [name for name, _ in evaluated] + ["gray baseline"]
    per_image = {name: {} for name in names}
    inception = {name: [] for name in names + [TRUTH]}
    network = features.network_for(config.dataset)  # the judge follows the test set: objects or scenes
    judged = {name: {"features": [], "logits": []} for name in names + [TRUTH]}  # the judging network's
    real_colourfulness, indices, seen = [], [], 0
    source = sources.load_source(config.dataset, config.dataset_path, "test", config.seed)
    total = min(source.size, max_images) if max_images else source.size
    started, line = time.perf_counter(), progress.Progress()
    for batch in data.make_dataset(config, "test"):
        gray, real, index = batch["gray"], batch["rgb"], batch["index"]
        if max_images:
            gray, real, index = gray[:max_images - seen], real[:max_images - seen], index[:max_images - seen]
        fakes = {name: color.to_uint8(colorizer.batch(gray)) for name, colorizer in evaluated}
        fakes["gray baseline"] = inference.gray_to_rgb(gray)
        for name, fake in [*fakes.items(), (TRUTH, real)]:
            if name != TRUTH:
                for k, v in image_metrics(real, fake, config.acc_thresh).items():
                    per_image[name].setdefault(k, []).append(v)
            logits, feats = features.logits_and_features(fake, network)
            judged[name]["logits"].append(logits), judged[name]["features"].append(feats)
            if fid:
                inception[name].append(fid(fake))
        real_colourfulness.append(np.asarray(metrics.colourfulness(real)))
        indices.append(np.asarray(index))
        seen += len(gray)
        rate = seen / (time.perf_counter() - started)
        line.show(f"evaluated {seen}/{total} images | {rate:.0f} img/s | ETA {(total - seen) / rate:.0f}s",
                  done=seen >= total)
        if seen >= total:
            break
    line.finish()
    if not seen:
        raise UserError(f"{data.describe(config, 'test')}, but none of them could be evaluated")
    real_colourfulness = float(np.mean(np.concatenate(real_colourfulness)))
    # labels the judge knows: CIFAR-10 classes (archives, class folders) or MiniPlaces' scenes
    known = source.labels is not None and config.dataset == features.NETWORKS[network].dataset
    labels = source.labels[np.concatenate(indices)] if known else None
    judged = {name: {k: np.concatenate(v) for k, v in kinds.items()} for name, kinds in judged.items()}
    rows = []
    for name in names:
        values = {k: np.concatenate(v) for k, v in per_image[name].items()}
        row = {"name": name, **{k: float(np.mean(v)) for k, v in values.items()}}
        row["colourfulness_ratio"] = row["colourfulness"] / real_colourfulness
        row |= feature_metrics(judged[name], judged[TRUTH], labels, network)
        if fid:
            row["fid"] = metrics.frechet_distance(np.concatenate(inception[name]), np.concatenate(inception[TRUTH]))
        per_image[name] = values
        rows.append(row)
    rows.append({"name": TRUTH, "colourfulness": real_colourfulness, "colourfulness_ratio": 1.0,
                 **feature_metrics(*halves(judged[TRUTH]), None, network)})
    if labels is not None:
        rows[-1]["class_acc"] = float(np.mean(np.argmax(judged[TRUTH]["logits"], -1) == labels))
    os.makedirs(output, exist_ok=True)
    histogram = plots.delta_e_histogram({n: per_image[n]["delta_e"] for n in names},
                                        os.path.join(output, "delta_e_histogram.png"))
    grid = best_median_worst(evaluated[0], config, per_image[names[0]]["delta_e"],
                             os.path.join(output, "best_median_worst.png"))
    return {"images": seen, "dataset": data.describe(config, "test"), "acc_thresh": config.acc_thresh,
            "feature_network": network,
            "ground_truth_colourfulness": real_colourfulness, "rows": rows,
            "pictures": {"delta_e_histogram": histogram, "best_median_worst": grid}}


def halves(values: dict) -> tuple[dict, dict]:
    """Even and odd images: two halves of one set with the same classes, even in a class-ordered
    folder; the truth against itself gives each distribution metric's floor at this sample size."""
    n = min(len(v) for v in values.values()) // 2 * 2
    return {k: v[:n:2] for k, v in values.items()}, {k: v[1:n:2] for k, v in values.items()}


def feature_metrics(fake: dict, real: dict, labels, network: str = "cifar10") -> dict:
    """FID (fid_c10 or fid_scenes), C2ST (with its standard error and the machine's fooled rate) and,
    with labels, the class accuracy, from a judging network's {"features", "logits"} of paired images."""
    if len(real["features"]) >= 4:
        probe = metrics.c2st(real["features"], fake["features"])
    else:  # a probe cannot be cross-validated on fewer (the truth's halves of --max-images 4, say)
        probe = {"accuracy": math.nan, "stderr": math.nan, "fooled": math.nan}
    values = {features.NETWORKS[network].fid_key: metrics.frechet_distance(fake["features"], real["features"]),
              "c2st": probe["accuracy"],
              "c2st_stderr": probe["stderr"], "fooled": probe["fooled"]}
    if labels is not None:
        values["class_acc"] = float(np.mean(np.argmax(fake["logits"], -1) == labels))
    return values


def best_median_worst(run, config, delta_e: np.ndarray, path: str, per_group: int = 3) -> str:
    """Gray | original | colourised for the lowest, median and highest per-image dE00."""
    name, colorizer = run
    order = np.argsort(delta_e, kind="stable")
    middle = len(order) // 2
    chosen = [*order[:per_group], *order[max(0, middle - per_group // 2):][:per_group], *order[-per_group:]]
    wanted = {int(i): k for k, i in enumerate(chosen)}
    picked, offset = {}, 0
    for batch in data.make_dataset(config, "test"):
        gray, real = batch["gray"], batch["rgb"]
        hits = [i for i in range(len(gray)) if offset + i in wanted]
        if hits:
            fake = color.to_uint8(colorizer.batch(tf.gather(gray, hits))).numpy()
            for n, i in enumerate(hits):
                picked[offset + i] = (inference.gray_to_rgb(gray[i:i + 1])[0], real[i].numpy(), fake[n])
        offset += len(gray)
        if offset > max(wanted):
            break
    rows = [picked[int(i)] for i in chosen]
    labels = ["best"] * per_group + ["median"] * per_group + ["worst"] * per_group
    return plots.sample_grid(*map(np.stack, zip(*rows)), path,
                             title=f"{name}: best, median and worst by dE00 ("
                                   + ", ".join(f"{lab} {delta_e[i]:.1f}" for lab, i in zip(labels, chosen)) + ")")


def print_table(report: dict) -> None:
    print(f"\n{report['dataset']}; {report['images']} images; accuracy at eps = {report['acc_thresh']}; "
          f"judged by the {report.get('feature_network', 'cifar10')} network; "
          f"ground-truth colourfulness {report['ground_truth_colourfulness']:.1f}")
    columns = [(k, title) for k, title in COLUMNS if any(k in row for row in report["rows"])]
    width = max(len(row["name"]) for row in report["rows"]) + 2
    print("run".ljust(width) + "".join(title.rjust(10) for _, title in columns))
    for row in report["rows"]:
        print(row["name"].ljust(width) + "".join(f"{row[k]:10.4f}" if k in row else " " * 10 for k, _ in columns))
    for name, path in report["pictures"].items():
        print(f"{name}: {path}")
