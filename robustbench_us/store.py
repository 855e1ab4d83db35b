"""The result store: an append-only folder of records, written atomically."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustbench_us.errors import RecordError, RobustBenchError
from robustbench_us.records import Record, Status, read_record


# Temporary files and folders name their writer (``.<name>.w<pid>@<host>.<random>[.tmp]``), so a
# later run can tell one whose writer was killed (remove it) from one being written right now
# by a concurrent run (keep it).
_WRITER_TAG = re.compile(r"\.w(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[A-Za-z0-9_]+(\.tmp)?$")
STALE_SECONDS = 600.0  # an untagged temporary file this old has no live writer: no write takes minutes
REUSED_PID_SECONDS = 3600.0  # a tagged file this old, whose pid is alive, belongs to a process that reused the pid


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:40]


def temp_prefix(name: str) -> str:
    """The ``prefix`` for ``tempfile.mkstemp``/``mkdtemp`` of a temporary beside ``name``, tagged with this writer."""
    return f".{name}.w{os.getpid()}@{_host()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def left_behind(path: Path, *, stale_seconds: float = STALE_SECONDS) -> bool:
    """Whether the temporary file or folder ``path`` was left by a writer that can no longer finish it.

    Tagged by :func:`temp_prefix` on this host: its writer process is gone (or, for a
    file, its pid is alive but the file untouched for an hour: the pid was reused, as a
    file is written in one burst). Otherwise (written elsewhere, or by code that does
    not tag): unchanged for ``stale_seconds``. A temporary of a live writer (a
    concurrent run into the same folder) is never one.
    """
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    tag = _WRITER_TAG.search(path.name)
    if tag and tag["host"] == _host():
        pid = int(tag["pid"])
        if pid == os.getpid():
            return False
        return not _alive(pid) or (path.is_file() and age > REUSED_PID_SECONDS)
    return age > stale_seconds


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so readers see the old file or the whole new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
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

    def _final(self, cell_id: str) -> dict[str, Any] | None:
        """The cell's readable ok or invalid record, else None."""
        path = self.path_of(cell_id)
        if not path.is_file():
            return None
        try:
            data = read_record(path)
        except RecordError:
            return None
        return data if data["status"] in (Status.OK, Status.INVALID) else None

    def is_finished(self, cell_id: str, plugin_versions: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
        """Whether the cell already has a readable record that need not be re-run.

        Failed cells are retried on the next run; ok and invalid ones are final, unless
        ``plugin_versions`` (the runner's, per kind) says one of the cell's plugins is not
        the version the record was measured with (see :meth:`changed_plugins`).
        """
        data = self._final(cell_id)
        return data is not None and not changed_plugins(data, plugin_versions or {})

    def changed_plugins(self, cell_id: str,
                        plugin_versions: Mapping[str, Mapping[str, Any]]) -> list[str] | None:
        """How the plugins of the cell's final record differ from ``plugin_versions`` (empty when they do not);
        None when the cell has no final record (it is not finished)."""
        data = self._final(cell_id)
        return changed_plugins(data, plugin_versions) if data is not None else None

    def supersede(self, cell_id: str) -> Path:
        """Move the cell's record to ``records/superseded/`` (kept, no longer read); returns where it went."""
        target_dir = self.records_dir / "superseded"
        target_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = target_dir / f"{cell_id}.{stamp}.json"
        n = 1
        while target.exists():
            n += 1
            target = target_dir / f"{cell_id}.{stamp}-{n}.json"
        os.replace(self.path_of(cell_id), target)
        return target

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files under the suite's folder that killed writers left behind (see :func:`left_behind`).

        Records, checkpoints, resume files and figures are written to a temporary file
        and renamed; a run killed mid-write (SIGKILL, power loss) leaves that file, up to
        the size of a checkpoint. Those of a live concurrent run are kept.
        """
        if not self.root.is_dir():
            return []
        removed = []
        for path in sorted(self.root.rglob("*.tmp")):
            if path.is_file() and not path.is_symlink() and left_behind(path):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

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


def changed_plugins(record: Mapping[str, Any], current: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Which plugins of ``record`` differ from ``current`` (per kind: plugin, distribution, version).

    Only kinds whose recorded version is known count: records written before versions
    were recorded, and local plugins without a version, compare equal.
    """
    recorded = (record.get("provenance") or {}).get("plugin_versions") or {}
    changed = []
    for kind, old in sorted(recorded.items()):
        new = current.get(kind)
        if not isinstance(old, Mapping) or old.get("version") is None or new is None:
            continue
        fields = ("plugin", "distribution", "version")
        if tuple(old.get(f) for f in fields) != tuple(new.get(f) for f in fields):
            changed.append(f"{kind} plugin {old.get('plugin')!r}: {old.get('distribution')} {old.get('version')} "
                           f"then, {new.get('distribution')} {new.get('version')} now")
    return changed


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
