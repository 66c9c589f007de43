"""Training: a TrainState, one step function per phase (the GAN's: one discriminator then two
generator updates, as the authors do) and one flat loop.

The steps are GradientTape updates under tf.distribute (one device, several GPUs, or several
machines), in mixed precision where the hardware has it (float16 on GPUs, bfloat16 on CPUs); the
loop checkpoints so that a run resumes at exactly the next batch, and reports (colorgan.reports)
what a person watches.
"""
import dataclasses
import math
import os

import numpy as np

import keras
import tensorflow as tf

from colorgan import (cpu_kernels, data, devices, files, losses, metrics, models, plots, reports, resume, sources,
                      stopping)
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


@dataclasses.dataclass
class TrainState:
    """Everything a run trains and its checkpoints hold: the networks, the generator's average, the
    optimisers, the counters, dropout's RNG and the networks' description, built by
    create_train_state under the strategy's scope. The steps below update it in place."""
    config: Config
    strategy: tf.distribute.Strategy
    policy: str  # Keras' dtype policy the networks were built in, and why
    policy_reason: str
    generator: keras.Model
    generator_ema: keras.Model | None  # --ema: what samples, validation and export use
    discriminator: keras.Model | None  # --model unet: none
    gen_opt: keras.optimizers.Optimizer
    disc_opt: keras.optimizers.Optimizer | None
    step: tf.Variable
    epoch: tf.Variable
    epoch_step: tf.Variable  # batches of the current epoch done: where a resumed epoch continues
    first_bad_step: tf.Variable  # not saved: 0 = every step so far was finite
    rng: list  # dropout's seed state, so that a resumed run draws the masks an uninterrupted one does
    architecture: tf.Variable  # the networks, as flags: checked before a checkpoint restores
    ab_table: tf.Tensor | None  # --rebalance: a weight per ab bin (Zhang et al. 2016)
    rebalanced_images: int

    def checkpointed(self, **extra) -> dict:
        """What a checkpoint holds. The optimisers' Adam state is saved apart from float16's loss
        scale, so that a run moves between precisions: a CPU's bfloat16 or float32 run continues on
        a GPU in float16 (its loss scale starting afresh), and back."""
        objects = dict(generator=self.generator, generator_ema=self.generator_ema, discriminator=self.discriminator,
                       gen_opt=adam(self.gen_opt), disc_opt=adam(self.disc_opt),
                       gen_loss_scale=loss_scale(self.gen_opt),
                       disc_loss_scale=loss_scale(self.disc_opt), step=self.step, epoch=self.epoch,
                       epoch_step=self.epoch_step, rng=self.rng, architecture=self.architecture, **extra)
        return {k: v for k, v in objects.items() if v is not None}

    @property
    def inference_generator(self) -> keras.Model:
        """The generator that samples, validation and export use: the average with --ema."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def checkpoint_bytes(self) -> int:
        """About what a checkpoint takes on disk: the networks' and the optimisers' variables."""
        optimizers = [o for o in (self.gen_opt, self.disc_opt) if o is not None]
        variables = [v for m in (self.generator, self.discriminator) if m is not None for v in m.weights]
        variables += [v for o in optimizers for v in o.variables]
        return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
                   for v in variables)


def check_image_size(config: Config) -> None:
    stride = models.total_stride(config.dataset, config.model, config.backbone)
    if config.image_size % stride:
        raise UserError(f"--image-size {config.image_size} is not a multiple of the generator's stride {stride}")


def create_train_state(config: Config, strategy: tf.distribute.Strategy, pretrained: bool = True) -> TrainState:
    """The state of a new run of config. It seeds TensorFlow, NumPy and Python with config.seed (Keras
    draws the initial weights from them) and leaves Keras' global dtype policy as it was.
    pretrained=False leaves out the backbone's initial weights: a checkpoint is restored next."""
    check_image_size(config)
    policy, reason = devices.precision_policy(config)
    keras.utils.set_random_seed(config.seed)
    counter = lambda name: tf.Variable(0, dtype=tf.int64, trainable=False, name=name)  # noqa: E731
    with strategy.scope(), models.dtype_policy(policy):
        generator = models.generator_for(config, pretrained)
        generator_ema = None
        if config.ema:
            generator_ema = models.generator_for(config, pretrained=False)
            generator_ema.set_weights([w.numpy() for w in generator.weights])
        discriminator = None if config.model == "unet" else models.build_discriminator(
            config.dataset, 4, config.sync_batchnorm, config.width, config.spectral_norm)
        step, epoch, epoch_step, first_bad_step = (counter(n)
                                                   for n in ("step", "epoch", "epoch_step", "first_bad_step"))
        gen_opt = cpu_kernels.Adam(lambda: learning_rate(config, step), beta_1=config.beta1)
        disc_opt = None if discriminator is None else cpu_kernels.Adam(
            lambda: learning_rate(config, step, config.disc_lr_ratio), beta_1=config.beta1)
        if policy == "mixed_float16":
            gen_opt = keras.optimizers.LossScaleOptimizer(gen_opt)
            disc_opt = disc_opt and keras.optimizers.LossScaleOptimizer(disc_opt)
        # Built before the step is traced: otherwise the first loss scale is baked into the graph.
        gen_opt.build(generator.trainable_variables)
        if disc_opt is not None:
            disc_opt.build(discriminator.trainable_variables)
    ab_table, rebalanced_images = None, 0
    if config.rebalance:
        histogram, rebalanced_images = losses.ab_histogram(config)
        ab_table = tf.constant(losses.rebalancing_table(histogram, config.rebalance), tf.float32)
    return TrainState(
        config, strategy, policy, reason, generator, generator_ema, discriminator, gen_opt, disc_opt,
        step, epoch, epoch_step, first_bad_step,
        rng=[layer.seed_generator.state for layer in generator.layers if isinstance(layer, keras.layers.Dropout)],
        # outside the strategy's scope: a mirrored variable must be numeric
        architecture=tf.Variable(architecture(config), dtype=tf.string, trainable=False),
        ab_table=ab_table, rebalanced_images=rebalanced_images)


