"""test_eval.py end to end on a run that train.py wrote, and colourising real photos."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import keras
import tensorflow as tf

from colorgan import color, config, data, evaluation, files, folders, images, inference, metrics, models
from tests.conftest import CIFAR, skip_where_onednn_lacks_bfloat16


def test_table_json_and_pictures(trained, capsys):
    report_path = trained / "report.json"
    report = evaluation.main(["--checkpoints-path", str(trained / "runs"), "--name", "run",
                              "--compare", str(trained / "runs" / "ab"), "--json", str(report_path)])
    out = capsys.readouterr().out
    names = [row["name"] for row in report["rows"]]
    assert names == ["run", "ab", "gray baseline", "ground truth"]
    assert report["images"] == 12
    for name in names:
        assert name in out
    for title in ("acc@eps", "acc@1", "acc@10", "|da|", "|db|", "MAE RGB", "PSNR", "SSIM", "dE00", "colourful",
                  "ratio", "FID-C10", "class acc", "C2ST", "fooled"):
        assert title in out
    assert "FID needs local InceptionV3 weights" in out
    assert json.load(open(report_path))["rows"][2]["name"] == "gray baseline"
    run, ab, gray, truth = report["rows"]
    assert gray["colourfulness"] < 0.5 < report["ground_truth_colourfulness"]  # a = b = 0: no colour
    assert 0 <= gray["acc"] <= gray["acc@5"] <= gray["acc@10"] <= 1
    # the gray baseline's pixel figures, recomputed here from the 12 test images
    cfg = config.make_config(dataset="cifar10", dataset_path=str(trained / "data"))
    rgb = np.concatenate([b["rgb"].numpy() for b in data.make_dataset(cfg, "test")])
    grays = inference.gray_to_rgb(color.preprocess(rgb)[0])
    assert gray["delta_e"] == pytest.approx(float(np.mean(metrics.mean_delta_e(rgb, grays))), rel=1e-4)
    assert gray["mae_rgb"] == pytest.approx(float(np.mean(np.abs(rgb.astype(float) - grays))), rel=1e-4)
    # 12 images: too few for these figures to rank anything; that they are computed and bounded is checked
    for row in run, ab, gray, truth:
        assert row["fid_c10"] > 0 and 0 <= row["c2st"] <= 1 and 0 <= row["fooled"] <= 1 and 0 <= row["class_acc"] <= 1
        assert ("mae_rgb" in row) == (row is not truth)
    for picture in report["pictures"].values():
        assert Image.open(picture).size[0] > 100


@pytest.fixture
def photo_zoo(tmp_path, photos):
    """Two real photos, plus awkward inputs and broken files."""
    z = tmp_path / "in"
    (z / "nested").mkdir(parents=True)
    for path in photos[1:3]:  # chelsea 451x300, coffee 600x400
        Image.open(path).save(z / (path.stem + ".jpg"), quality=95)
    base = images.read_image(str(photos[1]))
    Image.fromarray(base).convert("L").save(z / "nested" / "gray.png")
    Image.fromarray(np.dstack([base, np.full(base.shape[:2], 200, np.uint8)])).save(z / "rgba.png")
    Image.fromarray(base).convert("CMYK").save(z / "cmyk.jpg")
    Image.fromarray((base[..., 0].astype(np.uint16) * 257)).save(z / "sixteen.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(base[:40, :90]).save(z / "rotated.jpg", exif=exif)
    Image.fromarray(base[:5, :7]).save(z / "tiny.png")
    (z / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    os.mkfifo(z / "fifo.jpg")  # opening it would block: it is not listed as an image
    return z


def test_a_run_never_exported_loads_from_its_checkpoint_in_float32_and_leaves_the_policy_alone(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained / "runs" / "run", run, ignore=shutil.ignore_patterns("generator.keras"))
    with models.dtype_policy("mixed_bfloat16"):  # a caller's
        generator, _ = inference.load_run(str(run))
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert {layer.compute_dtype for layer in generator.layers[1:]} == {"float32"}


def test_batches_keep_the_input_lightness_when_asked(trained):
    generator, cfg = inference.load_run(str(trained / "runs" / "run"))  # predicts L, a and b
    gray = next(iter(data.make_dataset(cfg, "test")))["gray"]
    L_in = color.denormalize_lab(tf.concat([gray, tf.zeros_like(gray), tf.zeros_like(gray)], -1))[..., 0]
    lightness = lambda rgb: color.rgb_to_lab(rgb)[..., 0]  # noqa: E731
    colorizer = inference.Colorizer(generator, cfg)
    own = lightness(colorizer.batch(gray))
    kept = lightness(colorizer.batch(gray, keep_l=True))
    assert np.abs(kept - L_in).max() < 0.05  # only chroma is fitted into the gamut
    assert np.abs(own - L_in).mean() > 1.0  # a one-step generator's own L is far off: the test can fail


def test_colourise_photos_keeps_size_and_lightness(trained, photo_zoo, tmp_path, capsys):
    out = tmp_path / "out"
    failed = evaluation.main(["--checkpoints-path", str(trained / "runs" / "run"),
                              "--test-input", str(photo_zoo), "--test-output", str(out), "--render-size", "0"])
    assert len(failed) == 1 and "broken.jpg" in failed[0]
    assert "1 file(s) not colourised" in capsys.readouterr().out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    expected = sorted(p.relative_to(photo_zoo).with_suffix(".png").as_posix()
                      for p in photo_zoo.rglob("*") if p.is_file() and p.name != "broken.jpg")
    assert written == expected
    for name in written:
        source = images.read_image(str(next(photo_zoo.glob(name[:-4] + ".*"))))
        result = np.asarray(Image.open(out / name))
        assert result.shape == source.shape, name  # full resolution, upright
        L_in = color.rgb_to_lab(source / 255.0).numpy()[..., 0]
        L_out = color.rgb_to_lab(result / 255.0).numpy()[..., 0]
        assert np.abs(L_in - L_out).max() < 0.8, name  # the input's own L, up to 8-bit rounding
    assert (photo_zoo / "broken.jpg").read_bytes().startswith(b"\xff\xd8")  # inputs untouched


def test_outputs_never_overwrite_inputs(trained, photo_zoo):
    colorizer = inference.load(str(trained / "runs" / "run"))
    (photo_zoo / "keep.png").write_bytes(b"precious")
    failed = folders.colorize_files(colorizer, str(photo_zoo / "keep.png"), str(photo_zoo), 32)
    assert failed and "overwrite an input" in failed[0]
    assert (photo_zoo / "keep.png").read_bytes() == b"precious"


def test_folders_are_colourised_in_batches_as_one_by_one(trained, tmp_path, photos):
    skip_where_onednn_lacks_bfloat16()
    generator, cfg = inference.load_run(str(trained / "runs" / "run"))
    (tmp_path / "in").mkdir()
    for i, path in enumerate(images.list_images(str(CIFAR / "test"))[::5][:19]):
        Image.open(path).save(tmp_path / "in" / f"{i:02d}.png")  # 32x32: two full batches of 8 and 3 more
    photo = images.read_image(str(photos[1]))
    Image.fromarray(photo).save(tmp_path / "in" / "photo.png")  # another size: a batch of its own
    cfg = dataclasses.replace(cfg, batch_size=8, mixed_precision="bfloat16")  # emulated where not native
    colorizer = inference.Colorizer(generator, cfg)
    assert folders.colorize_files(colorizer, str(tmp_path / "in"), str(tmp_path / "out"), 32) == []
    reduced, precision = colorizer.in_precision()
    assert precision.startswith("bfloat16") and reduced.generator.get_layer("enc1").compute_dtype == "bfloat16"
    moved, coloured = [], []
    for path in sorted((tmp_path / "in").iterdir()):
        rgb = images.read_image(str(path))
        alone = reduced.image(rgb, 32)
        batched = np.asarray(Image.open(tmp_path / "out" / path.name))
        assert np.abs(alone.astype(int) - batched).max() <= 1, path.name
        in_float32 = colorizer.image(rgb, 32)[None]
        moved.append(float(metrics.mean_delta_e(in_float32, batched[None])[0]))
        coloured.append(float(metrics.mean_delta_e(in_float32,
                                                   inference.gray_to_rgb(color.preprocess(in_float32)[0]))[0]))
    # How far bfloat16 moves colours depends on the CPU: native on AVX512_BF16 and AMX, emulated by
    # Eigen with other rounding elsewhere (0.54 CIEDE2000 on one image of an AVX2 host). What holds on
    # every CPU: it moves them by a small part of the colour the generator adds to the gray image.
    print(f"CIEDE2000 bfloat16 vs float32: mean {np.mean(moved):.3f} max {np.max(moved):.3f}; "
          f"float32 vs its gray: mean {np.mean(coloured):.2f}")
    assert np.mean(moved) < 0.1 * np.mean(coloured), (moved, coloured)


def test_a_link_planted_at_a_temporary_name_is_not_followed(trained, tmp_path):
    (tmp_path / "in").mkdir(), (tmp_path / "out").mkdir()
    photo = tmp_path / "in" / "c3.jpg"
    Image.open(images.list_images(str(CIFAR / "test"))[0]).save(photo)
    before = photo.read_bytes()
    (tmp_path / "out" / "c3.png.tmp").symlink_to(photo)  # the name the writer used to use
    failed = evaluation.main(["--checkpoints-path", str(trained / "runs" / "run"),
                              "--test-input", str(tmp_path / "in"), "--test-output", str(tmp_path / "out")])
    assert not failed and photo.read_bytes() == before
    assert (tmp_path / "out" / "c3.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c3.png", "c3.png.tmp"]  # no leftovers


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "kept.txt"
    files.write_text(str(target), "old")
    with pytest.raises(RuntimeError), files.atomic_path(str(target)) as temporary:
        open(temporary, "w").write("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


def test_large_photo_is_rendered_within_the_pixel_budget(trained):
    generator, run_config = inference.load_run(str(trained / "runs" / "run"))
    big = np.random.default_rng(0).integers(0, 256, (1100, 1500, 3), dtype=np.uint8)  # > MAX_RENDER_PIXELS
    shapes = []

    def spy(gray, training):
        shapes.append(tuple(gray.shape))
        return generator(gray, training=training)

    out = inference.Colorizer(spy, run_config).image(big, render_size=0)
    assert out.shape == big.shape and out.dtype == np.uint8
    (_, h, w, _), = shapes
    assert h * w <= inference.MAX_RENDER_PIXELS * 1.05 and h * w > 0.9 * inference.MAX_RENDER_PIXELS
    assert abs(w / h - 1500 / 1100) < 0.05  # the aspect ratio is kept


def test_a_long_strip_is_rendered_within_the_pixel_budget_at_any_render_size(trained):
    generator, run_config = inference.load_run(str(trained / "runs" / "run"))
    strip = np.random.default_rng(0).integers(0, 256, (1, 100_000, 3), dtype=np.uint8)
    shapes = []

    def spy(gray, training):
        shapes.append(tuple(gray.shape))
        return generator(gray, training=training)

    colorizer = inference.Colorizer(spy, run_config)
    for render_size in (32, 256, 0):  # the shorter side scaled to 32 alone would make 102 megapixels
        assert colorizer.image(strip, render_size).shape == strip.shape
        (_, h, w, _), = shapes[-1:]
        assert h * w <= inference.MAX_RENDER_PIXELS, (render_size, h, w)


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(config.UserError, match="no trained run"):
        evaluation.main(["--checkpoints-path", str(tmp_path)])


def test_a_render_size_below_the_networks_stride_keeps_the_aspect_ratio():
    assert inference.render_shape(321, 481, 128, 128) == (128, 192)
    assert inference.render_shape(321, 481, 64, 128) == (128, 192)  # raised to the stride as a whole, not squashed
    assert inference.render_shape(321, 481, 32, 16) == (32, 48)
