"""Decoding image and mask files of every mode Pillow produces, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robustbench_us.data.io import UnreadableFileError, open_image, read_bytes, resize_gray, resize_mask, to_gray, \
    to_mask


def _save(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return path


def test_grey_from_every_mode(tmp_path, reliability):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    assert to_gray(Image.fromarray(grey)).tolist() == grey.tolist()
    rgb = np.stack([grey] * 3, axis=-1)
    assert to_gray(Image.fromarray(rgb)).tolist() == grey.tolist()  # equal channels: luma is the grey
    rgba = np.concatenate([rgb, np.full((3, 4, 1), 255, np.uint8)], axis=-1)
    assert to_gray(Image.fromarray(rgba, "RGBA")).tolist() == grey.tolist()
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    assert to_gray(Image.fromarray(red)).item() == 76  # ITU-R 601: 0.299 × 255
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)  # 16-bit PNGs decode as I;16
    assert to_gray(sixteen).tolist() == grey.tolist()
    palette = Image.fromarray(grey).convert("P")
    assert to_gray(palette).tolist() == grey.tolist()
    reliability.row("Bad input", "images in other modes (RGB, RGBA, 16-bit, palette)",
                    "read as the same grey values, no error", modes=5)


def test_masks_binarise_any_channel_and_respect_alpha():
    one_bit = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    assert to_mask(one_bit).tolist() == [[False, True], [True, False]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0, 2] = 1  # any channel above 0 counts
    assert to_mask(Image.fromarray(rgb)).tolist() == [[True, False], [False, False]]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, :, :3] = 255
    rgba[:, :, 3] = [[255, 0], [255, 255]]  # transparent white is background
    assert to_mask(Image.fromarray(rgba, "RGBA")).tolist() == [[True, False], [False, False]]


def test_resize_antialiases_images_and_keeps_mask_labels():
    stripes = np.tile(np.array([0, 255], np.uint8), (64, 32))  # 1-pixel stripes, 64 × 64
    small = resize_gray(stripes, 16)
    assert small.shape == (16, 16)
    assert (small[:, 1:-1] == 128).all()  # averaged to mid-grey, not aliased to 0 or 255
    mask = np.zeros((64, 64), bool)
    mask[16:48, 8:40] = True
    out = resize_mask(mask, 16)
    assert out.dtype == bool and set(np.unique(out)) == {False, True}
    assert int(out.sum()) == 8 * 8  # nearest neighbour: a 32 × 32 square becomes 8 × 8 exactly


def test_truncated_and_empty_files_are_unreadable(tmp_path, reliability):
    path = _save(tmp_path, "ok.png", Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    data = path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    assert open_image(read_bytes(path)).size == (64, 64)
    with pytest.raises(UnreadableFileError, match="truncated"):
        open_image(read_bytes(tmp_path / "cut.png"))
    with pytest.raises(UnreadableFileError, match="empty"):
        open_image(read_bytes(tmp_path / "empty.png"))
    with pytest.raises(UnreadableFileError, match="not a readable image"):
        open_image(read_bytes(tmp_path / "text.png"))
    with pytest.raises(UnreadableFileError, match="cannot read"):
        read_bytes(tmp_path / "missing.png")
    reliability.row("Bad input", "image files: truncated, zero-byte, text named .png, missing",
                    "each refused with an error naming the file and what is wrong", files_refused=4)
