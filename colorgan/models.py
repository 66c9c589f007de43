"""Generator (U-Net) and discriminator (PatchGAN) of Nazeri, Ng & Ebrahimi 2018, in Keras 3.

Layer sizes follow the authors' final TF1 code (ImagingLab/Colorizing-with-GANs, src/models.py
and src/networks.py). Every convolution is 4x4 'same', keeps its bias even when BatchNorm
follows (TF1 tf.layers default), and uses the authors' initialiser (variance scaling, fan-in,
truncated normal = lecun_normal). BatchNorm comes before the activation.
"""
import colorgan  # noqa: F401  (sets TF env vars before TensorFlow loads)
import keras
from keras import layers

# (filters, stride) of each encoder layer
_ENCODER = {
    "cifar10": [(64, 1), (128, 2), (256, 2), (512, 2), (512, 2)],
    "places365": [(64, 1), (64, 2), (128, 2), (256, 2), (512, 2), (512, 2), (512, 2), (512, 2)],
}
# (filters, dropout rate) of each decoder layer; all upsample x2. The authors' final code uses
# dropout only in the first two CIFAR-10 decoder layers and none at all for Places365.
_DECODER = {
    "cifar10": [(512, 0.5), (256, 0.5), (128, 0.0), (64, 0.0)],
    "places365": [(512, 0.0), (512, 0.0), (512, 0.0), (256, 0.0), (128, 0.0), (64, 0.0), (64, 0.0)],
}
# (filters, stride) of the discriminator; the authors use the same net for both datasets
_DISCRIMINATOR = [(64, 2), (128, 2), (256, 2), (512, 1)]

_INIT = "lecun_normal"  # TF1 tf.variance_scaling_initializer() defaults


def _arch(dataset):
    if dataset == "folder":  # arbitrary image folders are trained like Places365
        dataset = "places365"
    if dataset not in _ENCODER:
        raise ValueError(f"unknown dataset {dataset!r}; expected cifar10, places365 or folder")
    return _ENCODER[dataset], _DECODER[dataset]


def total_stride(dataset="cifar10"):
    """Factor by which the generator downsamples; input H and W must be multiples of it."""
    encoder, _ = _arch(dataset)
    stride = 1
    for _, s in encoder:
        stride *= s
    return stride


def _block(x, filters, strides, name, bn=True, leaky=True, transpose=False, sync=False):
    """4x4 conv (or transposed conv) -> optional BatchNorm -> LeakyReLU(0.2) or ReLU."""
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    x = conv(filters, 4, strides, padding="same", kernel_initializer=_INIT, name=name)(x)
    if bn:
        x = layers.BatchNormalization(synchronized=sync, name=name + "_bn")(x)
    return layers.LeakyReLU(0.2, name=name + "_act")(x) if leaky else layers.ReLU(name=name + "_act")(x)


def build_generator(dataset: str = "cifar10", out_channels: int = 3, sync_batchnorm: bool = False) -> keras.Model:
    """U-Net generator: normalised L channel (bs, H, W, 1) in [-1, 1] -> colour (bs, H, W, out_channels) in [-1, 1]."""
    encoder, decoder = _arch(dataset)
    gray = keras.Input((None, None, 1), name="gray")

    # encoder; unlike the discriminator, the authors keep BatchNorm on the first layer too
    x, skips = gray, []
    for i, (filters, strides) in enumerate(encoder):
        x = _block(x, filters, strides, f"enc{i}", sync=sync_batchnorm)  # cifar10: (bs, 32, 32, 64) ... (bs, 2, 2, 512)
        skips.append(x)

    # decoder; each upsampled map is joined with the encoder map of the same size (U-Net skip)
    for i, (filters, rate) in enumerate(decoder):
        x = _block(x, filters, 2, f"dec{i}", leaky=False, transpose=True, sync=sync_batchnorm)  # cifar10 i=0: (bs, 4, 4, 512)
        if rate > 0:
            x = layers.Dropout(rate, name=f"dec{i}_dropout")(x)  # the only noise source of G (pix2pix)
        x = layers.Concatenate(name=f"dec{i}_skip")([skips[-i - 2], x])  # cifar10 i=0: (bs, 4, 4, 1024)

    # float32 so that mixed precision still yields float32 colours
    out = layers.Conv2D(out_channels, 1, activation="tanh", kernel_initializer=_INIT,
                        dtype="float32", name="out")(x)  # (bs, H, W, out_channels)
    return keras.Model(gray, out, name=f"generator_{dataset}")


def build_discriminator(dataset: str = "cifar10", in_channels: int = 4, sync_batchnorm: bool = False) -> keras.Model:
    """PatchGAN discriminator: gray ++ colour (bs, H, W, in_channels) -> one logit per patch (bs, H/8, W/8, 1)."""
    _arch(dataset)  # validates the name; both datasets share one discriminator
    image = keras.Input((None, None, in_channels), name="gray_color")
    x = image
    for i, (filters, strides) in enumerate(_DISCRIMINATOR):
        # no BatchNorm on the first layer (DCGAN practice, and the authors' code)
        x = _block(x, filters, strides, f"conv{i}", bn=i > 0, sync=sync_batchnorm)  # cifar10: (bs, 16, 16, 64) ... (bs, 4, 4, 512)
    # raw logits (the losses apply the sigmoid), float32 under mixed precision
    logits = layers.Conv2D(1, 4, 1, padding="same", kernel_initializer=_INIT,
                           dtype="float32", name="logits")(x)  # (bs, H/8, W/8, 1)
    return keras.Model(image, logits, name=f"discriminator_{dataset}")


def colorize(generator: keras.Model, gray, generator_output: str = "lab", training: bool = False):
    """Full colour image (bs, H, W, 3) in [-1, 1] from gray (bs, H, W, 1): with generator_output "ab"
    the generator predicts only a and b and the input's own L channel is kept."""
    out = generator(gray, training=training)
    if generator_output == "ab":
        return keras.ops.concatenate([keras.ops.cast(gray, out.dtype), out], axis=-1)
    return out
