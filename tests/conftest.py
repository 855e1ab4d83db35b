"""Shared fixtures: where the real data lives, a tiny model, a registry with test plugins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.fakes.tiny import TinyNet

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "ROBUSTBENCH_US_DATA"


def shared_data_root() -> Path | None:
    """``$ROBUSTBENCH_US_DATA`` or ``../shared/data`` beside the checkout, if it exists."""
    candidate = Path(os.environ.get(DATA_ENV, REPO.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real-data root (BUSI, BUS-BRA); skips the test when it is absent."""
    root = shared_data_root()
    if root is None:
        pytest.skip(f"real data not found: set {DATA_ENV} to a folder holding busi/ and busbra/ "
                    f"(looked in {REPO.parent / 'shared' / 'data'})")
    return root


@pytest.fixture
def use_plugins(monkeypatch):
    """``use_plugins("gradcam,fgsm")``: the default registry loads only those entry points plus the
    toy test plugins (``tests.fakes.toy``); the registry is rebuilt before and after the test."""
    from robustbench_us.plugins import reset_default_registry

    def use(entry_points: str) -> None:
        monkeypatch.setenv("ROBUSTBENCH_US_PLUGINS", entry_points)
        monkeypatch.setenv("ROBUSTBENCH_US_LOCAL_PLUGINS", "tests.fakes.toy")
        reset_default_registry()

    yield use
    monkeypatch.undo()
    reset_default_registry()


@pytest.fixture
def tiny_model() -> TinyNet:
    """A tiny CNN in eval mode, seeded."""
    return TinyNet(input_size=32).eval()


@pytest.fixture
def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four seeded 32×32 images in [0, 1] and their labels."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 0, 1])


# ---------------------------------------------------------------- reliability page
from tests.reliability import Reliability, Row, render  # noqa: E402

_RELIABILITY_ROWS: list[Row] = []


def pytest_addoption(parser):
    parser.addoption("--reliability-doc", default=None, metavar="PATH",
                     help="write the reliability table (docs/reliability.md) from this run's rows")


@pytest.fixture
def reliability(request) -> Reliability:
    """Report a row of docs/reliability.md from this test (kept only if the test passes)."""
    return Reliability(request.node.nodeid, _RELIABILITY_ROWS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        for row in _RELIABILITY_ROWS:
            if row.test == item.nodeid:
                row.passed = report.passed


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--reliability-doc")
    if path and _RELIABILITY_ROWS:
        import sys

        command = "pytest " + " ".join(a for a in sys.argv[1:])
        Path(path).write_text(render(_RELIABILITY_ROWS, command), encoding="utf-8")
