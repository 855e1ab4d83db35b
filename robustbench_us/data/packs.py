"""Dataset packs: a file dataset decoded once, carried to a machine that lacks the raw files.

A pack (``<name>-<size>px-<options hash>.rbpack``, a zip) holds what a
:class:`~robustbench_us.data.files.FileDataset` computed from the files: the
images already resized to one input size (lossless WebP, checked pixel for pixel
when written), the masks (bit-packed), labels, patient and near-duplicate groups,
the per-file metadata and the manifest hash. A dataset rebuilt from a pack is the
same dataset: same images, split and ``manifest_hash()``, so records written from
it name the same data as records written from the files.

Use: ``robustbench-us data pack busi --image-size 224 --out packs/`` where the data
is, copy ``packs/`` to the other machine and set ``ROBUSTBENCH_US_DATA_PACKS=packs``
there: every dataset the runner, ``train`` or ``data audit`` asks for is then read
from the pack made with the same name, size and options, or fails naming the
command that makes it. Packs are read as JSON, NumPy arrays and images (nothing is
unpickled); the dataset class a pack names must be one of :data:`BUILTIN_CLASSES` or a
FileDataset subclass a loaded plugin already defined, checked before any import.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import zipfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from robustbench_us.data.catalog import ImageFile
from robustbench_us.data.files import FileDataset
from robustbench_us.data.problems import Problem
from robustbench_us.data.roots import PACKS_ENV as ENV_PACKS
from robustbench_us.errors import DataError

FORMAT = "robustbench_us-dataset-pack"
VERSION = 1
SUFFIX = ".rbpack"
# Factory arguments that do not change what a file dataset holds: where the files are,
# and the seed (file datasets take the split seed in split(), not here).
_NOT_CONTENT = ("root", "seed", "image_size")
_ARRAYS = ("_images", "_masks")
_DROPPED = ("_near",)  # a cache, rebuilt on demand


def canonical_options(options: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options that fix a file dataset's content: defaults filled in, root/seed/size left out."""
    merged = dict(defaults or {}) | {k: v for k, v in options.items() if k not in _NOT_CONTENT}
    return json.loads(json.dumps(merged, sort_keys=True, default=str))


def pack_name(name: str, image_size: int, options: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    return f"{name.replace(':', '_')}-{int(image_size)}px-{digest}{SUFFIX}"


# ------------------------------------------------------------------ attributes <-> JSON
def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return {"__path__": value.as_posix()}
    if isinstance(value, (ImageFile, Problem)):
        body = {f.name: _encode(getattr(value, f.name), f"{where}.{f.name}") for f in fields(value)}
        return {f"__{type(value).__name__}__": body}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v, f"{where}.{k}") for k, v in value.items()}}
    raise DataError(f"cannot pack {where} of type {type(value).__name__}; packs hold file datasets whose "
                    f"attributes are paths, numbers, strings, lists, tuples, dicts, ImageFile and Problem.")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    (tag, body), = value.items()
    if tag == "__path__":
        return Path(body)
    if tag == "__tuple__":
        return tuple(_decode(v) for v in body)
    if tag == "__dict__":
        return {k: _decode(v) for k, v in body.items()}
    if tag == "__ImageFile__":
        return ImageFile(**{k: _decode(v) for k, v in body.items()})
    if tag == "__Problem__":
        return Problem(**{k: _decode(v) for k, v in body.items()})
    raise DataError(f"unknown value tag {tag!r} in a dataset pack; it was written by a newer robustbench_us.")


# ------------------------------------------------------------------------- writing
def _webp(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="WEBP", lossless=True, quality=100, method=4, exact=True)
    data = buf.getvalue()
    back = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    if back.shape != image.shape or not np.array_equal(back, image):
        raise DataError("lossless WebP did not reproduce an image exactly with this Pillow build; "
                        "upgrade Pillow (it needs libwebp) before packing.")
    return data


