"""Real training steps on tiny data: learning, exact resume after SIGKILL, NaN stop, bad checkpoints,
bfloat16, two devices versus one, and two worker processes."""
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import keras
import tensorflow as tf

from colorgan import config, cpu_kernels, data, images, losses, models, resume, stopping, training
from tests.conftest import CIFAR, ROOT, free_ports, skip_where_onednn_lacks_bfloat16, tiny_args

READ_IMAGE = images.read_image


def train_process(args, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def run_to_end(args, timeout=300):
    process = train_process(args)
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out
    return out


def compiled(cfg, state, strategy=None):
    """({phase: train step}, eval step) of state, a run of cfg."""
    strategy = strategy or tf.distribute.get_strategy()
    ab_table = training.ab_weights(cfg)
    steps = {phase: training.compile_step(phase, state, cfg, strategy, ab_table) for phase in training.STEPS}
    return steps, training.compile_eval(state, cfg, strategy)


def generator_weights(run_dir):
    model = keras.saving.load_model(os.path.join(run_dir, "run", "generator.keras"), compile=False)
    return [w.numpy() for w in model.weights]


@pytest.mark.slow
def test_an_iteration_updates_d_once_and_g_twice_and_a_few_real_iterations_learn():
    cfg = config.make_config(dataset="cifar10", dataset_path=str(CIFAR), batch_size=8, mixed_precision="off")
    state = training.create_train_state(cfg, tf.distribute.get_strategy())  # the paper's networks, at full width
    steps, evaluate = compiled(cfg, state)
    batch = next(iter(data.make_dataset(cfg, "train")))  # the same real batch every step
    gray, colour = batch["gray"], batch["colour"]
    weights = lambda model: [v.numpy() for v in model.trainable_variables]  # noqa: E731
    for phase, trained, frozen in (("discriminator", state.discriminator, state.generator),
                                   ("generator", state.generator, state.discriminator)):
        before_trained, before_frozen = weights(trained), weights(frozen)
        steps[phase](batch)
        assert all(np.array_equal(a, b) for a, b in zip(before_frozen, weights(frozen))), phase
        assert not all(np.array_equal(a, b) for a, b in zip(before_trained, weights(trained))), phase

    def gap():  # how much more real D finds the real colours than G's
        fake = models.colorize(state.generator, gray, cfg.generator_output, training=False)
        D = lambda colours: state.discriminator(training._pair(gray, colours), training=False)  # noqa: E731
        return float(tf.reduce_mean(D(colour) - D(fake)))

    before = gap(), weights(state.generator), weights(state.discriminator)
    iterations = (int(state.disc_opt.iterations), int(state.gen_opt.iterations))
    l1 = [steps["gan"](batch)["gen_l1"].numpy() for _ in range(8)]
    assert (int(state.disc_opt.iterations), int(state.gen_opt.iterations)) == (iterations[0] + 8, iterations[1] + 16)
    assert l1[-1] < 0.8 * l1[0], l1
    assert gap() > before[0], (gap(), before[0])  # D tells them apart better than it did
    assert not all(np.array_equal(a, b) for a, b in zip(before[1], weights(state.generator)))
    assert not all(np.array_equal(a, b) for a, b in zip(before[2], weights(state.discriminator)))


# (step, generator's rate, discriminator's) by hand: max(1e-6, 3e-4 * 0.1^(step / decay steps)), D's / 10
AUTHORS_RATES = {
    "cifar10": [(0, 3e-4, 3e-5), (1e4, 3e-5, 3e-6), (24800, 1e-6, 1e-7), (30000, 1e-6, 1e-7)],  # 9.93e-7 floored
    "places365": [(0, 3e-4, 3e-5), (1e4, 2.86498e-4, 2.86498e-5), (24800, 2.67622e-4, 2.67622e-5),
                  (30000, 2.61289e-4, 2.61289e-5)],
}


@pytest.mark.parametrize("dataset", sorted(AUTHORS_RATES))
def test_learning_rates_follow_the_authors_schedule(dataset):
    cfg = config.make_config(dataset=dataset)
    for step, gen_rate, disc_rate in AUTHORS_RATES[dataset]:
        assert float(training.learning_rate(cfg, step)) == pytest.approx(gen_rate, rel=1e-4), step
        assert float(training.learning_rate(cfg, step, 0.1)) == pytest.approx(disc_rate, rel=1e-4), step


def test_the_discriminators_rate_is_lr_times_disc_lr_ratio_and_the_recipe_flags_train_together():
    for ratio in (0.1, 1.0, 4.0):
        recipe = dict(spectral_norm=True, rebalance=0.5, ema=0.9) if ratio == 4.0 else {}
        cfg = config.make_config(dataset="cifar10", dataset_path=str(CIFAR), width=0.125, disc_lr_ratio=ratio,
                                 mixed_precision="off", batch_size=4, **recipe)
        state = training.create_train_state(cfg, tf.distribute.get_strategy())
        assert float(state.disc_opt.learning_rate) == pytest.approx(3e-4 * ratio, rel=1e-6)
        assert float(state.gen_opt.learning_rate) == pytest.approx(3e-4, rel=1e-6)
        for step, decayed in ((20000, 3e-6), (30000, 1e-6)):  # what the optimisers see later: 0.1 per 1e4 steps,
            state.step.assign(step)                              # floored at 1e-6 before the ratio
            assert float(state.gen_opt.learning_rate) == pytest.approx(decayed, rel=1e-5)
            assert float(state.disc_opt.learning_rate) == pytest.approx(decayed * ratio, rel=1e-5)
        state.step.assign(0)
    steps, evaluate = compiled(cfg, state)
    sn = [l for l in state.discriminator.layers if isinstance(l, keras.layers.SpectralNormalization)]
    before = [l.vector_u.numpy() for l in sn]
    values = steps["gan"](next(iter(data.make_dataset(cfg, "train"))))
    assert len(sn) == 5 and all(np.isfinite(float(v)) for v in values.values())
    assert all(not np.array_equal(b, l.vector_u.numpy()) for b, l in zip(before, sn))  # its power iteration ran
    assert training.ab_weights(cfg) is not None and state.inference_generator is state.generator_ema


@pytest.mark.slow
def test_train_py_writes_everything_and_a_sigkill_then_resume_equals_an_uninterrupted_run(tiny_folder, tmp_path):
    # 32 images / batch 4 = 8 steps an epoch: 12 steps cross an epoch end after the kill.
    steps = ["--max-steps", "12", "--epochs", "2"]
    # a and b (b measures run-to-run noise) run side by side with c: start-up dominates their time
    uninterrupted = [train_process(tiny_args(tiny_folder, tmp_path / k, *steps)) for k in "ab"]
    process = train_process(tiny_args(tiny_folder, tmp_path / "c", *steps))
    for line in process.stdout:
        if "step 5/12" in line:  # step 4's checkpoint is complete; step 5's may be half-written
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    outputs = []
    for p in uninterrupted:
        outputs.append(p.communicate(timeout=300)[0])
        assert p.returncode == 0, outputs[-1]
    assert "step 12/12" in outputs[0] and "img/s" in outputs[0] and "ETA" in outputs[0]
    run_dir = tmp_path / "a" / "run"
    for name in ("config.json", "generator.keras", "history.jsonl", "training_curves.png", "samples/step_0000012.png"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "logs").glob("events.out.tfevents.*"))
    assert json.load(open(run_dir / "config.json"))["max_steps"] == 12

    with open(tmp_path / "c" / "run" / "history.jsonl", "a") as f:
        f.write('{"split": "train", "st')  # what a SIGKILL in the middle of an append leaves
    # Resumed with settings that change what it writes, not what it trains: both are reported and kept.
    out = run_to_end(tiny_args(tiny_folder, tmp_path / "c", *steps, "--sample-interval", "6", "--validate", "true"))
    assert "resumed from" in out and "at step 4" in out and "step 5/12" in out and "step 12/12" in out
    assert "sample_interval 1000 -> 6" in out and "validation at step 8" in out
    assert "AutoGraph could not transform" not in out and "Traceback" not in out  # a clean log
    assert json.load(open(tmp_path / "c" / "run" / "config.json"))["sample_interval"] == 6
    assert (tmp_path / "c" / "run" / "samples" / "step_0000006.png").exists()
    rows = [json.loads(line) for line in open(tmp_path / "c" / "run" / "history.jsonl")]
    # the steps after step 4's checkpoint are logged once, after resuming
    assert [r["step"] for r in rows if r["split"] == "train"] == list(range(1, 13))
    a, b, c = (generator_weights(tmp_path / k) for k in "abc")
    noise = max(np.abs(x - y).max() for x, y in zip(a, b))
    resumed = max(np.abs(x - y).max() for x, y in zip(a, c))
    assert resumed <= max(10 * noise, 1e-5), (resumed, noise)


