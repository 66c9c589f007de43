"""Training: a TrainState (what is trained and checkpointed), one step function per phase (the GAN's:
one discriminator then two generator updates, as the authors do) and one flat loop.

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
    """What a run trains and its checkpoints hold: the networks, the generator's average, the
    optimisers, the counters, dropout's RNG and the networks' description (built by
    create_train_state under the strategy's scope). The steps update it in place."""
    generator: keras.Model
    generator_ema: keras.Model | None  # --ema: what samples, validation and export use
    discriminator: keras.Model | None  # --model unet: none
    gen_opt: keras.optimizers.Optimizer
    disc_opt: keras.optimizers.Optimizer | None
    step: tf.Variable
    epoch: tf.Variable
    epoch_step: tf.Variable  # batches of the current epoch done: where a resumed epoch continues
    rng: list  # dropout's seed state, so that a resumed run draws the masks an uninterrupted one does
    architecture: tf.Variable  # the networks, as flags: checked before a checkpoint restores

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

    @property
    def networks(self) -> dict:
        return {name: model for name, model in (("generator", self.generator), ("generator_ema", self.generator_ema),
                                                ("discriminator", self.discriminator)) if model is not None}

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
    """The state of a new run of config, in the dtype policy devices.precision_policy chooses. It
    seeds TensorFlow, NumPy and Python with config.seed (Keras draws the initial weights from them)
    and leaves Keras' global dtype policy as it was. pretrained=False leaves out the backbone's
    initial weights: a checkpoint is restored next."""
    check_image_size(config)
    policy, _ = devices.precision_policy(config)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope(), models.dtype_policy(policy):
        generator = models.generator_for(config, pretrained)
        generator_ema = None
        if config.ema:
            generator_ema = models.generator_for(config, pretrained=False)
            generator_ema.set_weights([w.numpy() for w in generator.weights])
        discriminator = None if config.model == "unet" else models.build_discriminator(
            config.dataset, 4, config.sync_batchnorm, config.width, config.spectral_norm)
        step, epoch, epoch_step = (tf.Variable(0, dtype=tf.int64, trainable=False, name=name)
                                   for name in ("step", "epoch", "epoch_step"))
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
    return TrainState(
        generator, generator_ema, discriminator, gen_opt, disc_opt, step, epoch, epoch_step,
        rng=[layer.seed_generator.state for layer in generator.layers if isinstance(layer, keras.layers.Dropout)],
        # outside the strategy's scope: a mirrored variable must be numeric
        architecture=tf.Variable(architecture(config), dtype=tf.string, trainable=False))


def ab_weights(config: Config) -> tf.Tensor | None:
    """--rebalance: a weight per ab bin (Zhang et al. 2016) from the training pixels; None without."""
    if not config.rebalance:
        return None
    histogram, images = losses.ab_histogram(config)
    table = losses.rebalancing_table(histogram, config.rebalance)
    used = table[table > 0]
    print(f"colour rebalancing: ab weights {used.min():.2f}-{used.max():.2f} from {images} training images")
    return tf.constant(table, tf.float32)


# ------------------------------------------------------------------------------------------------
# The steps, on one replica: (state, batch, config, ab weights) -> the step's values. Losses are
# means over the global batch (config.batch_size), so that the replicas' gradients sum to the batch's.

def _pair(gray, colour):
    """What D judges: gray ++ colour (bs, H, W, 4)."""
    return tf.concat([gray, tf.cast(colour, gray.dtype)], -1)


def _gradients(optimizer, tape, loss, variables):
    with tape:  # float16's loss scale, recorded: scaled outside the tape, the loss has no gradient
        scaled = optimizer.scale_loss(loss)
    return zip(tape.gradient(scaled, variables), variables)


def _accuracy(config: Config, colour, fake):
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync  # a mean: summed over replicas
    return metrics.pixel_accuracy(colour, fake, config.color_space, config.acc_thresh) / replicas


def generator_step(state: TrainState, batch: dict, config: Config, ab_table=None) -> dict:
    """The generator alone, L1 only: the paper's U-Net baseline and NoGAN's first phase."""
    G = state.generator
    gray, colour = batch["gray"], batch["colour"]  # (bs, H, W, 1), (bs, H, W, 3)
    weights = None if ab_table is None else losses.pixel_weights(colour, ab_table)
    with tf.GradientTape() as tape:
        fake = models.colorize(G, gray, config.generator_output, training=True)  # (bs, H, W, 3)
        l1 = losses.l1_loss(fake, colour, config.batch_size, weights)
        loss = config.l1_weight * l1
    state.gen_opt.apply_gradients(_gradients(state.gen_opt, tape, loss, G.trainable_variables))
    return dict(gen_loss=loss, gen_l1=l1, accuracy=_accuracy(config, colour, fake))


def discriminator_step(state: TrainState, batch: dict, config: Config, ab_table=None) -> dict:
    """The discriminator alone, against the generator's colourisations: NoGAN's second phase."""
    D = state.discriminator
    gray, colour = batch["gray"], batch["colour"]
    fake = models.colorize(state.generator, gray, config.generator_output, training=True)
    with tf.GradientTape() as tape:
        disc = losses.discriminator_loss(D(_pair(gray, colour), training=True), D(_pair(gray, fake), training=True),
                                         config.label_smoothing, config.batch_size, config.gan_loss)
    state.disc_opt.apply_gradients(_gradients(state.disc_opt, tape, disc["total"], D.trainable_variables))
    return dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                accuracy=_accuracy(config, colour, fake))


