"""The training loop: one discriminator then two generator updates per iteration, as the authors do.

A custom GradientTape step under tf.distribute (one device, several GPUs, or several machines),
with mixed precision on GPUs, checkpoints that resume at exactly the next batch, and the things a
person watches: a progress line, TensorBoard, sample grids, validation and training curves.
"""
import dataclasses
import json
import math
import os
import signal
import time

import numpy as np

import colorgan  # noqa: F401  (sets TensorFlow's environment before it is imported)
import keras
import tensorflow as tf

from colorgan import color, data, files, losses, metrics, models, plots
from colorgan.config import ARCHITECTURE, Config, UserError, differences, load_config, on_run

PHASES = {"generator": "generator alone, L1 only", "discriminator": "discriminator alone, against the generator",
          "gan": "adversarial: D once, then G twice"}


class TrainingError(UserError):
    """Training cannot go on: a NaN loss, or a checkpoint that does not fit."""


def make_strategy() -> tf.distribute.Strategy:
    """Several machines when TF_CONFIG says so, all local GPUs when there are several, else one device."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def cpu_bfloat16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The CPU's flags for native bfloat16 arithmetic (AVX512_BF16, AMX); none where unknown."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]


def precision_policy(config: Config) -> tuple[str, str]:
    """(Keras dtype policy, why). auto: float16 with loss scaling on a GPU; bfloat16 on a CPU with
    native bfloat16 arithmetic (1.3-1.4x faster there, same quality: bench/README.md); else float32,
    as emulated bfloat16 and float16 are slower (../shared/STACK_NOTES.md)."""
    policies = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
    if config.mixed_precision != "auto":
        return policies[config.mixed_precision], f"--mixed-precision {config.mixed_precision}"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16", "auto: a GPU"
    native = cpu_bfloat16_flags()
    if native:
        return "mixed_bfloat16", f"auto: the CPU has native bfloat16 ({', '.join(native)})"
    return "float32", "auto: a CPU without native bfloat16, where reduced precision is slower"


def learning_rate(config: Config, step, scale: float = 1.0):
    """lr * rate^(step / decay_steps) floored at 1e-6, then times scale (the discriminator's 1/10,
    so its floor is 1e-7), as the authors decay it."""
    if not config.lr_decay:
        return tf.constant(config.lr * scale, tf.float32)
    decayed = config.lr * tf.pow(config.lr_decay_rate, tf.cast(step, tf.float32) / config.lr_decay_steps)
    return tf.maximum(1e-6, decayed) * scale


class Run:
    """Models, optimisers and counters of one run, built under the strategy's scope."""

    def __init__(self, config: Config, strategy: tf.distribute.Strategy, pretrained: bool = True):
        """pretrained=False leaves out the backbone's initial weights: a checkpoint is restored next."""
        self.config, self.strategy = config, strategy
        stride = models.total_stride(config.dataset, config.model, config.backbone)
        if config.image_size % stride:
            raise UserError(f"--image-size {config.image_size} is not a multiple of the generator's stride {stride}")
        policy, self.policy_reason = precision_policy(config)
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            self.generator = models.generator_for(config, pretrained)
            self.discriminator = None if config.model == "unet" else models.build_discriminator(
                config.dataset, 4, config.sync_batchnorm)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
            # Which networks the checkpoint holds: checked before restoring, even without config.json.
            self.architecture = tf.Variable(architecture(config), dtype=tf.string, trainable=False)
            self.gen_opt = keras.optimizers.Adam(lambda: learning_rate(config, self.step), beta_1=config.beta1)
            self.disc_opt = None if self.discriminator is None else keras.optimizers.Adam(
                lambda: learning_rate(config, self.step, 0.1), beta_1=config.beta1)
            if policy == "mixed_float16":
                self.gen_opt = keras.optimizers.LossScaleOptimizer(self.gen_opt)
                if self.disc_opt is not None:
                    self.disc_opt = keras.optimizers.LossScaleOptimizer(self.disc_opt)
            # Built before the step is traced: otherwise the first loss scale is baked into the graph.
            self.gen_opt.build(self.generator.trainable_variables)
            if self.disc_opt is not None:
                self.disc_opt.build(self.discriminator.trainable_variables)
        # Dropout's seed state is not part of the model's checkpoint: save it too, so a resumed run
        # draws the same dropout masks as an uninterrupted one.
        self.rng = [layer.seed_generator.state for layer in self.generator.layers
                    if isinstance(layer, keras.layers.Dropout)]
        self.policy = policy

    def state(self, **extra) -> dict:
        state = dict(generator=self.generator, discriminator=self.discriminator, gen_opt=self.gen_opt,
                     disc_opt=self.disc_opt, step=self.step, epoch=self.epoch, epoch_step=self.epoch_step,
                     rng=self.rng, architecture=self.architecture, **extra)
        return {k: v for k, v in state.items() if v is not None}  # --model unet has no discriminator

    def _accuracy(self, colour, fake):
        replicas = self.strategy.num_replicas_in_sync  # accuracy is a mean: sum / replicas after reduce
        return metrics.pixel_accuracy(colour, fake, self.config.color_space, self.config.acc_thresh) / replicas

    def _update(self, optimizer, loss, tape, variables):
        grads = tape.gradient(optimizer.scale_loss(loss), variables)
        optimizer.apply_gradients(zip(grads, variables))

    def replica_generator_step(self, gray, colour):
        """The generator alone, L1 only: the paper's U-Net baseline and NoGAN's first phase."""
        config, G = self.config, self.generator
        with tf.GradientTape() as tape:
            fake = models.colorize(G, gray, config.generator_output, training=True)  # (bs, H, W, 3)
            l1 = losses.l1_loss(fake, colour, config.batch_size)
            loss = config.l1_weight * l1
        self._update(self.gen_opt, loss, tape, G.trainable_variables)
        return dict(gen_loss=loss, gen_l1=l1, accuracy=self._accuracy(colour, fake))

    def replica_discriminator_step(self, gray, colour):
        """The discriminator alone, against the generator's colourisations: NoGAN's second phase."""
        config, D = self.config, self.discriminator
        fake = models.colorize(self.generator, gray, config.generator_output, training=True)
        with tf.GradientTape() as tape:
            real_logits = D(tf.concat([gray, colour], -1), training=True)  # (bs, H/8, W/8, 1)
            fake_logits = D(tf.concat([gray, tf.cast(fake, gray.dtype)], -1), training=True)
            disc = losses.discriminator_loss(real_logits, fake_logits, config.label_smoothing, config.batch_size,
                                             config.gan_loss)
        self._update(self.disc_opt, disc["total"], tape, D.trainable_variables)
        return dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                    accuracy=self._accuracy(colour, fake))

    def replica_step(self, gray, colour):
        """One iteration on one replica: D once, then G twice. Returns the metrics as scalars."""
        config, G, D = self.config, self.generator, self.discriminator
        global_batch = config.batch_size

        def generator_update(tape, fake):
            """Finish G's loss on fake (recorded by tape) against the current D, and apply it."""
            with tape:
                fake_logits = D(tf.concat([gray, tf.cast(fake, gray.dtype)], -1), training=True)
                gen = losses.generator_loss(fake_logits, fake, colour, config.l1_weight, global_batch,
                                            config.gan_loss)
            self._update(self.gen_opt, gen["total"], tape, G.trainable_variables)
            return gen

        # D's update and G's first update see the same G weights: one forward pass of G serves
        # both (it is 12% of the iteration's FLOPs); the authors' loop ran it twice.
        gen_tape = tf.GradientTape()
        with gen_tape:
            fake = models.colorize(G, gray, config.generator_output, training=True)  # (bs, H, W, 3)
        with tf.GradientTape() as tape:
            real_logits = D(tf.concat([gray, colour], -1), training=True)  # (bs, H/8, W/8, 1)
            fake_logits = D(tf.concat([gray, tf.cast(tf.stop_gradient(fake), gray.dtype)], -1), training=True)
            disc = losses.discriminator_loss(real_logits, fake_logits, config.label_smoothing, global_batch,
                                             config.gan_loss)
        self._update(self.disc_opt, disc["total"], tape, D.trainable_variables)

        generator_update(gen_tape, fake)  # G is updated twice so that D does not win too early
        gen_tape = tf.GradientTape()
        with gen_tape:
            fake = models.colorize(G, gray, config.generator_output, training=True)
        gen = generator_update(gen_tape, fake)

        return dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                    gen_loss=gen["total"], gen_gan=gen["gan"], gen_l1=gen["l1"], accuracy=self._accuracy(colour, fake))

    def replica_eval(self, gray, colour):
        """Sums of the losses and accuracy over one replica's batch (BatchNorm in inference mode, no
        dropout): summed over replicas and divided by the count, they are means over the test split."""
        config, G, D = self.config, self.generator, self.discriminator
        n = tf.shape(gray)[0]  # the losses' mean over this replica's batch, not a share of a global batch
        fake = models.colorize(G, gray, config.generator_output, training=False)
        l1 = losses.l1_loss(fake, colour, n)
        values = dict(gen_loss=config.l1_weight * l1, gen_l1=l1,
                      accuracy=metrics.pixel_accuracy(colour, fake, config.color_space, config.acc_thresh))
        if D is not None:
            real_logits = D(tf.concat([gray, colour], -1), training=False)
            fake_logits = D(tf.concat([gray, tf.cast(fake, gray.dtype)], -1), training=False)
            disc = losses.discriminator_loss(real_logits, fake_logits, config.label_smoothing, n, config.gan_loss)
            gen = losses.generator_loss(fake_logits, fake, colour, config.l1_weight, n, config.gan_loss)
            values |= dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                           gen_loss=gen["total"], gen_gan=gen["gan"])
        n = tf.cast(n, tf.float32)
        return {k: v * n for k, v in values.items()} | {"count": n}  # sums: batches may differ in size

    def compile(self):
        """tf.functions that run a step on every replica and reduce the results."""
        def distributed(fn):
            def run(batch):
                results = self.strategy.run(fn, args=batch)
                return {k: self.strategy.reduce("SUM", v, axis=None) for k, v in results.items()}
            return tf.function(run, jit_compile=self.config.jit_compile or None)
        self.train_steps = {"generator": distributed(self.replica_generator_step), "gan": distributed(self.replica_step)}
        if self.discriminator is not None:
            self.train_steps["discriminator"] = distributed(self.replica_discriminator_step)
        self.train_step = self.train_steps["generator" if self.discriminator is None else "gan"]
        self.eval_step = distributed(self.replica_eval)