@pytest.mark.slow
def test_a_sigterm_saves_after_the_step_and_validation_runs_every_validate_interval(tiny_folder, tmp_path):
    args = tiny_args(tiny_folder, tmp_path, "--max-steps", "1000", "--save-interval", "1000", "--validate", "true",
                     "--validate-interval", "2")
    process = train_process(args)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "validation at step 4:" in line:
            process.send_signal(signal.SIGTERM)
            break
    out = "".join(lines) + process.communicate(timeout=300)[0]
    assert process.returncode == 0, out
    step = int(re.search(r"stopped at step (\d+) \(SIGTERM\)", out)[1])
    assert step >= 4 and "Traceback" not in out
    checkpoints = tmp_path / "run" / "checkpoints"
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith(f"ckpt-{step}")  # saved there, not at --save-interval
    assert (tmp_path / "run" / "generator.keras").exists()
    rows = [json.loads(line) for line in open(tmp_path / "run" / "history.jsonl")]
    assert [r["step"] for r in rows if r["split"] == "test"] == list(range(2, step + 1, 2))  # every 2 steps, mid-epoch
    resumed = run_to_end(tiny_args(tiny_folder, tmp_path, "--max-steps", str(step + 1)))
    assert f"resumed from {checkpoints / f'ckpt-{step}'} at step {step}" in resumed and f"step {step + 1}/" in resumed


@pytest.mark.slow
def test_jit_compile_runs_the_step_under_xla_with_the_same_losses(monkeypatch):
    # XLA draws other dropout masks from the same seed: compare the step without dropout
    monkeypatch.setitem(models._DECODER, "cifar10", [(f, 0.0) for f, _ in models._DECODER["cifar10"]])
    cfg = config.make_config(dataset="cifar10", dataset_path=str(CIFAR), batch_size=4, width=0.125,
                             mixed_precision="off")
    batch = next(iter(data.make_dataset(cfg, "train")))
    losses = {}
    for jit in (False, True):
        jit_cfg = dataclasses.replace(cfg, jit_compile=jit)
        state = training.create_train_state(jit_cfg, tf.distribute.get_strategy())
        step = training.compile_step("gan", state, jit_cfg, tf.distribute.get_strategy())
        assert step._jit_compile is (True if jit else None)  # what --jit-compile asks tf.function for
        losses[jit] = {k: float(v) for k, v in step(batch).items()}
    assert "HloModule" in step.experimental_get_compiler_ir(batch)(stage="hlo")  # the whole step, one XLA module
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)  # XLA fuses and reorders: rounding differs


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_folder, tmp_path, monkeypatch):
    training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "2")))
    l1_loss = losses.l1_loss
    monkeypatch.setattr(losses, "l1_loss", lambda *args: l1_loss(*args) * float("nan"))  # the loss diverges
    # checked when it logs or saves (step 4): nothing after the last good checkpoint is saved
    with pytest.raises(training.TrainingError, match=r"step 4: non-finite .*gen_loss.*generator weights.*ckpt-2"):
        training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "8", "--log-interval", "4",
                                                   "--save-interval", "4")))
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-2")


