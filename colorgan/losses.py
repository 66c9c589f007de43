"""GAN losses as pure functions of discriminator logits (TF-GAN style).

Every loss is first reduced to one value per example (mean over its patches or pixels) and then
averaged with tf.nn.compute_average_loss, so under tf.distribute the sum over replicas is the
mean over the global batch. Everything is computed in float32, whatever the model's policy.
"""
import colorgan  # noqa: F401  (sets TF env vars before TensorFlow loads)
import tensorflow as tf


def _per_example_mean(x):
    """(bs, ...) -> (bs,): mean over everything but the batch axis."""
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.reduce_mean(x, axis=1)


def _bce(logits, label, global_batch_size):
    """Batch average of the per-example mean sigmoid cross-entropy against a constant label."""
    logits = tf.cast(logits, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits)
    return tf.nn.compute_average_loss(_per_example_mean(ce), global_batch_size=global_batch_size)


def discriminator_loss(real_logits, fake_logits, label_smoothing: bool = False, global_batch_size=None) -> dict:
    """D loss: real patches -> 1 (0.9 with one-sided label smoothing), fake patches -> 0."""
    # one-sided: only the real target is softened, so D is not taught to let fakes pass
    real = _bce(real_logits, 0.9 if label_smoothing else 1.0, global_batch_size)
    fake = _bce(fake_logits, 0.0, global_batch_size)
    return {"real": real, "fake": fake, "total": real + fake}


def generator_loss(fake_logits, fake, real, l1_weight: float, global_batch_size=None) -> dict:
    """G loss: fool D (fake patches -> 1) plus l1_weight times the L1 distance to the true colours."""
    gan = _bce(fake_logits, 1.0, global_batch_size)
    diff = tf.abs(tf.cast(fake, tf.float32) - tf.cast(real, tf.float32))
    l1 = tf.nn.compute_average_loss(_per_example_mean(diff), global_batch_size=global_batch_size)
    return {"gan": gan, "l1": l1, "total": gan + l1_weight * l1}


def accuracy(real_logits, fake_logits):
    """Share of patches D gets right (real > 0, fake < 0), averaged over the real and fake sets."""
    real_ok = tf.reduce_mean(tf.cast(tf.cast(real_logits, tf.float32) > 0, tf.float32))
    fake_ok = tf.reduce_mean(tf.cast(tf.cast(fake_logits, tf.float32) < 0, tf.float32))
    return (real_ok + fake_ok) / 2
