"""Each metric against an independent reference: numpy/scikit-image re-implementations, the
published CIEDE2000 test data and values worked out by hand."""
import numpy as np
import pytest
import scipy.linalg
import skimage.color
import skimage.metrics

import colorgan  # noqa: F401  (TensorFlow's environment first)
import tensorflow as tf

from colorgan import metrics

# Sharma, Wu & Dalal (2005), Table 1: L1 a1 b1, L2 a2 b2, published dE00 (all 34 pairs).
SHARMA = np.array([
    [50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425],
    [50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615],
    [50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412],
    [50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669],
    [50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461],
    [50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065],
    [50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492],
    [50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977],
    [50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030],
    [50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000],
    [60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644],
    [63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630],
    [61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731],
    [35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645],
    [22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373],
    [36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146],
    [90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441],
    [90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381],
    [6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377],
    [2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082],
])


@pytest.fixture(scope="module")
def pair():
    """Real images and fakes that differ by a different amount of noise per image."""
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    noise = rng.normal(size=real.shape) * np.array([0.0, 1.0, 4.0, 20.0])[:, None, None, None]
    fake = np.clip(np.round(real + noise), 0, 255).astype(np.uint8)
    return real, fake


def numpy_accuracy(real, fake, eps):
    """The paper's accuracy, written independently: skimage Lab, rounded, per image."""
    diff = np.abs(np.round(skimage.color.rgb2lab(real / 255.0)) - np.round(skimage.color.rgb2lab(fake / 255.0)))
    ok = (diff[..., 0] <= eps) & (diff[..., 1] <= 2.2 * eps) & (diff[..., 2] <= 2.2 * eps)
    return ok.mean(axis=(1, 2))


# Two Lab libraries agree to ~1e-5, so now and then a value sits on the other side of x.5 and one
# pixel rounds differently: allow two pixels of 32x32.
PIXEL = 2 / (32 * 32)


@pytest.mark.parametrize("eps", [1, 2, 5, 10])
def test_accuracy_at_each_eps_matches_numpy(pair, eps):
    real, fake = pair
    got = metrics.accuracy_curve(real, fake, (eps,))[eps].numpy()
    assert got.shape == (4,) and got[0] == 1.0
    np.testing.assert_allclose(got, numpy_accuracy(real, fake, eps), atol=PIXEL)


def test_accuracy_curve_against_numpy(pair):
    real, fake = pair
    curve = metrics.accuracy_curve(real, fake)
    assert list(curve) == [1, 2, 5, 10]
    for eps, values in curve.items():
        np.testing.assert_allclose(values, numpy_accuracy(real, fake, eps), atol=PIXEL)


def test_pixel_accuracy_by_hand():
    """The training loop's accuracy on normalised Lab: four pixels with known CIELAB differences."""
    real = np.array([[50.0, 0.0, 0.0]] * 4)
    fake = real + [[1.0, 0, 0],  # |dL| 1 <= 2: a hit at eps 2
                   [3.0, 0, 0],  # |dL| 3 > 2: a miss
                   [0, -4.0, 0],  # |da| 4 <= 2.2 x 2: a hit
                   [0, 0, 5.0]]  # |db| 5 > 4.4: a miss
    normalise = lambda lab: (lab / [50.0, 110.0, 110.0] - [1.0, 0, 0]).astype(np.float32)[None, None]  # noqa: E731
    assert float(metrics.pixel_accuracy(normalise(real), normalise(fake), "lab", 2.0)) == pytest.approx(0.5)
    assert float(metrics.pixel_accuracy(normalise(real), normalise(fake), "lab", 3.0)) == pytest.approx(1.0)


def test_accuracy_in_dataset_map(pair):
    real, fake = pair
    ds = tf.data.Dataset.from_tensor_slices((real, fake)).batch(3).map(
        lambda r, f: metrics.accuracy_curve(r, f, (2,))[2])
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x in ds]),
                                  metrics.accuracy_curve(real, fake, (2,))[2])


