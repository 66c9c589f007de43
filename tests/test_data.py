"""Every source on real files: the committed CIFAR-10 JPEGs and scikit-image photos, official-format CIFAR-10
archives and a Places365-layout folder written here, and a zoo of awkward and broken files."""
import io
import os
import pickle
import shutil
import struct
import tarfile
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

import tensorflow as tf

from colorgan import config, data, images, sources
from tests.conftest import CIFAR, ROOT


def colourful(seed, h=32, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth(h, w):
    """A colourful gradient: survives JPEG well enough to compare pixel values."""
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([255 * x / w, 255 * y / h, 128 + 0 * x]).astype(np.uint8)


def batches(cfg, split="train", epoch=0, skipped=None):
    return [(b["gray"].numpy(), b["colour"].numpy()) for b in data.make_dataset(cfg, split, epoch, skipped)]


# ---- CIFAR-10 archives in the two official formats ---------------------------------------------

def cifar_records(n, seed):
    pixels = np.stack([colourful(seed + i) for i in range(n)])  # (n, 32, 32, 3)
    return pixels, pixels.transpose(0, 3, 1, 2).reshape(n, 3072)  # stored as R, G, B planes


@pytest.fixture
def cifar_archives(tmp_path):
    """cifar-10-binary.tar.gz and cifar-10-python.tar.gz with 2 images per batch file."""
    expected = {"train": [], "test": []}
    binary, python = tmp_path / "cifar-10-batches-bin", tmp_path / "cifar-10-batches-py"
    binary.mkdir(), python.mkdir()
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        pixels, rows = cifar_records(2, seed=10 * k)
        expected["test" if name == "test_batch" else "train"].append(pixels)
        labels = np.array([k, k], np.uint8)
        (binary / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], rows], axis=1).tobytes())
        with open(python / name, "wb") as f:  # the authors' layout: a dict with bytes keys
            pickle.dump({b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": rows,
                         b"filenames": [b"a.png", b"b.png"]}, f, protocol=2)
    for folder, archive in ((binary, "cifar-10-binary.tar.gz"), (python, "cifar-10-python.tar.gz")):
        with tarfile.open(tmp_path / archive, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
    return tmp_path, {k: np.concatenate(v) for k, v in expected.items()}


@pytest.mark.parametrize("where", ["cifar-10-binary.tar.gz", "cifar-10-python.tar.gz",
                                   "cifar-10-batches-bin", "cifar-10-batches-py"])
def test_official_cifar_archives_and_folders(cifar_archives, where):
    root, expected = cifar_archives
    for split in ("train", "test"):
        np.testing.assert_array_equal(sources.read_cifar(str(root / where), split)[0], expected[split])
    cfg = config.make_config(dataset="cifar10", dataset_path=str(root / where), batch_size=4, augment=False)
    gray, colour = batches(cfg, "test")[0]
    assert gray.shape == (2, 32, 32, 1) and colour.shape == (2, 32, 32, 3)
    assert len(batches(cfg, "train")) == 2  # 10 images, full batches of 4
    # the labels come along (the CIFAR-10 network's class accuracy needs them): batch file k holds class k
    assert sources.load_source("cifar10", str(root / where), "train").labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert sources.load_source("cifar10", str(root / where), "test").labels.tolist() == [5, 5]


@pytest.mark.parametrize("label", [-5, 99])
def test_cifar_labels_outside_0_to_9_are_refused(tmp_path, label):
    _, rows = cifar_records(2, seed=0)
    (tmp_path / "cifar-10-batches-py").mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / "cifar-10-batches-py" / name, "wb") as f:
            pickle.dump({b"labels": [3, label], b"data": rows}, f, protocol=2)
    with pytest.raises(sources.DataError, match=f"data_batch_1 holds label {label}: CIFAR-10's labels are 0-9"):
        sources.read_cifar(str(tmp_path), "train")
    binary = tmp_path / "bin"
    binary.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (binary / name).write_bytes(np.concatenate([np.array([[3], [label % 256]], np.uint8), rows], 1).tobytes())
    if label % 256 >= 10:  # a byte: -5 is stored as 251
        with pytest.raises(sources.DataError, match="labels are 0-9"):
            sources.read_cifar(str(binary), "test")


