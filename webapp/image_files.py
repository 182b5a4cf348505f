"""One uploaded image file: validated by decoding it, and decoded to RGB for the precompute.

A file is an image when Pillow decodes it as PNG, JPEG or WebP (the formats every browser
shows) -- the file name and its extension are never trusted. Before any pixel is decoded the
header's size is checked against ``max_pixels`` (a decompression bomb is a tiny file that
declares a huge image), and the byte size against ``max_bytes``.

Width and height are reported after the EXIF orientation, as browsers display the image; the
precompute (``decode_rgb``) applies the same orientation, so pyramid and picture agree.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class ImageRejected(ValueError):
    """The file is not an acceptable image; the message says why, for the uploader."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class InspectedImage:
    format: str  # png | jpeg | webp
    width: int
    height: int
    size_bytes: int
    checksum: str  # sha256, hex

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def human_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit
            return Image.open(io.BytesIO(data), formats=tuple(ALLOWED_FORMATS))
    except Image.DecompressionBombError as e:
        raise ImageRejected(f"the image declares too many pixels to decode safely (decompression bomb): {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageRejected("not a PNG, JPEG or WebP image: its content does not decode as one") from None


def inspect_image(data: bytes, limits: ImageLimits) -> InspectedImage:
    """Validate one file; raises ``ImageRejected`` with a message for the uploader."""
    if not data:
        raise ImageRejected("the file is empty")
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"the file is {human_bytes(len(data))}; the limit is {human_bytes(limits.max_bytes)}")
    im = _open(data)
    with im:
        w, h = im.size
        if w < 1 or h < 1:
            raise ImageRejected(f"the image has no pixels ({w}x{h})")
        if w * h > limits.max_pixels:
            raise ImageRejected(
                f"the image is {w}x{h} = {w * h:,} pixels; the limit is {limits.max_pixels:,} pixels "
                "(a larger image could be a decompression bomb)"
            )
        if getattr(im, "n_frames", 1) > 1:
            raise ImageRejected("animated images are not supported")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
        except Exception as e:  # noqa: BLE001 -- truncated or corrupt data: any decoder error means "not usable"
            raise ImageRejected(f"the image data is corrupt or truncated ({e})") from None
        fmt = ALLOWED_FORMATS[im.format]
        orientation = im.getexif().get(0x0112, 1)
    if orientation in _TRANSPOSED_ORIENTATIONS:
        w, h = h, w
    return InspectedImage(fmt, w, h, len(data), hashlib.sha256(data).hexdigest())


def decode_rgb(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB, EXIF orientation applied (what the browser shows)."""
    with _open(data) as im:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
            upright = ImageOps.exif_transpose(im)
        # Like the playground's samples (samples_store.Sample.rgb): alpha is dropped.
        return np.asarray(upright.convert("RGB"), dtype=np.uint8).copy()