def test_every_metric_in_tf_function(pair):
    real, fake = (tf.constant(x) for x in pair)
    fns = [metrics.ab_error, metrics.psnr, metrics.ssim, metrics.mean_delta_e,
           lambda r, f: metrics.colourfulness(f), lambda r, f: metrics.accuracy_curve(r, f)[5]]
    for fn in fns:
        np.testing.assert_allclose(tf.function(fn)(real, fake), fn(real, fake), rtol=1e-5)


def test_ab_error_matches_skimage(pair):
    real, fake = pair
    diff = np.abs(skimage.color.rgb2lab(real / 255.0) - skimage.color.rgb2lab(fake / 255.0))
    got = metrics.ab_error(real, fake).numpy()
    assert got.shape == (4, 2)
    np.testing.assert_allclose(got, diff[..., 1:].mean(axis=(1, 2)), atol=1e-3)


def test_psnr_matches_skimage(pair):
    real, fake = pair
    got = metrics.psnr(real, fake).numpy()
    assert got[0] == np.inf
    want = [skimage.metrics.peak_signal_noise_ratio(r, f, data_range=255) for r, f in zip(real[1:], fake[1:])]
    np.testing.assert_allclose(got[1:], want, rtol=1e-5)


def test_ssim_matches_skimage(pair):
    real, fake = pair
    want = [skimage.metrics.structural_similarity(r, f, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                  data_range=255, channel_axis=-1) for r, f in zip(real, fake)]
    np.testing.assert_allclose(metrics.ssim(real, fake), want, atol=1e-3)
    np.testing.assert_allclose(metrics.ssim(real.astype(np.float32), fake), want, atol=1e-3)  # float in 0..255


def test_ciede2000_matches_sharma_table():
    lab1, lab2, want = SHARMA[:, :3], SHARMA[:, 3:6], SHARMA[:, 6]
    np.testing.assert_allclose(metrics.ciede2000(lab1, lab2), want, atol=1e-4)
    np.testing.assert_allclose(metrics.ciede2000(lab2, lab1), want, atol=1e-4)  # symmetric
    # float32, as on images, too: the opposite-hue pairs 10 and 14 must not flip on round-off.
    got32 = metrics.ciede2000(lab1.astype(np.float32), lab2.astype(np.float32)).numpy()
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, atol=1e-4)


def test_ciede2000_matches_skimage_on_random_and_neutral_colours():
    rng = np.random.default_rng(1)
    lab = np.stack([rng.uniform(0, 100, (2, 500)), rng.uniform(-110, 110, (2, 500)),
                    rng.uniform(-110, 110, (2, 500))], axis=-1)
    lab[:, :50, 1:] = 0.0  # achromatic (h' = 0 by convention; with C' = 0, dH' is 0 whatever h')
    lab[0, :25, 1] = -0.0
    got = metrics.ciede2000(lab[0], lab[1], kL=2.0, kC=1.5, kH=0.5).numpy()
    np.testing.assert_allclose(got, skimage.color.deltaE_ciede2000(lab[0], lab[1], kL=2.0, kC=1.5, kH=0.5),
                               atol=1e-8)
    assert np.all(metrics.ciede2000(lab[0], lab[0]).numpy() == 0.0)


def test_mean_delta_e_matches_skimage(pair):
    real, fake = pair
    d = skimage.color.deltaE_ciede2000(skimage.color.rgb2lab(real / 255.0), skimage.color.rgb2lab(fake / 255.0))
    np.testing.assert_allclose(metrics.mean_delta_e(real, fake), d.mean(axis=(1, 2)), atol=1e-3)


def test_colourfulness_by_hand():
    # Pixels (200, 100, 50) and (100, 100, 100): rg = (100, 0), yb = (100, 0), so both means are
    # 50 and both population variances 2500: sigma = mu = sqrt(5000), M = 1.3 sqrt(5000).
    # A gray image has M = 0.
    images = np.array([[[[200, 100, 50], [100, 100, 100]]], [[[7, 7, 7], [99, 99, 99]]]], np.uint8)
    np.testing.assert_allclose(metrics.colourfulness(images), [1.3 * np.sqrt(5000.0), 0.0], rtol=1e-6, atol=1e-6)


