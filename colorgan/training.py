"""The training loop: one discriminator then two generator updates per iteration, as the authors do.

A custom GradientTape step under tf.distribute (one device, several GPUs, or several machines), in
mixed precision where the hardware has it (float16 on GPUs, bfloat16 on CPUs), checkpoints that
resume at exactly the next batch, and the things a person watches: a progress line, TensorBoard,
sample grids, validation and training curves.
"""
import json
import math
import os
import time

import numpy as np

import keras
import tensorflow as tf

from colorgan import color, data, devices, files, losses, metrics, models, plots, resume, stopping
from colorgan.config import Config, UserError, as_flags, make_config, parse_command
from colorgan.resume import TrainingError, architecture

PHASES = {"generator": "generator alone, L1 only", "discriminator": "discriminator alone, against the generator",
          "gan": "adversarial: D once, then G twice"}
# BatchNorm statistics at export: 2,048 CIFAR-10 images (1,024 and 4,096 gave CIEDE2000 within 0.04 of
# each other, unet-ab at 92k images); larger images bring more pixels each, but at least 256 images.
# Read in batches of at least a CIFAR-10 batch's pixels: a run trained on small batches exports fast too.
BN_ESTIMATE_PIXELS, BN_ESTIMATE_MIN_IMAGES, BN_BATCH_PIXELS = 2048 * 32 * 32, 256, 128 * 32 * 32


def learning_rate(config: Config, step, scale: float = 1.0):
    """lr * rate^(step / decay_steps) floored at 1e-6, then times scale (the discriminator's
    --disc-lr-ratio, the authors' 1/10, so its floor is 1e-7), as the authors decay it."""
    if not config.lr_decay:
        return tf.constant(config.lr * scale, tf.float32)
    decayed = config.lr * tf.pow(config.lr_decay_rate, tf.cast(step, tf.float32) / config.lr_decay_steps)
    return tf.maximum(1e-6, decayed) * scale


def _apply_if_finite(optimizer, grads, variables):
    """Apply the update only if every gradient on every replica is finite: otherwise the weights,
    Adam's moments and its step count stay as they were (the loop stops at its next check)."""
    context = tf.distribute.get_replica_context()
    # The replicas agree first: one that skipped would leave the others waiting in their all-reduce.
    bad = context.all_reduce("SUM", tf.cast(~tf.math.is_finite(tf.linalg.global_norm(grads)), tf.float32))

    def in_cross_replica(strategy, bad, grads, variables):
        # The condition is taken here, across replicas: a branch of a tf.cond inside a replica may not
        # call merge_call, which apply_gradients does (Keras' LossScaleOptimizer works the same way).
        def apply():
            strategy.extended.call_for_each_replica(
                lambda grads, variables: optimizer.apply_gradients(zip(grads, variables)), args=(grads, variables))
        tf.cond(strategy.experimental_local_results(bad)[0] == 0, apply, lambda: None)

    context.merge_call(in_cross_replica, args=(bad, grads, variables))


def adam(optimizer):
    """The Adam inside float16's LossScaleOptimizer, or the optimizer itself."""
    return optimizer.inner_optimizer if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else optimizer


def loss_scale(optimizer) -> tf.train.Checkpoint | None:
    """float16's dynamic loss scale and its counter; None in other precisions."""
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    return tf.train.Checkpoint(dynamic_scale=optimizer.dynamic_scale, step_counter=optimizer.step_counter)