# ------------------------------------------------------------------------------------------------
# The steps, on one replica: (state, batch) -> the step's values. Losses are means over the global
# batch (config.batch_size), so that the replicas' gradients sum to the batch's.

def _pair(gray, colour):
    """What D judges: gray ++ colour (bs, H, W, 4)."""
    return tf.concat([gray, tf.cast(colour, gray.dtype)], -1)


def _update(optimizer, loss, tape, variables) -> None:
    with tape:  # float16's loss scale, recorded: scaled outside the tape, the loss has no gradient
        scaled = optimizer.scale_loss(loss)
    grads = tape.gradient(scaled, variables)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):  # which skips such steps itself
        optimizer.apply_gradients(zip(grads, variables))
    else:
        _apply_if_finite(optimizer, grads, variables)


def _accuracy(state: TrainState, colour, fake):
    replicas = state.strategy.num_replicas_in_sync  # a mean: summed over replicas after the step
    return metrics.pixel_accuracy(colour, fake, state.config.color_space, state.config.acc_thresh) / replicas


def generator_step(state: TrainState, batch: dict) -> dict:
    """The generator alone, L1 only: the paper's U-Net baseline and NoGAN's first phase."""
    config, G = state.config, state.generator
    gray, colour = batch["gray"], batch["colour"]  # (bs, H, W, 1), (bs, H, W, 3)
    weights = None if state.ab_table is None else losses.pixel_weights(colour, state.ab_table)
    with tf.GradientTape() as tape:
        fake = models.colorize(G, gray, config.generator_output, training=True)  # (bs, H, W, 3)
        l1 = losses.l1_loss(fake, colour, config.batch_size, weights)
        loss = config.l1_weight * l1
    _update(state.gen_opt, loss, tape, G.trainable_variables)
    return dict(gen_loss=loss, gen_l1=l1, accuracy=_accuracy(state, colour, fake))


