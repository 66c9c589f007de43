"""Shape, size and behaviour checks of the generator and discriminator."""
import colorgan  # noqa: F401  (before TensorFlow)
import keras
import numpy as np
import pytest

from colorgan.models import build_discriminator, build_generator, total_stride


def n_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def gray(bs, h, w, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (bs, h, w, 1)).astype("float32")


@pytest.fixture(scope="module")
def gen():
    return build_generator("cifar10")


@pytest.fixture(scope="module")
def disc():
    return build_discriminator("cifar10")


@pytest.fixture
def bf16_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_parameter_counts_match_authors(gen, disc):
    # the authors' TF1 trainable-variable counts; count_params() adds the BatchNorm moving
    # mean and variance (2 per channel: 2,432 channels in G, 896 in D)
    assert n_trainable(gen) == 16_654_851
    assert gen.count_params() == 16_654_851 + 2 * 2_432
    assert n_trainable(disc) == 2_767_553
    assert disc.count_params() == 2_767_553 + 2 * 896


def test_total_stride():
    assert total_stride("cifar10") == 16
    assert total_stride("places365") == total_stride("folder") == 128
    with pytest.raises(ValueError):
        total_stride("mnist")


@pytest.mark.parametrize("h, w", [(32, 32), (64, 48)])
def test_fully_convolutional_shapes(gen, disc, h, w):
    assert gen(gray(2, h, w)).shape == (2, h, w, 3)
    assert disc(np.zeros((2, h, w, 4), "float32")).shape == (2, h // 8, w // 8, 1)


def test_out_channels():
    assert build_generator("cifar10", out_channels=2)(gray(1, 16, 16)).shape == (1, 16, 16, 2)


def test_places365_generator():
    g = build_generator("places365")
    # its 7 stride-2 layers need H, W divisible by 128 (the authors train on 256x256)
    assert g(gray(1, 128, 128)).shape == (1, 128, 128, 3)


def test_mixed_precision_outputs_float32(bf16_policy):
    g, d = build_generator("cifar10"), build_discriminator("cifar10")
    assert g.get_layer("enc1").compute_dtype == "bfloat16"  # the policy did apply
    y = g(gray(2, 32, 32), training=True)
    assert y.dtype == "float32"
    y = keras.ops.convert_to_numpy(y)
    assert y.min() >= -1.0 and y.max() <= 1.0
    assert d(np.concatenate([gray(2, 32, 32), y], axis=-1)).dtype == "float32"


def test_dropout_only_in_training(gen):
    x = gray(2, 32, 32)
    a, b = (keras.ops.convert_to_numpy(gen(x, training=True)) for _ in range(2))
    assert not np.allclose(a, b)
    c, d = (keras.ops.convert_to_numpy(gen(x, training=False)) for _ in range(2))
    np.testing.assert_array_equal(c, d)


def test_estimate_batchnorm_sets_population_statistics():
    """The moving statistics become the average batch mean and (biased) variance of each BatchNorm's
    inputs in training mode, also inside a nested model, computed here independently with numpy."""
    from colorgan.models import estimate_batchnorm
    layers = keras.layers
    inner_in = keras.Input((None, None, 3))
    inner_bn = layers.BatchNormalization(name="inner_bn")
    inner = keras.Model(inner_in, inner_bn(layers.Conv2D(2, 3, padding="same")(inner_in)))
    image = keras.Input((None, None, 1))
    outer_bn = layers.BatchNormalization(name="outer_bn")
    before = layers.Conv2D(3, 3, padding="same")(image)
    model = keras.Model(image, inner(outer_bn(before)))
    batches = [gray(4, 8, 8, seed) * (seed + 1) + seed for seed in range(3)]
    for bn in (inner_bn, outer_bn):  # stale averages, as after weights that changed fast
        bn.moving_mean.assign(np.full(bn.moving_mean.shape, 5.0))
        bn.moving_variance.assign(np.full(bn.moving_variance.shape, 1e3))
    # the inputs each BatchNorm sees in training mode, before any update
    outer_inputs = [keras.Model(image, before)(b).numpy() for b in batches]
    inner_inputs = [keras.Model(inner_in, inner_bn.input)(outer_bn(x, training=True)).numpy() for x in outer_inputs]

    assert estimate_batchnorm(model, iter(batches)) == 12  # images
    for bn, inputs in ((outer_bn, outer_inputs), (inner_bn, inner_inputs)):
        np.testing.assert_allclose(bn.moving_mean, np.mean([x.mean((0, 1, 2)) for x in inputs], 0), atol=1e-5)
        np.testing.assert_allclose(bn.moving_variance, np.mean([x.var((0, 1, 2)) for x in inputs], 0), rtol=1e-4)
        assert bn.momentum == 0.99  # restored for training


def test_width_scales_the_channels_of_every_layer():
    conv = (keras.layers.Conv2D, keras.layers.Conv2DTranspose)
    filters = lambda model: [l.filters for l in model.layers if isinstance(l, conv)]  # noqa: E731
    assert filters(build_generator("cifar10", width=0.25)) == [16, 32, 64, 128, 128, 128, 64, 32, 16, 3]
    assert filters(build_generator("cifar10")) == [64, 128, 256, 512, 512, 512, 256, 128, 64, 3]
    assert filters(build_discriminator("cifar10", width=0.25)) == [16, 32, 64, 128, 1]


def test_spectral_norm_bounds_every_discriminator_kernel():
    def top_singular_values(model):
        kernels = [l.layer.kernel for l in model.layers if isinstance(l, keras.layers.SpectralNormalization)]
        return [np.linalg.svd(keras.ops.convert_to_numpy(k).reshape(-1, k.shape[-1]), compute_uv=False)[0]
                for k in kernels]

    normalised = build_discriminator("cifar10", width=0.125, spectral_norm=True)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 4)).astype("float32")
    for _ in range(30):  # one power iteration per training call
        normalised(x, training=True)
    sigmas = top_singular_values(normalised)
    assert len(sigmas) == 5 and np.allclose(sigmas, 1.0, atol=0.05), sigmas
    assert not top_singular_values(build_discriminator("cifar10", width=0.125))  # the paper's: none
