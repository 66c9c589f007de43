"""The plots people look at: training curves."""
import json

import numpy as np
import pytest
from PIL import Image

from colorgan import plots


def test_training_curves_draw_tensorboards_smoothing_over_the_logged_values(tmp_path):
    assert plots.smooth([5.0] * 10) == pytest.approx([5.0] * 10)  # debiased: no ramp up from 0
    assert plots.smooth([1.0, 0.0], 0.9) == pytest.approx([1.0, 0.09 / 0.19])
    noisy = 2.0 + np.random.default_rng(0).normal(0, 1, 2000)
    assert np.std(plots.smooth(noisy)[100:]) < 0.3 * np.std(noisy)
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps({"split": "train", "step": i, "phase": "gan", "gen_l1": float(v)}) + "\n"
                               for i, v in enumerate(noisy[:50], 1)))
    plots.training_curves(str(history), str(tmp_path / "curves.png"))
    assert Image.open(tmp_path / "curves.png").size == (1600, 320)
