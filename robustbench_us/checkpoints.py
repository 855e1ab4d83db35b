"""Checkpoints: safetensors weights beside a JSON model card, verified by sha256, never unpickled.

A checkpoint ``<path>`` is two files:

``<path>.safetensors``
    The model's ``state_dict`` (parameters and buffers) in the safetensors format,
    which holds raw tensors only, so loading one cannot run code.
``<path>.json``
    The model card: whatever the caller passed (architecture, dataset, manifest hash,
    split seed, recipe, metrics, ...) plus ``sha256`` of the weights file, the weights
    file name, the card format, tensor and parameter counts and package versions.

Both files are written atomically (temporary file in the same folder, then
``os.replace``), weights first, so a reader never sees a card whose weights are
half-written. ``path`` may be given with or without the ``.safetensors`` suffix.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_us.errors import CheckpointError
from robustbench_us.store import temp_prefix

CARD_FORMAT = "robustbench_us.checkpoint/1"
WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
# Formats that hold pickles: torch.save files are zip archives (or raw pickles in the legacy format).
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar")
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_BYTE = 0x80
_MAX_HEADER = 100_000_000  # a safetensors header larger than this is corrupt


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """The weights and card paths of checkpoint ``path`` (suffix ``.safetensors`` or ``.json`` optional)."""
    path = Path(path).expanduser()
    if path.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX):
        path = path.with_suffix("")
    return Path(f"{path}{WEIGHTS_SUFFIX}"), Path(f"{path}{CARD_SUFFIX}")


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Tagged with this writer, so a later run removes it if this process is killed mid-write.
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as independent, contiguous CPU tensors (safetensors refuses shared storage)."""
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in model.state_dict().items()}


def _versions() -> dict[str, str]:
    import robustbench_us

    out = {"robustbench_us": robustbench_us.__version__, "torch": torch.__version__}
    try:
        import safetensors

        out["safetensors"] = safetensors.__version__
    except ImportError:  # pragma: no cover - safetensors is a dependency
        pass
    return out


def save_checkpoint(model: nn.Module, path: str | Path, card: Mapping[str, Any]) -> str:
    """Write ``<path>.safetensors`` and the ``<path>.json`` model card; return the weights' sha256.

    ``card`` must be JSON-serialisable (numbers stay numbers; paths and enums are
    written as strings). The returned digest is also stored in the card as ``sha256``.
    """
    from safetensors.torch import save

    weights_path, card_path = checkpoint_paths(path)
    tensors = _state_tensors(model)
    architecture = str(card.get("architecture", type(model).__name__))
    # One metadata key: safetensors writes a map's keys in arbitrary order, and the file's
    # sha256 must be the same for the same weights.
    data = save(tensors, metadata={"robustbench_us": f"{CARD_FORMAT}; architecture={architecture}"})
    sha256 = hashlib.sha256(data).hexdigest()
    full_card: dict[str, Any] = dict(card)
    full_card.update({
        "format": CARD_FORMAT,
        "weights": weights_path.name,
        "sha256": sha256,
        "num_tensors": len(tensors),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "init": full_card.get("init", getattr(model, "init", "scratch")),
        "versions": _versions(),
    })
    try:
        text = json.dumps(full_card, indent=2, sort_keys=True, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"Model card for {weights_path} is not JSON-serialisable: {exc}. "
                              "Pass numbers, strings, lists and dicts only.") from exc
    _atomic_write(weights_path, data)
    _atomic_write(card_path, (text + "\n").encode())
    return sha256


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")


def _refuse_pickle(path: Path) -> None:
    hint = ("Convert it once, in a trusted environment, with: "
            "`from safetensors.torch import save_file; save_file(torch.load(p, weights_only=True), out)`, "
            "then write a card with robustbench_us.checkpoints.save_checkpoint.")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(f"Checkpoint {path} is a pickle-based file ({path.suffix}); robustbench_us never "
                              f"unpickles files because that can run arbitrary code. {hint}")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(_ZIP_MAGIC) or (head[:1] and head[0] == _PICKLE_PROTOCOL_BYTE):
        raise CheckpointError(f"Checkpoint {path} holds a pickle (torch.save format), not safetensors; "
                              f"robustbench_us never unpickles files. {hint}")
    if len(head) < 8 or int.from_bytes(head, "little") > _MAX_HEADER:
        raise CheckpointError(f"Checkpoint {path} is not a safetensors file (bad header: {len(head)} bytes read). "
                              "It is truncated or of another format; re-save it with save_checkpoint.")


