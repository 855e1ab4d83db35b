"""Fault handling for long runs: split batches on out-of-memory, limit a plugin's time."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

import torch

logger = logging.getLogger(__name__)


class CellTimeout(BaseException):
    """A plugin ran past the suite's ``cell_timeout``.

    Derived from ``BaseException`` (like ``KeyboardInterrupt``), not from
    :class:`~robustbench_us.errors.RobustBenchError`: plugin code that retries through
    ``except Exception`` must not swallow the interruption and run on unbounded. The
    runner catches it by name and records the cell as failed.
    """


#: What the runner catches around plugin code: any error, and a timeout (which ``except Exception`` misses).
PLUGIN_FAILURES: tuple[type[BaseException], ...] = (Exception, CellTimeout)


class BatchSizer:
    """Runs ``fn`` over ``[0, n)`` in batches, halving the batch size on out-of-memory.

    The smaller size is kept for the rest of the run, so one OOM costs one retry,
    not one per batch. A batch of one that still does not fit re-raises.
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = int(batch_size)

    def slices(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.batch_size):
            yield slice(start, min(n, start + self.batch_size))

    def run(self, fn: Callable[[slice], torch.Tensor], n: int) -> torch.Tensor:
        """``torch.cat`` of ``fn(slice)`` over every batch of ``n`` items."""
        parts: list[torch.Tensor] = []
        start = 0
        while start < n:
            s = slice(start, min(n, start + self.batch_size))
            try:
                parts.append(fn(s))
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                logger.warning("out of memory at batch size %d; retrying with %d", s.stop - s.start,
                               self.batch_size)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start = s.stop
        return torch.cat(parts)


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str) -> Iterator[None]:
    """Raise :class:`CellTimeout` in this thread if the block runs longer than ``seconds``.

    Uses ``SIGALRM``, so it works only in the main thread on POSIX; elsewhere (or with
    ``seconds`` None) the block runs without a limit. Limits do not nest: an inner block
    would cancel the outer one's timer, so callers limit one plugin call at a time.
    """
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise CellTimeout(f"{what} ran past the suite's cell_timeout of {seconds:g} s. Raise cell_timeout in "
                          "[suite], or fix the plugin.")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