# ------------------------------------------------------------------------------------------------

class Stop:
    """SIGINT / SIGTERM ask the loop to stop after the current step, save, and exit."""

    def __init__(self):
        self.signal = None
        self.previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)

    def handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        print(f"\n{self.signal}: saving a checkpoint after this step, then stopping", flush=True)

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _check_config(config: Config, run_dir: str) -> None:
    """Refuse a run folder of other networks; say which settings changed on resume."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return
    previous = load_config(path)
    on_run(previous, dataclasses.asdict(config), run_dir)
    changed = differences(previous, config)
    if changed:
        print("resuming with changed settings: " +
              ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()))


def restore(checkpoint: tf.train.Checkpoint, path: str, partial: bool = False) -> None:
    """Restore the checkpoint's objects from path, or fail with a message that names the path."""
    try:
        status = checkpoint.read(path).assert_existing_objects_matched()
        if partial:
            status.expect_partial()
    except Exception as error:  # TF raises many kinds on a corrupt or foreign file
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise TrainingError(f"cannot restore checkpoint {path}: it is corrupt or of another architecture "
                            f"({first})") from None


def architecture(config: Config) -> str:
    return ", ".join(f"--{name.replace('_', '-')} {getattr(config, name)}" for name in ARCHITECTURE)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def resume(run: "Run", checkpoint_dir: str) -> str | None:
    """Restore the newest checkpoint that restores; returns its path (None: there is none).

    A newer one that cannot be read (missing or corrupt files) is skipped with a note; one of
    another architecture is an error, as are checkpoints of which none restores.
    """
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    paths = list(reversed(state.all_model_checkpoint_paths)) if state else []
    problems = []
    for path in paths:
        path = path if os.path.isabs(path) else os.path.join(checkpoint_dir, path)
        try:
            names = dict(tf.train.list_variables(path))
            tf.train.load_variable(path, "epoch/.ATTRIBUTES/VARIABLE_VALUE")
        except Exception as error:  # TF raises many kinds on missing or truncated files
            problems.append(f"{path}: {_first_line(error)}")
            continue
        objects = run.state()
        key = "architecture/.ATTRIBUTES/VARIABLE_VALUE"
        if key in names:
            recorded = tf.train.load_variable(path, key).decode()
            if recorded != architecture(run.config):
                raise TrainingError(f"{path} holds {recorded}; this command asks for {architecture(run.config)}. "
                                    "Use another --name, or the same settings to resume.")
        else:
            del objects["architecture"]  # written before colorgan recorded it
        try:
            restore(tf.train.Checkpoint(**objects), path)
        except TrainingError as error:
            problems.append(str(error))
            continue
        for problem in problems:
            print(f"note: skipped a newer checkpoint that cannot be read: {problem}", flush=True)
        return path
    if problems:
        raise TrainingError("no checkpoint could be restored: " + "; ".join(problems))
    return None


