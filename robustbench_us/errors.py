"""The project's exceptions: one base class, messages that read like help."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RobustBenchError(Exception):
    """Base class of every error the project raises on purpose.

    The CLI turns these into one clean line and a non-zero exit; anything else
    is a bug and keeps its traceback.
    """


class UnknownNameError(RobustBenchError, LookupError):
    """A plugin name that no loaded plugin registered."""

    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        message = f"Unknown {kind} {name!r}. Available: {', '.join(self.available) or '(none)'}."
        close = difflib.get_close_matches(name, self.available, n=1, cutoff=0.5)
        if close:
            message += f" Did you mean {close[0]!r}?"
        super().__init__(message)


class DuplicateNameError(RobustBenchError):
    """Two plugins registered the same name for the same kind."""

    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        super().__init__(
            f"{kind.capitalize()} {name!r} is registered twice: by plugin {first!r} and by plugin "
            f"{second!r}. Uninstall or disable one of them "
            f"(ROBUSTBENCH_US_DISABLE_PLUGINS={second})."
        )


class PluginError(RobustBenchError):
    """A plugin is malformed: bad spec, bad hook, or it could not be imported."""


class SuiteError(RobustBenchError):
    """A suite file is malformed; the message names the file, the key and the fix."""


class DataError(RobustBenchError):
    """A dataset is missing, malformed or unreadable; the message names the file."""


class CheckpointError(RobustBenchError):
    """A checkpoint is missing, corrupt, for another architecture, or unsafe."""


class ContractError(RobustBenchError):
    """A plugin broke the pixel-space contract (shape, range, budget, device)."""


class RecordError(RobustBenchError):
    """A result record is malformed, edited or of an unknown version."""


class AttackError(RobustBenchError):
    """An attack was configured or called in a way it cannot honour."""


class ExplainerError(RobustBenchError, ValueError):
    """An explainer was given an option or a model it cannot work with."""


class TrainingError(RobustBenchError):
    """Training cannot start or continue: bad data, bad config, diverged loss."""


class StaleResultsError(RobustBenchError):
    """A run would add cells measured on other data or other weights to finished ones of the same group."""