class Run:
    """Models, optimisers and counters of one run, built under the strategy's scope."""

    def __init__(self, config: Config, strategy: tf.distribute.Strategy, pretrained: bool = True):
        """pretrained=False leaves out the backbone's initial weights: a checkpoint is restored next."""
        self.config, self.strategy = config, strategy
        stride = models.total_stride(config.dataset, config.model, config.backbone)
        if config.image_size % stride:
            raise UserError(f"--image-size {config.image_size} is not a multiple of the generator's stride {stride}")
        policy, self.policy_reason = devices.precision_policy(config)
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            self.generator = models.generator_for(config, pretrained)
            # --ema: an exponential moving average of G's weights, what samples, validation and export use
            self.generator_ema = None
            if config.ema:
                self.generator_ema = models.generator_for(config, pretrained=False)
                self.generator_ema.set_weights([w.numpy() for w in self.generator.weights])
            self.discriminator = None if config.model == "unet" else models.build_discriminator(
                config.dataset, 4, config.sync_batchnorm, config.width, config.spectral_norm)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
            self.first_bad_step = tf.Variable(0, dtype=tf.int64, trainable=False)  # not saved: 0 = none yet
            self.gen_opt = keras.optimizers.Adam(lambda: learning_rate(config, self.step), beta_1=config.beta1)
            self.disc_opt = None if self.discriminator is None else keras.optimizers.Adam(
                lambda: learning_rate(config, self.step, config.disc_lr_ratio), beta_1=config.beta1)
            if policy == "mixed_float16":
                self.gen_opt = keras.optimizers.LossScaleOptimizer(self.gen_opt)
                if self.disc_opt is not None:
                    self.disc_opt = keras.optimizers.LossScaleOptimizer(self.disc_opt)
            # Built before the step is traced: otherwise the first loss scale is baked into the graph.
            self.gen_opt.build(self.generator.trainable_variables)
            if self.disc_opt is not None:
                self.disc_opt.build(self.discriminator.trainable_variables)
        # Which networks the checkpoint holds: checked before restoring, even without config.json. Made
        # outside the strategy's scope: a mirrored variable must be numeric.
        self.architecture = tf.Variable(architecture(config), dtype=tf.string, trainable=False)
        # Dropout's seed state is not part of the model's checkpoint: save it too, so a resumed run
        # draws the same dropout masks as an uninterrupted one.
        self.rng = [layer.seed_generator.state for layer in self.generator.layers
                    if isinstance(layer, keras.layers.Dropout)]
        self.policy = policy
        # --rebalance: a weight per ab bin from the training split's colours (Zhang et al. 2016)
        self.ab_table, self.rebalanced_images = None, 0
        if config.rebalance:
            histogram, self.rebalanced_images = data.ab_histogram(config)
            self.ab_table = tf.constant(losses.rebalancing_table(histogram, config.rebalance), tf.float32)

    def state(self, **extra) -> dict:
        """What a checkpoint holds. The optimisers' Adam state is saved apart from float16's loss
        scale, so that a run moves between precisions: a CPU's bfloat16 or float32 run continues on
        a GPU in float16 (its loss scale starting afresh), and back."""
        state = dict(generator=self.generator, generator_ema=self.generator_ema, discriminator=self.discriminator,
                     gen_opt=adam(self.gen_opt), disc_opt=adam(self.disc_opt), gen_loss_scale=loss_scale(self.gen_opt),
                     disc_loss_scale=loss_scale(self.disc_opt), step=self.step, epoch=self.epoch,
                     epoch_step=self.epoch_step, rng=self.rng, architecture=self.architecture, **extra)
        return {k: v for k, v in state.items() if v is not None}  # --model unet: no discriminator; no --ema: no average

    @property
    def inference_generator(self) -> keras.Model:
        """The generator that samples, validation and export use: the average with --ema."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def _average(self):
        """After a step (cross-replica): ema = d ema + (1 - d) G for the weights, BatchNorm's moving
        statistics copied (export re-estimates them anyway)."""
        d = self.config.ema
        for e, w in zip(self.generator_ema.trainable_variables, self.generator.trainable_variables):
            e.assign(d * e + (1.0 - d) * tf.cast(w, e.dtype))
        for e, w in zip(self.generator_ema.non_trainable_variables, self.generator.non_trainable_variables):
            e.assign(w)

    def checkpoint_bytes(self) -> int:
        """About what a checkpoint takes on disk: the networks' and the optimisers' variables."""
        optimizers = [o for o in (self.gen_opt, self.disc_opt) if o is not None]
        variables = [v for m in (self.generator, self.discriminator) if m is not None for v in m.weights]
        variables += [v for o in optimizers for v in o.variables]
        return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize for v in variables)

    def _accuracy(self, colour, fake):
        replicas = self.strategy.num_replicas_in_sync  # accuracy is a mean: sum / replicas after reduce
        return metrics.pixel_accuracy(colour, fake, self.config.color_space, self.config.acc_thresh) / replicas

    def _update(self, optimizer, loss, tape, variables):
        with tape:  # float16's loss scale, recorded: scaled outside the tape, the loss has no gradient
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):  # which skips such steps itself
            optimizer.apply_gradients(zip(grads, variables))
        else:
            _apply_if_finite(optimizer, grads, variables)

    def _discriminate(self, gray, colour, training=True):
        """D's logits for each patch of a (gray, colour) pair: (bs, H/8, W/8, 1)."""
        return self.discriminator(tf.concat([gray, tf.cast(colour, gray.dtype)], -1), training=training)

    def _discriminator_loss(self, gray, colour, fake, batch, training=True) -> dict:
        real_logits, fake_logits = self._discriminate(gray, colour, training), self._discriminate(gray, fake, training)
        return losses.discriminator_loss(real_logits, fake_logits, self.config.label_smoothing, batch,
                                         self.config.gan_loss)

    def _pixel_weights(self, colour):
        return None if self.ab_table is None else losses.pixel_weights(colour, self.ab_table)

    def _generator_loss(self, gray, colour, fake, batch, training=True) -> dict:
        return losses.generator_loss(self._discriminate(gray, fake, training), fake, colour, self.config.l1_weight,
                                     batch, self.config.gan_loss, self._pixel_weights(colour) if training else None)

    def replica_generator_step(self, gray, colour):
        """The generator alone, L1 only: the paper's U-Net baseline and NoGAN's first phase."""
        config, G = self.config, self.generator
        with tf.GradientTape() as tape:
            fake = models.colorize(G, gray, config.generator_output, training=True)  # (bs, H, W, 3)
            l1 = losses.l1_loss(fake, colour, config.batch_size, self._pixel_weights(colour))
            loss = config.l1_weight * l1
        self._update(self.gen_opt, loss, tape, G.trainable_variables)
        return dict(gen_loss=loss, gen_l1=l1, accuracy=self._accuracy(colour, fake))

    def replica_discriminator_step(self, gray, colour):
        """The discriminator alone, against the generator's colourisations: NoGAN's second phase."""
        fake = models.colorize(self.generator, gray, self.config.generator_output, training=True)
        with tf.GradientTape() as tape:
            disc = self._discriminator_loss(gray, colour, fake, self.config.batch_size)
        self._update(self.disc_opt, disc["total"], tape, self.discriminator.trainable_variables)
        return dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                    accuracy=self._accuracy(colour, fake))

    def replica_step(self, gray, colour):
        """One iteration on one replica: D once, then G twice (so that D does not win too early)."""
        config, G, D, batch = self.config, self.generator, self.discriminator, self.config.batch_size
        # D's update and G's first see the same G weights: one forward pass of G (12% of the
        # iteration's FLOPs) serves both, and its tape is entered again for G's loss.
        gen_tape = tf.GradientTape()
        with gen_tape:
            fake = models.colorize(G, gray, config.generator_output, training=True)  # (bs, H, W, 3)

        with tf.GradientTape() as disc_tape:
            disc = self._discriminator_loss(gray, colour, tf.stop_gradient(fake), batch)
        self._update(self.disc_opt, disc["total"], disc_tape, D.trainable_variables)

        with gen_tape:  # G's first update: against the D just updated
            gen = self._generator_loss(gray, colour, fake, batch)
        self._update(self.gen_opt, gen["total"], gen_tape, G.trainable_variables)

        with tf.GradientTape() as gen_tape:  # G's second update, from a new forward pass
            fake = models.colorize(G, gray, config.generator_output, training=True)
            gen = self._generator_loss(gray, colour, fake, batch)
        self._update(self.gen_opt, gen["total"], gen_tape, G.trainable_variables)

        return dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                    gen_loss=gen["total"], gen_gan=gen["gan"], gen_l1=gen["l1"], accuracy=self._accuracy(colour, fake))

    def replica_eval(self, gray, colour):
        """Sums of the losses and accuracy over one replica's batch (BatchNorm in inference mode, no
        dropout): summed over replicas and divided by the count, they are means over the test split."""
        config = self.config
        n = tf.shape(gray)[0]  # the losses' mean over this replica's batch, not a share of a global batch
        fake = models.colorize(self.inference_generator, gray, config.generator_output, training=False)
        l1 = losses.l1_loss(fake, colour, n)
        values = dict(gen_loss=config.l1_weight * l1, gen_l1=l1,
                      accuracy=metrics.pixel_accuracy(colour, fake, config.color_space, config.acc_thresh))
        if self.discriminator is not None:
            disc = self._discriminator_loss(gray, colour, fake, n, training=False)
            gen = self._generator_loss(gray, colour, fake, n, training=False)
            values |= dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                           gen_loss=gen["total"], gen_gan=gen["gan"])
        n = tf.cast(n, tf.float32)
        return {k: v * n for k, v in values.items()} | {"count": n}  # sums: batches may differ in size

    def build_steps(self):
        """The tf.functions that run a step on every replica and reduce the results: train_steps
        (one per phase) and eval_step."""
        def distributed(fn, counts=True, averages=False):
            def run(batch):
                results = self.strategy.run(fn, args=batch)
                if averages and self.generator_ema is not None:
                    self._average()
                values = {k: self.strategy.reduce("SUM", v, axis=None) for k, v in results.items()}
                if counts:  # on the device: the loop reads them back only when it logs or saves
                    step = self.step.assign_add(1)
                    self.epoch_step.assign_add(1)
                    finite = tf.reduce_all([tf.math.is_finite(v) for v in values.values()])
                    self.first_bad_step.assign(tf.where(finite | (self.first_bad_step > 0), self.first_bad_step, step))
                return values
            return tf.function(run, jit_compile=self.config.jit_compile or None)
        self.train_steps = {"generator": distributed(self.replica_generator_step, averages=True),
                            "gan": distributed(self.replica_step, averages=True)}
        if self.discriminator is not None:
            self.train_steps["discriminator"] = distributed(self.replica_discriminator_step)
        self.eval_step = distributed(self.replica_eval, counts=False)