def test_steps_count_on_the_device_and_non_finite_values_or_weights_are_named_before_a_save(tmp_path):
    cfg = config.make_config(dataset="cifar10", dataset_path=str(CIFAR), batch_size=4, width=0.125,
                             mixed_precision="off")
    state = training.create_train_state(cfg, tf.distribute.get_strategy())
    steps, evaluate = compiled(cfg, state)
    batch = next(iter(data.make_dataset(cfg, "train")))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**state.checkpointed()), str(tmp_path), 1)
    good = training.check_finite(state, steps["gan"](batch), 1, manager)
    assert (int(state.step), int(state.epoch_step)) == (1, 1) and all(isinstance(v, float) for v in good.values())
    kernel = state.discriminator.trainable_variables[0]  # a finite loss, a non-finite update: the weights tell
    kernel.assign(tf.fill(kernel.shape, float("nan")))
    with pytest.raises(training.TrainingError, match=r"^step 2: non-finite discriminator weights; stopped"):
        training.check_finite(state, good, 2, manager)
    values = steps["gan"](batch | dict(colour=batch["colour"] * float("nan")))  # non-finite losses
    assert (int(state.step), int(state.epoch_step)) == (2, 2)
    with pytest.raises(training.TrainingError, match=r"step 3: non-finite disc_loss.*gen_loss.*generator weights"):
        training.check_finite(state, values, 3, manager)


@pytest.mark.slow
def test_colorgans_kernel_gradient_and_batchnorm_give_the_same_step_as_keras_own_ops(monkeypatch):
    # half width: the deep layers still have the channels and 2x2 maps for which the rule picks the matmul
    cfg = config.make_config(dataset="cifar10", dataset_path=str(CIFAR), batch_size=4, width=0.5, mixed_precision="off")
    batch = next(iter(data.make_dataset(cfg, "train")))
    results = {}
    for ours in (False, True):
        monkeypatch.setattr(cpu_kernels, "MATMUL_KERNEL_GRADIENT", ours)
        monkeypatch.setattr(cpu_kernels, "FUSED_BATCHNORM", ours)
        monkeypatch.setattr(cpu_kernels, "ZERO_BIAS_GRADIENT", ours)
        # the same seed: the same weights and dropout
        state = training.create_train_state(cfg, tf.distribute.get_strategy())
        start = {v.path: v.numpy() for v in (*state.generator.variables, *state.discriminator.variables)}
        steps, evaluate = compiled(cfg, state)
        ops = [op.type for op in steps["gan"].get_concrete_function(batch).graph.get_operations()]
        losses = steps["gan"](batch)
        results[ours] = (ops, {k: float(v) for k, v in losses.items()},
                         [(v.path, v.numpy()) for v in (*state.generator.variables, *state.discriminator.variables)])
    (ops_keras, losses_keras, variables_keras), (ops, losses, variables) = results[False], results[True]
    assert "ExtractImagePatches" not in ops_keras and "FusedBatchNormV3" not in ops_keras
    assert ops.count("ExtractImagePatches") == 4  # enc4 and dec0 (2x2 maps), in each of the two G updates
    assert ops.count("FusedBatchNormV3") == 2 * 9 + 4 * 3  # G's 9 BatchNorms in 2 forward passes, D's 3 in 4
    # the second G update's losses follow biases that moved in one run and not in the other: BatchNorm
    # cancels them up to rounding (5e-5 under ONEDNN_MAX_CPU_ISA=AVX2)
    assert losses == pytest.approx(losses_keras, rel=1e-4)
    # Adam's first step moves a weight by about lr times the sign of its gradient. The bias of a
    # convolution that BatchNorm follows has, in TensorFlow's own ops, a gradient of pure rounding
    # noise (BatchNorm subtracts the mean), which Adam turns into up to lr per update either way; in
    # colorgan's its gradient is zero and it stays where it was. Every other weight and statistic
    # (Keras' moving variance is the biased one) must agree to a tenth of a step.
    noise = {f"{layer}/bias"
             for layer in [f"enc{i}" for i in range(5)] + [f"dec{i}" for i in range(4)] + ["conv1", "conv2", "conv3"]}
    differences = {name: float(np.max(np.abs(ours - keras_own)))
                   for (name, ours), (_, keras_own) in zip(variables, variables_keras)}
    worst = max((d, name) for name, d in differences.items() if name not in noise)
    assert worst[0] < 0.1 * cfg.lr, worst
    assert max(d for name, d in differences.items() if name in noise) <= 2 * cfg.lr  # two G updates
    moved = {name: float(np.max(np.abs(value - start[name]))) for name, value in variables if name in noise}
    assert len(moved) == len(noise) and not any(moved.values()), moved


