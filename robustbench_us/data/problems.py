"""Bad input files: collect them while loading, then raise one clear error or warn once with counts."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from robustbench_us.errors import DataError

_SHOWN = 8  # files listed by name in one message; the rest are counted


class DataWarning(UserWarning):
    """Something in a dataset was skipped or ignored; the message names it and the fix."""


def warn_data(message: str) -> None:
    """Issue a :class:`DataWarning` attributed to the caller of the dataset factory."""
    warnings.warn(message, DataWarning, stacklevel=3)


@dataclass(frozen=True)
class Problem:
    """One unusable file: what it is, what is wrong, and how to fix it."""

    path: str  # relative to the dataset root
    kind: str  # short category used for counts, e.g. "no mask"
    reason: str
    fix: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}; {self.fix}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "reason": self.reason, "fix": self.fix}


class ProblemLog:
    """Problems found while loading one dataset; ``finish`` raises (strict) or warns (lenient)."""

    def __init__(self, dataset: str, root: Path, *, strict: bool) -> None:
        self.dataset, self.root, self.strict = dataset, root, strict
        self.problems: list[Problem] = []

    def add(self, path: Path | str, kind: str, reason: str, fix: str) -> None:
        rel = path
        if isinstance(path, Path):
            try:
                rel = path.relative_to(self.root).as_posix()
            except ValueError:
                rel = str(path)
        self.problems.append(Problem(str(rel), kind, reason, fix))

    def __len__(self) -> int:
        return len(self.problems)

    def summary(self) -> str:
        counts = Counter(p.kind for p in self.problems)
        return ", ".join(f"{n} {kind}" for kind, n in counts.most_common())

    def finish(self, total: int) -> None:
        """Raise :class:`DataError` (strict) or warn once, listing the first files by name."""
        if not self.problems:
            return
        lines = [f"  {p.line()}" for p in self.problems[:_SHOWN]]
        if len(self.problems) > _SHOWN:
            lines.append(f"  ... and {len(self.problems) - _SHOWN} more")
        body = "\n".join(lines)
        if self.strict:
            raise DataError(
                f"{self.dataset}: {len(self.problems)} of {total} images under {self.root} cannot be used "
                f"({self.summary()}):\n{body}\nFix these files, or pass strict=False to skip them with a warning."
            )
        warn_data(
            f"{self.dataset}: skipped {len(self.problems)} of {total} images under {self.root} "
            f"({self.summary()}):\n{body}\nPass strict=True to make this an error."
        )
