"""Reading ultrasound images and lesion masks from disk: any mode, any size, clear errors."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# What Pillow raises for unreadable, truncated or absurd files (it never raises
# a single documented type, so the tuple is spelt out here once).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


class UnreadableFileError(Exception):
    """A file could not be decoded; the message says why (the caller adds the path)."""


@dataclass(frozen=True)
class FileBytes:
    """A file's bytes and their sha256, read once so hashing and decoding share the read."""

    path: Path
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read_bytes(path: Path) -> FileBytes:
    """Read a whole file; a missing or unreadable file raises :class:`UnreadableFileError`."""
    try:
        return FileBytes(path, path.read_bytes())
    except OSError as exc:
        raise UnreadableFileError(f"cannot read the file ({exc.strerror or exc})") from exc


def open_image(file: FileBytes) -> Image.Image:
    """Decode a file fully (so truncation shows up here, not later) and apply EXIF orientation."""
    try:
        image = Image.open(io.BytesIO(file.data))
        image.load()
    except _DECODE_ERRORS as exc:
        if not file.data:
            raise UnreadableFileError("the file is empty") from exc
        raise UnreadableFileError(f"not a readable image, or truncated ({exc})") from exc
    if image.format == "JPEG":  # phones and some scanners store rotation in EXIF
        image = ImageOps.exif_transpose(image)
    return image


def to_gray(image: Image.Image) -> np.ndarray:
    """An image of any Pillow mode as uint8 ``[H, W]`` grey levels.

    Colour (overlays, RGBA exports) becomes luma (ITU-R 601); 16-bit and float
    images are rescaled from their full range.
    """
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
    if mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if mode in ("1", "LA"):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    return np.asarray(image.convert("RGB").convert("L"), dtype=np.uint8)


def to_mask(image: Image.Image) -> np.ndarray:
    """A mask file of any Pillow mode as bool ``[H, W]``: lesion where any colour channel is > 0.

    Fully transparent pixels of RGBA / LA masks count as background.
    """
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    arr = np.asarray(image)
    if mode in ("RGBA", "LA"):
        return (arr[..., :-1] > 0).any(axis=-1) & (arr[..., -1] > 0)
    if arr.ndim == 3:
        return (arr > 0).any(axis=-1)
    return arr > 0


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 ``[H, W]`` to ``size × size`` with an antialiasing (area-aware bilinear) filter."""
    if gray.shape == (size, size):
        return gray
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize bool ``[H, W]`` to ``size × size`` with nearest neighbour, so labels stay exact."""
    if mask.shape == (size, size):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize((size, size), Image.Resampling.NEAREST)) > 127
