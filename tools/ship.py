"""Make a trained run a model that ships with colorgan (checkpoints/colorgan-cifar10 or
checkpoints/colorgan-places): copy its generator.keras and config.json there, and write
fixture.json, its figures on the test images committed with the tests, which
tests/test_shipped.py holds it to.

    python -m tools.ship RUN_DIR --model colorgan-places [--photos-grid docs/photos.png --bsds BSDS]

The model card (MODEL_CARD.md in the same folder) is written by hand from the studies' and
test_eval.py's figures: this script prints what it needs from the run.
"""
import argparse
import dataclasses
import json
import os
import shutil
import subprocess


from colorgan import config as cfg, runs

# Four BSDS300 photos (481x321) of the kinds CIFAR-10 holds: birds, a cat, a bird, a cat
PHOTOS = [f"{n}.png" for n in (103070, 105025, 106024, 108005)]


def photos_grid(run_dir: str, path: str, photos: list, render_size: int = 0) -> str:
    """gray input | the model (rendered at render_size, default its own; the input's L kept) |
    original, for the card and the README."""
    from colorgan import images, inference, plots
    colorizer = inference.load(run_dir)
    render = render_size or colorizer.config.render_size or colorizer.config.image_size
    rgbs = [images.read_image(photo) for photo in photos]
    return plots.image_grid({"gray input": [inference.grayscale(rgb) for rgb in rgbs],
                             f"{os.path.basename(run_dir)} (colour at {render} px, L kept)":
                                 [colorizer.image(rgb, render) for rgb in rgbs],
                             "original": rgbs}, path, f"BSDS300 photos colourised by {os.path.basename(run_dir)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run folder (with config.json and generator.keras)")
    parser.add_argument("--model", required=True, choices=[m.name for m in runs.SHIPPED])
    parser.add_argument("--photos-grid", default="", help="also write a PNG of BSDS photos colourised by it")
    parser.add_argument("--bsds", default="", help="with --photos-grid: the folder of the 68 BSDS300 test photos")
    parser.add_argument("--render-size", type=int, default=0, help="the shorter side the model colourises photos at, "
                        "chosen by studies/photos.py (recorded in its config.json; default: its --image-size)")
    args = parser.parse_args()
    if args.photos_grid and not os.path.isdir(args.bsds):
        parser.error("--photos-grid needs --bsds: the folder of the BSDS300 test photos")
    model = next(m for m in runs.SHIPPED if m.name == args.model)
    exported = os.path.join(args.run, "generator.keras")
    if not os.path.isfile(exported):
        raise SystemExit(f"{exported} does not exist: train.py exports it at the end of a run")
    run = cfg.load_config(os.path.join(args.run, "config.json"))
    if run.dataset != model.dataset:
        raise SystemExit(f"{args.run} trained on {run.dataset}; {model.name} is a {model.dataset} model")
    os.makedirs(model.path, exist_ok=True)
    shutil.copyfile(exported, os.path.join(model.path, "generator.keras"))
    # A user's clone has none of the trainer's paths: the shipped model finds its data as a new run does
    dataclasses.replace(run, dataset_path="", checkpoints_path="./checkpoints", name=model.name,
                        render_size=args.render_size).save(model.path)
    figures = runs.fixture_figures(model, ["--checkpoints-path", os.path.dirname(model.path), "--name", model.name])
    with open(os.path.join(model.path, "fixture.json"), "w") as f:
        json.dump(figures, f, indent=2)
        f.write("\n")
    commit = subprocess.run(["git", "-C", runs.ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout
    size = os.path.getsize(os.path.join(model.path, "generator.keras")) / 2**20
    print(f"shipped {args.run} into {model.path} ({size:.1f} MiB) at commit {commit.strip()}; "
          f"flags: {cfg.as_flags(run)}; fixture figures: {json.dumps(figures)}")
    if args.photos_grid:
        print(f"photos: {photos_grid(model.path, args.photos_grid, [os.path.join(args.bsds, p) for p in PHOTOS])}")


if __name__ == "__main__":
    main()
