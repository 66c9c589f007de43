"""What a person watches while a run trains: the progress line, TensorBoard's scalars,
history.jsonl and its curves, sample grids of fixed test images, and validation on the test split."""
import json
import math
import os
import time

import numpy as np
import tensorflow as tf

from colorgan import color, data, inference, models, plots, sources
from colorgan.config import Config


def log_step(config: Config, epoch: int, out_dir: str, writer, phase: str, step: int, total_steps: int,
             values: dict, rate: float) -> None:
    """The progress line, TensorBoard's scalars and a row of history.jsonl."""
    eta = (total_steps - step) * config.batch_size / rate if rate > 0 else float("nan")
    print(f"epoch {epoch + 1}/{config.total_epochs} {phase} step {step}/{total_steps} | "
          f"{progress(values)} | {rate:.1f} img/s | ETA {format_eta(eta)}", flush=True)
    with writer.as_default(step=step):
        for k, v in values.items():
            tf.summary.scalar(f"train/{k}", v)
    append_history(out_dir, {"split": "train", "step": step, "phase": phase, **values})


class Speed:
    """Images per second between readings; the first step, which traces the graph, left out."""

    def __init__(self):
        self.steps, self.images, self.start, self.last = 0, 0, time.perf_counter(), float("nan")

    def count(self, images: int) -> None:
        self.steps += 1
        if self.steps == 1:
            self.start = time.perf_counter()
        else:
            self.images += images

    def rate(self) -> float:
        if self.images:
            now = time.perf_counter()
            self.last, self.start, self.images = self.images / (now - self.start), now, 0
        return self.last


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def append_history(run_dir: str, row: dict) -> None:
    with open(os.path.join(run_dir, "history.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def fixed_samples(config: Config):
    """The test images of every sample grid, spread over the split: a class-ordered folder's first
    images are all of one class. The split's first images if the spread ones are all unusable."""
    test = sources.load_source(config.dataset, config.dataset_path, "test", config.seed)
    for source in (sources.spread(test, config.sample_size), test):
        batches = data.make_dataset(config, "test", source=source).unbatch().batch(config.sample_size)
        samples = next(iter(batches), None)
        if samples is not None:
            return samples
    raise sources.DataError(f"{data.describe(config, 'test')}, but not one of them is a usable colour image")


def progress(values: dict) -> str:
    """The losses a phase has, as the progress line shows them."""
    parts = []
    if "disc_loss" in values:
        parts.append(f"D {values['disc_loss']:.3f} (real {values['disc_real']:.3f} fake {values['disc_fake']:.3f})")
    if "gen_gan" in values:
        parts.append(f"G {values['gen_loss']:.3f} (gan {values['gen_gan']:.3f} L1 {values['gen_l1']:.4f})")
    elif "gen_l1" in values:
        parts.append(f"G L1 {values['gen_l1']:.4f}")
    return " ".join(parts) + f" acc {values['accuracy']:.3f}"


def write_samples(state, config: Config, samples, run_dir: str, writer) -> str:
    """A sample grid (gray | original | colourised) of fixed test images, as PNG and in TensorBoard."""
    gray, colour = samples["gray"], samples["colour"]
    fake = models.colorize(state.inference_generator, gray, config.generator_output, training=False)
    to_rgb = lambda x: color.to_uint8(color.postprocess(x, config.color_space)).numpy()  # noqa: E731
    gray_rgb = inference.gray_to_rgb(gray)  # sRGB gray, as the user sees it: not L/100
    step = int(state.step.numpy())
    real, fake = to_rgb(colour), to_rgb(fake)
    with writer.as_default(step=step):
        tf.summary.image("samples", np.concatenate([gray_rgb, real, fake], axis=2),
                         max_outputs=len(real))
    return plots.sample_grid(gray_rgb, real, fake, os.path.join(run_dir, "samples", f"step_{step:07d}.png"),
                             title=f"{config.name}, step {step}")


def validate(state, config: Config, strategy, evaluate, run_dir: str, writer) -> dict:
    """Losses and accuracy over the whole test split; refreshes the training-curve PNG."""
    dataset = data.make_dataset(config, "test")
    if strategy.num_replicas_in_sync > 1:
        dataset = strategy.experimental_distribute_dataset(dataset)
    totals = {}
    for batch in dataset:
        for k, v in evaluate(batch).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    if not totals.get("count"):
        return {}
    values = {k: v / totals["count"] for k, v in totals.items() if k != "count"}
    step = int(state.step.numpy())
    print(f"validation at step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)
    with writer.as_default(step=step):
        for k, v in values.items():
            tf.summary.scalar(f"test/{k}", v)
    append_history(run_dir, {"split": "test", "step": step, **values})
    plots.training_curves(os.path.join(run_dir, "history.jsonl"), os.path.join(run_dir, "training_curves.png"))
    return values