def test_hostile_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(sources.DataError, match="refusing to load posix.system|refusing to load os.system"):
        sources.read_cifar(str(folder), "test")
    assert not marker.exists()


def test_corrupt_cifar_binary_is_a_clear_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(sources.DataError, match="not a multiple of 3073"):
        sources.read_cifar(str(folder), "test")


def test_truncated_cifar_archive_is_a_clear_error(cifar_archives):
    archive = cifar_archives[0] / "cifar-10-binary.tar.gz"
    archive.write_bytes(archive.read_bytes()[:archive.stat().st_size // 2])  # an interrupted download
    with pytest.raises(sources.DataError, match="damaged archive|cannot read"):
        sources.read_cifar(str(archive), "test")


# ---- image folders ------------------------------------------------------------------------------

def test_cifar_arrays_in_tensorflow_ops_give_the_batches_of_the_python_reader(cifar_archives, tmp_path):
    # The same ten images as an official archive (arrays: gathered and flipped by TF ops) and as PNG
    # files (read, cropped and flipped in Python): the same seed must give the very same batches.
    root, expected = cifar_archives
    for split, pixels in expected.items():
        (tmp_path / "png" / split).mkdir(parents=True)
        for i, rgb in enumerate(pixels):
            Image.fromarray(rgb).save(tmp_path / "png" / split / f"{i:02d}.png")
    arrays = config.make_config(dataset="cifar10", dataset_path=str(root / "cifar-10-batches-py"), batch_size=4)
    files = config.make_config(dataset="folder", dataset_path=str(tmp_path / "png"), batch_size=4, image_size=32)
    for epoch in (0, 1):
        pairs = list(zip(data.make_dataset(arrays, "train", epoch), data.make_dataset(files, "train", epoch)))
        assert len(pairs) == 2
        for from_arrays, from_files in pairs:
            assert sorted(from_arrays) == sorted(from_files) == ["colour", "gray", "index", "rgb"]
            for key in from_arrays:
                np.testing.assert_array_equal(from_arrays[key].numpy(), from_files[key].numpy())
    flipped = [(b["rgb"].numpy(), b["index"].numpy()) for b in data.make_dataset(arrays, "train", 0)]
    assert any(np.array_equal(rgb[k], expected["train"][i[k]][:, ::-1]) for rgb, i in flipped for k in range(4))
    # a run resumed mid-epoch restores its saved data iterator and goes on with the very next batch
    iterator = iter(data.make_dataset(arrays, "train", 1))
    next(iterator)
    saved = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "iterator"))
    following = next(iterator)["colour"].numpy()
    restored = iter(data.make_dataset(arrays, "train", 1))
    tf.train.Checkpoint(iterator=restored).read(saved).assert_existing_objects_matched()
    np.testing.assert_array_equal(next(restored)["colour"].numpy(), following)


def test_cifar_jpeg_folder():
    cfg = config.make_config(dataset="cifar10", dataset_path=str(CIFAR), batch_size=16)
    test = sources.load_source(cfg.dataset, cfg.dataset_path, "test")
    assert test.size == 100 and test.labels.tolist() == [k for k in range(10) for _ in range(10)]  # class folders
    ds = data.make_dataset(cfg, "train").take(2)
    for batch in ds:
        gray, colour = batch["gray"], batch["colour"]
        assert gray.shape == (16, 32, 32, 1) and colour.shape == (16, 32, 32, 3)
        assert -1 <= gray.numpy().min() and colour.numpy().max() <= 1


def test_same_seed_same_batches_and_epochs_differ(tmp_path):
    for i in range(40):
        Image.fromarray(colourful(i, 40, 48)).save(tmp_path / f"{i:02d}.png")
    cfg = config.make_config(dataset="folder", dataset_path=str(tmp_path), batch_size=8, image_size=32)
    first, again = batches(cfg), batches(cfg)
    assert len(first) == 4  # 36 training images (a tenth held out for test), full batches only
    for (g1, c1), (g2, c2) in zip(first, again):
        np.testing.assert_array_equal(c1, c2)
    other_epoch = batches(cfg, epoch=1)
    assert not np.array_equal(first[0][1], other_epoch[0][1])
    other_seed = batches(config.make_config(cfg.__dict__ | {"seed": 1}))
    assert not np.array_equal(first[0][1], other_seed[0][1])
    test = batches(cfg, "test")
    assert sum(len(g) for g, _ in test) == 4  # the held-out tenth, last batch kept
    np.testing.assert_array_equal(test[0][1], batches(cfg, "test", epoch=3)[0][1])  # no randomness


