"""The speed benchmarks still run against today's colorgan (their figures are read by people, in
bench/README.md; here only that each prints its table from a real step)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import CIFAR, ROOT

TINY_STEP = "--width 0.125 --batch-size 4 --generator-output ab --ema 0.995"


def run(*args, timeout=300):
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_the_training_step_benchmarks_time_a_real_step(tmp_path):
    out = run("bench.train_throughput", "--train-flags", TINY_STEP, "--mixed-precision", "off", "--iterations", "3",
              "--profile-iterations", "1", "--json", str(tmp_path / "step.json"))
    (result,) = json.load(open(tmp_path / "step.json"))["results"]
    assert result["images_per_s"] > 0 and result["finite_losses"] and result["flops_per_image"] > 0
    assert result["profile"]["ops"] and "| op type |" in out
    out = run("bench.kernel_choices", "--train-flags", TINY_STEP, "--mixed-precision", "off", "--choices",
              "FUSED_ADAM", "--blocks", "1", "--block", "1")
    assert "| float32 | FUSED_ADAM |" in out


@pytest.mark.slow
def test_the_pipeline_benchmark_reads_real_images(tmp_path):
    run("bench.data_pipeline", "--dataset", "cifar10", "--dataset-path", str(CIFAR), "--batch-size", "8",
        "--images", "40", "--passes", "1", "--json", str(tmp_path / "pipeline.json"))
    result = json.load(open(tmp_path / "pipeline.json"))
    assert result["images_per_pass"] == 40 and result["images_per_s"] > 0


@pytest.mark.slow
def test_the_space_to_depth_convolution_is_the_same_convolution(tmp_path):
    run("bench.strided_conv", "--json", str(tmp_path / "conv.json"))
    rows = json.load(open(tmp_path / "conv.json"))
    # bfloat16 where the CPU's oneDNN path has it (not under ONEDNN_MAX_CPU_ISA=AVX2)
    assert [r["dtype"] for r in rows].count("float32") == 6 and len(rows) in (6, 12)
    assert all(r["direct_s"] > 0 and r["space_to_depth_s"] > 0 for r in rows)
    assert all(r["max_relative_difference"] < (1e-2 if r["dtype"] == "bfloat16" else 1e-4) for r in rows)


@pytest.mark.slow
def test_the_layer_benchmark_times_every_convolution_of_both_networks(tmp_path):
    out = run("bench.conv_layers", "--dataset", "cifar10", "--train-flags", TINY_STEP, "--mixed-precision", "off",
              "--repeats", "1", "--json", str(tmp_path / "layers.json"))
    rows = json.load(open(tmp_path / "layers.json"))["layers"]
    assert [r["layer"] for r in rows] == [*(f"enc{i}" for i in range(5)), *(f"dec{i}" for i in range(4)), "out",
                                          "conv0", "conv1", "conv2", "conv3", "logits"]
    assert rows[5]["transpose"] and rows[0]["input"] == [4, 32, 32, 1] and rows[-1]["output"] == [4, 4, 4, 1]
    assert all(r["flops"] > 0 and min(r["forward"], r["input_gradient"], r["kernel_gradient"]) > 0 for r in rows)
    assert out.count("| generator |") == 10 and "all layers once" in out
