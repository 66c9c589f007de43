"""The CPU's kernel choices for colorgan's networks: Keras' Conv2D, Conv2DTranspose and
BatchNormalization with the same weights and forward ops, which train faster through oneDNN, and
Keras' Adam with the same variables and update, in one op per variable.

Each layer class here is a drop-in subclass of Keras' own: models.py builds every network from
them, and export saves Keras' own classes again (with_keras_layers), so a .keras file loads
wherever Keras does. Flags switch each choice off, for tests and benchmarks to compare against
TensorFlow's own gradients.
"""
import keras
import tensorflow as tf
from keras import layers

# The kernel's gradient as one matmul where oneDNN's own is slow. Its weight-gradient kernels reach
# 8-40% of the matmul peak where the output map is small against the channels (2x2 to 8x8 maps at
# 256-1024 channels: the deep half of the U-Net and D), in bfloat16 above all; there, the patches of
# the input times the output's gradient, one matmul, is 1.2-6x faster (bench/README.md, "The kernel
# gradient as one matmul"). The forward pass and the input's gradient are TensorFlow's own ops.
MATMUL_KERNEL_GRADIENT = True  # False: TensorFlow's own gradient everywhere (tests and bench compare)


def _kernel_gradient_by_matmul(images, output_grad, kernel_size: int) -> bool:
    """Whether the measured rule (bench/README.md) picks the matmul for this layer's kernel gradient."""
    _, height, width, cout = output_grad.shape
    if not MATMUL_KERNEL_GRADIENT or None in (height, width) or tf.config.list_logical_devices("GPU"):
        return False  # unknown sizes, or a GPU (cuDNN's kernels are not oneDNN's): the standard op
    if kernel_size ** 2 * images.shape[-1] < 2048 or cout < 256:
        return False  # a short product: patch extraction costs more than it saves
    pixels = height * width
    if output_grad.dtype == tf.bfloat16:
        return pixels <= 64
    return pixels <= 4 or (pixels <= 16 and cout >= 1024)  # float32 kernels fare better in oneDNN


def _kernel_gradient(images, output_grad, kernel_shape, stride: int, padding: str):
    """dLoss/dkernel of a convolution of images (bs, H, W, Cin) whose output's gradient is output_grad
    (bs, h, w, Cout), for a kernel (k, k, Cin, Cout)."""
    k, strides = kernel_shape[0], [1, stride, stride, 1]
    if not _kernel_gradient_by_matmul(images, output_grad, k):
        return tf.raw_ops.Conv2DBackpropFilter(input=images, filter_sizes=kernel_shape, out_backprop=output_grad,
                                               strides=strides, padding=padding)
    # the same padding rule as the convolution's, and patches in the kernel's (k, k, Cin) order
    patches = tf.image.extract_patches(images, [1, k, k, 1], strides, [1, 1, 1, 1], padding)  # (bs, h, w, k*k*Cin)
    grad = tf.matmul(tf.reshape(patches, (-1, patches.shape[-1])), tf.reshape(output_grad, (-1, kernel_shape[-1])),
                     transpose_a=True)  # (k*k*Cin, Cout)
    return tf.reshape(grad, kernel_shape)


# The bias of a convolution that BatchNorm follows, in training, with a zero gradient: BatchNorm
# subtracts its batch mean, the bias with it, so TensorFlow's own gradient is a sum over the map that
# cancels to rounding noise (large in bfloat16, which keeps 8 bits), which Adam, scaling each
# update to about lr, turns into a random walk. Not summing it: the photo step 1.01x (bench/README.md).
ZERO_BIAS_GRADIENT = True  # False: TensorFlow's own gradient (tests and bench compare)


@tf.custom_gradient
def _cancelled(bias):
    return tf.identity(bias), lambda grad: tf.zeros_like(bias)


def _add_bias(layer, outputs, training):
    """outputs + the layer's bias, whose gradient is zero where layer.before_batchnorm (models._block
    sets it) and BatchNorm trains."""
    bias = tf.convert_to_tensor(layer.bias)  # the compute dtype, under mixed precision
    if ZERO_BIAS_GRADIENT and training and getattr(layer, "before_batchnorm", False):
        bias = _cancelled(bias)
    return tf.nn.bias_add(outputs, bias)


@keras.saving.register_keras_serializable("colorgan")
class Conv2D(layers.Conv2D):
    """Keras' Conv2D (same weights, same forward op) whose kernel gradient may be one matmul and whose
    bias may have a zero gradient before BatchNorm."""

    def call(self, inputs, training=None):
        outputs = self.convolution_op(inputs, self.kernel)
        outputs = _add_bias(self, outputs, training) if self.use_bias else outputs
        return self.activation(outputs) if self.activation is not None else outputs

    def convolution_op(self, inputs, kernel):
        stride, padding = self.strides[0], self.padding.upper()

        @tf.custom_gradient
        def conv(images, kernel):
            def grad(output_grad):
                return (tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(images), filter=kernel,
                                                       out_backprop=output_grad, strides=[1, stride, stride, 1],
                                                       padding=padding),
                        _kernel_gradient(images, output_grad, list(kernel.shape), stride, padding))
            return super(Conv2D, self).convolution_op(images, kernel), grad
        return conv(inputs, tf.convert_to_tensor(kernel))