def test_colourfulness_matches_numpy(pair):
    rgb = pair[0].astype(np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    want = [np.hypot(np.std(r), np.std(y)) + 0.3 * np.hypot(np.mean(r), np.mean(y)) for r, y in zip(rg, yb)]
    np.testing.assert_allclose(metrics.colourfulness(pair[0]), want, rtol=1e-4)


def random_stats(rng, dim, n):
    x = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim)
    return x.mean(axis=0), np.cov(x, rowvar=False), x


def test_fid_from_stats_matches_scipy():
    rng = np.random.default_rng(3)
    mu1, s1, _ = random_stats(rng, 16, 200)
    mu2, s2, _ = random_stats(rng, 16, 200)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    want = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2.0 * covmean)
    np.testing.assert_allclose(metrics.fid_from_stats(mu1, s1, mu2, s2), want, rtol=1e-8)
    assert abs(metrics.fid_from_stats(mu1, s1, mu1, s1).numpy()) < 1e-8
    # Rank-deficient covariances (fewer images than dimensions) stay real and non-negative.
    mu3, s3, _ = random_stats(rng, 16, 8)
    assert metrics.fid_from_stats(mu3, s3, mu2, s2).numpy() > 0


def test_inception_features_names_a_missing_weights_file(tmp_path):
    missing = tmp_path / "no_such_inception.h5"
    with pytest.raises(FileNotFoundError, match="no_such_inception.h5"):
        metrics.inception_features(missing)


def test_inception_features_runs_with_random_weights():
    features = metrics.inception_features(None)
    images = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    out = features(images).numpy()
    assert out.shape == (2, 2048) and np.all(np.isfinite(out))
    assert not np.allclose(out[0], out[1])  # two images, two feature vectors
    np.testing.assert_allclose(features(images[::-1]).numpy(), out[::-1], rtol=1e-5, atol=1e-6)  # per image


def test_frechet_distance_is_zero_on_itself_and_matches_the_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    assert abs(metrics.frechet_distance(x, x)) < 1e-6
    # N(m1, diag(s1)) against N(m2, diag(s2)): |m1 - m2|^2 + sum(s1 + s2 - 2 sqrt(s1 s2)), by hand
    m1, m2, s1, s2 = np.array([0.0, 1, 2]), np.array([1.0, 1, 0]), np.array([1.0, 4, 9]), np.array([4.0, 1, 1])
    closed = np.sum((m1 - m2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))  # 5 + (1 + 1 + 4) = 11
    a = m1 + rng.normal(size=(200_000, 3)) * np.sqrt(s1)
    b = m2 + rng.normal(size=(200_000, 3)) * np.sqrt(s2)
    assert closed == 11 and metrics.frechet_distance(a, b) == pytest.approx(closed, abs=0.1)


def test_c2st_is_chance_on_one_distribution_and_certain_on_two_apart():
    rng = np.random.default_rng(0)
    same = metrics.c2st(rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16)))
    assert abs(same["accuracy"] - 0.5) < 3 * same["stderr"] + 0.01 and abs(same["fooled"] - 0.5) < 0.06
    apart = metrics.c2st(rng.normal(size=(500, 16)), rng.normal(size=(500, 16)) + 2.0)  # 8 sd apart
    assert apart["accuracy"] > 0.98 and apart["fooled"] < 0.02
    # paired: the colourisation of each image is its truth moved a little, always the same way
    real = rng.normal(size=(500, 16))
    pairs = metrics.c2st(real, real + 0.3)
    assert pairs["fooled"] < 0.05 < pairs["accuracy"] - 0.5  # easier told apart in pairs than one by one


def test_mae_rgb_by_hand():
    real = np.full((2, 4, 4, 3), 10, np.uint8)
    fake = real.copy()
    fake[0] += 3
    fake[1, :2] = 30  # half the pixels 20 off
    np.testing.assert_allclose(metrics.mae_rgb(real, fake).numpy(), [3.0, 10.0])