@pytest.mark.slow
def test_mismatched_and_corrupt_checkpoints_are_clear_errors(tiny_folder, tmp_path):
    training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "1")))
    run_dir = tmp_path / "run"
    with pytest.raises(config.UserError, match=r"--generator-output lab.*--generator-output ab"):
        training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "2",
                                                   "--generator-output", "ab")))
    with pytest.raises(config.UserError, match=r"--width 0.125.*--width 0.25"):
        training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "2", "--width", "0.25")))
    saved = (run_dir / "config.json").read_text()
    with pytest.raises(training.TrainingError, match=r"1 steps into an epoch at --batch-size 4: resume it with "
                                                     r"--batch-size 4"):  # its saved place counts batches of 4
        training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "2", "--batch-size", "8")))
    assert (run_dir / "config.json").read_text() == saved
    os.remove(run_dir / "config.json")  # no config to compare: the checkpoint records what it holds
    for flags in (["--generator-output", "ab"], ["--model", "unet"]):  # a U-Net would fit the GAN's G
        with pytest.raises(training.TrainingError, match=f"ckpt-1 holds .*{flags[0]} {{0,1}}[a-z]+.*asks for "
                                                         f".*{' '.join(flags)}"):
            training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "2", *flags)))
    for path in (run_dir / "checkpoints").glob("ckpt-1.data-*"):
        path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(training.TrainingError, match=f"{run_dir}.*ckpt-1"):
        training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "2")))


@pytest.mark.slow
def test_resume_takes_the_newest_checkpoint_that_restores_and_never_restarts_silently(tiny_folder, tmp_path, capsys,
                                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --checkpoints-path, as train.py's default (checkpoints/) is
    args = lambda steps, *extra: config.parse_args(tiny_args(tiny_folder, "runs", "--max-steps", steps, *extra))  # noqa: E731
    run_dir = tmp_path / "runs" / "run"
    training.train(args("3"))
    for path in (run_dir / "checkpoints").glob("ckpt-3.*"):  # the newest checkpoint's files are lost
        path.unlink()
    capsys.readouterr()
    training.train(args("4"))
    out = capsys.readouterr().out
    assert "skipped a newer checkpoint" in out and "ckpt-3" in out and "at step 2" in out and "step 4/4" in out
    rows = [json.loads(line) for line in open(run_dir / "history.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # step 3 is logged once, by the run that kept it
    exported = (run_dir / "generator.keras").read_bytes()
    for path in (run_dir / "checkpoints").iterdir():
        path.unlink()
    with pytest.raises(training.TrainingError, match="holds an earlier run .*generator.keras.*--fresh"):
        training.train(args("5"))
    assert (run_dir / "generator.keras").read_bytes() == exported
    training.train(args("1"), fresh=True)
    aside = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("run.")]
    assert len(aside) == 1 and (aside[0] / "generator.keras").read_bytes() == exported
    assert [json.loads(line)["step"] for line in open(run_dir / "history.jsonl")] == [1]


@pytest.mark.slow
def test_resume_finds_checkpoints_a_broken_state_file_hides_and_reads_all_of_one_before_choosing_it(
        tiny_folder, tmp_path, capsys):
    args = lambda steps: config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", steps,  # noqa: E731
                                                     "--keep-checkpoints", "2"))
    run_dir = tmp_path / "run"
    state = run_dir / "checkpoints" / "checkpoint"
    training.train(args("2"))
    for content in ('model_checkpoint_path: "ckpt-99"\nall_model_checkpoint_paths: "ckpt-99"\n', "",
                    "\x00\xff garbage"):
        state.write_text(content)  # it names no checkpoint that is there, names none, or cannot be parsed
        capsys.readouterr()
        steps = str(int(json.loads(open(run_dir / "history.jsonl").readlines()[-1])["step"]) + 1)
        training.train(args(steps))
        out = capsys.readouterr().out
        assert f"at step {int(steps) - 1}" in out and f"step {steps}/{steps}" in out, out
    rows = [json.loads(line)["step"] for line in open(run_dir / "history.jsonl")]
    assert rows == [1, 2, 3, 4, 5]  # never started again at step 0
    # A flipped bit in the newest checkpoint's data-iterator state: the one before it is chosen
    data_file = next((run_dir / "checkpoints").glob("ckpt-5.data-*"))
    data = bytearray(data_file.read_bytes())
    data[data.index(b"Iterator") + 3] ^= 0x10
    data_file.write_bytes(bytes(data))
    capsys.readouterr()
    training.train(args("6"))
    out = capsys.readouterr().out
    assert "skipped a newer checkpoint" in out and "ckpt-5" in out and "at step 4" in out and "step 6/6" in out


def test_bfloat16_step_on_cpu(tmp_path):
    skip_where_onednn_lacks_bfloat16()
    cfg = config.make_config(dataset="cifar10", dataset_path=str(CIFAR), batch_size=4, width=0.125,
                             mixed_precision="bfloat16")
    state = training.create_train_state(cfg, tf.distribute.get_strategy())
    assert keras.mixed_precision.global_policy().name == "float32"  # the state's own: the caller's is left alone
    steps, evaluate = compiled(cfg, state)
    values = steps["gan"](next(iter(data.make_dataset(cfg, "train"))))
    assert all(np.isfinite(v.numpy()) for v in values.values())
    assert state.generator.get_layer("enc1").compute_dtype == "bfloat16"
    assert state.generator.get_layer("enc1").variable_dtype == "float32"
    assert state.generator.output.dtype == "float32"
    # exported in float32: a run trained in reduced precision colourises in float32 anywhere
    exported = keras.saving.load_model(training.export(state, cfg, str(tmp_path)), compile=False)
    assert {layer.compute_dtype for layer in exported.layers[1:]} == {"float32"}  # [0]: the input
    for saved, trained in zip(exported.trainable_weights, state.generator.trainable_weights):
        np.testing.assert_array_equal(saved, trained)
    # and its BatchNorm statistics re-estimated, not the step's moving averages
    bn = [(exported.get_layer(layer.name), layer) for layer in state.generator.layers if layer.name.endswith("_bn")]
    assert bn and all(not np.allclose(s.moving_variance, t.moving_variance) for s, t in bn)


