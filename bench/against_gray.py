"""Is a trained run really closer to the truth than leaving the image gray? Per-image CIEDE2000 (the
input's L with the run's a and b, as test_eval.py --test-input colourises) minus gray's, on
bench/quality.py's test images: the mean difference, its standard error, and the share of images
where the run is closer.

    python bench/against_gray.py [--runs bench/results/quality/runs/unet-ab ...] [--json OUT]
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import quality  # noqa: E402  (its test images, and colorgan on the path)
from colorgan import color, evaluation, inference  # noqa: E402


def per_image_delta_e(batches, colorize) -> np.ndarray:
    return np.concatenate([evaluation.image_metrics(real, colorize(gray), 2.0)["delta_e"] for gray, real in batches])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=sorted(glob.glob(os.path.join(quality.ROOT, "bench", "results",
                                                                                  "quality", "runs", "*"))))
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--dataset-path", default=os.path.join(quality.ROOT, "..", "shared", "data", "cifar10"))
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    batches, _ = quality.load_test(args)
    gray = per_image_delta_e(batches, inference.gray_to_rgb)
    print(f"{len(gray)} test images; gray: mean CIEDE2000 {gray.mean():.2f}\n"
          "| run | mean dE00 | minus gray | standard error | closer than gray on |\n|---|---|---|---|---|")
    rows = []
    for run in args.runs:
        generator, config = inference.load_run(run)
        mine = per_image_delta_e(batches, lambda g: color.to_uint8(inference.colorize_batch(generator, config, g, True)))
        difference = mine - gray
        rows.append(dict(run=os.path.basename(os.path.normpath(run)), mean=float(mine.mean()),
                         minus_gray=float(difference.mean()),
                         standard_error=float(difference.std(ddof=1) / np.sqrt(len(difference))),
                         closer_share=float((difference < 0).mean())))
        r = rows[-1]
        print(f"| {r['run']} | {r['mean']:.2f} | {r['minus_gray']:+.2f} | "
              f"{r['standard_error']:.2f} | {r['closer_share']:.0%} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(test_images=len(gray), gray_mean=float(gray.mean()), runs=rows), f, indent=2)


if __name__ == "__main__":
    main()
