"""The one config: a frozen dataclass whose fields generate the command-line flags.

Defaults and flag names follow the authors' options (ImagingLab/Colorizing-with-GANs); per-dataset
presets follow their README. Precedence: field default < dataset preset < command-line flag.
"""
import argparse
import dataclasses
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field

from colorgan.errors import UserError, first_line  # noqa: F401 (the package imports them from here)
from colorgan.files import write_text


MODELS = ("gan", "unet", "encoder-decoder")
DATASETS = ("cifar10", "places365", "miniplaces", "folder")
# The settings that make a run's networks: no command may change them on an existing run.
ARCHITECTURE = ("dataset", "color_space", "generator_output", "model", "backbone", "width", "spectral_norm")
GAN_LOSSES = ("bce", "lsgan", "hinge")  # colorgan.losses implements them
SMOOTHABLE = ("bce", "lsgan")  # the losses with a real label that --label-smoothing can soften (not hinge)
# Keras Applications networks that can be the generator's encoder (colorgan.models.BACKBONES builds them)
BACKBONES = ("none", "mobilenetv2", "resnet50v2", "resnet50", "efficientnetb0", "densenet121", "vgg16")


def _opt(default, help, **kwargs):
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass(frozen=True)
class Config:
    seed: int = _opt(0, "random seed: the same seed gives the same batches and initial weights")
    name: str = _opt("CGAN", "run name: checkpoints go to <checkpoints-path>/<name>")
    dataset: str = _opt("cifar10", "dataset preset and network size", choices=DATASETS)
    dataset_path: str = _opt("", "local data: CIFAR-10 archive or folder, Places365 or MiniPlaces folder, "
                              "or any image folder")
    checkpoints_path: str = _opt("./checkpoints", "folder for runs (checkpoints, samples, logs)")
    batch_size: int = _opt(16, "images per batch")
    color_space: str = _opt("lab", "colour space the generator predicts in", choices=("lab", "rgb"))
    image_size: int = _opt(256, "training/test image side in pixels")
    epochs: int = _opt(30, "epochs to train")
    max_steps: int = _opt(0, "stop after this many training iterations in total (0: no limit)")
    lr: float = _opt(3e-4, "generator learning rate (the discriminator's is lr x --disc-lr-ratio)")
    disc_lr_ratio: float = _opt(0.1, "the discriminator's learning rate as a fraction of --lr (the paper: 0.1; "
                                "two time-scale rules give D more than G)")
    lr_decay: bool = _opt(True, "decay the learning rate exponentially")
    lr_decay_rate: float = _opt(0.1, "learning-rate decay factor per --lr-decay-steps")
    lr_decay_steps: float = _opt(5e5, "steps over which the learning rate decays by --lr-decay-rate (floor 1e-6)")
    beta1: float = _opt(0.0, "Adam beta_1 momentum term")
    generator_output: str = _opt("lab", "generator predicts L, a, b (the authors) or a, b with the input's L",
                                 choices=("lab", "ab"))
    model: str = _opt("gan", "gan: U-Net generator + PatchGAN discriminator (the paper); unet: the generator alone, "
                      "L1 only (the paper's baseline); encoder-decoder: the generator without skip connections, "
                      "adversarial", choices=MODELS)
    backbone: str = _opt("none", "a Keras Applications network as the U-Net generator's encoder", choices=BACKBONES)
    width: float = _opt(1.0, "channels of every generator and discriminator layer as a fraction of the paper's "
                        "(1: 64 to 512); below 1 a lighter model that sees more images per CPU-minute")
    backbone_weights: str = _opt("none", "the backbone's initial weights: imagenet (downloads when online), "
                                 "a local weights file, or none")
    gan_loss: str = _opt("bce", "adversarial loss: bce (the paper), lsgan (least squares) or hinge",
                         choices=GAN_LOSSES)
    pretrain_generator_epochs: int = _opt(0, "NoGAN staging: first train the generator alone with L1 for N epochs")
    pretrain_discriminator_epochs: int = _opt(0, "NoGAN staging: then train the discriminator alone against the "
                                              "pretrained generator for N epochs, before --epochs of GAN training")
    mixed_precision: str = _opt("auto", "auto: float16 with loss scaling on a GPU, bfloat16 on a CPU "
                                "with native bfloat16 (AVX512_BF16, AMX), else off",
                                choices=("auto", "off", "float16", "bfloat16"))
    jit_compile: bool = _opt(False, "compile the train step with XLA (slower on CPU, see bench/README.md)")
    join_timeout: float = _opt(900.0, "seconds a worker of a TF_CONFIG cluster waits for the others to start")
    sync_batchnorm: bool = _opt(False, "synchronise BatchNorm statistics across devices")
    spectral_norm: bool = _opt(False, "spectral normalisation of every discriminator convolution (Miyato et al. 2018)")
    keep_checkpoints: int = _opt(3, "how many recent checkpoints to keep")
    l1_weight: float = _opt(100.0, "weight of the L1 loss in the generator loss")
    rebalance: float = _opt(0.0, "colour-rebalanced L1 (Zhang et al. 2016): rare ab colours weigh more, by the "
                            "training split's histogram; the strength lambda of their eq. 4 (0: off, 0.5 theirs)")
    ema: float = _opt(0.0, "decay per step of an exponential moving average of the generator's weights, which "
                      "samples, validation and export use (Yazici et al. 2019; 0: off, 0.999 typical)")
    augment: bool = _opt(True, "random crop and horizontal flip of training images")
    label_smoothing: bool = _opt(False, "one-sided label smoothing (real labels 0.9)")
    acc_thresh: float = _opt(2.0, "accuracy threshold eps in CIELAB units (the paper's metric)")
    save_interval: int = _opt(1000, "save a checkpoint every N steps (and at every epoch end)")
    sample_interval: int = _opt(1000, "write a sample grid every N steps")
    sample_size: int = _opt(8, "images in each sample grid")
    validate: bool = _opt(True, "validate on the test split at every epoch end")
    validate_interval: int = _opt(0, "also validate every N steps (0: only at epoch ends)")
    log_interval: int = _opt(10, "print a progress line every N steps")
    # Not a flag: a shipped model's own choice, measured on photos (tools/ship.py writes it); test_eval.py
    # --render-size overrides it
    render_size: int = _opt(0, "the shorter side at which test_eval.py --test-input runs the generator on a photo "
                            "(0: --image-size)", flag=False)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def save(self, directory: str) -> str:
        """Write config.json into directory (atomically) and return its path."""
        return write_text(os.path.join(directory, "config.json"), self.to_json() + "\n")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.checkpoints_path, self.name)

    @property
    def total_epochs(self) -> int:
        """Epochs of all phases: generator pretraining, discriminator pretraining, then --epochs."""
        return self.pretrain_generator_epochs + self.pretrain_discriminator_epochs + self.epochs

    def phase(self, epoch: int) -> str:
        """What is trained in epoch (0-based): "generator" (L1 only), "discriminator" or "gan"."""
        if self.model == "unet" or epoch < self.pretrain_generator_epochs:
            return "generator"
        if epoch < self.pretrain_generator_epochs + self.pretrain_discriminator_epochs:
            return "discriminator"
        return "gan"


