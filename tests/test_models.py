"""Shape, size and behaviour checks of the generator and discriminator."""
import os
import subprocess
import sys

import colorgan  # noqa: F401  (before TensorFlow)
import keras
import numpy as np
import pytest
import tensorflow as tf

from colorgan import cpu_kernels
from colorgan.models import build_discriminator, build_generator, total_stride
from tests.conftest import skip_where_onednn_lacks_bfloat16


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
    skip_where_onednn_lacks_bfloat16()
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


@pytest.mark.parametrize("transpose, images, filters, matmul, policy", [
    (False, (16, 4, 4, 512), 512, True, "float32"),  # enc4: a 2x2 output map, where the rule takes the matmul
    (True, (16, 4, 4, 1024), 256, True, "float32"),  # dec1: its kernel gradient is a convolution from 8x8 to 4x4
    (False, (16, 16, 16, 64), 128, False, "float32"),  # enc1: oneDNN's own kernel
    (False, (16, 8, 8, 256), 512, True, "mixed_bfloat16")])  # enc3: in bfloat16, maps up to 8x8 take the matmul
def test_a_convolutions_gradients_are_tensorflows_whichever_kernel_computes_them(transpose, images, filters, matmul,
                                                                                policy):
    skip_where_onednn_lacks_bfloat16(policy)
    ours, keras_own = ((cpu_kernels.Conv2DTranspose, keras.layers.Conv2DTranspose) if transpose
                       else (cpu_kernels.Conv2D, keras.layers.Conv2D))
    # the reference computes in float32: TensorFlow's own bfloat16 kernel gradient without oneDNN (Eigen's,
    # TF_ENABLE_ONEDNN_OPTS=0, the path of CPUs without native bfloat16) is off by far more than rounding
    layers = [ours(filters, 4, 2, padding="same", kernel_initializer="lecun_normal", bias_initializer="normal",
                   dtype=policy),
              keras_own(filters, 4, 2, padding="same", dtype="float32")]
    for layer in layers:
        layer.build(images)
    layers[1].set_weights(layers[0].get_weights())
    x = tf.random.stateless_normal(images, (1, 2))

    @tf.function  # a graph, as in training: the sizes are known, so the rule can pick the matmul
    def gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.random.stateless_normal(tf.shape(y), (3, 4)))
        return [y, *tape.gradient(loss, [x, layer.kernel, layer.bias])]

    dtype = layers[0].compute_dtype
    x_out = tf.zeros((images[0], images[1] * 2, images[2] * 2, filters), dtype) if transpose else tf.cast(x, dtype)
    y_out = tf.cast(x, dtype) if transpose else tf.zeros((images[0], images[1] // 2, images[2] // 2, filters), dtype)
    assert cpu_kernels._kernel_gradient_by_matmul(x_out, y_out, 4) == matmul
    tolerance = 1e-4 if dtype == "float32" else 3e-2  # bfloat16 keeps 8 bits: inputs and outputs round at 0.4%
    for name, a, b in zip(("output", "input gradient", "kernel gradient", "bias gradient"),
                          gradients(layers[0]), gradients(layers[1])):
        a, b = np.asarray(tf.cast(a, tf.float32)), np.asarray(tf.cast(b, tf.float32))
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * float(np.max(np.abs(b))), err_msg=name)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("spectral", [False, True])
def test_a_bias_before_batchnorm_has_a_zero_gradient_in_training_and_the_rest_are_tensorflows(
        policy, spectral, monkeypatch):
    skip_where_onednn_lacks_bfloat16(policy)
    def gradients(model, x, training):
        for variable, value in zip(model.variables, start[model.name]):
            variable.assign(value)  # what a training call moves: moving statistics, spectral norm's kernel
        with tf.GradientTape() as tape:
            y = model(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.random.stateless_normal(tf.shape(y), (3, 4)))
        return {v.path: g.numpy() for v, g in zip(model.trainable_variables,
                                                   tape.gradient(loss, model.trainable_variables))}

    keras.mixed_precision.set_global_policy(policy)
    try:
        nets = {name: (build(), x) for name, build, x in (
            ("G", lambda: build_generator("cifar10", 2, width=0.25), gray(4, 32, 32)),
            ("D", lambda: build_discriminator("cifar10", width=0.25, spectral_norm=spectral),
             np.concatenate([gray(4, 32, 32, seed) for seed in range(4)], -1)))}
        for layer in nets["G"][0].layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0  # the same masks in every call
        start = {net.name: [v.numpy() for v in net.variables] for net, _ in nets.values()}
        found = {}
        for ours in (True, False):
            monkeypatch.setattr(cpu_kernels, "ZERO_BIAS_GRADIENT", ours)
            for training in (True, False):
                found[ours, training] = {name: gradients(net, x, training) for name, (net, x) in nets.items()}
    finally:
        keras.mixed_precision.set_global_policy("float32")
    before_bn = {f"enc{i}" for i in range(5)} | {f"dec{i}" for i in range(4)} | {"conv1", "conv2", "conv3"}
    for name in nets:
        ours, own, ours_inference, own_inference = (found[key][name] for key in
                                                    ((True, True), (False, True), (True, False), (False, False)))
        cancelled = [path for path in ours if path.endswith("/bias") and path.split("/")[-2] in before_bn]
        assert len(cancelled) == (9 if name == "G" else 3)
        for path in ours:
            if path in cancelled:  # BatchNorm's batch mean cancels it: TensorFlow's is a sum to rounding noise
                kernel = np.max(np.abs(own[path.replace("/bias", "/kernel")]))
                assert not np.any(ours[path])
                assert np.max(np.abs(own[path])) < (1e-3 if policy == "float32" else 1) * kernel, path
            else:  # every other weight's gradient is TensorFlow's own, as in inference mode every one is
                np.testing.assert_array_equal(ours[path], own[path], err_msg=path)
            np.testing.assert_array_equal(ours_inference[path], own_inference[path], err_msg=path)
        assert all(np.any(ours_inference[path]) for path in cancelled)


def test_the_last_convolutions_compute_in_the_policys_dtype_and_output_float32(bf16_policy, monkeypatch):
    def dtypes():
        G, D = build_generator("cifar10", width=0.125), build_discriminator("cifar10", width=0.125)
        colour = G(gray(2, 32, 32), training=True)
        logits = D(tf.concat([gray(2, 32, 32), colour], -1), training=True)
        return (G.get_layer("out").compute_dtype, D.get_layer("logits").compute_dtype,
                colour.dtype, logits.dtype, G.get_layer("out").kernel.dtype)

    assert dtypes() == ("bfloat16", "bfloat16", "float32", "float32", "float32")
    monkeypatch.setattr(cpu_kernels, "HEADS_IN_COMPUTE_DTYPE", False)  # as before 2026-12-07
    assert dtypes() == ("float32", "float32", "float32", "float32", "float32")


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_batchnorm_trains_through_the_fused_op_as_keras_own_does(policy):
    skip_where_onednn_lacks_bfloat16(policy)
    ours = cpu_kernels.BatchNormalization(dtype=policy, momentum=0.9)
    keras_own = keras.layers.BatchNormalization(dtype="float32", momentum=0.9)  # the reference in float32
    x = tf.random.stateless_normal((8, 4, 4, 64), (1, 2)) * 3 + 1
    for layer in (ours, keras_own):
        layer.build(x.shape)
        layer.gamma.assign(tf.random.stateless_uniform((64,), (3, 4), 0.5, 1.5))
        layer.beta.assign(tf.random.stateless_normal((64,), (5, 6)))

    @tf.function
    def train(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.random.stateless_normal(tf.shape(y), (7, 8)))
        return [y, *tape.gradient(loss, [x, layer.gamma, layer.beta])]

    tolerance = 1e-5 if policy == "float32" else 3e-2
    ops = [op.type for op in train.get_concrete_function(ours).graph.get_operations()]
    assert "FusedBatchNormV3" in ops
    for name, a, b in zip(("output", "input gradient", "gamma gradient", "beta gradient"), train(ours),
                          train(keras_own)):
        a, b = np.asarray(tf.cast(a, tf.float32)), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * float(np.max(np.abs(b))), err_msg=name)
    for ours_stat, keras_stat in ((ours.moving_mean, keras_own.moving_mean),
                                  (ours.moving_variance, keras_own.moving_variance)):
        np.testing.assert_allclose(ours_stat.numpy(), keras_stat.numpy(), rtol=1e-6 if policy == "float32" else 1e-2)
    np.testing.assert_allclose(np.asarray(tf.cast(ours(x, training=False), tf.float32)), keras_own(x, training=False),
                               rtol=tolerance, atol=tolerance * 10)  # inference: Keras' own path, the same statistics