def in_tensorflows_own_kernels(request) -> bool:
    """float16 on a CPU: oneDNN has float16 convolutions only on CPUs with AVX512_FP16 (or AMX-FP16),
    TensorFlow's own kernels on every CPU. False: the calling test was run again, and passed, in a
    process with oneDNN off (TF_ENABLE_ONEDNN_OPTS is read once, at import); True: this is that process."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        return True
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                             f"{request.node.path}::{request.node.name}"], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0"), timeout=900)
    assert result.returncode == 0, result.stdout[-6000:]
    return False


@pytest.mark.slow  # a child process with oneDNN off
def test_float16_with_loss_scaling_updates_as_float32_does(request):
    """auto's choice on every GPU, run on the CPU: the scaled loss must reach the gradients (a loss
    scaled outside the tape has none), the updates are float32's, unscaled, and a scale too large
    for float16 falls, skipping those updates, until they fit."""
    if not in_tensorflows_own_kernels(request):
        return
    batch, updates = None, {}
    for precision in ("off", "float16"):
        cfg = config.make_config(dataset="cifar10", dataset_path=str(CIFAR), batch_size=4, width=0.125,
                                 mixed_precision=precision)
        state = training.create_train_state(cfg, tf.distribute.get_strategy())  # the same seed: the same first weights
        steps, evaluate = compiled(cfg, state)
        batch = batch or next(iter(data.make_dataset(cfg, "train")))
        kernels = [v for v in state.discriminator.trainable_variables if "kernel" in v.path]
        before = [v.numpy() for v in kernels]
        values = steps["gan"](batch)
        assert all(np.isfinite(v.numpy()) for v in values.values()), values
        updates[precision] = np.concatenate([(v.numpy() - b).ravel() for v, b in zip(kernels, before)])
        if precision == "float16":
            assert state.generator.get_layer("enc1").compute_dtype == "float16"
            assert (state.disc_opt.dynamic_scale.numpy(), state.disc_opt.step_counter.numpy()) == (32768, 1)
            g_before = [v.numpy() for v in state.generator.trainable_variables]
            scales = [float(state.gen_opt.dynamic_scale.numpy())]
            while state.gen_opt.step_counter.numpy() == 0 and len(scales) < 12:
                steps["gan"](batch)
                scales.append(float(state.gen_opt.dynamic_scale.numpy()))
            # G's L1 term (x100) can overflow float16 at the first scales (here 32768 and 16384): each
            # skipped update halves the scale, until one fits and is applied
            assert state.gen_opt.step_counter.numpy() > 0, scales
            assert all(b <= a for a, b in zip(scales, scales[1:]))
            assert any(not np.array_equal(v.numpy(), b) for v, b in zip(state.generator.trainable_variables,
                                                                       g_before))
    moved = np.abs(updates["off"]) > 0
    assert moved.mean() > 0.9 and np.abs(updates["float16"]).max() < 2 * np.abs(updates["off"]).max()
    agree = np.sign(updates["float16"][moved]) == np.sign(updates["off"][moved])
    # Adam's first step is lr * sign(gradient): the same directions, but for the smallest gradients,
    # whose signs float16's rounding flips (0.80 measured; a wrong update would be near chance, 0.5)
    assert agree.mean() > 0.7, agree.mean()


@pytest.mark.slow  # a child process with oneDNN off
def test_a_run_moves_between_precisions_and_float16_keeps_its_loss_scale(tiny_folder, tmp_path, capsys, request):
    """A CPU's float32 or bfloat16 run continues on a GPU in float16 (what auto picks there), and back;
    a float16 checkpoint of colorgan's layout before 2026-12-04 (the LossScaleOptimizer saved whole) is
    one line naming what wrote it."""
    if not in_tensorflows_own_kernels(request):
        return
    for steps, precision in ((1, "off"), (2, "float16"), (3, "bfloat16")):
        capsys.readouterr()
        training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", str(steps),
                                                   "--mixed-precision", precision)))
        out = capsys.readouterr().out
        assert f"step {steps}/{steps}" in out and "corrupt" not in out, out
        assert steps == 1 or f"resumed from {tmp_path / 'run' / 'checkpoints'}/ckpt-{steps - 1}" in out, out

    def restored(saved, precision):
        """(G's loss scale, its counter, G's Adam moments) of a new run of precision restored from saved."""
        cfg = config.make_config(dataset="cifar10", batch_size=4, width=0.125, mixed_precision=precision)
        state = training.create_train_state(cfg, tf.distribute.get_strategy())
        assert resume.restore_newest(state, cfg, str(saved))
        adam = training.adam(state.gen_opt)
        return (None if precision != "float16" else (float(state.gen_opt.dynamic_scale.numpy()),
                                                     int(state.gen_opt.step_counter.numpy())),
                [v.numpy() for v in adam.variables if "momentum" in v.path])

    cfg = config.make_config(dataset="cifar10", batch_size=4, width=0.125, mixed_precision="float16")
    state = training.create_train_state(cfg, tf.distribute.get_strategy())
    state.gen_opt.dynamic_scale.assign(64.0), state.gen_opt.step_counter.assign(7)
    moments = [v.numpy() for v in training.adam(state.gen_opt).variables if "momentum" in v.path]
    for v in training.adam(state.gen_opt).variables:
        v.assign(tf.fill(v.shape, tf.cast(0.25, v.dtype)))
    moments = [np.full_like(m, 0.25) for m in moments]
    objects = state.checkpointed()
    tf.train.Checkpoint(**objects).write(str(tmp_path / "new" / "ckpt-1"))
    earlier = {k: v for k, v in objects.items() if not k.endswith("loss_scale")}  # what earlier code saved
    tf.train.Checkpoint(**{**earlier, "gen_opt": state.gen_opt, "disc_opt": state.disc_opt}).write(
        str(tmp_path / "old" / "ckpt-1"))
    assert any(n.startswith("gen_opt/inner_optimizer/")
               for n, _ in tf.train.list_variables(str(tmp_path / "old" / "ckpt-1")))
    scale, adam = restored(tmp_path / "new", "float16")
    assert scale == (64.0, 7) and all(np.array_equal(a, m) for a, m in zip(adam, moments))
    scale, adam = restored(tmp_path / "new", "off")
    assert scale is None and all(np.array_equal(a, m) for a, m in zip(adam, moments))
    with pytest.raises(training.TrainingError, match=r"ckpt-1 was written by colorgan before 2026-12-04"):
        restored(tmp_path / "old", "float16")
    scale, _ = restored(tmp_path / "run" / "checkpoints", "float16")  # the bfloat16 step's checkpoint
    assert scale == (32768.0, 0)  # no loss scale there: it starts afresh


TWO_DEVICES = r"""
import sys, numpy as np
import colorgan, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from colorgan import config, models, training
# Dropout draws per-replica masks, which cannot match one device's: compare the update without it.
models._DECODER["cifar10"] = [(f, 0.0) for f, _ in models._DECODER["cifar10"]]
cfg = config.make_config(dataset="cifar10", batch_size=8, sync_batchnorm=True, mixed_precision="off", width=0.125)
rng = np.random.default_rng(0)
gray = tf.constant(rng.uniform(-1, 1, (8, 32, 32, 1)), tf.float32)
colour = tf.constant(rng.uniform(-1, 1, (8, 32, 32, 3)), tf.float32)
before, after, losses, evals = [], [], [], []
for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
    state = training.create_train_state(cfg, strategy)
    step, evaluate = training.compile_step("gan", state, cfg, strategy), training.compile_eval(state, cfg, strategy)
    # The first update of an iteration is the discriminator's; the generator's two come after it.
    # Conv biases feeding BatchNorm have a zero gradient in exact arithmetic, so their Adam steps
    # are lr * sign(rounding noise) on any device: compare the kernels.
    kernels = [v for v in state.discriminator.trainable_variables if "kernel" in v.path]
    before.append([v.numpy() for v in kernels])
    batch = dict(gray=gray, colour=colour)
    if strategy.num_replicas_in_sync > 1:
        batch = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))
    totals = evaluate(batch)  # validation: means over the batch whatever the device count
    evals.append({k: float(v) / float(totals["count"]) for k, v in totals.items() if k != "count"})
    losses.append({k: float(v) for k, v in step(batch).items()})
    after.append([v.numpy() for v in kernels])
    print(strategy.num_replicas_in_sync, losses[-1])