PRESETS = {
    # The authors' field default is 5e5 decay steps; their CIFAR-10 command passes 1e4.
    "cifar10": dict(batch_size=128, epochs=200, image_size=32, lr_decay_steps=1e4),
    "places365": dict(batch_size=16, epochs=10, image_size=256, label_smoothing=True),
    # MiniPlaces (MIT's 100-scene, 128x128 subset of Places): the Places networks at the photos' own size
    "miniplaces": dict(batch_size=16, epochs=10, image_size=128, label_smoothing=True),
    "folder": dict(batch_size=16, epochs=30, image_size=256),
}

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]*")
MAX_NAME_BYTES = 200  # file names hold 255 bytes: room for .lock and .YYYYmmdd-HHMMSS


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false/1/0/yes/no, got {text!r}")


def add_config_flags(parser, shown=None) -> None:
    """One flag per Config field, named as the authors name them (--batch-size, --l1-weight, ...);
    shown: the fields --help lists (default all; the others are accepted all the same)."""
    for f in FIELDS.values():
        if not f.metadata.get("flag", True):
            continue
        kind = {bool: parse_bool, int: int, float: float, str: str}[type(f.default)]
        metavar = "BOOL" if kind is parse_bool else None
        presets = {d: p[f.name] for d, p in PRESETS.items() if f.name in p}
        default = ", ".join(f"{d} {presets.get(d, f.default)}" for d in PRESETS) if presets else f.default
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, metavar=metavar,
                            choices=f.metadata.get("choices"), default=argparse.SUPPRESS,
                            help=f"{f.metadata['help']} (default: {default})" if shown is None or f.name in shown
                            else argparse.SUPPRESS)