def gan_step(state: TrainState, batch: dict, config: Config, ab_table=None) -> dict:
    """One iteration: D once, then G twice (so that D does not win too early), as the authors do."""
    G, D, bs = state.generator, state.discriminator, config.batch_size
    gray, colour = batch["gray"], batch["colour"]  # (bs, H, W, 1), (bs, H, W, 3)
    weights = None if ab_table is None else losses.pixel_weights(colour, ab_table)

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
    state.disc_opt.apply_gradients(_gradients(state.disc_opt, disc_tape, disc["total"], D.trainable_variables))

    with gen_tape:  # G's first update: against the D just updated
        gen = generator_loss(fake)
    state.gen_opt.apply_gradients(_gradients(state.gen_opt, gen_tape, gen["total"], G.trainable_variables))

    with tf.GradientTape() as gen_tape:  # G's second update, from a new forward pass
        fake = models.colorize(G, gray, config.generator_output, training=True)
        gen = generator_loss(fake)
    state.gen_opt.apply_gradients(_gradients(state.gen_opt, gen_tape, gen["total"], G.trainable_variables))

    return dict(disc_loss=disc["total"], disc_real=disc["real"], disc_fake=disc["fake"],
                gen_loss=gen["total"], gen_gan=gen["gan"], gen_l1=gen["l1"], accuracy=_accuracy(config, colour, fake))


STEPS = {"generator": generator_step, "discriminator": discriminator_step, "gan": gan_step}


def eval_step(state: TrainState, batch: dict, config: Config) -> dict:
    """Sums of the losses and accuracy over one replica's batch (BatchNorm in inference mode, no
    dropout): summed over replicas and divided by the count, they are means over the test split."""
    D = state.discriminator
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


def update_average(average: keras.Model, model: keras.Model, decay: float) -> None:
    """average = decay average + (1 - decay) model for the weights; BatchNorm's moving statistics
    copied (export re-estimates them anyway). Cross-replica, after a step."""
    for a, w in zip(average.trainable_variables, model.trainable_variables):
        a.assign(decay * a + (1.0 - decay) * tf.cast(w, a.dtype))
    for a, w in zip(average.non_trainable_variables, model.non_trainable_variables):
        a.assign(w)


def compile_step(phase: str, state: TrainState, config: Config, strategy: tf.distribute.Strategy, ab_table=None):
    """The phase's train step as a tf.function of a batch: the step on every replica, its values summed
    over them, then the generator's average (--ema) and the counters, all on the device."""
    @tf.function(jit_compile=config.jit_compile or None)
    def train_step(batch):
        values = strategy.run(STEPS[phase], args=(state, batch, config, ab_table))
        values = {k: strategy.reduce("SUM", v, axis=None) for k, v in values.items()}
        if state.generator_ema is not None and phase != "discriminator":
            update_average(state.generator_ema, state.generator, config.ema)
        state.step.assign_add(1)
        state.epoch_step.assign_add(1)
        return values
    return train_step


