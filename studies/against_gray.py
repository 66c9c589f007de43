"""Is a trained run really closer to the truth than leaving the image gray? Per-image CIEDE2000 (the
input's L with the run's a and b, as test_eval.py --test-input colourises) minus gray's, on
studies/quality.py's test images: the mean difference, its standard error, and the share of images
where the run is closer; and, paired the same way, whether colorgan's CIFAR-10 network classifies
each image right in the run's colours and not in gray (the class-accuracy difference and its
standard error).

    python -m studies.against_gray [--runs studies/results/quality/runs/unet-ab ...] [--json OUT]
"""
import argparse
import glob
import json
import os

import numpy as np

from studies import quality
from colorgan import color, evaluation, features, inference


def per_image(batches, colorize, labels) -> tuple[np.ndarray, np.ndarray]:
    """(CIEDE2000, classified right) of each image colourised by colorize."""
    delta_e, right = [], []
    for gray, real in batches:
        fake = colorize(gray)
        delta_e.append(evaluation.image_metrics(real, fake, 2.0)["delta_e"])
        right.append(np.argmax(features.logits_and_features(fake)[0], -1))
    return np.concatenate(delta_e), np.concatenate(right) == labels


def paired(mine: np.ndarray, gray: np.ndarray) -> tuple[float, float]:
    difference = mine.astype(np.float64) - gray
    return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=sorted(glob.glob(os.path.join(quality.ROOT, "studies", "results",
                                                                                  "quality", "runs", "*"))))
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--dataset-path", default=os.path.join(quality.ROOT, "..", "shared", "data", "cifar10"))
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    batches, _, reference = quality.load_test(args)
    gray, gray_right = per_image(batches, inference.gray_to_rgb, reference["labels"])
    print(f"{len(gray)} test images; gray: mean CIEDE2000 {gray.mean():.2f}, class accuracy {gray_right.mean():.3f}\n"
          "| run | mean dE00 | minus gray | standard error | closer than gray on | class acc | minus gray | "
          "standard error |\n|---|---|---|---|---|---|---|---|")
    rows = []
    for run in args.runs:
        colorizer = inference.load(run)
        mine, right = per_image(batches, lambda g: color.to_uint8(colorizer.batch(g, True)), reference["labels"])
        (minus_gray, error), (acc_gain, acc_error) = paired(mine, gray), paired(right, gray_right)
        rows.append(dict(run=os.path.basename(os.path.normpath(run)), mean=float(mine.mean()), minus_gray=minus_gray,
                         standard_error=error, closer_share=float((mine < gray).mean()), class_acc=float(right.mean()),
                         class_acc_minus_gray=acc_gain, class_acc_standard_error=acc_error))
        r = rows[-1]
        print(f"| {r['run']} | {r['mean']:.2f} | {r['minus_gray']:+.2f} | {r['standard_error']:.2f} | "
              f"{r['closer_share']:.0%} | {r['class_acc']:.3f} | {acc_gain:+.3f} | {acc_error:.3f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(test_images=len(gray), gray_mean=float(gray.mean()), gray_class_acc=float(gray_right.mean()),
                           runs=rows), f, indent=2)


if __name__ == "__main__":
    main()