def make_config(overrides: dict | None = None, **kwargs) -> Config:
    """Defaults, then the dataset's preset, then the given values (flags), which always win."""
    given = {**(overrides or {}), **kwargs}
    unknown = set(given) - set(FIELDS)
    if unknown:
        raise UserError(f"unknown config fields: {sorted(unknown)}")
    dataset = given.get("dataset", FIELDS["dataset"].default)
    if dataset not in PRESETS:
        raise UserError(f"unknown dataset {dataset!r}: choose from {sorted(PRESETS)}")
    preset = dict(PRESETS[dataset])
    if given.get("gan_loss", FIELDS["gan_loss"].default) not in SMOOTHABLE and "label_smoothing" not in given:
        preset["label_smoothing"] = False
    config = Config(**{**preset, **given})
    _check_values(config)
    if not RUN_NAME.fullmatch(config.name):  # visible, one line, portable, and never hidden (.x) or a flag (-x)
        raise UserError(f"--name must be one folder name (inside --checkpoints-path) of letters, digits and . _ - + @, "
                        f"starting with a letter or digit, not {config.name!r}")
    if len(os.fsencode(config.name)) > MAX_NAME_BYTES:
        raise UserError(f"--name is {len(os.fsencode(config.name))} bytes long: at most {MAX_NAME_BYTES}, as the "
                        "lock file and a --fresh run's moved-aside folder add to it")
    if config.generator_output == "ab" and config.color_space != "lab":
        raise UserError("--generator-output ab needs --color-space lab")
    if config.rebalance and config.color_space != "lab":
        raise UserError("--rebalance weighs ab colours: it needs --color-space lab")
    if config.gan_loss not in SMOOTHABLE and config.label_smoothing:
        raise UserError(f"--gan-loss {config.gan_loss} has no labels to smooth: leave out --label-smoothing")
    if config.model == "unet" and config.pretrain_discriminator_epochs:
        raise UserError("--model unet has no discriminator to pretrain")
    if config.backbone != "none" and config.model == "encoder-decoder":
        raise UserError("--backbone makes a U-Net encoder: use it with --model gan or unet")
    if config.backbone == "none" and config.backbone_weights != "none":
        raise UserError("--backbone-weights needs a --backbone")
    return config


# The rule of every number, for flags and config.json alike. The upper limits are far beyond
# sensible values, not tuning advice.
AT_LEAST_1 = (lambda v: v >= 1, "must be at least 1")
NOT_NEGATIVE = (lambda v: v >= 0, "cannot be negative")
POSITIVE = (lambda v: v > 0, "must be positive")
RANGES = {
    **dict.fromkeys(("batch_size", "image_size", "epochs", "sample_size", "keep_checkpoints", "log_interval",
                     "save_interval", "sample_interval"), AT_LEAST_1),
    **dict.fromkeys(("seed", "max_steps", "validate_interval", "pretrain_generator_epochs", "render_size",
                     "pretrain_discriminator_epochs", "l1_weight"), NOT_NEGATIVE),
    **dict.fromkeys(("lr_decay_rate", "lr_decay_steps", "acc_thresh", "join_timeout"), POSITIVE),
    "lr": (lambda v: 0 < v <= 1, "must be positive and at most 1"),
    "width": (lambda v: 0 < v <= 8, "must be positive and at most 8"),
    "disc_lr_ratio": (lambda v: 0 < v <= 100, "must be positive and at most 100"),
    "beta1": (lambda v: 0 <= v < 1, "must be at least 0 and below 1"),
    "ema": (lambda v: 0 <= v < 1, "must be at least 0 and below 1"),
    "rebalance": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
}


def _check_values(config: Config) -> None:
    """Every field of its declared type and among its choices, every number within its rule (RANGES)."""
    for name, f in FIELDS.items():
        value, kind, flag = getattr(config, name), type(f.default), "--" + name.replace("_", "-")
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise UserError(f"{flag} must be {'a number' if kind is float else kind.__name__}, not {value!r}")
        if f.metadata.get("choices") and value not in f.metadata["choices"]:  # config.json is not argparse-checked
            raise UserError(f"{flag} must be one of {', '.join(f.metadata['choices'])}, not {value!r}")
        rule, text = RANGES.get(name, (None, ""))
        if rule and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number (got {value})")
        if rule and not rule(value):
            raise UserError(f"{flag} {text} (got {value})")


