"""Result records: one JSON file per finished cell, traceable and re-runnable."""

from __future__ import annotations

import hashlib
import json
import math
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from robustbench_us.errors import RecordError

SCHEMA_VERSION = 1


class Status(StrEnum):
    """How a cell ended."""

    OK = "ok"
    FAILED = "failed"  # a plugin raised, hung or produced NaN
    INVALID = "invalid"  # the attack broke the contract (budget, range, shape); kept off the leaderboard


@dataclass(frozen=True)
class Record:
    """Everything about one finished cell: configuration, metrics, timing and provenance."""

    suite: str
    cell_id: str
    status: Status
    config: dict[str, Any]
    metrics: dict[str, float | None]
    timing: dict[str, float]
    provenance: dict[str, Any]
    error: str | None = None
    figures: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    per_image: dict[str, list[Any]] | None = None  # image-by-image outcomes, lists in the order of "id"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with its integrity hash (``per_image`` only when there is one)."""
        data = asdict(self)
        if data["per_image"] is None:
            del data["per_image"]
        data["status"] = str(self.status)
        data["metrics"] = {k: _finite_or_none(v) for k, v in self.metrics.items()}
        data["integrity"] = integrity_hash(data)
        return data


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def integrity_hash(data: dict[str, Any]) -> str:
    """sha256 over the record's canonical JSON, without the hash itself."""
    body = {k: v for k, v in data.items() if k != "integrity"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_record(data: Any, source: str) -> dict[str, Any]:
    """Refuse a record of the wrong shape, of an unknown version, or edited after it was written."""
    if not isinstance(data, dict):
        raise RecordError(f"{source}: not a record (expected a JSON object).")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(f"{source}: unknown record schema_version {version!r} (this version reads "
                          f"{SCHEMA_VERSION}). Re-run the suite to regenerate it.")
    from robustbench_us.schema import validate_record

    validate_record(data, source)  # the schema names every missing or malformed field
    if data["integrity"] != integrity_hash(data):
        raise RecordError(f"{source}: integrity hash does not match its contents — the record was edited "
                          "after it was written. Delete it and re-run the suite; never edit numbers by hand.")
    return data


def read_record(path: Path) -> dict[str, Any]:
    """Read and check one record file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: unreadable record ({exc}). Delete it and re-run the suite.") from None
    return check_record(data, str(path))


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """The commit checked out in ``folder`` and whether tracked files differ from it (None, None outside git).

    A record measured from an edited checkout names its commit *and* says the code was not
    exactly that commit's, so nobody re-runs the commit expecting the same numbers.
    """
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=folder)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip() or None
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status.strip())


@cache
def _git_state() -> tuple[str | None, bool | None]:
    return git_state(Path(__file__).resolve().parent)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def base_provenance() -> dict[str, Any]:
    """Package versions, git commit and platform: the same for every cell of a run."""
    return {
        "package_version": _version("robustbench-us"),
        "git_commit": _git_state()[0],
        "git_dirty": _git_state()[1],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "adversarial_robustness_toolbox": _version("adversarial-robustness-toolbox"),
    }
