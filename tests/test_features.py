"""The shipped CIFAR-10 network and the metrics in its features: FID-C10, class accuracy, C2ST."""
import json
import os

import numpy as np
import pytest

from colorgan import color, features, images, inference, metrics, sources
from tests.conftest import CIFAR


@pytest.fixture(scope="module")
def fixture_images():
    """The committed CIFAR-10 test images (10 a class) and their labels."""
    paths = images.list_images(str(CIFAR / "test"))
    rgb = np.stack([images.read_image(p) for p in paths])
    labels = np.array([sources.CIFAR10_CLASSES.index(os.path.basename(os.path.dirname(p))) for p in paths])
    return paths, rgb, labels


def test_the_shipped_network_loads_and_classifies_the_committed_images_as_recorded(fixture_images):
    paths, rgb, labels = fixture_images
    recorded = json.load(open(features.METADATA))
    assert os.path.getsize(features.WEIGHTS) <= 5 * 2 ** 20
    assert recorded["test_top1_colour"] >= 0.8 and recorded["test_top1_colour"] > recorded["test_top1_gray"]
    logits, feats = features.logits_and_features(rgb)
    assert logits.shape == (100, 10) and feats.shape == (100, 576)
    predicted = [sources.CIFAR10_CLASSES[i] for i in np.argmax(logits, -1)]
    names = [os.path.relpath(p, CIFAR / "test") for p in paths]
    assert sorted(recorded["fixture"]) == sorted(names)
    clear = [(n, p) for n, p in zip(names, predicted) if recorded["fixture"][n][1] > 0.05]  # ties may flip
    assert len(clear) >= 95 and all(recorded["fixture"][n][0] == p for n, p in clear)
    assert np.mean(np.argmax(logits, -1) == labels) >= 0.7  # 100 images: near its test accuracy


def test_gray_is_told_apart_from_colour_and_halves_of_colour_are_not(fixture_images):
    _, rgb, labels = fixture_images
    gray = inference.gray_to_rgb(color.preprocess(rgb)[0])  # the gray baseline: L, a = b = 0
    assert np.abs(gray[..., 0].astype(int) - gray[..., 2]).max() <= 2  # neutral: R = G = B up to rounding
    (real_logits, real), (gray_logits, gray_features) = features.logits_and_features(rgb), \
        features.logits_and_features(gray)
    against_gray = metrics.c2st(real, gray_features)
    assert against_gray["accuracy"] > 0.9 and against_gray["fooled"] < 0.1
    halves = metrics.c2st(real[::2], real[1::2])
    assert abs(halves["accuracy"] - 0.5) < 0.2  # 100 images: a standard error of 0.07
    assert metrics.frechet_distance(real[::2], real[1::2]) < metrics.frechet_distance(gray_features, real)
    assert np.mean(np.argmax(gray_logits, -1) == labels) < np.mean(np.argmax(real_logits, -1) == labels)


def test_the_scene_network_judges_colour_as_recorded_and_classifies_the_committed_photos_so():
    spec = features.NETWORKS["scenes"]
    recorded = json.load(open(spec.metadata))
    judge = recorded["judge"]  # python -m colorgan.features --network scenes --measure, on MiniPlaces val
    assert judge["images"] == 10000 and os.path.getsize(spec.weights) <= 10 * 2 ** 20
    assert judge["c2st_gray"] >= 0.95  # it tells gray from colour
    assert abs(judge["c2st_halves"] - 0.5) < 3 * judge["c2st_halves_stderr"] + 0.01  # and not colour from colour
    assert judge["top1_colour"] >= judge["top1_gray"] + 0.1 and judge["fid_gray"] > 10 * judge["fid_halves"]
    folder = features.FIXTURES["scenes"]
    paths = images.list_images(folder)
    logits, feats = features.logits_and_features(np.stack([images.read_image(p) for p in paths]), "scenes")
    assert logits.shape == (16, 100) and feats.shape == (16, 64 + 128 + 128 + 256 + 256)
    classes = sources.load_source("miniplaces", os.path.dirname(os.path.dirname(folder)), "test").classes
    predicted = {os.path.relpath(p, folder): classes[i] for p, i in zip(paths, np.argmax(logits, -1))}
    assert sorted(predicted) == sorted(recorded["fixture"])
    clear = [n for n in predicted if recorded["fixture"][n][1] > 0.05]  # ties may flip between CPUs
    assert len(clear) >= 14 and all(recorded["fixture"][n][0] == predicted[n] for n in clear)


def test_the_judge_follows_the_test_set():
    assert features.network_for("cifar10") == "cifar10"
    assert {features.network_for(d) for d in ("miniplaces", "places365", "folder")} == {"scenes"}