def run_command(main) -> None:
    """An entry script's main(): a UserError, or a file system fault (a read-only or full disk, a
    missing permission), is one line on stderr and exit status 1; Ctrl-C that reaches here (a
    second one while training saves) is one line and 130; no traceback."""
    try:
        main()
    except UserError as error:
        sys.exit(f"error: {error}")
    except OSError as error:
        if not error.strerror:
            raise
        where = " ".join(f"{p}" for p in (error.filename, error.filename2) if p)
        sys.exit(f"error: {error.strerror}{': ' + where if where else ''}")
    except KeyboardInterrupt:
        print("\ninterrupted: files written before it are whole (each is renamed into place only once complete); "
              "a training run resumes from its last checkpoint", file=sys.stderr)
        sys.exit(130)


# The settings of a trained run that evaluating and the Turing test use: which run, and its data
RUN_FLAGS = ("checkpoints_path", "name", "dataset", "dataset_path", "image_size", "batch_size", "seed",
             "mixed_precision", "acc_thresh")


def parse_command(argv, description: str, add_flags, shown=None) -> tuple[dict, argparse.Namespace]:
    """How every command reads its flags: the config's, then the command's own (add_flags(parser)).
    shown: the config fields its --help lists (default all). Returns (the config flags given, the
    command's options)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser)  # the command's own flags first in --help, then the settings every command shares
    title = ("training settings (saved in config.json)" if shown is None else
             "the run and its data (its config.json's own unless given here; every train.py flag is accepted)")
    add_config_flags(parser.add_argument_group(title), shown)
    given, options = split_flags(parser.parse_args(argv))
    return given, argparse.Namespace(**options)


def parse_args(argv=None) -> Config:
    """The Config that train.py's flags argv describe (for code that drives colorgan: tests, bench)."""
    return make_config(parse_command(argv, "", lambda parser: None)[0])


def split_flags(namespace: argparse.Namespace) -> tuple[dict, dict]:
    """(config flags that were given, the other flags) of a parser made with add_config_flags."""
    values = vars(namespace)
    return ({k: v for k, v in values.items() if k in FIELDS},
            {k: v for k, v in values.items() if k not in FIELDS})


def load_config(path: str) -> Config:
    """Read a config.json written by Config.save; unknown keys from other versions are ignored."""
    try:
        with open(path) as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        return make_config({k: v for k, v in values.items() if k in FIELDS})
    except (OSError, ValueError, TypeError, UserError) as error:
        raise UserError(f"{path}: not a config.json that train.py wrote ({error})") from None


def on_run(run: Config, given: dict, run_dir: str) -> Config:
    """The run's own config with the given settings, which may change anything but its networks
    (ARCHITECTURE): the one rule for every command on an existing run."""
    wanted = make_config({**dataclasses.asdict(run), **given})
    check_architecture(dataclasses.asdict(run), wanted, run_dir)
    return wanted


def check_architecture(have: dict, wanted: Config, where: str) -> None:
    """Refuse wanted where the networks it describes (its ARCHITECTURE fields) differ from those of a
    run (have: its config.json's or its checkpoint's record of them); where names the run."""
    clash = {k: (have[k], getattr(wanted, k)) for k in ARCHITECTURE if k in have and have[k] != getattr(wanted, k)}
    if clash:
        flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
        raise UserError(f"{where} holds a run with {', '.join(f'{flag(k)} {old}' for k, (old, _) in clash.items())}; "
                        f"this command asks for {', '.join(f'{flag(k)} {new}' for k, (_, new) in clash.items())}. "
                        "Use another --name, or the run's own settings.")


def differences(old: Config, new: Config) -> dict:
    """{field: (old, new)} for every field whose value differs."""
    return {name: (getattr(old, name), getattr(new, name))
            for name in FIELDS if getattr(old, name) != getattr(new, name)}


def as_flags(config: Config) -> str:
    """The settings that differ from the dataset's preset, as the flags that give them."""
    preset = make_config(dataset=config.dataset)
    return " ".join(f"--{name.replace('_', '-')} {new}" for name, (_, new) in differences(preset, config).items())
