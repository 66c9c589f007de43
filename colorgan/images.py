"""Reading image files of any kind into 8-bit RGB arrays, with Pillow.

Pillow handles what TensorFlow's decoders do not: EXIF orientation, colour profiles, CMYK, 16-bit,
palette and alpha images, and reduced-size JPEG decoding (draft mode), which makes large photos cheap
to shrink. Every failure becomes one ImageError with the file's name.
"""
import functools
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from colorgan.files import atomic_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WebP")
MAX_ASPECT = 4  # longer side kept at most 4x the shorter: a 1x10000 strip must not become 256x2.5M


class ImageError(Exception):
    """A file that is not a readable image."""


def is_image_file(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(root: str) -> list[str]:
    """Every image file below root, recursively, in a stable (sorted) order. Linked folders are
    followed once each: a link loop or a second link to a folder adds nothing."""
    found, seen = [], {os.path.realpath(root)}
    for directory, subdirs, files in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(d for d in subdirs if not d.startswith(".")):
            real = os.path.realpath(os.path.join(directory, d))
            if real not in seen:
                seen.add(real)
                keep.append(d)
        subdirs[:] = keep
        found.extend(path for path in (os.path.join(directory, f) for f in sorted(files) if is_image_file(f))
                     if os.path.isfile(path))  # a FIFO or device named x.jpg would block whoever opens it
    return found


@functools.lru_cache(maxsize=16)
def _to_srgb_transform(icc: bytes, mode: str):
    """Pixel values under an embedded colour profile to sRGB's, or None when they already are sRGB's."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower().replace(" ", ""):
            return None  # most cameras' and editors' sRGB: the values stay exactly as stored
        return ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), mode, "RGB",  # NOCACHE: shared
                                       ImageCms.Intent.RELATIVE_COLORIMETRIC, ImageCms.Flags.NOCACHE)  # by threads
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None  # a broken or mismatched profile: the values as sRGB, as a viewer without colour management


def _to_rgb(image: Image.Image) -> Image.Image:
    # colorgan's Lab assumes sRGB: a Display P3 (phones) or Adobe RGB (cameras) photo must be converted,
    # and a CMYK one is better converted by its own profile than by Pillow's naive formula.
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "CMYK") and (transform := _to_srgb_transform(icc, image.mode)):
        return ImageCms.applyTransform(image, transform)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's convert() clips 16- and 32-bit values at 255 instead of scaling them, and turns a
        # float image's [0, 1] black: scale by the smallest usual range that holds the values (a
        # float image beyond them, by its own largest value).
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{np.count_nonzero(~np.isfinite(values))} of its pixel values are NaN or infinite")
        peaks = (1.0, 255.0, 65535.0) if image.mode == "F" else (255.0, 65535.0, 2.0 ** 31 - 1)
        peak = next((p for p in peaks if values.max() <= p), max(values.max(), 1.0))
        image = Image.fromarray(np.round(values * (255.0 / peak)).clip(0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels have arbitrary colours underneath: show them on white, as viewers do.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def read_image(path: str, short_side: int | None = None) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3), upright by its EXIF orientation.

    With short_side, the shorter side is resized to exactly that many pixels and the longer side
    is centre-cropped to at most MAX_ASPECT times it.
    """
    if not os.path.isfile(path):
        raise ImageError(f"{path}: not a regular file")  # opening a FIFO would wait for a writer forever
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if short_side and image.format == "JPEG" and min(image.size) >= 2 * short_side:
                    # Decode at the smallest 1/2^k scale whose sides stay at least short_side.
                    image.draft("RGB", (short_side, short_side))
                image = ImageOps.exif_transpose(image)
                image = _to_rgb(image)
    except UnidentifiedImageError:  # HEIC, AVIF, RAW, or not an image at all
        raise ImageError(f"{path}: not an image in a format colorgan reads ({', '.join(FORMATS)})") from None
    except Exception as error:  # Pillow raises many kinds: all mean "not a readable image"
        raise ImageError(f"{path}: {error.__class__.__name__}: {error}") from None
    if short_side:
        image = _fit_short_side(image, short_side)
    return np.asarray(image, dtype=np.uint8)


def _fit_short_side(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    longest = min(max(w, h), MAX_ASPECT * min(w, h))
    if max(w, h) > longest:
        left, top = (w - min(w, longest)) // 2, (h - min(h, longest)) // 2
        image = image.crop((left, top, left + min(w, longest), top + min(h, longest)))
        w, h = image.size
    scale = size / min(w, h)
    if scale != 1:
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        image = image.resize(new, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS,
                             reducing_gap=3.0 if scale < 1 else None)
    return image


def crop_square(rgb: np.ndarray, size: int, place: np.ndarray | None = None) -> np.ndarray:
    """Resize the shorter side to size (if it differs), then crop size x size: in the centre, or,
    given two uniform numbers in [0, 1), at that place."""
    if min(rgb.shape[:2]) != size:
        rgb = np.asarray(_fit_short_side(Image.fromarray(rgb), size))
    h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    if place is not None:
        top, left = int(place[0] * (h - size + 1)), int(place[1] * (w - size + 1))
    return rgb[top:top + size, left:left + size]


def is_gray(rgb: np.ndarray, tolerance: int = 2) -> bool:
    """True when no pixel's channels differ by more than tolerance: a gray image stored as RGB."""
    r, g, b = (rgb[..., c].astype(np.int16) for c in range(3))  # faster than reducing the last axis
    return all(int(np.abs(x - y).max()) <= tolerance for x, y in ((r, g), (r, b), (g, b)))


def write_png(rgb: np.ndarray, path: str) -> str:
    """Write uint8 RGB as PNG atomically: a killed run leaves no half-written file behind."""
    with atomic_path(path) as temporary:
        Image.fromarray(rgb).save(temporary, format="PNG")
    return path
