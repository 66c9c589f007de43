"""Generator (U-Net) and discriminator (PatchGAN) of Nazeri, Ng & Ebrahimi 2018, in Keras 3.

Layer sizes follow the authors' final TF1 code (ImagingLab/Colorizing-with-GANs, src/models.py
and src/networks.py). Every convolution is 4x4 'same', keeps its bias even when BatchNorm
follows (TF1 tf.layers default), and uses the authors' initialiser (variance scaling, fan-in,
truncated normal = lecun_normal). BatchNorm comes before the activation.
"""
import contextlib
import functools
import re

import keras
from keras import layers

from colorgan import cpu_kernels
from colorgan.config import UserError, first_line
# The one place that picks the layer classes: Keras' own, trained through the CPU's kernel choices
from colorgan.cpu_kernels import BatchNormalization, Conv2D, Conv2DTranspose

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


def _block(x, filters, strides, name, bn=True, leaky=True, transpose=False, sync=False, spectral=False):
    """4x4 conv (or transposed conv, or spectrally normalised conv) -> optional BatchNorm ->
    LeakyReLU(0.2) or ReLU."""
    conv = (Conv2DTranspose if transpose else Conv2D)(filters, 4, strides, padding="same",
                                                      kernel_initializer=_INIT, name=name)
    conv.before_batchnorm = bn  # its bias's gradient is zero in training (cpu_kernels._add_bias)
    x = (layers.SpectralNormalization(conv, name=name + "_sn") if spectral else conv)(x)
    if bn:
        x = BatchNormalization(synchronized=sync, name=name + "_bn")(x)
    return layers.LeakyReLU(0.2, name=name + "_act")(x) if leaky else layers.ReLU(name=name + "_act")(x)


def build_generator(dataset: str = "cifar10", out_channels: int = 3, sync_batchnorm: bool = False,
                    skips: bool = True, width: float = 1.0) -> keras.Model:
    """U-Net generator: normalised L channel (bs, H, W, 1) in [-1, 1] -> colour (bs, H, W, out_channels) in [-1, 1].

    skips=False gives the encoder-decoder of the same blocks, one level deeper and without skip connections.
    width scales every layer's channels (1: the paper's 64 to 512).
    """
    encoder, decoder = _arch(dataset, skips)
    gray = keras.Input((None, None, 1), name="gray")

    # encoder; unlike the discriminator, the authors keep BatchNorm on the first layer too
    x, encoded = gray, []
    for i, (filters, strides) in enumerate(encoder):
        # cifar10: (bs, 32, 32, 64) ... (bs, 2, 2, 512)
        x = _block(x, _scaled(filters, width), strides, f"enc{i}", sync=sync_batchnorm)
        encoded.append(x)

    # decoder; each upsampled map is joined with the encoder map of the same size (U-Net skip)
    for i, (filters, rate) in enumerate(decoder):
        x = _block(x, _scaled(filters, width), 2, f"dec{i}", leaky=False, transpose=True,
                   sync=sync_batchnorm)  # cifar10 i=0: (bs, 4, 4, 512)
        if rate > 0:
            x = layers.Dropout(rate, name=f"dec{i}_dropout")(x)  # the only noise source of G (pix2pix)
        if skips:
            x = layers.Concatenate(name=f"dec{i}_skip")([encoded[-i - 2], x])  # cifar10 i=0: (bs, 4, 4, 1024)
    name = f"generator_{dataset}" if skips else f"encoder_decoder_{dataset}"
    return keras.Model(gray, _colour_out(x, out_channels), name=name)


def _head_dtype():
    """The dtype of a network's last convolution: the compute dtype, its output cast to float32 by the
    layer after it (as Keras' mixed precision guide does), or float32 where HEADS_IN_COMPUTE_DTYPE is off.
    In float32, the colour head (a 1x1 convolution of a 32-channel 128 px map, oneDNN's slowest
    kernel there) and the casts around it made the bfloat16 photo step 1.06-1.08x slower (bench/README.md,
    "The photo step"); the colours move by 0.005 CIEDE2000 more when colourising in bfloat16."""
    return None if cpu_kernels.HEADS_IN_COMPUTE_DTYPE else "float32"


def _colour_out(x, out_channels):
    x = Conv2D(out_channels, 1, kernel_initializer=_INIT, dtype=_head_dtype(), name="out")(x)
    return layers.Activation("tanh", dtype="float32", name="out_tanh")(x)  # (bs, H, W, out_channels), float32