assert all(np.array_equal(a, b) for a, b in zip(*before)), "both start from the same weights"
for one, two in (losses, evals):
    for k in one:
        assert abs(one[k] - two[k]) <= 1e-4 * max(1.0, abs(one[k])), (k, one[k], two[k])
update = np.mean(np.concatenate([np.abs(a - b).ravel() for a, b in zip(after[0], before[0])]))
difference = np.mean(np.concatenate([np.abs(a - b).ravel() for a, b in zip(*after)]))
print("mean update", update, "mean difference", difference)
sys.exit(0 if difference < 1e-4 * update else 1)
"""


@pytest.mark.slow
def test_two_logical_devices_give_the_same_update_as_one():
    result = subprocess.run([sys.executable, "-c", TWO_DEVICES], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "2 {" in result.stdout and "1 {" in result.stdout


def start_workers(args, logs):
    """Two train.py worker processes on 127.0.0.1 (TF_CONFIG), each writing its output to a file."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    processes = []
    for index, log in enumerate(logs):
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env,
                                          stdout=open(log, "w"), stderr=subprocess.STDOUT))
    return processes


def finish(processes, logs):
    for p in processes:
        p.wait(timeout=400)
    outputs = [open(log).read() for log in logs]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-4000:]
    return outputs


@pytest.mark.slow
def test_a_sigterm_to_one_worker_stops_both_at_one_step_and_they_resume(tiny_folder, tmp_path):
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    workers = start_workers(tiny_args(tiny_folder, tmp_path, "--max-steps", "400"), logs)
    deadline = time.time() + 300
    while not re.search(r" step 3/\d+ ", logs[0].read_text()):  # training: the preemption handler is on
        assert time.time() < deadline and workers[0].poll() is None, logs[0].read_text()[-4000:]
        time.sleep(0.1)
    workers[1].send_signal(signal.SIGTERM)  # the other worker gets no signal
    outputs = finish(workers, logs)
    assert "2 replica(s)" in outputs[0]
    step = int(re.search(r"stopped at step (\d+) \(SIGTERM to a worker", outputs[0])[1])
    assert f"stopped at step {step} (SIGTERM to a worker" in outputs[1] and 3 <= step < 100
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith(f"ckpt-{step}")

    logs = [tmp_path / "worker0-resumed.log", tmp_path / "worker1-resumed.log"]
    outputs = finish(start_workers(tiny_args(tiny_folder, tmp_path, "--max-steps", str(step + 3)), logs), logs)
    assert f"at step {step}" in outputs[0] and f"step {step + 3}/{step + 3}" in outputs[0]
    assert f"at step {step}" in outputs[1]
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith(f"ckpt-{step + 3}")
    assert (tmp_path / "run" / "generator.keras").exists()
    assert not list((tmp_path / "run").glob("workertemp_*"))


