"""Pictures people look at: sample grids and training curves, written with matplotlib."""

import matplotlib

matplotlib.use("Agg")  # files only: works on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from colorgan.files import atomic_path, read_history  # noqa: E402


def save_figure(fig, path: str) -> str:
    with atomic_path(path) as temporary:  # a viewer never sees a half-written file
        fig.savefig(temporary, dpi=100)
    plt.close(fig)
    return path


def sample_grid(gray, real, fake, path: str, title: str = "") -> str:
    """One row per image: gray input | original | colourised (uint8 or float [0, 1] arrays)."""
    return image_grid({"gray": gray, "original": real, "colourised": fake}, path, title)


def image_grid(columns: dict, path: str, title: str = "") -> str:
    """One row per image, one titled column per entry of columns (name -> images; gray ones first)."""
    n, width = len(next(iter(columns.values()))), len(columns)
    fig, axes = plt.subplots(n, width, figsize=(2 * width, 2 * n + 0.4), squeeze=False)
    for col, (name, images) in enumerate(columns.items()):
        for row in range(n):
            image = np.asarray(images[row])
            ax = axes[row, col]
            ax.imshow(np.squeeze(image), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None,
                      vmin=0, vmax=255 if image.dtype == np.uint8 else 1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2 * n + 0.4)))  # leave the title its own line
    return save_figure(fig, path)


def training_curves(history_path: str, path: str) -> str:
    """Losses and accuracy from history.jsonl: training lines and validation points."""
    rows = read_history(history_path)
    panels = (("disc_loss", "discriminator loss"), ("gen_gan", "generator GAN loss"),
              ("gen_l1", "generator L1 loss"), ("accuracy", "accuracy (paper's eps)"))
    phases = [(r["step"], r["phase"]) for r in rows if r.get("split") == "train" and "phase" in r]
    starts = [(step, phase) for i, (step, phase) in enumerate(phases) if i == 0 or phase != phases[i - 1][1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (key, name) in zip(axes, panels):
        train = [(r["step"], r[key]) for r in rows if r.get("split") == "train" and key in r]
        if train:  # the logged values faintly, the trend over them (as TensorBoard smooths) in full
            steps, values = zip(*train)
            line, = ax.plot(steps, values, "-", alpha=0.25, linewidth=0.8)
            ax.plot(steps, smooth(values), "-", color=line.get_color(), label="train")
        test = [(r["step"], r[key]) for r in rows if r.get("split") == "test" and key in r]
        if test:
            ax.plot(*zip(*test), "o-", label="test", markersize=4)
        for step, phase in starts[1:]:  # NoGAN staging: where each phase begins
            ax.axvline(step, color="gray", linestyle="--", linewidth=1)
            ax.text(step, 1, f" {phase}", transform=ax.get_xaxis_transform(), va="top", fontsize=7, color="gray")
        ax.set_title(name), ax.set_xlabel("step"), ax.grid(alpha=0.3)
    drawn = [ax for ax in axes if ax.lines]  # a U-Net run has no discriminator panel to label
    if drawn:
        drawn[0].legend()
    fig.tight_layout()
    return save_figure(fig, path)


def smooth(values, weight: float = 0.9) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average, debiased so that it starts at the
    first value instead of at 0."""
    averaged, total = [], 0.0
    for n, value in enumerate(values, 1):
        total = weight * total + (1 - weight) * value
        averaged.append(total / (1 - weight ** n))
    return np.asarray(averaged)


def delta_e_histogram(per_run: dict, path: str) -> str:
    """Histogram of per-image mean CIEDE2000 for each run (lower is better)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = max(float(np.percentile(v, 99.5)) for v in per_run.values() if len(v))
    for name, values in per_run.items():
        ax.hist(values, bins=40, range=(0, max(top, 1e-6)), histtype="step", linewidth=1.5,
                label=f"{name} (mean {np.mean(values):.2f})")
    ax.set_xlabel("mean CIEDE2000 per image"), ax.set_ylabel("images"), ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
