"""Images/s of the training input pipeline (read, crop, flip, batch, Lab), without a model.

    python -m bench.data_pipeline --dataset-path CIFAR10 [--batch-size 128]
        [--image-size N] [--images 20000] [--passes 3] [--json OUT]

Prints a table and writes JSON: the median of --passes timed passes after one warm-up pass.
"""
import argparse
import json
import os
import statistics
import time

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
import tensorflow as tf

from colorgan import config, data


def time_pass(ds, limit):
    start, seen = time.perf_counter(), 0
    for batch in ds:
        seen += int(batch["gray"].shape[0])
        if seen >= limit:
            break
    return seen, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-path", required=True)
    parser.add_argument("--dataset", default="folder", choices=("cifar10", "places365", "miniplaces", "folder"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--images", type=int, default=20000, help="images per timed pass (at most one epoch)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    overrides = dict(dataset=args.dataset, dataset_path=args.dataset_path, batch_size=args.batch_size)
    if args.image_size:
        overrides["image_size"] = args.image_size
    cfg = config.make_config(overrides)
    print(data.describe(cfg, "train"))
    rates = []
    for epoch in range(args.passes + 1):  # a new epoch each pass: new order and crops, nothing cached
        seen, seconds = time_pass(data.make_dataset(cfg, "train", epoch), args.images)
        if epoch:
            rates.append(seen / seconds)
        print(f"  pass {epoch}{' (warm-up)' if not epoch else ''}: {seen} images in {seconds:.2f} s "
              f"= {seen / seconds:,.0f} images/s")
    result = dict(dataset_path=args.dataset_path, image_size=cfg.image_size, batch_size=cfg.batch_size,
                  images_per_pass=seen, passes=len(rates), images_per_s=statistics.median(rates),
                  images_per_s_all=rates, cpu_count=os.cpu_count(), tensorflow=tf.__version__)
    print(f"\n| source | image size | batch | images/s (median of {len(rates)}) |\n|---|---|---|---|")
    print(f"| {args.dataset_path} | {cfg.image_size} | {cfg.batch_size} | {result['images_per_s']:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