def compile_eval(state: TrainState, config: Config, strategy: tf.distribute.Strategy):
    """eval_step as a tf.function of a batch, its sums added over the replicas."""
    @tf.function(jit_compile=config.jit_compile or None)
    def evaluate(batch):
        values = strategy.run(eval_step, args=(state, batch, config))
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in values.items()}
    return evaluate


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
        print(f"settings: the {config.dataset} preset with {as_flags(config) or 'nothing changed'} "
              f"(every setting is saved in {os.path.join(config.run_dir, 'config.json')})", flush=True)
        # First what can refuse the command: a refused run leaves no folder behind
        check_image_size(config)
        for split in ("train", "test"):
            print(data.describe(config, split))
        samples = reports.fixed_samples(config)
        with resume.removed_unless_trained(config.run_dir):
            return _train(config, strategy, fresh, samples)


def _train(config: Config, strategy: tf.distribute.Strategy, fresh: bool, samples) -> str:
    out_dir = resume.prepare(config, fresh)  # the run's folder, or this worker's below it
    state = create_train_state(config, strategy, pretrained=not resume.has_checkpoint(config.run_dir))
    ab_table = ab_weights(config)
    phases = {config.phase(epoch) for epoch in range(config.total_epochs)}
    train_steps = {phase: compile_step(phase, state, config, strategy, ab_table) for phase in phases}
    evaluate = compile_eval(state, config, strategy)
    policy, reason = devices.precision_policy(config)
    print(f"devices: {strategy.num_replicas_in_sync} replica(s), dtype policy {policy} ({reason}), "
          f"XLA {'on' if config.jit_compile else 'off'}, oneDNN {os.environ.get('TF_ENABLE_ONEDNN_OPTS')}")

    latest = resume.restore_newest(state, config, os.path.join(config.run_dir, "checkpoints"))  # all but the data
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
    step = int(state.step.numpy())  # the device's counter, followed here
    first_epoch = int(state.epoch.numpy())
    stop = "done before" if step >= total_steps else None  # why training ends before its last epoch ends
    values = {}
    try:
        for epoch in range(first_epoch, config.total_epochs):
            if stop:
                break
            phase = config.phase(epoch)
            if epoch == first_epoch or phase != config.phase(epoch - 1):
                last = max(e for e in range(config.total_epochs) if config.phase(e) == phase)
                print(f"phase {phase} ({PHASES[phase]}): epochs {epoch + 1}-{last + 1} of {config.total_epochs}",
                      flush=True)
            skipped, speed = data.Skipped(), reports.Speed()
            for batch in _epoch_batches(state, config, strategy, checkpoint, epoch, latest, skipped):
                try:  # tensors: reading them back would wait for the device each step
                    values = preemption.run(train_steps[phase], batch) if preemption else train_steps[phase](batch)
                except stopping.Preempted:  # the preemption handler saved this step on every worker
                    stop = "SIGTERM to a worker: every worker saved at this step"
                    break
                step += 1
                speed.count(config.batch_size)
                stop = signals.signal or ("max steps" if step >= total_steps else None)
                if _every(step, config.log_interval) or step == total_steps:
                    values = check_finite(state, values, step, manager)
                    reports.log_step(config, int(state.epoch.numpy()), out_dir, writer, phase, step, total_steps,
                                     values, speed.rate())
                if _every(step, config.sample_interval) or stop == "max steps":
                    reports.write_samples(state, config, samples, out_dir, writer)
                if config.validate and _every(step, config.validate_interval):
                    reports.validate(state, config, strategy, evaluate, out_dir, writer)
                if stop or _every(step, config.save_interval):
                    _save(state, values, step, manager)
                if stop:
                    break
            if stop:
                print(f"stopped at step {step} ({stop}); checkpoint {manager.latest_checkpoint}", flush=True)
                break
            data.check_not_empty(speed.steps, skipped, config, "train")
            print(f"epoch {epoch + 1}/{config.total_epochs} done: {skipped}", flush=True)
            state.epoch.assign(epoch + 1)  # a run resumed from here starts the next epoch
            state.epoch_step.assign(0)
            _save(state, values, step, manager)
            if config.validate:
                reports.validate(state, config, strategy, evaluate, out_dir, writer)
        if not stop:
            reports.write_samples(state, config, samples, out_dir, writer)  # the finished model's, as at --max-steps
    finally:
        signals.restore()
        stopping.end_preemption(preemption, strategy, config.run_dir)
    check_finite(state, {}, step, manager)
    with stopping.finishing("the training curves and generator.keras"):
        history = os.path.join(out_dir, "history.jsonl")
        if os.path.exists(history):  # also without validation: the curves of the whole run
            plots.training_curves(history, os.path.join(out_dir, "training_curves.png"))
        return export(state, config, out_dir)