@keras.saving.register_keras_serializable("colorgan")
class Conv2DTranspose(layers.Conv2DTranspose):
    """Keras' Conv2DTranspose (same weights, same forward op) whose kernel gradient may be one matmul and
    whose bias may have a zero gradient before BatchNorm; as _block builds it: channels last, no output
    padding, dilation or activation."""

    def call(self, inputs, training=None):
        stride, padding = self.strides[0], self.padding.upper()

        @tf.custom_gradient
        def conv_transpose(images, kernel):  # the gradient of a convolution from the output to images
            def grad(output_grad):
                return (tf.nn.conv2d(output_grad, kernel, stride, padding),
                        _kernel_gradient(output_grad, images, list(kernel.shape), stride, padding))
            return keras.ops.conv_transpose(images, kernel, self.strides, self.padding), grad
        outputs = conv_transpose(inputs, tf.convert_to_tensor(self.kernel))
        return _add_bias(self, outputs, training) if self.use_bias else outputs


# The networks' last convolutions (the colour head and D's logits) in the compute dtype, their outputs
# in float32 (models._head_dtype); read when a network is built
HEADS_IN_COMPUTE_DTYPE = True  # False: both in float32 (bench compares)

FUSED_BATCHNORM = True  # False: Keras' own BatchNorm in training too (tests and bench compare)


@keras.saving.register_keras_serializable("colorgan")
class BatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization (same weights and statistics) that trains through TensorFlow's fused
    op: one kernel forward and one backward, where Keras 3 computes the moments and the normalisation
    with about ten ops and, under mixed precision, casts to float32 and back around them (the step
    1.04-1.2x faster, bench/README.md). Inference, synchronised statistics and masks take Keras' path."""

    def call(self, inputs, training=None, mask=None):
        if not (FUSED_BATCHNORM and training and self.trainable and mask is None and not self.synchronized
                and not self.renorm and self.center and self.scale and len(inputs.shape) == 4 and self.axis in (-1, 3)):
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(  # statistics in float32 whatever the input's dtype
            inputs, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32), epsilon=self.epsilon,
            is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        variance *= (count - 1) / count  # the op returns the unbiased variance; Keras averages the biased one
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)


FUSED_ADAM = True  # False: Keras' own Adam update (tests and bench compare)


class Adam(keras.optimizers.Adam):
    """Keras' Adam (the same variables, so the same checkpoints, and the same update) whose update of
    a variable is TensorFlow's fused ResourceApplyAdam: one op, where Keras 3 issues about twenty
    small ones (two powers and a square root among them) per variable and update. The half-width
    recipe's step updates 93 variables per iteration, and at batch 32 such ops cost as much as a
    convolution (bench/README.md, "The recipe's step")."""

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        step = tf.cast(self.iterations + 1, tf.float32)  # the bias corrections: once per update, not per variable
        self._beta_powers = (tf.pow(tf.cast(self.beta_1, tf.float32), step),
                             tf.pow(tf.cast(self.beta_2, tf.float32), step))
        super()._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        if not FUSED_ADAM or self.amsgrad or variable.dtype != tf.float32:
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        # the op's update is Keras': lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); m += (g - m)(1 - b1);
        # v += (g^2 - v)(1 - b2); var -= lr_t m / (sqrt(v) + epsilon)
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle, v=self._velocities[index].value.handle,
            beta1_power=self._beta_powers[0], beta2_power=self._beta_powers[1], lr=tf.cast(learning_rate, tf.float32),
            beta1=tf.constant(self.beta_1, tf.float32), beta2=tf.constant(self.beta_2, tf.float32),
            epsilon=tf.constant(self.epsilon, tf.float32), grad=tf.cast(gradient, tf.float32))


def with_keras_layers(model: keras.Model) -> keras.Model:
    """A copy of model, weights included, made of Keras' own layer classes: colorgan's differ only in
    how they train, and a .keras file of Keras' classes loads wherever Keras does, colorgan or not."""
    keras_class = {Conv2D: layers.Conv2D, Conv2DTranspose: layers.Conv2DTranspose,
                   BatchNormalization: layers.BatchNormalization}
    copy = keras.models.clone_model(
        model, clone_function=lambda layer: keras_class.get(type(layer), type(layer)).from_config(layer.get_config()))
    copy.set_weights([w.numpy() for w in model.weights])
    return copy