def build_discriminator(dataset: str = "cifar10", in_channels: int = 4, sync_batchnorm: bool = False,
                        width: float = 1.0, spectral_norm: bool = False) -> keras.Model:
    """PatchGAN discriminator: gray ++ colour (bs, H, W, in_channels) -> one logit per patch (bs, H/8, W/8, 1).

    spectral_norm: every convolution's kernel divided by its largest singular value (one power
    iteration per training step; Miyato et al. 2018), the BatchNorm layers kept."""
    _arch(dataset)  # validates the name; both datasets share one discriminator
    image = keras.Input((None, None, in_channels), name="gray_color")
    x = image
    for i, (filters, strides) in enumerate(_DISCRIMINATOR):
        # no BatchNorm on the first layer (DCGAN practice, and the authors' code)
        x = _block(x, _scaled(filters, width), strides, f"conv{i}", bn=i > 0, sync=sync_batchnorm,
                   spectral=spectral_norm)  # cifar10: (bs, 16, 16, 64) ... (bs, 4, 4, 512)
    # raw logits (the losses apply the sigmoid)
    logits = Conv2D(1, 4, 1, padding="same", kernel_initializer=_INIT, dtype=_head_dtype(), name="logits")
    if spectral_norm:
        logits = layers.SpectralNormalization(logits, dtype=_head_dtype(), name="logits_sn")
    logits = layers.Activation("linear", dtype="float32", name="logits_float32")(logits(x))  # (bs, H/8, W/8, 1)
    return keras.Model(image, logits, name=f"discriminator_{dataset}")


# Keras Applications networks usable as the encoder: (constructor, the module with its preprocess_input)
BACKBONES = {
    "mobilenetv2": (keras.applications.MobileNetV2, keras.applications.mobilenet_v2),
    "resnet50v2": (keras.applications.ResNet50V2, keras.applications.resnet_v2),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50),
    "efficientnetb0": (keras.applications.EfficientNetB0, keras.applications.efficientnet),
    "densenet121": (keras.applications.DenseNet121, keras.applications.densenet),
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16),
}


_BACKBONE_DECODER = [512, 256, 128, 64]  # filters of the decoder levels at strides 16, 8, 4, 2