def discriminator_step(state: TrainState, batch: dict) -> dict:
    """The discriminator alone, against the generator's colourisations: NoGAN's second phase."""
    config, D = state.config, state.discriminator
    gray, colour = batch["gray"], batch["colour"]
    fake = models.colorize(state.generator, gray, config.generator_output, training=True)
    with tf.GradientTape() as tape:
        disc = losses.discriminator_loss(D(_pair(gray, colour), training=True), D(_pair(gray, fake), training=True),
                                         config.label_smoothing, config.batch_size, config.gan_loss)
    _update(state.disc_opt, disc["total"], tape, D.trainable_variables)
    return dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                accuracy=_accuracy(state, colour, fake))


def gan_step(state: TrainState, batch: dict) -> dict:
    """One iteration: D once, then G twice (so that D does not win too early), as the authors do."""
    config, G, D, bs = state.config, state.generator, state.discriminator, state.config.batch_size
    gray, colour = batch["gray"], batch["colour"]  # (bs, H, W, 1), (bs, H, W, 3)
    weights = None if state.ab_table is None else losses.pixel_weights(colour, state.ab_table)

    def generator_loss(fake):
        return losses.generator_loss(D(_pair(gray, fake), training=True), fake, colour, config.l1_weight, bs,
                                     config.gan_loss, weights)

    # D's update and G's first see the same G weights: one forward pass of G (12% of the
    # iteration's FLOPs) serves both, and its tape is entered again for G's loss.
    gen_tape = tf.GradientTape()
    with gen_tape:
        fake = models.colorize(G, gray, config.generator_output, training=True)  # (bs, H, W, 3)

    with tf.GradientTape() as disc_tape:
        real_logits = D(_pair(gray, colour), training=True)  # (bs, H/8, W/8, 1)
        fake_logits = D(_pair(gray, tf.stop_gradient(fake)), training=True)
        disc = losses.discriminator_loss(real_logits, fake_logits, config.label_smoothing, bs, config.gan_loss)
    _update(state.disc_opt, disc["total"], disc_tape, D.trainable_variables)

    with gen_tape:  # G's first update: against the D just updated
        gen = generator_loss(fake)
    _update(state.gen_opt, gen["total"], gen_tape, G.trainable_variables)

    with tf.GradientTape() as gen_tape:  # G's second update, from a new forward pass
        fake = models.colorize(G, gray, config.generator_output, training=True)
        gen = generator_loss(fake)
    _update(state.gen_opt, gen["total"], gen_tape, G.trainable_variables)

    return dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                gen_loss=gen["total"], gen_gan=gen["gan"], gen_l1=gen["l1"], accuracy=_accuracy(state, colour, fake))


def eval_step(state: TrainState, batch: dict) -> dict:
    """Sums of the losses and accuracy over one replica's batch (BatchNorm in inference mode, no
    dropout): summed over replicas and divided by the count, they are means over the test split."""
    config, D = state.config, state.discriminator
    gray, colour = batch["gray"], batch["colour"]
    n = tf.shape(gray)[0]  # the losses' mean over this replica's batch, not a share of a global batch
    fake = models.colorize(state.inference_generator, gray, config.generator_output, training=False)
    l1 = losses.l1_loss(fake, colour, n)
    values = dict(gen_loss=config.l1_weight * l1, gen_l1=l1,
                  accuracy=metrics.pixel_accuracy(colour, fake, config.color_space, config.acc_thresh))
    if D is not None:
        fake_logits = D(_pair(gray, fake), training=False)
        disc = losses.discriminator_loss(D(_pair(gray, colour), training=False), fake_logits, config.label_smoothing,
                                         n, config.gan_loss)
        gen = losses.generator_loss(fake_logits, fake, colour, config.l1_weight, n, config.gan_loss)
        values |= dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                       gen_loss=gen["total"], gen_gan=gen["gan"])
    n = tf.cast(n, tf.float32)
    return {k: v * n for k, v in values.items()} | {"count": n}  # sums: batches may differ in size