@pytest.mark.slow
def test_a_saved_generator_is_made_of_keras_own_layers_and_loads_without_colorgan(tmp_path):
    generator = build_generator("cifar10", out_channels=2, width=0.125)
    generator(gray(4, 32, 32), training=True)  # moving statistics that differ from the initial ones
    path = str(tmp_path / "generator.keras")
    cpu_kernels.with_keras_layers(generator).save(path)
    script = (f"import keras, numpy as np; m = keras.saving.load_model({path!r}, compile=False); "
              f"np.save({str(tmp_path / 'out.npy')!r}, m(np.load({str(tmp_path / 'in.npy')!r})))")
    np.save(tmp_path / "in.npy", gray(2, 32, 32, seed=1))
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert loaded.returncode == 0, loaded.stderr  # plain Python: colorgan's classes are not registered there
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), generator(gray(2, 32, 32, seed=1)), atol=1e-6)


@pytest.mark.parametrize("beta_1", [0.0, 0.9])  # the paper's, and Keras' default
def test_adam_updates_in_one_op_as_keras_own_does(beta_1):
    shapes = [(4, 4, 3, 8), (8,)]
    start = [tf.random.stateless_normal(s, (i, 1)) for i, s in enumerate(shapes)]
    step = tf.Variable(0.0)
    runs = []
    for optimizer in (cpu_kernels.Adam(lambda: 1e-2 * 0.5 ** step, beta_1=beta_1),
                      keras.optimizers.Adam(lambda: 1e-2 * 0.5 ** step, beta_1=beta_1)):
        variables = [keras.Variable(v) for v in start]
        optimizer.build(variables)

        @tf.function
        def update(t):
            grads = [tf.random.stateless_normal(s, (t, i)) * (i + 1) for i, s in enumerate(shapes)]
            optimizer.apply(grads, variables)
            step.assign_add(1.0)

        step.assign(0.0)
        for t in range(5):
            update(tf.constant(t))
        if isinstance(optimizer, cpu_kernels.Adam):
            ops = [op.type for op in update.get_concrete_function(tf.constant(0)).graph.get_operations()]
            assert ops.count("ResourceApplyAdam") == len(shapes) and "Sqrt" not in ops
        runs.append([v.numpy() for v in [*variables, *optimizer.variables]])  # the weights, Adam's moments and step
    moved = max(float(np.max(np.abs(a - b.numpy()))) for a, b in zip(runs[0], start))
    assert moved > 1e-2  # five steps of about lr each, at a falling rate
    for ours, keras_own in zip(*runs):  # the op takes 1 - beta_2 in float32 (0.0010000467), Keras in double
        np.testing.assert_allclose(ours, keras_own, rtol=1e-4, atol=1e-7)
