"""Opening images safely: local files, data URLs and `file://` URLs, with one reason per failure.

    from mothertongue.vision.images import open_image, ImageProblem
    img = open_image("photo.jpg", max_pixels=40_000_000)      # PIL RGB image, fully decoded

Every failure is an `ImageProblem` whose `reason` is one of REASONS (the data reader counts
skips by it) and whose message is one line. Images are decoded completely here, so a truncated
file fails now and not in the middle of a training step; a decompression bomb is refused from
its header before any pixels are decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

from mothertongue.errors import DataError

REASONS = ("missing image", "not an image", "truncated image", "image too big", "bad image URL")
_DATA_URL = re.compile(r"^data:(image/[\w.+-]+)?(;[\w=.+-]+)*;base64,", re.IGNORECASE)


class ImageProblem(DataError):
    """An image that cannot be used; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _decode(data: bytes, what: str, max_pixels: int):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageProblem("not an image", f"{what}: not an image file Pillow can read") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageProblem("image too big", f"{what}: {w}x{h} pixels is over the limit of {max_pixels}")
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:  # Pillow raises these for cut-off or damaged data
        raise ImageProblem("truncated image", f"{what}: damaged or truncated image data ({e})") from None
    return img.convert("RGB")


def open_image(path: str | Path, max_pixels: int = 40_000_000, max_bytes: int = 20_000_000):
    """A local image file as a PIL RGB image, or ImageProblem."""
    p = Path(path)
    if not p.is_file():
        raise ImageProblem("missing image", f"{p}: image file not found")
    size = p.stat().st_size
    if size > max_bytes:
        raise ImageProblem("image too big", f"{p}: {size} bytes is over the limit of {max_bytes}")
    return _decode(p.read_bytes(), str(p), max_pixels)


def open_image_url(url: str, allow_local: bool = False, max_pixels: int = 40_000_000,
                   max_bytes: int = 20_000_000):
    """An OpenAI `image_url` value as a PIL image: a base64 data URL; a local path or file:// URL
    only with `allow_local` (a server must not read its own disk for a client unless told to);
    http(s) URLs are never fetched."""
    if _DATA_URL.match(url):
        try:
            data = base64.b64decode(url.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            raise ImageProblem("bad image URL", "image_url: the data URL's base64 payload is not valid") from None
        if len(data) > max_bytes:
            raise ImageProblem("image too big", f"image_url: {len(data)} bytes is over the limit of {max_bytes}")
        return _decode(data, "image_url", max_pixels)
    if url.startswith(("http://", "https://")):
        raise ImageProblem("bad image URL", "image_url: remote URLs are not fetched; send the image as a data URL "
                           "(data:image/png;base64,...)")
    if url.startswith("data:"):
        raise ImageProblem("bad image URL", "image_url: only base64 data URLs are accepted (data:image/...;base64,...)")
    if not allow_local:
        raise ImageProblem("bad image URL", "image_url: local files are not accepted here (data URLs are; "
                           "serve.allow_local_images turns local files on)")
    return open_image(url.removeprefix("file://"), max_pixels, max_bytes)