@functools.cache
def backbone_skips(name: str) -> tuple[str, ...]:
    """Names of the backbone's deepest layers at strides 2, 4, 8, 16 and 32: the U-Net's skips.

    Found on a probe built at 64x64, so that any Keras Applications network works without a
    hand-written list (for MobileNetV2 they are block_1_expand_relu ... out_relu).
    """
    probe = BACKBONES[name][0](include_top=False, weights=None, input_shape=(64, 64, 3))
    deepest = {}
    for layer in probe.layers:
        if isinstance(layer, (layers.InputLayer, layers.ZeroPadding2D)):  # padded maps are not features
            continue
        shape = layer.output.shape
        if len(shape) == 4 and shape[1] == shape[2] and shape[1] in (32, 16, 8, 4, 2):
            deepest[64 // shape[1]] = layer.name
    if sorted(deepest) != [2, 4, 8, 16, 32]:
        raise ValueError(f"{name}: no feature map at every stride 2..32 ({sorted(deepest)})")
    return tuple(deepest[s] for s in (2, 4, 8, 16, 32))


def build_backbone_generator(name: str, weights: str = "none", out_channels: int = 3,
                             sync_batchnorm: bool = False, width: float = 1.0) -> keras.Model:
    """U-Net whose encoder is a Keras Applications network (weights: "imagenet", a file, or "none").

    The gray input is replicated to 3 channels, scaled to 0-255 and passed through the backbone's
    own preprocess_input; the decoder mirrors the backbone's five stride-2 levels with the same
    transposed-convolution blocks as the paper's generator, joined with the backbone's features.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    constructor, module = BACKBONES[name]
    try:
        network = constructor(include_top=False, weights=None if weights == "none" else weights,
                              input_shape=(None, None, 3))
    except Exception as error:  # offline download, missing or foreign file: Keras raises many kinds
        raise UserError(f"cannot load {weights!r} weights into --backbone {name} "
                        f"({first_line(error)}). Offline, copy the no-top weights file "
                        "from a machine that has it (Keras keeps downloads in ~/.keras/models/) and pass its "
                        "path as --backbone-weights.") from None
    features = keras.Model(network.input, [network.get_layer(n).output for n in backbone_skips(name)],
                           name=f"{name}_features")
    gray = keras.Input((None, None, 1), name="gray")
    rgb = layers.Concatenate(name="gray_to_rgb")([gray, gray, gray])  # (bs, H, W, 3)
    rgb = layers.Rescaling(127.5, offset=127.5, name="to_0_255")(rgb)  # the L channel as 0-255 gray
    skips = features(module.preprocess_input(rgb))  # cifar10: (bs, 16, 16, C1) ... (bs, 1, 1, C5)
    x = skips[-1]
    for i, filters in enumerate(_BACKBONE_DECODER):
        # i=0: (bs, H/16, W/16, 512)
        x = _block(x, _scaled(filters, width), 2, f"dec{i}", leaky=False, transpose=True, sync=sync_batchnorm)
        x = layers.Concatenate(name=f"dec{i}_skip")([skips[-i - 2], x])
    # the backbone has no full-resolution features: the last level joins a small block on the input
    x = _block(x, _scaled(64, width), 2, f"dec{len(_BACKBONE_DECODER)}", leaky=False, transpose=True,
               sync=sync_batchnorm)
    full = _block(gray, _scaled(32, width), 1, "enc_full", sync=sync_batchnorm)
    x = layers.Concatenate(name="full_skip")([full, x])  # (bs, H, W, 96)
    return keras.Model(gray, _colour_out(x, out_channels), name=f"generator_{name}")


def generator_for(config, pretrained: bool = True) -> keras.Model:
    """The generator a config asks for; pretrained=False skips backbone weights (a checkpoint follows)."""
    out_channels = 2 if config.generator_output == "ab" else 3
    if config.backbone != "none":
        weights = config.backbone_weights if pretrained else "none"
        return build_backbone_generator(config.backbone, weights, out_channels, config.sync_batchnorm, config.width)
    return build_generator(config.dataset, out_channels, config.sync_batchnorm, skips=config.model != "encoder-decoder",
                           width=config.width)


def colorize(generator: keras.Model, gray, generator_output: str = "lab", training: bool = False):
    """Full colour image (bs, H, W, 3) in [-1, 1] from gray (bs, H, W, 1): with generator_output "ab"
    the generator predicts only a and b and the input's own L channel is kept."""
    out = generator(gray, training=training)
    if generator_output == "ab":
        return keras.ops.concatenate([keras.ops.cast(gray, out.dtype), out], axis=-1)
    return out


def _scaled(filters, width):
    return max(1, round(filters * width))


def _arch(dataset, skips=True):
    if dataset in ("miniplaces", "folder"):  # Places photos at 128 px and any image folder: Places365's networks
        dataset = "places365"
    if dataset not in _ENCODER:
        raise ValueError(f"unknown dataset {dataset!r}; expected cifar10, places365, miniplaces or folder")
    encoder, decoder = _ENCODER[dataset], _DECODER[dataset]
    if not skips:  # encoder-decoder: one level more, down to a 1x1x512 bottleneck at the preset size
        encoder, decoder = encoder + [(512, 2)], decoder[:1] + decoder
    return encoder, decoder


def total_stride(dataset="cifar10", model="gan", backbone="none"):
    """Factor by which the generator downsamples; input H and W must be multiples of it."""
    if backbone != "none":
        return 32  # every Keras Applications backbone here downsamples 5 times
    encoder, _ = _arch(dataset, skips=model != "encoder-decoder")
    stride = 1
    for _, s in encoder:
        stride *= s
    return stride


def encoder_mismatch(generator: keras.Model, config) -> str:
    """How the paper's U-Net or encoder-decoder generator differs from what config describes (its
    encoder's channels: --width, --dataset, --model), or "" where it fits or has a backbone."""
    if config.backbone != "none":
        return ""
    encoder, _ = _arch(config.dataset, skips=config.model != "encoder-decoder")
    have = [layer.filters for layer in generator.layers if re.fullmatch(r"enc\d+", layer.name)]
    want = [_scaled(filters, config.width) for filters, _ in encoder]
    if have == want:
        return ""
    return (f"its encoder's channels are {have}; --dataset {config.dataset} --model {config.model} "
            f"--width {config.width:g} give {want}")


@contextlib.contextmanager
def dtype_policy(policy: str):
    """Keras' global dtype policy, which layers take when they are made, as policy for a while."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def rebuild(build, source: keras.Model, policy: str = "float32") -> keras.Model:
    """build() under a Keras dtype policy, holding source's weights: a float32 copy to export, a
    bfloat16 one to colourise faster."""
    with dtype_policy(policy):
        copy = build()
    # .numpy() per variable, not get_weights(): NumPy 2 warns on TensorFlow's __array__ for every one
    copy.set_weights([w.numpy() for w in source.weights])
    return copy


def _all_layers(layer):
    for sub in getattr(layer, "layers", []):  # a backbone is a model inside the model
        yield sub
        yield from _all_layers(sub)


def estimate_batchnorm(model: keras.Model, batches) -> int:
    """Set every BatchNorm layer's moving mean and variance to the average of its batch statistics
    over batches (inputs in training mode), instead of the exponential moving averages kept during
    training. Those lag behind weights that change fast and, with them, a generator can colourise
    far worse in inference mode than in training mode ("PreciseBN": Wu & Johnson 2021, Rethinking
    "Batch" in BatchNorm). Returns how many images were used.
    """
    norms = [l for l in _all_layers(model) if isinstance(l, layers.BatchNormalization) and l.trainable]
    momenta = [l.momentum for l in norms]
    images = 0
    try:
        for count, batch in enumerate(batches, 1):
            for l in norms:  # moving = (count - 1)/count * moving + batch/count: the running average
                l.momentum = (count - 1) / count
            model(batch, training=True)
            images += len(batch)
    finally:
        for l, momentum in zip(norms, momenta):
            l.momentum = momentum
    return images