def write_pack(dataset: FileDataset, out_dir: str | Path, *, options: Mapping[str, Any]) -> Path:
    """Write ``dataset`` (built with the canonical ``options``) as a pack in ``out_dir``; return its path."""
    if not isinstance(dataset, FileDataset):
        raise DataError(f"only file datasets (busi, busbra, folder, ...) can be packed, not "
                        f"{type(dataset).__name__}; generated datasets such as phantom need no files to move.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, masks = dataset.arrays()
    attrs = {k: _encode(v, k) for k, v in vars(dataset).items() if k not in _ARRAYS + _DROPPED}
    cls = type(dataset)
    head = {"format": FORMAT, "version": VERSION, "dataset": dataset.name, "image_size": dataset.image_size,
            "options": dict(options), "class": f"{cls.__module__}:{cls.__qualname__}", "n": len(dataset),
            "manifest": dataset.manifest_hash(), "has_masks": masks is not None, "attrs": attrs}
    arr = images.numpy()
    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        encoded = list(pool.map(_webp, arr))
    path = out_dir / pack_name(dataset.name, dataset.image_size, options)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("pack.json", json.dumps(head, sort_keys=True))
        for i, data in enumerate(encoded):
            zf.writestr(f"images/{i:06d}.webp", data)
        if masks is not None:
            buf = io.BytesIO()
            np.save(buf, np.packbits(masks.numpy(), axis=-1), allow_pickle=False)
            zf.writestr("masks.npy", buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------- reading
def read_head(path: str | Path) -> dict[str, Any]:
    """The pack's description (name, size, options, manifest) without decoding images."""
    try:
        with zipfile.ZipFile(path) as zf:
            head = json.loads(zf.read("pack.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a readable dataset pack ({exc}); make it again with "
                        "`robustbench-us data pack`.") from None
    if head.get("format") != FORMAT or head.get("version") != VERSION:
        raise DataError(f"{path}: format {head.get('format')!r} version {head.get('version')!r} is not "
                        f"{FORMAT!r} version {VERSION}; make the pack again with this version.")
    return head


# The dataset classes a pack may name, as ``module:qualname``, beyond the FileDataset subclasses
# already defined in this process (FileDataset itself always is). A pack is data from elsewhere:
# its "class" field is checked against these before anything is imported, so editing it
# cannot make this process import (and run) a module of the pack's choosing.
BUILTIN_CLASSES: dict[str, tuple[str, str]] = {
    "robustbench_us_plugins.busbra:BusbraDataset": ("robustbench_us_plugins.busbra", "BusbraDataset"),
}


def _loaded_subclasses() -> dict[str, type[FileDataset]]:
    """FileDataset subclasses already defined in this process (a loaded plugin's own), by ``module:qualname``."""
    found: dict[str, type[FileDataset]] = {}
    todo: list[type[FileDataset]] = [FileDataset]
    while todo:
        cls = todo.pop()
        found.setdefault(f"{cls.__module__}:{cls.__qualname__}", cls)
        todo.extend(cls.__subclasses__())
    return found


def _dataset_class(spec: Any, path: Path) -> type[FileDataset]:
    loaded = _loaded_subclasses()
    if isinstance(spec, str) and spec in loaded:
        return loaded[spec]
    if not (isinstance(spec, str) and spec in BUILTIN_CLASSES):
        allowed = sorted(set(BUILTIN_CLASSES) | set(loaded))
        raise DataError(f"{path}: field \"class\" is {spec!r}, not a FileDataset class this process knows "
                        f"(allowed: {', '.join(allowed)}); refusing to import it. A dataset plugin's own class "
                        "is allowed once its plugin is loaded; otherwise make the pack again with "
                        "`robustbench-us data pack`.")
    module, qualname = BUILTIN_CLASSES[spec]
    try:
        cls = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"{path}: dataset class {spec} is not importable here ({exc}); install the plugin "
                        "that provides it.") from None
    return cls


def load_pack(path: str | Path) -> FileDataset:
    """Rebuild the dataset stored in a pack (images, masks, groups, manifest hash as when packed)."""
    path = Path(path)
    head = read_head(path)
    cls = _dataset_class(head["class"], path)
    n, size = int(head["n"]), int(head["image_size"])
    with zipfile.ZipFile(path) as zf:
        blobs = [zf.read(f"images/{i:06d}.webp") for i in range(n)]
        masks = np.load(io.BytesIO(zf.read("masks.npy")), allow_pickle=False) if head["has_masks"] else None
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("L")) for b in blobs])
    if images.shape != (n, size, size):
        raise DataError(f"{path}: images have shape {images.shape}, expected {(n, size, size)}; the pack is "
                        "damaged, make it again.")
    dataset = cls.__new__(cls)
    for key, value in head["attrs"].items():
        setattr(dataset, key, _decode(value))
    dataset._images = torch.from_numpy(images)
    dataset._masks = (torch.from_numpy(np.unpackbits(masks, axis=-1, count=size).astype(bool))
                      if masks is not None else None)
    dataset._near = None
    if dataset.manifest_hash() != head["manifest"]:
        raise DataError(f"{path}: the manifest hash inside does not match its description; make it again.")
    return dataset


def find_pack(folder: str | Path, name: str, image_size: int, options: Mapping[str, Any]) -> Path:
    """The pack in ``folder`` for this dataset, size and canonical options, or a DataError saying how to make it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{ENV_PACKS}={folder} is not a folder; point it at the folder `robustbench-us data pack` "
                        "wrote, or unset it to read the dataset files.")
    path = folder / pack_name(name, image_size, options)
    if path.is_file():
        head = read_head(path)
        if head["dataset"] == name and int(head["image_size"]) == int(image_size) and head["options"] == options:
            return path
    have = sorted(p.name for p in folder.glob(f"*{SUFFIX}"))
    opts = " ".join(f"--option {k}={json.dumps(v)}" for k, v in options.items() if v is not None)
    raise DataError(f"no pack for dataset {name!r} at {image_size} px with options {options} in {folder} "
                    f"(it has: {', '.join(have) or 'none'}). Where the files are, run: robustbench-us data pack "
                    f"{name} --image-size {image_size} {opts} --out {folder}; or unset {ENV_PACKS}.")


def pack_dataset(registry: Any, name: str, *, image_size: int, out_dir: str | Path, root: str | None = None,
                 options: Mapping[str, Any] | None = None) -> Path:
    """Build dataset ``name`` from its files through ``registry`` and write its pack."""
    from robustbench_us.specs import Kind

    canon = canonical_options(options or {}, getattr(registry.get(Kind.DATASET, name), "options", None))
    dataset = registry.build(Kind.DATASET, name, root=root, image_size=image_size, **dict(options or {}))
    return write_pack(dataset, out_dir, options=canon)
