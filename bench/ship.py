"""Make a trained run the model that ships with colorgan (checkpoints/colorgan-cifar10): copy its
generator.keras and config.json there, and write fixture.json, its figures on the test images
committed with the tests (tests/data/cifar10/test), which tests/test_shipped.py holds it to.

    python -m bench.ship RUN_DIR [--photos-grid docs/quality/long_runs/photos.png]

The model card (MODEL_CARD.md in the same folder) is written by hand from bench/quality.py's and
test_eval.py's figures: this script prints what it needs from the run.
"""
import argparse
import dataclasses
import json
import os
import shutil
import subprocess

import numpy as np

from colorgan import config as cfg, evaluation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "data", "cifar10")
# What fixture.json holds: the test_eval.py table's per-image means, which any change to the
# loader, the preprocessing or the colour conversion moves.
KEYS = ("delta_e", "acc", "ab_error_a", "ab_error_b", "mae_rgb", "psnr", "colourfulness")


def fixture_figures(argv=()) -> dict:
    """The shipped model's row of test_eval.py on the committed test images (its own flags in argv)."""
    report = evaluation.main(["--dataset-path", FIXTURE, *argv])
    row = report["rows"][0]
    return {"images": report["images"], **{k: row[k] for k in KEYS}}


# Four BSDS300 photos (481x321) of the kinds CIFAR-10 holds: birds, a cat, a bird, a cat
PHOTOS = [os.path.join(ROOT, "..", "shared", "data", "cbsd68", f"{n}.png") for n in (103070, 105025, 106024, 108005)]


def photos_grid(run_dir: str, path: str, photos=PHOTOS) -> str:
    """gray input | the model (rendered at its training size, the input's L kept) | original, for the card."""
    from PIL import Image
    from colorgan import images, inference, plots
    generator, config = inference.load_run(run_dir)
    rgbs = [images.read_image(photo) for photo in photos]
    return plots.image_grid({"gray input": [np.asarray(Image.fromarray(rgb).convert("L")) for rgb in rgbs],
                             "shipped model (colour at 32 px, L kept)":
                                 [inference.colorize_image(generator, config, rgb, config.image_size) for rgb in rgbs],
                             "original": rgbs}, path, "BSDS300 photos (481x321) colourised by the shipped model")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run folder (with config.json and generator.keras)")
    parser.add_argument("--photos-grid", default="", help="also write a PNG of four photos colourised by it")
    args = parser.parse_args()
    exported = os.path.join(args.run, "generator.keras")
    if not os.path.isfile(exported):
        raise SystemExit(f"{exported} does not exist: train.py exports it at the end of a run")
    run = cfg.load_config(os.path.join(args.run, "config.json"))
    os.makedirs(cfg.SHIPPED, exist_ok=True)
    shutil.copyfile(exported, os.path.join(cfg.SHIPPED, "generator.keras"))
    # A user's clone has none of the trainer's paths: the shipped model finds its data as a new run does
    dataclasses.replace(run, dataset_path="", checkpoints_path="./checkpoints",
                        name=os.path.basename(cfg.SHIPPED)).save(cfg.SHIPPED)
    figures = fixture_figures(["--checkpoints-path", os.path.dirname(cfg.SHIPPED), "--name",
                               os.path.basename(cfg.SHIPPED)])
    with open(os.path.join(cfg.SHIPPED, "fixture.json"), "w") as f:
        json.dump(figures, f, indent=2)
        f.write("\n")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    size = os.path.getsize(os.path.join(cfg.SHIPPED, "generator.keras")) / 2**20
    print(f"shipped {args.run} into {cfg.SHIPPED} ({size:.1f} MiB) at commit {commit.strip()}; "
          f"flags: {cfg.as_flags(run)}; fixture figures: {json.dumps(figures)}")
    if args.photos_grid:
        print(f"photos: {photos_grid(cfg.SHIPPED, args.photos_grid)}")


if __name__ == "__main__":
    main()