def _earlier_run(run_dir: str) -> list[str]:
    """What an earlier run left in run_dir (other workers' folders do not count)."""
    if not os.path.isdir(run_dir):
        return []
    return sorted(name for name in os.listdir(run_dir) if not name.startswith(".worker-"))


def _move_aside(run_dir: str) -> None:
    if _earlier_run(run_dir):
        aside = f"{os.path.normpath(run_dir)}.{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(run_dir, aside)
        print(f"--fresh: moved the earlier run to {aside}", flush=True)


def _drop_history_after(run_dir: str, step: int) -> None:
    """history.jsonl rows past the restored step were logged by a process killed before its next
    checkpoint: the resumed run logs those steps again."""
    path = os.path.join(run_dir, "history.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            rows = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        files.write_text(path, "".join(rows))


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _append_history(run_dir: str, row: dict) -> None:
    with open(os.path.join(run_dir, "history.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def _is_chief() -> bool:
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = cluster.get("task", {})
    return not cluster or task.get("type") in (None, "chief") or (
        task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster.get("cluster", {}))


def train(config: Config, fresh: bool = False) -> str:
    """Train (or resume) the run in config.run_dir; returns the path of the exported generator.

    fresh: move an earlier run in that folder aside (to <run_dir>.<date-time>) and start anew.
    """
    strategy = make_strategy()  # first: MultiWorkerMirroredStrategy must precede other TF ops
    if os.path.exists(config.checkpoints_path) and not os.path.isdir(config.checkpoints_path):
        raise TrainingError(f"--checkpoints-path {config.checkpoints_path} is a file: give a folder")
    chief = _is_chief()
    if fresh and chief:
        _move_aside(config.run_dir)
    _check_config(config, config.run_dir)
    checkpoint_state = tf.train.get_checkpoint_state(os.path.join(config.run_dir, "checkpoints"))
    if chief and not checkpoint_state and _earlier_run(config.run_dir):
        raise TrainingError(f"{config.run_dir} holds an earlier run ({', '.join(_earlier_run(config.run_dir))}) "
                            "but no checkpoint to resume from: pass --fresh to move it aside and start anew, "
                            "or choose another --name")
    # Every worker writes checkpoints (saving is collective); only the chief's are kept.
    run_dir = config.run_dir if chief else os.path.join(config.run_dir, f".worker-{os.getpid()}")
    os.makedirs(run_dir, exist_ok=True)
    print(f"config: {config.to_json()}", flush=True)
    for split in ("train", "test"):
        print(data.describe(config, split))

    run = Run(config, strategy, pretrained=not checkpoint_state)
    run.compile()
    distributed = strategy.num_replicas_in_sync > 1
    print(f"devices: {strategy.num_replicas_in_sync} replica(s), dtype policy {run.policy} ({run.policy_reason}), "
          f"XLA {'on' if config.jit_compile else 'off'}, oneDNN {os.environ.get('TF_ENABLE_ONEDNN_OPTS')}")
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    latest = resume(run, os.path.join(config.run_dir, "checkpoints"))  # all but the data iterator, made per epoch
    start_epoch = int(run.epoch.numpy())
    if latest:
        print(f"resumed from {latest} at step {int(run.step.numpy())}", flush=True)
        _drop_history_after(run_dir, int(run.step.numpy()))
    config.save(run_dir)  # only now: a command that does not fit the run must not overwrite it

    train_size = data.load_source(config.dataset, config.dataset_path, "train", config.seed).size
    steps_per_epoch = max(1, train_size // config.batch_size)
    total_steps = config.total_epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs"))
    samples = _fixed_samples(config)
    stop = Stop()
    try:
        for epoch in range(start_epoch, config.total_epochs):
            resuming = epoch == start_epoch and latest
            if not resuming:
                run.epoch.assign(epoch), run.epoch_step.assign(0)
            phase = config.phase(epoch)
            if epoch == start_epoch or phase != config.phase(epoch - 1):
                last = max(e for e in range(config.total_epochs) if config.phase(e) == phase)
                print(f"phase {phase} ({PHASES[phase]}): epochs {epoch + 1}-{last + 1} of {config.total_epochs}",
                      flush=True)
            skipped = data.Skipped()
            dataset = data.make_dataset(config, "train", epoch, skipped)
            if distributed:  # distributed iterators are not saved: skip the batches this epoch has done
                dataset = strategy.experimental_distribute_dataset(dataset.skip(int(run.epoch_step.numpy())))
            iterator = iter(dataset)
            # On one device the iterator is saved too: a resumed run continues with the very next batch.
            checkpoint = tf.train.Checkpoint(**run.state(**({} if distributed else {"iterator": iterator})))
            manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, config.keep_checkpoints)
            if resuming and not distributed:
                restore(tf.train.Checkpoint(iterator=iterator), latest, partial=True)
            elif epoch > start_epoch:  # the end of the previous epoch, saved with this epoch's fresh iterator
                manager.save(checkpoint_number=int(run.step.numpy()))
            if int(run.step.numpy()) >= total_steps:
                break
            if _train_epoch(run, phase, iterator, manager, writer, samples, stop, total_steps, run_dir, skipped):
                break
            print(f"epoch {epoch + 1}/{config.total_epochs} done: {skipped}", flush=True)
            if config.validate:
                validate(run, run_dir, writer)
        else:
            if config.total_epochs > start_epoch:
                run.epoch.assign(config.total_epochs)
                manager.save(checkpoint_number=int(run.step.numpy()))
                write_samples(run, samples, run_dir, writer)  # the finished model's, as at --max-steps
    finally:
        stop.restore()
    history = os.path.join(run_dir, "history.jsonl")
    if os.path.exists(history):  # also without validation: the curves of the whole run
        plots.training_curves(history, os.path.join(run_dir, "training_curves.png"))
    return export(run, run_dir)


def _fixed_samples(config: Config):
    """The test images of every sample grid, spread over the split: a class-ordered folder's first
    images are all of one class. The split's first images if the spread ones are all unusable."""
    test = data.load_source(config.dataset, config.dataset_path, "test", config.seed)
    for source in (data.spread(test, config.sample_size), test):
        batches = data.make_dataset(config, "test", source=source).unbatch().batch(config.sample_size)
        samples = next(iter(batches), None)
        if samples is not None:
            return samples
    raise data.DataError(f"{data.describe(config, 'test')}, but not one of them is a usable colour image")


def _progress(values: dict) -> str:
    """The losses a phase has, as the progress line shows them."""
    parts = []
    if "disc_loss" in values:
        parts.append(f"D {values['disc_loss']:.3f} (real {values['disc_real']:.3f} fake {values['disc_fake']:.3f})")
    if "gen_gan" in values:
        parts.append(f"G {values['gen_loss']:.3f} (gan {values['gen_gan']:.3f} L1 {values['gen_l1']:.4f})")
    elif "gen_l1" in values:
        parts.append(f"G L1 {values['gen_l1']:.4f}")
    return " ".join(parts) + f" acc {values['accuracy']:.3f}"


def _train_epoch(run, phase, iterator, manager, writer, samples, stop, total_steps, run_dir, skipped) -> bool:
    """Steps until the epoch ends (False) or training must stop (True: max steps or a signal)."""
    config = run.config
    train_step = run.train_steps[phase]
    batches, rate, window_start, window_images = 0, float("nan"), time.perf_counter(), 0
    for batch in iterator:
        values = {k: float(v) for k, v in train_step(batch).items()}
        step = int(run.step.assign_add(1).numpy())
        run.epoch_step.assign_add(1)
        batches += 1
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise TrainingError(f"step {step}: non-finite {', '.join(bad)}; stopped without saving this state. "
                                f"The last good checkpoint is {manager.latest_checkpoint}. Try a lower --lr.")
        if batches == 1:  # the first step traces the graph: leave it out of images/s
            window_start = time.perf_counter()
        else:
            window_images += config.batch_size
        if step % config.log_interval == 0 or step == total_steps:
            if window_images:
                rate = window_images / (time.perf_counter() - window_start)
                window_start, window_images = time.perf_counter(), 0
            eta = (total_steps - step) * config.batch_size / rate if rate > 0 else float("nan")
            print(f"epoch {int(run.epoch.numpy()) + 1}/{config.total_epochs} {phase} step {step}/{total_steps} | "
                  f"{_progress(values)} | {rate:.1f} img/s | ETA {_format_eta(eta)}", flush=True)
            with writer.as_default(step=step):
                for k, v in values.items():
                    tf.summary.scalar(f"train/{k}", v)
            _append_history(run_dir, {"split": "train", "step": step, "phase": phase, **values})
        if step % config.sample_interval == 0:
            write_samples(run, samples, run_dir, writer)
        if config.validate and config.validate_interval and step % config.validate_interval == 0:
            validate(run, run_dir, writer)
        done = step >= total_steps or stop.signal is not None
        if step % config.save_interval == 0 or done:
            manager.save(checkpoint_number=step)
        if done:
            if stop.signal is None:
                write_samples(run, samples, run_dir, writer)
            print(f"stopped at step {step} ({stop.signal or 'max steps'}); checkpoint {manager.latest_checkpoint}")
            return True
    data.check_not_empty(batches, skipped, config, "train")
    return False


def write_samples(run: Run, samples, run_dir: str, writer) -> str:
    """A sample grid (gray | original | colourised) of fixed test images, as PNG and in TensorBoard."""
    gray, colour = samples
    fake = models.colorize(run.generator, gray, run.config.generator_output, training=False)
    to_rgb = lambda x: color.to_uint8(color.postprocess(x, run.config.color_space)).numpy()  # noqa: E731
    gray_rgb = color.to_uint8((tf.cast(gray, tf.float32) + 1) / 2).numpy()
    step = int(run.step.numpy())
    real, fake = to_rgb(colour), to_rgb(fake)
    with writer.as_default(step=step):
        tf.summary.image("samples", np.concatenate([np.repeat(gray_rgb, 3, -1), real, fake], axis=2),
                         max_outputs=len(real))
    return plots.sample_grid(gray_rgb, real, fake, os.path.join(run_dir, "samples", f"step_{step:07d}.png"),
                             title=f"{run.config.name}, step {step}")


def validate(run: Run, run_dir: str, writer) -> dict:
    """Losses and accuracy over the whole test split; refreshes the training-curve PNG."""
    config = run.config
    dataset = data.make_dataset(config, "test")
    if run.strategy.num_replicas_in_sync > 1:
        dataset = run.strategy.experimental_distribute_dataset(dataset)
    totals = {}
    for batch in dataset:
        for k, v in run.eval_step(batch).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    if not totals.get("count"):
        return {}
    values = {k: v / totals["count"] for k, v in totals.items() if k != "count"}
    step = int(run.step.numpy())
    print(f"validation at step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)
    with writer.as_default(step=step):
        for k, v in values.items():
            tf.summary.scalar(f"test/{k}", v)
    _append_history(run_dir, {"split": "test", "step": step, **values})
    plots.training_curves(os.path.join(run_dir, "history.jsonl"), os.path.join(run_dir, "training_curves.png"))
    return values


def export(run: Run, run_dir: str) -> str:
    """Save the generator as a .keras file (colourisation loads it with config.json beside it)."""
    path = os.path.join(run_dir, "generator.keras")
    generator = run.generator
    if run.policy != "float32":  # saved layers keep their policy: colourise in float32 on any machine
        keras.mixed_precision.set_global_policy("float32")
        generator = models.generator_for(run.config, pretrained=False)
        generator.set_weights(run.generator.get_weights())
        keras.mixed_precision.set_global_policy(run.policy)
    with files.atomic_path(path) as temporary:
        generator.save(temporary)
    print(f"generator exported to {path}")
    return path