def _average(state: TrainState) -> None:
    """After a step (cross-replica): ema = d ema + (1 - d) G for the weights, BatchNorm's moving
    statistics copied (export re-estimates them anyway)."""
    d = state.config.ema
    for e, w in zip(state.generator_ema.trainable_variables, state.generator.trainable_variables):
        e.assign(d * e + (1.0 - d) * tf.cast(w, e.dtype))
    for e, w in zip(state.generator_ema.non_trainable_variables, state.generator.non_trainable_variables):
        e.assign(w)


def compile_steps(state: TrainState) -> tuple[dict, tf.types.experimental.PolymorphicFunction]:
    """The steps as tf.functions of a batch that run on every replica and sum the values over them:
    ({phase: train step}, eval step). A train step also counts the step, averages the generator
    (--ema) and records the first step whose values were not finite, all on the device."""
    def on_replicas(step_fn, counts=True):
        def run(batch):
            values = state.strategy.run(step_fn, args=(state, batch))
            values = {k: state.strategy.reduce("SUM", v, axis=None) for k, v in values.items()}
            if counts:  # read back only when the loop logs or saves
                if state.generator_ema is not None and step_fn is not discriminator_step:
                    _average(state)
                step = state.step.assign_add(1)
                state.epoch_step.assign_add(1)
                finite = tf.reduce_all([tf.math.is_finite(v) for v in values.values()])
                state.first_bad_step.assign(tf.where(finite | (state.first_bad_step > 0), state.first_bad_step, step))
            return values
        return tf.function(run, jit_compile=state.config.jit_compile or None)
    steps = {"generator": on_replicas(generator_step), "gan": on_replicas(gan_step)}
    if state.discriminator is not None:
        steps["discriminator"] = on_replicas(discriminator_step)
    return steps, on_replicas(eval_step, counts=False)


# ------------------------------------------------------------------------------------------------

def add_flags(parser) -> None:
    parser.add_argument("--fresh", action="store_true",
                        help="start anew: move an earlier run in <checkpoints-path>/<name> aside, "
                             "to <name>.<date-time>")


def main(argv=None) -> str:
    """python train.py: train (or resume) the run the flags describe."""
    given, options = parse_command(argv, "Train the colourisation GAN (see README.md).", add_flags)
    return train(make_config(given), fresh=options.fresh)


def train(config: Config, fresh: bool = False) -> str:
    """Train (or resume) the run in config.run_dir; returns the path of the exported generator.

    fresh: move an earlier run in that folder aside (to <run_dir>.<date-time>) and start anew.
    """
    # first: MultiWorkerMirroredStrategy must precede other TF ops
    strategy = devices.make_strategy(config.join_timeout)
    with resume.locked(config):
        return _train(config, strategy, fresh)


def _train(config: Config, strategy: tf.distribute.Strategy, fresh: bool) -> str:
    print(f"settings: the {config.dataset} preset with {as_flags(config) or 'nothing changed'} "
          f"(every setting is saved in {os.path.join(config.run_dir, 'config.json')})", flush=True)
    # First what can refuse the command: a refused run leaves no folder behind
    check_image_size(config)
    for split in ("train", "test"):
        print(data.describe(config, split))
    samples = reports.fixed_samples(config)
    with resume.removed_unless_trained(config.run_dir):
        return _train_in(config, strategy, fresh, samples)