def test_ctrl_c_on_a_worker_is_passed_to_the_preemption_handler():
    # On several workers TensorFlow's handler owns SIGTERM; Ctrl-C must reach it, not stop one worker alone.
    got = []

    def handler(signum, frame):  # in the preemption handler's place
        got.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    stop = stopping.Stop(coordinated=True)
    try:
        assert signal.getsignal(signal.SIGTERM) is handler  # left to the handler
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.time() + 5
        while not got and time.time() < deadline:
            time.sleep(0.01)
        assert got == [signal.SIGTERM] and stop.signal == "SIGINT"
    finally:
        stop.restore()
        signal.signal(signal.SIGTERM, previous)


def test_each_worker_reads_only_its_share_and_a_resumed_epoch_skips_unread(tiny_folder, monkeypatch):
    cfg = config.make_config(dataset="cifar10", dataset_path=str(tiny_folder), batch_size=8)  # 4 steps of 32
    read = []
    monkeypatch.setattr(data.images, "read_image", lambda path, size=None: read.append(path) or
                        READ_IMAGE(path, size))

    def indices(pipelines, pipeline, replicas, done=0):
        context = tf.distribute.InputContext(pipelines, pipeline, replicas)
        read.clear()
        batches = list(data.input_pipeline(cfg, 3, context, done))
        assert all(len(b["index"]) == 8 // replicas for b in batches)
        return [int(i) for b in batches for i in b["index"]], len(set(read))

    (first, read_first), (second, read_second) = indices(2, 0, 2), indices(2, 1, 2)  # two workers
    assert sorted(first + second) == list(range(32)) and read_first == read_second == 16
    assert indices(1, 0, 2)[0] == indices(1, 0, 1)[0] and sorted(indices(1, 0, 2)[0]) == list(range(32))
    resumed, read_resumed = indices(2, 1, 2, done=1)  # one step (4 images a worker) done: not read again
    assert resumed == second[4:] and read_resumed == 12


@pytest.mark.slow
def test_importing_colorgan_starts_no_tensorflow_runtime():
    # MultiWorkerMirroredStrategy and logical devices must be configured before TensorFlow's
    # runtime starts; a TF op at import time (a module-level tf.constant) starts it.
    code = ("import colorgan.training, colorgan.evaluation, colorgan.turing, colorgan.inference\n"
            "import tensorflow as tf\n"
            "cpu = tf.config.list_physical_devices('CPU')[0]\n"
            "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
            "print('configurable')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "configurable" in result.stdout, result.stderr[-2000:]


@pytest.mark.slow
def test_a_run_folder_is_used_by_one_process_at_a_time(tiny_folder, tmp_path):
    cfg = config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "1"))
    with resume.locked(cfg):  # as a train.py already running on the folder holds it
        with pytest.raises(training.TrainingError, match=rf"run is in use by another train.py \(pid {os.getpid()}\)"):
            training.train(cfg)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # a holder killed with SIGKILL leaves no stale lock: the kernel drops it with the process
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(300)",
                               str(tmp_path / ".run.lock")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(training.TrainingError, match="in use"):
        training.train(cfg)
    holder.kill()
    holder.wait(timeout=10)
    with resume.locked(cfg):
        pass


@pytest.mark.slow
def test_a_sigterm_during_the_export_stops_it_with_one_line_and_the_same_command_exports(tiny_folder, tmp_path,
                                                                                         capsys, monkeypatch):
    save = keras.Model.save

    def interrupted_save(model, path, *args, **kwargs):
        save(model, path, *args, **kwargs)  # the temporary file is written: the rename is what must not happen
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(keras.Model, "save", interrupted_save)
    args = config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "1"))
    with pytest.raises(SystemExit) as stopped:
        training.train(args)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "SIGTERM while writing the training curves and generator.keras: stopped" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".") or p.suffix == ".keras") == []
    monkeypatch.undo()
    training.train(args)
    out = capsys.readouterr().out
    assert ("ckpt-1 at step 1" in out and "generator exported" in out
            and (tmp_path / "run" / "generator.keras").is_file())


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tiny_folder, tmp_path, monkeypatch):
    training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "1")))
    checkpoints = tmp_path / "run" / "checkpoints"
    good = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    real_save = tf.train.CheckpointManager.save

    def disk_full(manager, checkpoint_number=None, **kwargs):  # as TensorFlow fails on a full disk (a 3 MB tmpfs)
        (checkpoints / f"ckpt-{checkpoint_number}_temp").mkdir()
        (checkpoints / f"ckpt-{checkpoint_number}_temp" / "part-00000-of-00001.data").write_bytes(b"x" * 100)
        raise tf.errors.ResourceExhaustedError(None, None, "ckpt_temp/part-00000; No space left on device [Op:SaveV2]")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full)
    with pytest.raises(training.TrainingError) as error:
        training.train(config.parse_args(tiny_args(tiny_folder, tmp_path, "--max-steps", "2")))
    message = str(error.value)
    assert "\n" not in message and f"cannot write checkpoint 2 in {checkpoints}: no space left on device" in message
    assert re.search(r"[\d.]+ MB free, a checkpoint takes [\d.]+ MB\. The last good checkpoint is .*ckpt-1", message)
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == good  # no ckpt-2_temp, ckpt-1 as it was
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)


