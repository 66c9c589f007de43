import numpy as np
import pytest
import skimage.color
import tensorflow as tf

from colorgan import color

EXTREMES = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1],
                     [1, 0, 1], [0.5, 0.5, 0.5], [1e-4, 0, 0], [0.04045, 0.04045, 0.04045]], np.float32)


@pytest.fixture
def rgb():
    random = np.random.default_rng(0).random((500, 3)).astype(np.float32)
    return np.concatenate([random, EXTREMES])


def test_rgb_to_lab_matches_skimage(rgb):
    np.testing.assert_allclose(color.rgb_to_lab(rgb).numpy(), skimage.color.rgb2lab(rgb), atol=1e-3)


def test_lab_to_rgb_matches_skimage(rgb):
    lab = skimage.color.rgb2lab(rgb).astype(np.float32)
    np.testing.assert_allclose(color.lab_to_rgb(lab).numpy(), skimage.color.lab2rgb(lab), atol=1e-4)
    np.testing.assert_allclose(color.lab_to_rgb(lab).numpy(), rgb, atol=1e-4)


def test_inside_tf_data_map(rgb):
    ds = tf.data.Dataset.from_tensor_slices(rgb).batch(64).map(color.rgb_to_lab)
    got = np.concatenate([x.numpy() for x in ds])
    np.testing.assert_allclose(got, skimage.color.rgb2lab(rgb), atol=1e-3)


def test_normalisation_is_the_authors_and_inverts():
    lab = tf.constant([[0.0, -110.0, 110.0], [100.0, 0.0, -55.0]])
    np.testing.assert_allclose(color.normalize_lab(lab).numpy(), [[-1, -1, 1], [1, 0, -0.5]], atol=1e-6)
    np.testing.assert_allclose(color.denormalize_lab(color.normalize_lab(lab)).numpy(), lab.numpy(), atol=1e-4)


@pytest.mark.parametrize("space", ["lab", "rgb"])
def test_preprocess_postprocess_round_trip(space):
    pixels = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    gray, colour = color.preprocess(pixels, space)
    assert gray.shape == (2, 8, 8, 1) and colour.shape == (2, 8, 8, 3)
    assert -1.0 <= float(tf.reduce_min(colour)) and float(tf.reduce_max(colour)) <= 1.0
    expected_L = skimage.color.rgb2lab(pixels / 255.0)[..., 0] / 50 - 1
    np.testing.assert_allclose(gray.numpy()[..., 0], expected_L, atol=1e-4)
    back = color.to_uint8(color.postprocess(colour, space)).numpy()
    assert np.abs(back.astype(int) - pixels).max() <= 1


def test_fit_gamut_shrinks_chroma_and_keeps_lightness_and_hue():
    lab = np.array([[50.0, 20.0, -10.0],  # inside sRGB: unchanged
                    [50.0, 120.0, 0.0],  # far outside: less chroma, same L and hue
                    [90.0, -80.0, 90.0]], np.float32)
    rgb = color.fit_gamut(lab[:, :1], lab[:, 1:]).numpy()
    np.testing.assert_allclose(rgb[0], color.lab_to_rgb(lab[0]).numpy(), atol=1e-6)
    back = skimage.color.rgb2lab(rgb[None])[0]
    np.testing.assert_allclose(back[:, 0], lab[:, 0], atol=0.05)  # clipping R, G, B would move L
    for got, want in zip(back[1:, 1:], lab[1:, 1:]):
        assert np.linalg.norm(got) < np.linalg.norm(want)  # chroma given up...
        assert np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.99  # ...at the same hue