def test_train_test_subfolders_with_classes(tmp_path):
    for split, n in (("train", 6), ("test", 3)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(colourful(i)).save(tmp_path / split / cls / f"{i}.jpg")
    cfg = config.make_config(dataset="folder", dataset_path=str(tmp_path), batch_size=4, image_size=32)
    assert sources.load_source(cfg.dataset, cfg.dataset_path, "train").size == 12
    assert sources.load_source(cfg.dataset, cfg.dataset_path, "test").size == 6
    # a few images spread over a class-ordered split come from every class, as sample grids need
    train = sources.load_source(cfg.dataset, cfg.dataset_path, "train")
    picked = sources.spread(train, 4)
    assert [os.path.basename(os.path.dirname(p)) for p in picked.paths] == ["cat", "cat", "dog", "dog"]
    assert sum(len(b["gray"]) for b in data.make_dataset(cfg, "test", source=picked)) == 4


def test_linked_folders_are_followed_once_and_never_mix_test_into_train(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "real").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(colourful(i)).save(tmp_path / split / "real" / f"{i}.png")
    (tmp_path / "train" / "loop").symlink_to(tmp_path / "train")  # a link loop
    (tmp_path / "train" / "again").symlink_to(tmp_path / "train" / "real")  # a second way in
    (tmp_path / "train" / "peek").symlink_to(tmp_path / "test" / "real")  # test images in train
    train = sources._folder_paths(str(tmp_path), "train", 0)
    assert sorted(os.path.relpath(os.path.realpath(p), tmp_path) for p in train) == [
        f"train/real/{i}.png" for i in range(3)]  # each once, whichever way in came first
    assert len(sources._folder_paths(str(tmp_path), "test", 0)) == 3


def write_png16(path, rgb16):
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def zoo(tmp_path):
    """Awkward but valid images, and broken files, all named like images."""
    z = tmp_path / "zoo"
    z.mkdir()
    base = colourful(0, 48, 64)
    Image.fromarray(base).save(z / "plain.jpg", quality=95)
    Image.fromarray(smooth(48, 64)).convert("CMYK").save(z / "cmyk.jpg", quality=95)
    write_png16(z / "sixteen.png", base.astype(np.uint16) * 257)
    Image.fromarray(np.dstack([base, np.full(base.shape[:2], 255, np.uint8)])).save(z / "rgba.png")
    Image.fromarray(base).quantize(64).save(z / "palette.png")
    Image.fromarray(base).save(z / "anim.gif")
    Image.fromarray(base).save(z / "plain.bmp")
    Image.fromarray(colourful(1, 1, 1)).save(z / "one_pixel.png")
    Image.fromarray(colourful(2, 8, 400)).save(z / "strip.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    Image.fromarray(colourful(3, 20, 40)).save(z / "rotated.jpg", exif=exif)
    Image.fromarray(base[..., 0]).save(z / "gray.jpg")  # a grayscale file: skipped, counted
    Image.fromarray(np.dstack([base[..., 1]] * 3)).save(z / "gray_rgb.png")  # gray stored as RGB
    buffer = io.BytesIO()
    Image.fromarray(base).save(buffer, "JPEG")
    (z / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (z / "empty.png").write_bytes(b"")
    (z / "notes.jpg").write_text("this is not an image")
    (z / "readme.txt").write_text("not an image and not named like one: ignored")
    os.mkfifo(z / "fifo.jpg")  # named like an image, but opening it would wait for a writer forever
    return z


def test_read_image_converts_everything_to_8bit_rgb(zoo):
    for name in ("cmyk.jpg", "sixteen.png", "rgba.png", "palette.png", "anim.gif", "plain.bmp"):
        rgb = images.read_image(str(zoo / name))
        assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3), name
    np.testing.assert_array_equal(images.read_image(str(zoo / "sixteen.png")), colourful(0, 48, 64))
    np.testing.assert_array_equal(images.read_image(str(zoo / "rgba.png")), colourful(0, 48, 64))
    assert np.abs(images.read_image(str(zoo / "cmyk.jpg")).astype(int) - smooth(48, 64)).mean() < 4
    assert images.read_image(str(zoo / "rotated.jpg")).shape == (40, 20, 3)  # EXIF orientation honoured
    assert images.read_image(str(zoo / "gray.jpg")).shape == (48, 64, 3)
    assert images.read_image(str(zoo / "one_pixel.png"), 32).shape == (32, 32, 3)
    assert images.read_image(str(zoo / "strip.png"), 32).shape == (32, 32 * images.MAX_ASPECT, 3)
    for name in ("truncated.jpg", "empty.png", "notes.jpg", "fifo.jpg"):
        with pytest.raises(images.ImageError, match=name):
            images.read_image(str(zoo / name))
    assert "fifo.jpg" not in " ".join(images.list_images(str(zoo)))


SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])