def _every(step: int, interval: int) -> bool:
    return bool(interval) and step % interval == 0


def _save(state: TrainState, values: dict, step: int, manager) -> None:
    check_finite(state, values, step, manager)  # a non-finite update keeps the last good checkpoint the last
    resume.save(manager, step, state.checkpoint_bytes())


def _epoch_batches(state: TrainState, config: Config, strategy: tf.distribute.Strategy,
                   checkpoint: tf.train.Checkpoint, epoch: int, latest: str | None, skipped: data.Skipped):
    """The epoch's batches; an epoch resumed midway continues with the very batch that came next.
    On one device the iterator's place is saved in each checkpoint ("train_batches"); where it is not
    (several devices, whose iterators cannot be saved), the images of the steps done are skipped unread."""
    done = int(state.epoch_step.numpy())  # not 0: resumed mid-epoch
    if strategy.num_replicas_in_sync > 1:
        return iter(strategy.distribute_datasets_from_function(
            lambda context: data.input_pipeline(config, epoch, context, done, skipped)))
    saved = done and "train_batches/.ATTRIBUTES/ITERATOR_STATE" in dict(tf.train.list_variables(latest))
    part = data.Part(skip=done * config.batch_size) if done and not saved else data.Part()
    iterator = checkpoint.train_batches = iter(data.make_dataset(config, "train", epoch, skipped, part=part))
    if saved:
        resume.restore(tf.train.Checkpoint(train_batches=iterator), latest, partial=True)
    return iterator


def check_finite(state: TrainState, values: dict, step: int, manager) -> dict:
    """The step's values as floats, once they and the weights are checked: a TrainingError names what is
    not finite. Nothing more is saved then: the last checkpoint is the last good one."""
    values = {k: float(v) for k, v in values.items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    bad += [f"{name} weights" for name, model in state.networks.items()
            if not all(bool(tf.reduce_all(tf.math.is_finite(tf.cast(w, tf.float32)))) for w in model.weights)]
    if bad:
        raise TrainingError(f"step {step}: non-finite {', '.join(bad)}; stopped without saving. "
                            f"The last good checkpoint is {manager.latest_checkpoint}. Try a lower --lr.")
    return values


def export(state: TrainState, config: Config, run_dir: str) -> str:
    """Save the generator as a .keras file (colourisation loads it with config.json beside it), in
    float32 and with BatchNorm statistics re-estimated on training images (BN_ESTIMATE_PIXELS)."""
    path = os.path.join(run_dir, "generator.keras")
    # float32 (saved layers keep their policy: float32 runs anywhere), and a copy: training resumes
    # with its own BatchNorm averages
    generator = models.rebuild(lambda: models.generator_for(config, pretrained=False), state.inference_generator)
    pixels = config.image_size ** 2
    images = max(BN_ESTIMATE_MIN_IMAGES, BN_ESTIMATE_PIXELS // pixels)
    grays = data.make_dataset(config, "train", epoch=int(state.epoch.numpy())).map(lambda batch: batch["gray"])
    batches = grays.unbatch().take(images).batch(max(config.batch_size, BN_BATCH_PIXELS // pixels))
    count = models.estimate_batchnorm(generator, batches)
    with files.atomic_path(path) as temporary:
        cpu_kernels.with_keras_layers(generator).save(temporary)
    print(f"generator exported to {path} (BatchNorm statistics of {count} training images)")
    return path
