"""Faults: out-of-memory splits the batch, a hanging plugin times out, SIGTERM stops cleanly."""

from __future__ import annotations

import time

import pytest
import torch

from robustbench_us.faults import BatchSizer, CellTimeout, time_limit


def test_out_of_memory_halves_the_batch_and_keeps_every_result(reliability):
    calls = []

    def fake_forward(s: slice) -> torch.Tensor:
        size = s.stop - s.start
        calls.append(size)
        if size > 3:  # a fake allocator: anything above 3 images does not fit
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return torch.arange(s.start, s.stop)

    sizer = BatchSizer(16)
    out = sizer.run(fake_forward, 10)
    assert out.tolist() == list(range(10))  # nothing lost, nothing repeated, in order
    assert sizer.batch_size == 2  # 16 → 8 → 4 → 2, then kept
    assert calls[:4] == [10, 8, 4, 2]
    reliability.row("Faults", "CUDA out-of-memory (fake allocator failure on CPU)", "batch halved and retried; "
                    "every result kept, in order", batch_sizes_tried="16→8→4→2", results=len(out))


def test_out_of_memory_at_batch_one_re_raises():
    def never_fits(s: slice) -> torch.Tensor:
        raise torch.OutOfMemoryError("fake")

    with pytest.raises(torch.OutOfMemoryError):
        BatchSizer(4).run(never_fits, 4)


def test_time_limit_interrupts_a_hanging_plugin():
    start = time.perf_counter()
    with pytest.raises(CellTimeout, match="ran past the suite's cell_timeout of 0.2 s"):
        with time_limit(0.2, "attack 'hang'"):
            while True:
                time.sleep(0.01)
    assert time.perf_counter() - start < 2.0


def test_no_limit_when_none():
    with time_limit(None, "x"):
        time.sleep(0.01)


def test_a_plugin_catching_exception_cannot_swallow_the_timeout():
    retries = 0
    start = time.perf_counter()
    with pytest.raises(CellTimeout, match="attack 'retrying' ran past the suite's cell_timeout of 0.2 s"):
        with time_limit(0.2, "attack 'retrying'"):
            while time.perf_counter() - start < 3.0:  # a plugin that retries through any error
                try:
                    time.sleep(0.01)
                except Exception:  # noqa: BLE001, S112 - the habit under test
                    retries += 1
                    continue
    assert retries == 0 and time.perf_counter() - start < 2.0