def _train_in(config: Config, strategy: tf.distribute.Strategy, fresh: bool, samples) -> str:
    out_dir = resume.prepare(config, fresh)  # the run's folder, or this worker's below it
    state = create_train_state(config, strategy, pretrained=not resume.has_checkpoint(config.run_dir))
    train_steps, evaluate = compile_steps(state)
    print(f"devices: {strategy.num_replicas_in_sync} replica(s), dtype policy {state.policy} ({state.policy_reason}), "
          f"XLA {'on' if config.jit_compile else 'off'}, oneDNN {os.environ.get('TF_ENABLE_ONEDNN_OPTS')}")
    if state.ab_table is not None:
        used = state.ab_table.numpy()[state.ab_table.numpy() > 0]
        print(f"colour rebalancing: ab weights {used.min():.2f}-{used.max():.2f} from {state.rebalanced_images} "
              "training images")

    latest = resume.restore_newest(state, os.path.join(config.run_dir, "checkpoints"))  # all but the data's place
    if latest:
        print(f"resumed from {latest} at step {int(state.step.numpy())}", flush=True)
        resume.drop_history_after(out_dir, int(state.step.numpy()))
    config.save(out_dir)  # only now: a command that does not fit the run must not overwrite it

    train_size = sources.load_source(config.dataset, config.dataset_path, "train", config.seed).size
    total_steps = config.total_epochs * max(1, train_size // config.batch_size)
    total_steps = min(total_steps, config.max_steps) if config.max_steps else total_steps
    checkpoint = tf.train.Checkpoint(**state.checkpointed())  # and, on one device, the epoch's data iterator
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(out_dir, "checkpoints"), config.keep_checkpoints)
    preemption = stopping.coordinate_preemption(strategy, checkpoint, manager, state.step, config.run_dir)
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "logs"))
    signals = stopping.Stop(coordinated=preemption is not None)
    step, first_epoch = int(state.step.numpy()), int(state.epoch.numpy())  # the device's counters, followed here
    stop = None  # why training ends before its last epoch: max steps or a signal
    try:
        for epoch in range(first_epoch, config.total_epochs):
            if step >= total_steps:
                break
            phase = config.phase(epoch)
            if epoch == first_epoch or phase != config.phase(epoch - 1):
                last = max(e for e in range(config.total_epochs) if config.phase(e) == phase)
                print(f"phase {phase} ({PHASES[phase]}): epochs {epoch + 1}-{last + 1} of {config.total_epochs}",
                      flush=True)
            skipped, speed = data.Skipped(), reports.Speed()
            for batch in _epoch_batches(state, checkpoint, epoch, latest, skipped):
                try:  # tensors: reading them back would wait for the device each step
                    values = preemption.run(train_steps[phase], batch) if preemption else train_steps[phase](batch)
                except stopping.Preempted:  # the preemption handler saved this step on every worker
                    stop = "SIGTERM to a worker: every worker saved at this step"
                    break
                step += 1
                speed.count(config.batch_size)
                stop = signals.signal or ("max steps" if step >= total_steps else None)
                every = lambda interval: step % interval == 0  # noqa: E731
                if every(config.log_interval) or every(config.save_interval) or stop:
                    values = _read(values, state, manager)
                if every(config.log_interval) or step == total_steps:
                    reports.log_step(state, out_dir, writer, phase, step, total_steps, values, speed.rate())
                if every(config.sample_interval) or stop == "max steps":
                    reports.write_samples(state, samples, out_dir, writer)
                if config.validate and config.validate_interval and every(config.validate_interval):
                    reports.validate(state, evaluate, out_dir, writer)
                if stop or every(config.save_interval):
                    resume.save(manager, step, state.checkpoint_bytes())
                if stop:
                    break
            if stop:
                print(f"stopped at step {step} ({stop}); checkpoint {manager.latest_checkpoint}", flush=True)
                break
            data.check_not_empty(speed.steps, skipped, config, "train")
            print(f"epoch {epoch + 1}/{config.total_epochs} done: {skipped}", flush=True)
            state.epoch.assign(epoch + 1), state.epoch_step.assign(0)  # a run resumed from here starts the next epoch
            resume.save(manager, step, state.checkpoint_bytes())
            if config.validate:
                reports.validate(state, evaluate, out_dir, writer)
        else:
            reports.write_samples(state, samples, out_dir, writer)  # the finished model's, as at --max-steps
    finally:
        signals.restore()
        stopping.end_preemption(preemption, strategy, config.run_dir)
    with stopping.finishing("the training curves and generator.keras"):
        history = os.path.join(out_dir, "history.jsonl")
        if os.path.exists(history):  # also without validation: the curves of the whole run
            plots.training_curves(history, os.path.join(out_dir, "training_curves.png"))
        return export(state, out_dir)