def rgb_to_xyz(primaries, white=(0.3127, 0.3290)):
    """The RGB -> XYZ matrix of a colour space given by its primaries' and white's chromaticities."""
    xyz = lambda x, y: np.array([x / y, 1.0, (1 - x - y) / y])  # noqa: E731
    columns = np.stack([xyz(*p) for p in primaries], 1)
    return columns * np.linalg.solve(columns, xyz(*white))


def matrix_icc_profile(to_xyz_d65, gamma: float) -> bytes:
    """An ICC v2 display profile (a matrix and one gamma per channel), written by hand: its colorants
    adapted to the PCS's D50 white by the Bradford transform, as the ICC requires."""
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    d65, d50 = np.array([0.95047, 1.0, 1.08883]), np.array([0.96422, 1.0, 0.82521])
    to_d50 = np.linalg.inv(bradford) @ np.diag((bradford @ d50) / (bradford @ d65)) @ bradford @ to_xyz_d65
    fixed = lambda values: b"".join(struct.pack(">i", round(v * 65536)) for v in values)  # noqa: E731
    description = b"a wide-gamut test profile\x00"
    tags = {b"desc": b"desc" + bytes(4) + struct.pack(">I", len(description)) + description + bytes(4 + 4 + 3 + 67),
            b"wtpt": b"XYZ " + bytes(4) + fixed(d50),
            **{name: b"XYZ " + bytes(4) + fixed(to_d50[:, i]) for i, name in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))},
            **dict.fromkeys((b"rTRC", b"gTRC", b"bTRC"),
                            b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)))}
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for name, payload in tags.items():
        payload += bytes(-len(payload) % 4)
        table += name + struct.pack(">II", offset + len(body), len(payload))
        body += payload
    size = offset + len(body)
    header = (struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + bytes(12)
              + b"acsp" + bytes(24) + struct.pack(">I", 0) + fixed(d50) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + body


def test_photos_in_a_wide_gamut_profile_are_read_as_srgb(tmp_path):
    """A Display P3 photo (a phone's) holds P3 values: read as sRGB they would be too dull."""
    p3 = rgb_to_xyz([(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)])
    values = np.array([[[180, 90, 60], [60, 140, 90], [90, 110, 170], [128, 128, 128]]], np.uint8)  # (1, 4, 3)
    Image.fromarray(values).save(tmp_path / "p3.png", icc_profile=matrix_icc_profile(p3, 2.2))
    linear = np.linalg.solve(SRGB_TO_XYZ, p3 @ ((values / 255.0) ** 2.2).reshape(-1, 3).T).T.clip(0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055) * 255
    rgb = images.read_image(str(tmp_path / "p3.png"))
    np.testing.assert_allclose(rgb.reshape(-1, 3), srgb, atol=3)
    assert np.abs(rgb.astype(int) - values).max() > 10  # the conversion matters: not the stored values
    srgb_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name, icc in (("srgb.png", srgb_profile), ("broken.png", b"not a profile")):
        Image.fromarray(values).save(tmp_path / name, icc_profile=icc)
        np.testing.assert_array_equal(images.read_image(str(tmp_path / name)), values, err_msg=name)


def test_float_and_32bit_gray_images_keep_their_range_and_unknown_formats_are_named(tmp_path):
    gray = colourful(4, 24, 40)[..., 0]
    files = {"float01.tif": Image.fromarray((gray / 255.0).astype(np.float32), "F"),  # a float image's [0, 1]
             "float255.tif": Image.fromarray(gray.astype(np.float32), "F"),
             "int32.tif": Image.fromarray(gray.astype(np.int32) * 257 * 32768, "I")}
    for name, image in files.items():
        image.save(tmp_path / name)
        rgb = images.read_image(str(tmp_path / name))
        assert rgb.shape == (24, 40, 3), name
        np.testing.assert_allclose(rgb[..., 1], gray, atol=1, err_msg=name)  # not black, not clipped white
    huge = Image.fromarray((gray * (1e6 / 255)).astype(np.float32), "F")  # beyond every usual range: its own
    huge.save(tmp_path / "huge.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning reaches the terminal
        rgb = images.read_image(str(tmp_path / "huge.tif"))
    np.testing.assert_allclose(rgb[..., 1], np.round(gray * 255.0 / gray.max()), atol=1)
    for name, value in (("inf.tif", np.inf), ("nan.tif", np.nan)):
        pixels = gray.astype(np.float32)
        pixels[3, 5] = value
        Image.fromarray(pixels, "F").save(tmp_path / name)
        with pytest.raises(images.ImageError, match=rf"{name}: .*1 of its pixel values are NaN or infinite"):
            images.read_image(str(tmp_path / name))
    (tmp_path / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(16))
    with pytest.raises(images.ImageError, match=r"photo.heic: not an image in a format colorgan reads \(JPEG"):
        images.read_image(str(tmp_path / "photo.heic"))


def test_bad_files_are_skipped_and_counted(zoo):
    (zoo / "train").mkdir(), (zoo / "test").mkdir()
    for f in zoo.glob("*.*"):
        if f.is_file():
            shutil.copy(f, zoo / "train" / f.name)
    os.mkfifo(zoo / "train" / "fifo.jpg")  # not read: a FIFO is not an image file
    Image.fromarray(colourful(9)).save(zoo / "test" / "ok.png")
    cfg = config.make_config(dataset="folder", dataset_path=str(zoo), batch_size=1, image_size=32)
    skipped = data.Skipped()
    seen = batches(cfg, "train", skipped=skipped)
    assert len(seen) == 10  # the 10 readable colour images, whatever their kind
    assert all(c.shape == (1, 32, 32, 3) for _, c in seen)
    assert skipped.gray == 2
    assert sorted(e.split(":")[0].rsplit("/", 1)[1] for e in skipped.unreadable) == \
        ["empty.png", "notes.jpg", "truncated.jpg"]
    assert "2 grayscale and 3 unreadable" in str(skipped)


def test_empty_and_all_bad_sources_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(sources.DataError, match="no images"):
        sources.load_source("folder", str(tmp_path / "empty"), "train")
    with pytest.raises(sources.DataError, match="no such file"):
        sources.load_source("folder", str(tmp_path / "missing"), "train")
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(4):
        (bad / f"{i}.jpg").write_bytes(b"garbage")
    cfg = config.make_config(dataset="folder", dataset_path=str(bad), batch_size=2, image_size=32)
    skipped = data.Skipped()
    n = len(batches(cfg, "train", skipped=skipped))
    with pytest.raises(sources.DataError, match="no usable batch.*3 unreadable"):
        data.check_not_empty(n, skipped, cfg, "train")
    with pytest.raises(sources.DataError, match="needs --dataset-path"):
        sources.load_source("folder", "", "train")


def test_photos_at_256(photos):
    cfg = config.make_config(dataset="folder", dataset_path=str(photos[0].parent), batch_size=3)
    batch = next(iter(data.make_dataset(cfg, "train")))
    gray, colour = batch["gray"], batch["colour"]
    assert gray.shape == (3, 256, 256, 1) and colour.shape == (3, 256, 256, 3)


# ---- Places365 layout and TFDS ------------------------------------------------------------------

def test_places_layout_and_file_list_cache(tmp_path):
    for cls in ("a/abbey", "b/beach"):
        (tmp_path / "data_256" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(colourful(i, 64, 64)).save(tmp_path / "data_256" / cls / f"{i:08d}.jpg")
    (tmp_path / "val_256").mkdir()
    for i in range(2):
        Image.fromarray(colourful(i, 64, 64)).save(tmp_path / "val_256" / f"Places365_val_{i:08d}.jpg")
    assert len(sources._places_paths(str(tmp_path), "train")) == 6
    assert len(sources._places_paths(str(tmp_path), "test")) == 2
    flist = tmp_path / "train.flist"
    assert flist.read_text().splitlines()[0] == "data_256/a/abbey/00000000.jpg"
    old = time.time() - 100  # a cache written before the next change to the folder
    os.utime(flist, (old, old))
    for folder, _, _ in os.walk(tmp_path / "data_256"):
        os.utime(folder, (old - 10, old - 10))
    assert sources._flist_is_fresh(str(flist), str(tmp_path / "data_256"))
    Image.fromarray(colourful(5, 64, 64)).save(tmp_path / "data_256" / "b" / "beach" / "extra.jpg")
    assert not sources._flist_is_fresh(str(flist), str(tmp_path / "data_256"))
    assert len(sources._places_paths(str(tmp_path), "train")) == 7
    cfg = config.make_config(dataset="places365", dataset_path=str(tmp_path), batch_size=2, image_size=64)
    gray, colour = batches(cfg, "test")[0]
    assert colour.shape == (2, 64, 64, 3)


def test_tfds_offline_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.chdir(tmp_path)  # no ./datasets/cifar10 here
    monkeypatch.setitem(sources.DOWNLOAD_HOSTS, "cifar10", "cifar.invalid")  # never resolves, online or not
    start = time.time()
    with pytest.raises(sources.DataError) as error:
        sources.load_source("cifar10", "", "train")
    assert time.time() - start < 30
    assert "offline" in str(error.value) and "--dataset-path" in str(error.value)
    assert "cifar-10-binary.tar.gz" in str(error.value)


def test_stream_sources_go_through_the_same_pipeline(monkeypatch):
    """TFDS places365_small streams 256x256 images; exercise that path with an in-memory stream."""
    pixels = np.stack([colourful(i, 40, 40) for i in range(6)] + [np.full((40, 40, 3), 128, np.uint8)])
    import tensorflow as tf
    source = sources.Source("stream", len(pixels), stream=lambda: tf.data.Dataset.from_tensor_slices(pixels))
    monkeypatch.setattr(data, "load_source", lambda *args: source)
    cfg = config.make_config(dataset="places365", batch_size=3, image_size=32)
    skipped = data.Skipped()
    got = batches(cfg, "train", skipped=skipped)
    assert len(got) == 2 and got[0][1].shape == (3, 32, 32, 3) and skipped.gray == 1


def test_indices_name_the_images_that_were_kept(zoo):
    """A batch's "index": each image's place in the source, so that a caller (the Turing test) can say
    which file it shows; skipped files leave gaps."""
    (zoo / "train").mkdir(), (zoo / "test").mkdir()
    for f in zoo.glob("*.*"):
        if f.is_file():
            shutil.copy(f, zoo / "test" / f.name)
    Image.fromarray(colourful(9)).save(zoo / "train" / "ok.png")
    cfg = config.make_config(dataset="folder", dataset_path=str(zoo), batch_size=3, image_size=32)
    source = sources.load_source(cfg.dataset, cfg.dataset_path, "test")
    assert source.size == 15
    got = [(b["rgb"], b["index"]) for b in data.make_dataset(cfg, "test")]
    indices = np.concatenate([index for _, index in got])
    kept = [os.path.basename(source.paths[i]) for i in indices]
    assert len(kept) == 10 and not {"gray.jpg", "gray_rgb.png", "notes.jpg", "empty.png", "truncated.jpg"} & set(kept)
    for rgb, i in zip(np.concatenate([rgb for rgb, _ in got]), indices):
        np.testing.assert_array_equal(rgb, images.crop_square(images.read_image(source.paths[i], 32), 32))


# ---- MiniPlaces: its official layout, written here, and the committed photos --------------------

def miniplaces_tree(root, per_class=3, val=4):
    """A MiniPlaces tree as data.tar.gz and the development kit lay it out, with 2 categories."""
    root.mkdir(parents=True)
    (root / "categories.txt").write_text("/a/abbey 0\n/b/beach 1\n")
    rows = []
    for label, cls in enumerate(("a/abbey", "b/beach")):
        (root / "images" / "train" / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(colourful(10 * label + i, 128, 128)).save(
                root / "images" / "train" / cls / f"{i + 1:08d}.jpg")
            rows.append(f"train/{cls}/{i + 1:08d}.jpg {label}")
    (root / "train.txt").write_text("\n".join(rows) + "\n")
    (root / "images" / "val").mkdir()
    for i in range(val):
        Image.fromarray(colourful(100 + i, 128, 128)).save(root / "images" / "val" / f"{i + 1:08d}.jpg")
    (root / "val.txt").write_text("".join(f"val/{i + 1:08d}.jpg {i % 2}\n" for i in range(val)))
    return root


def test_miniplaces_layout_gives_both_splits_with_their_labels_through_the_pipeline(tmp_path):
    root = miniplaces_tree(tmp_path / "mp")
    train = sources.load_source("miniplaces", str(root), "train")
    test = sources.load_source("miniplaces", str(root), "test")
    assert (train.size, test.size) == (6, 4) and train.classes == ("abbey", "beach")
    assert list(train.labels) == [0, 0, 0, 1, 1, 1] and list(test.labels) == [0, 1, 0, 1]
    cfg = config.make_config(dataset="miniplaces", dataset_path=str(root), batch_size=2)
    assert cfg.image_size == 128 and config.make_config(dataset="miniplaces").batch_size == 16
    first, again = batches(cfg), batches(cfg)
    assert len(first) == 3 and first[0][1].shape == (2, 128, 128, 3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))  # seeded
    test_batches = batches(cfg, "test")
    assert sum(len(g) for g, _ in test_batches) == 4


def test_miniplaces_without_data_or_with_a_broken_copy_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./datasets/miniplaces
    with pytest.raises(sources.DataError, match="miniplaces.csail.mit.edu/data/data.tar.gz"):
        sources.load_source("miniplaces", "", "train")
    with pytest.raises(sources.DataError, match="no such folder.*data.tar.gz"):
        sources.load_source("miniplaces", str(tmp_path / "nowhere"), "train")
    root = miniplaces_tree(tmp_path / "datasets" / "miniplaces")
    assert sources.load_source("miniplaces", "", "test").size == 4  # found in ./datasets/miniplaces
    (root / "images" / "val" / "00000002.jpg").unlink()
    with pytest.raises(sources.DataError, match="1 of the 4 photos val.txt lists are missing"):
        sources.load_source("miniplaces", str(root), "test")
    (root / "train.txt").write_text("train/a/abbey/00000001.jpg 7\n")
    with pytest.raises(sources.DataError, match="label 7 is not one of the 2 categories"):
        sources.load_source("miniplaces", str(root), "train")
    (root / "train.txt").write_text("train/a/abbey/00000001.jpg\n")
    with pytest.raises(sources.DataError, match="not a MiniPlaces list"):
        sources.load_source("miniplaces", str(root), "train")
    (root / "val.txt").unlink()
    with pytest.raises(sources.DataError, match="not the MiniPlaces layout.*val.txt missing"):
        sources.load_source("miniplaces", str(root), "test")


def test_the_committed_miniplaces_photos_skip_their_two_gray_ones():
    root = str(ROOT / "tests" / "data" / "miniplaces")
    source = sources.load_source("miniplaces", root, "test")
    assert source.size == 16 and len(source.classes) == 100
    skipped = data.Skipped()
    cfg = config.make_config(dataset="miniplaces", dataset_path=root, batch_size=16)
    (batch,) = list(data.make_dataset(cfg, "test", skipped=skipped))
    assert skipped.gray == 2 and batch["rgb"].shape == (14, 128, 128, 3)
