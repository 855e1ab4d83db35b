"""Fixtures for the pytest-benchmark files: one :class:`workloads.Bench` per setting, built once.

    .venv/bin/pytest benchmarks/perf --benchmark-only                   # CPU settings of the issue
    ROBUSTBENCH_US_PERF_DEVICE=cuda .venv/bin/pytest benchmarks/perf    # GPU settings
    ROBUSTBENCH_US_PERF_ROUNDS=5 ...                                    # timed rounds per benchmark (default 3)

Each benchmark is one call of a whole workload (all images, all steps), timed with
``benchmark.pedantic`` for a fixed number of rounds: a call takes seconds on a CPU,
so pytest-benchmark's automatic calibration would only repeat it for no gain.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch

from workloads import Bench, Workload, bench_for, synchronize

ROUNDS = int(os.environ.get("ROBUSTBENCH_US_PERF_ROUNDS", "3"))


@pytest.fixture(scope="session")
def bench() -> Bench:
    """The device's default settings (CPU: ResNet-18, 128×128, 32 images, 10 steps)."""
    return bench_for()


@pytest.fixture
def measure(benchmark) -> Callable[..., Any]:
    """Time ``workload`` for ``ROUNDS`` rounds after one warm-up; note throughput in the report."""

    def run(workload: Workload, bench: Bench, *, images: int | None = None, passes: int = 1) -> Any:
        s = bench.settings
        benchmark.extra_info.update({"device": s.device, "arch": s.arch, "size": s.size, "images": s.images,
                                     "batch": s.batch, "steps": s.steps, "amp": s.amp, "threads":
                                     torch.get_num_threads()})

        def timed() -> Any:
            out = workload()
            synchronize(bench.device)
            return out

        result = benchmark.pedantic(timed, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        median = benchmark.stats.stats.median
        benchmark.extra_info["images_passes_per_s"] = (images or s.images) * passes / median
        return result

    return run
