"""The result store: an append-only folder of records, written atomically."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from robustbench_us.errors import RecordError, RobustBenchError
from robustbench_us.records import Record, Status, read_record


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so readers see the old file or the whole new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def slug(text: str) -> str:
    """A file-name-safe form of a name: other characters become '_'; never empty, '.' or '..'."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_.") or "_"


def safe_join(root: Path, *parts: str) -> Path:
    """``root/parts`` — refusing any path that would leave ``root``."""
    root = root.resolve()
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise RobustBenchError(f"Path {'/'.join(parts)!r} would leave the results folder {root}. "
                               "Use a plain name without '..' or an absolute path.")
    return target


class ResultStore:
    """Records of one suite under ``<results>/<suite>/records/<cell_id>.json``."""

    def __init__(self, results_dir: str | Path, suite: str) -> None:
        self.root = safe_join(Path(results_dir), suite)
        self.records_dir = self.root / "records"

    def path_of(self, cell_id: str) -> Path:
        return safe_join(self.records_dir, f"{cell_id}.json")

    def is_finished(self, cell_id: str) -> bool:
        """Whether the cell already has a readable record that need not be re-run.

        Failed cells are retried on the next run; ok and invalid ones are final
        (an invalid attack stays invalid until its plugin changes, which changes the cell id).
        """
        path = self.path_of(cell_id)
        if not path.is_file():
            return False
        try:
            data = read_record(path)
        except RecordError:
            return False
        return data["status"] in (Status.OK, Status.INVALID)

    def write(self, record: Record) -> Path:
        """Write one record atomically; returns its path."""
        path = self.path_of(record.cell_id)
        atomic_write_text(path, json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def lock(self, name: str) -> GroupLock:
        """The lock guarding one group of cells (see :class:`GroupLock`)."""
        return GroupLock(safe_join(self.root, "locks", f"{name}.lock"))

    def read_all(self) -> list[dict[str, Any]]:
        """Every record of the suite, checked, sorted by cell id."""
        if not self.records_dir.is_dir():
            return []
        return [read_record(p) for p in sorted(self.records_dir.glob("*.json"))]


class GroupLock:
    """An exclusive lock on one dataset × model group of a results folder (POSIX ``flock``).

    Two runs of one suite into one folder take turns on each group; the second then
    finds the first one's records and skips those cells, so nothing is computed twice
    and no record is written twice. The lock is released by the kernel if the
    process dies, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None

    def __enter__(self) -> GroupLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a+")  # noqa: SIM115 - held for the lock's lifetime
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
