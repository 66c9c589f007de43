"""Which model a command uses: the user's own run, or one of the two models that ship with colorgan.

One rule, for test_eval.py and test_turing.py alike (WHICH_MODEL says it to users).
"""
import dataclasses
import os

from colorgan.config import UserError, make_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Shipped:
    """A generator that ships in checkpoints/ with its config.json and MODEL_CARD.md."""
    name: str
    what: str  # what it is for, in a few words
    dataset: str  # the --dataset of its test figures
    fixture: str  # committed test images (a --dataset-path) that fixture.json holds its figures on

    @property
    def path(self) -> str:
        return os.path.join(ROOT, "checkpoints", self.name)

    @property
    def output(self) -> str:  # its evaluations and Turing results: in the working folder, never the repo
        return os.path.join("output", self.name)


CIFAR10 = Shipped("colorgan-cifar10", "for CIFAR-10's 32x32 images", "cifar10",
                  os.path.join(ROOT, "tests", "data", "cifar10"))
PHOTOS = Shipped("colorgan-places", "for photographs: MiniPlaces' scenes at 128 px", "miniplaces",
                 os.path.join(ROOT, "tests", "data", "miniplaces"))
SHIPPED = (CIFAR10, PHOTOS)
# What fixture.json holds: the test_eval.py table's per-image means, which any change to the
# loader, the preprocessing or the colour conversion moves.
FIXTURE_KEYS = ("delta_e", "acc", "ab_error_a", "ab_error_b", "mae_rgb", "psnr", "colourfulness")

WHICH_MODEL = """which model: the run that --checkpoints-path/--name name (an error if it does not exist); without
them ./checkpoints/CGAN, the run `python train.py` writes, once it exists; else a model that ships
with colorgan: checkpoints/colorgan-cifar10 for CIFAR-10 (the default --dataset), and
checkpoints/colorgan-places for photos (--test-input, or --dataset miniplaces, places365 or folder).
Each has a MODEL_CARD.md. The command's first line names the model and why."""


def shipped_at(path: str) -> Shipped | None:
    """The shipped model whose folder path is, or lies inside (nothing may be written there)."""
    real = os.path.realpath(path)
    for model in SHIPPED:
        folder = os.path.realpath(model.path)
        if real == folder or real.startswith(folder + os.sep):
            return model
    return None


def has_config(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "config.json"))


def find_run(path: str, name: str = "") -> str:
    """The run folder: path itself when it holds config.json, else path/name."""
    for candidate in (path, os.path.join(path, name) if name else None):
        if candidate and has_config(candidate):
            return candidate
    raise UserError(f"no trained run in {path!r}{f' or {os.path.join(path, name)!r}' if name else ''}: "
                    "expected the config.json and generator.keras that train.py writes")


def choose_run(given: dict, photos: bool = False) -> tuple[str, str, str]:
    """(run folder, folder for what the command writes, which model and why) by WHICH_MODEL's rule.
    photos: the command colourises the user's own photos (--test-input)."""
    requested = make_config(given)
    if "checkpoints_path" in given or "name" in given or has_config(requested.run_dir):
        run_dir = find_run(requested.checkpoints_path, requested.name)
        model = shipped_at(run_dir)
        if model is None:
            return run_dir, run_dir, f"model: {run_dir} (your run)"
        why = "a shipped model, named by --checkpoints-path/--name"
    else:
        model = PHOTOS if photos or requested.dataset != "cifar10" else CIFAR10
        why = ("the shipped model for photos: --test-input" if photos else
               f"the shipped model for --dataset {requested.dataset}") + \
              f"; your own run takes its place once train.py has written {requested.run_dir}"
        if not has_config(model.path):
            raise UserError(f"no trained run in {requested.run_dir!r} and no shipped model in {model.path!r}: "
                            "train one with python train.py, or pass --checkpoints-path/--name")
    shown = os.path.relpath(model.path)
    shown = model.path if shown.startswith("..") else shown  # from the clone's root: checkpoints/...
    card = os.path.join(shown, "MODEL_CARD.md")
    return model.path, model.output, f"model: {shown}, {model.what} ({why}; {card})"


def fixture_figures(model: Shipped, argv=()) -> dict:
    """A shipped model's row of test_eval.py on its committed test images (more flags in argv)."""
    from colorgan import evaluation
    report = evaluation.main(["--dataset", model.dataset, "--dataset-path", model.fixture, *argv])
    row = report["rows"][0]
    return {"images": report["images"], **{k: row[k] for k in FIXTURE_KEYS}}