# ------------------------------------------------------------------------------------------------

def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _append_history(run_dir: str, row: dict) -> None:
    with open(os.path.join(run_dir, "history.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def add_flags(parser) -> None:
    parser.add_argument("--fresh", action="store_true",
                        help="start anew: move an earlier run in <checkpoints-path>/<name> aside, to <name>.<date-time>")


def main(argv=None) -> str:
    """python train.py: train (or resume) the run the flags describe."""
    given, options = parse_command(argv, "Train the colourisation GAN (see README.md).", add_flags)
    return train(make_config(given), fresh=options.fresh)


def train(config: Config, fresh: bool = False) -> str:
    """Train (or resume) the run in config.run_dir; returns the path of the exported generator.

    fresh: move an earlier run in that folder aside (to <run_dir>.<date-time>) and start anew.
    """
    strategy = devices.make_strategy(config.join_timeout)  # first: MultiWorkerMirroredStrategy must precede other TF ops
    with resume.locked(config):
        return _train(config, strategy, fresh)


def _train(config: Config, strategy: tf.distribute.Strategy, fresh: bool) -> str:
    print(f"settings: the {config.dataset} preset with {as_flags(config) or 'nothing changed'} "
          f"(every setting is saved in {os.path.join(config.run_dir, 'config.json')})", flush=True)
    for split in ("train", "test"):  # first: a run without data leaves no folder behind
        print(data.describe(config, split))
    run_dir = resume.prepare(config, fresh)
    run = Run(config, strategy, pretrained=not resume.has_checkpoint(config.run_dir))
    run.build_steps()
    print(f"devices: {strategy.num_replicas_in_sync} replica(s), dtype policy {run.policy} ({run.policy_reason}), "
          f"XLA {'on' if config.jit_compile else 'off'}, oneDNN {os.environ.get('TF_ENABLE_ONEDNN_OPTS')}")
    if run.ab_table is not None:
        used = run.ab_table.numpy()[run.ab_table.numpy() > 0]
        print(f"colour rebalancing: ab weights {used.min():.2f}-{used.max():.2f} from {run.rebalanced_images} "
              "training images")

    latest = resume.restore_newest(run, os.path.join(config.run_dir, "checkpoints"))  # all but the data iterator
    if latest:
        print(f"resumed from {latest} at step {int(run.step.numpy())}", flush=True)
        resume.drop_history_after(run_dir, int(run.step.numpy()))
    config.save(run_dir)  # only now: a command that does not fit the run must not overwrite it

    train_size = data.load_source(config.dataset, config.dataset_path, "train", config.seed).size
    total_steps = config.total_epochs * max(1, train_size // config.batch_size)
    total_steps = min(total_steps, config.max_steps) if config.max_steps else total_steps
    checkpoint = tf.train.Checkpoint(**run.state())  # and, on one device, each epoch's data iterator
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, "checkpoints"), config.keep_checkpoints)
    preemption = stopping.coordinate_preemption(strategy, checkpoint, manager, run.step, config.run_dir)
    loop = Loop(run, run_dir, checkpoint, manager, tf.summary.create_file_writer(os.path.join(run_dir, "logs")),
                _fixed_samples(config), total_steps, preemption)
    start_epoch = int(run.epoch.numpy())
    try:
        for epoch in range(start_epoch, config.total_epochs):
            if int(run.step.numpy()) >= total_steps or loop.epoch(epoch, start_epoch, latest):
                break
        else:
            write_samples(run, loop.samples, run_dir, loop.writer)  # the finished model's, as at --max-steps
    finally:
        loop.stop.restore()
        stopping.end_preemption(preemption, strategy, config.run_dir)
    with stopping.finishing("the training curves and generator.keras"):
        history = os.path.join(run_dir, "history.jsonl")
        if os.path.exists(history):  # also without validation: the curves of the whole run
            plots.training_curves(history, os.path.join(run_dir, "training_curves.png"))
        return export(run, run_dir)


class Loop:
    """What the epochs share: the run, where it writes, its checkpoints and the signal handler."""

    def __init__(self, run, run_dir, checkpoint, manager, writer, samples, total_steps, preemption=None):
        self.run, self.run_dir, self.checkpoint, self.manager = run, run_dir, checkpoint, manager
        self.writer, self.samples, self.total_steps = writer, samples, total_steps
        self.preemption, self.stop = preemption, stopping.Stop(coordinated=preemption is not None)

    def epoch(self, epoch: int, start_epoch: int, latest: str | None) -> bool:
        """Train one epoch; True when training must stop (max steps or a signal) before its end."""
        run, config = self.run, self.run.config
        phase = config.phase(epoch)
        if epoch == start_epoch or phase != config.phase(epoch - 1):
            last = max(e for e in range(config.total_epochs) if config.phase(e) == phase)
            print(f"phase {phase} ({PHASES[phase]}): epochs {epoch + 1}-{last + 1} of {config.total_epochs}",
                  flush=True)
        skipped = data.Skipped()
        if self.steps(phase, self.batches(epoch, latest, skipped), skipped):
            return True
        print(f"epoch {epoch + 1}/{config.total_epochs} done: {skipped}", flush=True)
        run.epoch.assign(epoch + 1), run.epoch_step.assign(0)  # a run resumed from here starts the next epoch
        resume.save(self.manager, int(run.step.numpy()), run.checkpoint_bytes())
        if config.validate:
            validate(run, self.run_dir, self.writer)
        return False

    def batches(self, epoch: int, latest: str | None, skipped: data.Skipped):
        """An iterator over the epoch's batches; an epoch resumed midway continues with the very
        batch that came next (its position is in the checkpoint on one device; on several, whose
        iterators cannot be saved, the indices of the steps done are skipped unread)."""
        run = self.run
        done = int(run.epoch_step.numpy())  # batches of this epoch already trained: only when resuming
        if run.strategy.num_replicas_in_sync > 1:
            return iter(run.strategy.distribute_datasets_from_function(
                lambda context: data.input_pipeline(run.config, epoch, context, done, skipped)))
        iterator = self.checkpoint.iterator = iter(data.make_dataset(run.config, "train", epoch, skipped))
        if done:
            resume.restore(tf.train.Checkpoint(iterator=iterator), latest, partial=True)
        return iterator

    def steps(self, phase: str, iterator, skipped: data.Skipped) -> bool:
        """Steps until the epoch ends (False) or training must stop (True: max steps or a signal)."""
        run, config = self.run, self.run.config
        train_step, speed = run.train_steps[phase], Speed()
        step = int(run.step.numpy())  # the step's own counter stays on the device; this follows it
        for batch in iterator:
            try:  # tensors: reading them back would wait for the device each step
                values = self.preemption.run(train_step, batch) if self.preemption else train_step(batch)
            except stopping.Preempted:  # the preemption handler saved this step on every worker
                return self._stopped(step, "SIGTERM to a worker: every worker saved at this step")
            step += 1
            speed.count(config.batch_size)
            stop = self.stop.signal or ("max steps" if step >= self.total_steps else None)
            every = lambda interval: step % interval == 0  # noqa: E731
            if every(config.log_interval) or every(config.save_interval) or stop:
                values = self._read(values)
            if every(config.log_interval) or step == self.total_steps:
                self._log(phase, step, values, speed.rate())
            if every(config.sample_interval) or stop == "max steps":
                write_samples(run, self.samples, self.run_dir, self.writer)
            if config.validate and config.validate_interval and every(config.validate_interval):
                validate(run, self.run_dir, self.writer)
            if every(config.save_interval) or stop:
                resume.save(self.manager, step, run.checkpoint_bytes())
            if stop:
                return self._stopped(step, stop)
        data.check_not_empty(speed.steps, skipped, config, "train")
        return False

    def _read(self, values: dict) -> dict:
        """The step's values as floats, or a TrainingError if a step since the last read was not finite."""
        values = {k: float(v) for k, v in values.items()}
        bad_step = int(self.run.first_bad_step.numpy())
        if bad_step:  # the updates from it on were not applied: the checkpoints stay good
            bad = [k for k, v in values.items() if not math.isfinite(v)] or ["losses"]
            raise TrainingError(f"step {bad_step}: non-finite {', '.join(bad)}; stopped without saving. "
                                f"The last good checkpoint is {self.manager.latest_checkpoint}. Try a lower --lr.")
        return values

    def _log(self, phase: str, step: int, values: dict, rate: float) -> None:
        """The progress line, TensorBoard's scalars and a row of history.jsonl."""
        config = self.run.config
        eta = (self.total_steps - step) * config.batch_size / rate if rate > 0 else float("nan")
        print(f"epoch {int(self.run.epoch.numpy()) + 1}/{config.total_epochs} {phase} step {step}/{self.total_steps} | "
              f"{_progress(values)} | {rate:.1f} img/s | ETA {_format_eta(eta)}", flush=True)
        with self.writer.as_default(step=step):
            for k, v in values.items():
                tf.summary.scalar(f"train/{k}", v)
        _append_history(self.run_dir, {"split": "train", "step": step, "phase": phase, **values})

    def _stopped(self, step: int, reason: str) -> bool:
        print(f"stopped at step {step} ({reason}); checkpoint {self.manager.latest_checkpoint}", flush=True)
        return True


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


def write_samples(run: Run, samples, run_dir: str, writer) -> str:
    """A sample grid (gray | original | colourised) of fixed test images, as PNG and in TensorBoard."""
    gray, colour = samples
    fake = models.colorize(run.inference_generator, gray, run.config.generator_output, training=False)
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
    """Save the generator as a .keras file (colourisation loads it with config.json beside it), in
    float32 and with BatchNorm statistics re-estimated on training images (BN_ESTIMATE_PIXELS)."""
    path = os.path.join(run_dir, "generator.keras")
    # float32 (saved layers keep their policy: float32 runs anywhere), and a copy: training resumes
    # with its own BatchNorm averages
    generator = models.rebuild(lambda: models.generator_for(run.config, pretrained=False), run.inference_generator)
    pixels = run.config.image_size ** 2
    images = max(BN_ESTIMATE_MIN_IMAGES, BN_ESTIMATE_PIXELS // pixels)
    grays = data.make_dataset(run.config, "train", epoch=int(run.epoch.numpy())).map(lambda gray, _: gray)
    batches = grays.unbatch().take(images).batch(max(run.config.batch_size, BN_BATCH_PIXELS // pixels))
    count = models.estimate_batchnorm(generator, batches)
    with files.atomic_path(path) as temporary:
        models.with_keras_layers(generator).save(temporary)
    print(f"generator exported to {path} (BatchNorm statistics of {count} training images)")
    return path