def read_card(path: str | Path) -> dict[str, Any] | None:
    """The model card of checkpoint ``path``, or None when there is no card file."""
    _, card_path = checkpoint_paths(path)
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Model card {card_path} is unreadable ({exc}). Restore it from the place the "
                              "checkpoint came from, or delete it and pass the weights' sha256 explicitly.") from exc
    if not isinstance(card, dict):
        raise CheckpointError(f"Model card {card_path} is not a JSON object. Restore it or re-save the checkpoint.")
    return card


def load_checkpoint(model: nn.Module, path: str | Path, *, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load verified weights into ``model`` in place and return the model card.

    The weights file's sha256 must equal ``expected_sha256`` when given and the
    card's ``sha256`` when the card exists (at least one of them is required). Keys
    and shapes must match ``model`` exactly. Sets ``model.init = "checkpoint:<path>"``.
    Raises :class:`~robustbench_us.errors.CheckpointError` with the fix otherwise.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    weights_path, card_path = checkpoint_paths(path)
    if not weights_path.is_file():
        raw = Path(path).expanduser()
        if raw.is_file() and raw != card_path:
            _refuse_pickle(raw)
        raise CheckpointError(f"Checkpoint weights {weights_path} do not exist. Check the path (a checkpoint is "
                              f"<name>.safetensors beside <name>.json), or train one with `robustbench-us train`.")
    _refuse_pickle(weights_path)
    card = read_card(weights_path)
    if card is None and expected_sha256 is None:
        raise CheckpointError(f"Checkpoint {weights_path} has no model card ({card_path.name}) and no expected "
                              "sha256 was given, so its integrity cannot be verified. Restore the card, or give "
                              "the digest (suite: sha256 = \"...\"; API: expected_sha256=...).")
    data = weights_path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    for source, expected in (("expected_sha256", expected_sha256), (card_path.name, (card or {}).get("sha256"))):
        if expected is not None and str(expected).lower() != actual:
            raise CheckpointError(
                f"Checkpoint {weights_path} fails its integrity check: sha256 is {actual}, but {source} says "
                f"{expected}. The file is corrupt, truncated or was replaced; re-download or re-train it, or "
                "update the digest only if you trust the new file.")
    try:
        state = load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"Checkpoint {weights_path} is not a readable safetensors file ({exc}). It is "
                              "truncated or corrupt; re-save it with save_checkpoint.") from exc
    _check_matches(model, state, weights_path, card)
    model.load_state_dict(state, strict=True)
    try:
        model.init = f"checkpoint:{weights_path}"
    except AttributeError:  # a model whose ``init`` is a read-only property
        pass
    card = dict(card or {})
    card.setdefault("sha256", actual)
    return card


def _check_matches(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path,
                   card: Mapping[str, Any] | None) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if not (missing or unexpected or wrong):
        return
    problems = []
    for label, items in (("missing from checkpoint", missing), ("not in the model", unexpected),
                         ("shape mismatch", wrong)):
        if items:
            shown = ", ".join(items[:3]) + (f", … ({len(items)} in all)" if len(items) > 3 else "")
            problems.append(f"{label}: {shown}")
    built = getattr(card, "get", lambda *_: None)("architecture") if card else None
    built_size = card.get("input_size") if card else None
    origin = f" It was saved from {built!r}" + (f" at input_size={built_size}" if built_size else "") + "." \
        if built else ""
    raise CheckpointError(f"Checkpoint {path} does not fit model {type(model).__name__}: {'; '.join(problems)}."
                          f"{origin} Build the same architecture (and options, e.g. segmentation) it was trained "
                          "with.")