def _epoch_batches(state: TrainState, checkpoint: tf.train.Checkpoint, epoch: int, latest: str | None,
                   skipped: data.Skipped):
    """The epoch's batches; an epoch resumed midway continues with the very batch that came next.
    On one device the iterator's place is saved in each checkpoint ("train_batches"); where it is not
    (several devices, whose iterators cannot be saved, or a checkpoint of colorgan before batches
    were dicts, whose iterator does not fit), the indices of the steps done are skipped unread."""
    config, done = state.config, int(state.epoch_step.numpy())  # done: only when resuming
    if state.strategy.num_replicas_in_sync > 1:
        return iter(state.strategy.distribute_datasets_from_function(
            lambda context: data.input_pipeline(config, epoch, context, done, skipped)))
    saved = done and "train_batches/.ATTRIBUTES/ITERATOR_STATE" in dict(tf.train.list_variables(latest))
    part = data.Part() if saved or not done else data.Part(skip=done * config.batch_size)
    iterator = checkpoint.train_batches = iter(data.make_dataset(config, "train", epoch, skipped, part=part))
    if saved:
        resume.restore(tf.train.Checkpoint(train_batches=iterator), latest, partial=True)
    elif done:
        print(f"note: {latest} does not hold its place in the data as this colorgan saves it: the epoch "
              f"continues after the {done * config.batch_size} images its {done} steps trained, unread", flush=True)
    return iterator


def _read(values: dict, state: TrainState, manager) -> dict:
    """The step's values as floats, or a TrainingError if a step since the last read was not finite."""
    values = {k: float(v) for k, v in values.items()}
    bad_step = int(state.first_bad_step.numpy())
    if bad_step:  # the updates from it on were not applied: the checkpoints stay good
        bad = [k for k, v in values.items() if not math.isfinite(v)] or ["losses"]
        raise TrainingError(f"step {bad_step}: non-finite {', '.join(bad)}; stopped without saving. "
                            f"The last good checkpoint is {manager.latest_checkpoint}. Try a lower --lr.")
    return values


def export(state: TrainState, run_dir: str) -> str:
    """Save the generator as a .keras file (colourisation loads it with config.json beside it), in
    float32 and with BatchNorm statistics re-estimated on training images (BN_ESTIMATE_PIXELS)."""
    path = os.path.join(run_dir, "generator.keras")
    # float32 (saved layers keep their policy: float32 runs anywhere), and a copy: training resumes
    # with its own BatchNorm averages
    generator = models.rebuild(lambda: models.generator_for(state.config, pretrained=False), state.inference_generator)
    pixels = state.config.image_size ** 2
    images = max(BN_ESTIMATE_MIN_IMAGES, BN_ESTIMATE_PIXELS // pixels)
    grays = data.make_dataset(state.config, "train", epoch=int(state.epoch.numpy())).map(lambda batch: batch["gray"])
    batches = grays.unbatch().take(images).batch(max(state.config.batch_size, BN_BATCH_PIXELS // pixels))
    count = models.estimate_batchnorm(generator, batches)
    with files.atomic_path(path) as temporary:
        cpu_kernels.with_keras_layers(generator).save(temporary)
    print(f"generator exported to {path} (BatchNorm statistics of {count} training images)")
    return path