def test_ema_averages_the_generator_and_is_what_export_saves(tiny_folder, tmp_path, capsys):
    cfg = config.make_config(dataset="cifar10", dataset_path=str(tiny_folder), batch_size=4, width=0.125,
                             mixed_precision="off", model="unet", ema=0.5)  # one G update a step
    state = training.create_train_state(cfg, tf.distribute.get_strategy())
    steps, evaluate = compiled(cfg, state)
    weights = lambda model: [v.numpy() for v in model.trainable_variables]  # noqa: E731
    average = weights(state.generator)  # the average starts at the initial weights
    assert all(np.array_equal(a, b) for a, b in zip(average, weights(state.generator_ema)))
    for batch in data.make_dataset(cfg, "train").take(3):
        steps["generator"](batch)
        average = [0.5 * a + 0.5 * w for a, w in zip(average, weights(state.generator))]  # by hand
    for by_hand, kept in zip(average, weights(state.generator_ema)):
        np.testing.assert_allclose(kept, by_hand, rtol=1e-5, atol=1e-7)
    assert not all(np.allclose(a, w) for a, w in zip(average, weights(state.generator)))  # not the raw weights
    exported = keras.saving.load_model(training.export(state, cfg, str(tmp_path)), compile=False)
    for saved, kept in zip(weights(exported), weights(state.generator_ema)):
        np.testing.assert_array_equal(saved, kept)
    # resumed with --ema from a checkpoint without an average: it starts from the restored weights
    plain = training.create_train_state(dataclasses.replace(cfg, ema=0.0), tf.distribute.get_strategy())
    plain.generator.trainable_variables[0].assign_add(tf.ones_like(plain.generator.trainable_variables[0]))
    tf.train.CheckpointManager(tf.train.Checkpoint(**plain.checkpointed()), str(tmp_path / "plain"), 1).save(0)
    again = training.create_train_state(cfg, tf.distribute.get_strategy(), pretrained=False)
    assert resume.restore_newest(again, cfg, str(tmp_path / "plain"))
    assert all(np.array_equal(a, b) for a, b in zip(weights(plain.generator), weights(again.generator_ema)))


MID_EPOCH = ROOT / "tests" / "data" / "mid-epoch"  # tests/data/README.md: how it was made


@pytest.mark.slow
def test_a_committed_mid_epoch_checkpoint_resumes_at_its_next_batch_as_an_uninterrupted_run(tmp_path, capsys):
    """A run that colorgan at ea1a17d stopped 3 steps into its first epoch goes on with the epoch's
    fourth batch, to the weights of a run that never stopped."""
    flags = ["--dataset", "cifar10", "--dataset-path", str(CIFAR), "--batch-size", "4", "--sample-size", "2",
             "--log-interval", "1", "--save-interval", "100", "--sample-interval", "1000", "--validate", "false",
             "--mixed-precision", "off", "--width", "0.03125", "--generator-output", "ab", "--ema", "0.995"]
    run = lambda name, steps: training.train(config.parse_args(  # noqa: E731
        [*flags, "--checkpoints-path", str(tmp_path / name), "--name", "run", "--max-steps", str(steps)]))
    for name, stops in (("a", [6]), ("b", [4, 6])):  # b: once more from the checkpoint the resumed run writes
        shutil.copytree(MID_EPOCH, tmp_path / name / "run")
        for steps in stops:
            capsys.readouterr()
            run(name, steps)
            out = capsys.readouterr().out
            assert f"at step {steps - 2 if steps == 6 and name == 'b' else 3}" in out and f"step {steps}/{steps}" in out
    run("whole", 6)
    a, b, whole = (generator_weights(tmp_path / k) for k in ("a", "b", "whole"))
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) < 1e-6
    # The fixture's first 3 steps ran on Zen 5: on another CPU the same computation, rounded by other kernels
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, whole)) < 2e-4  # 0 on Zen 5, 1.5e-5 on AVX2
    # the batch it trains next is the epoch's fourth
    cfg = config.parse_args([*flags, "--checkpoints-path", str(tmp_path / "a"), "--name", "run"])
    shutil.rmtree(tmp_path / "a" / "run")
    shutil.copytree(MID_EPOCH, tmp_path / "a" / "run")
    strategy = tf.distribute.get_strategy()
    state = training.create_train_state(cfg, strategy, pretrained=False)
    latest = resume.restore_newest(state, cfg, str(tmp_path / "a" / "run" / "checkpoints"))
    batches = training._epoch_batches(state, cfg, strategy, tf.train.Checkpoint(**state.checkpointed()), 0, latest,
                                      data.Skipped())
    whole = [b["index"].numpy().tolist() for b in data.make_dataset(cfg, "train", 0)]
    assert len(whole) == 12 and next(batches)["index"].numpy().tolist() == whole[3]
    # a checkpoint of colorgan's first weeks (no record of its networks) is one line naming what wrote it
    tf.train.Checkpoint(**{k: v for k, v in state.checkpointed().items() if k != "architecture"}).write(
        str(tmp_path / "old" / "ckpt-1"))
    with pytest.raises(training.TrainingError, match=r"^\S+ckpt-1 was written by colorgan before 2026-12-04, .*fresh$"):
        resume.restore_newest(state, cfg, str(tmp_path / "old"))
