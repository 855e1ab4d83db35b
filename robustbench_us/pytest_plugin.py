"""pytest plugin: robustness regression tests in your own project, one benchmark cell per call.

Installed with robustbench-us (entry point group ``pytest11``), it adds the
``robustbench_cell`` fixture: call it with a dataset, a model (a checkpoint, or
training settings), an explainer, an attack and ε; it runs that one cell through the
same runner as ``robustbench-us run`` and returns the cell's metrics::

    def test_flip_rate_under_one_grey_level(robustbench_cell):
        metrics = robustbench_cell(dataset="phantom", model="resnet50-mtl", input_size=64,
                                   train={"epochs": 2, "batch_size": 16, "lr": 1e-3},
                                   explainer="gradcam", attack="fgsm", eps_grey=1, n_images=16)
        assert metrics["flip_rate"] <= 0.25
        assert metrics["spearman"] >= 0.5

Options (command line, or the same names in ``[tool.pytest.ini_options]`` with ``-`` → ``_``):

``--robustbench-results DIR``
    Keep records and trained checkpoints in ``DIR`` (default: a fresh temporary folder
    per session). Point CI's cache at it so a model is trained once, not on every run;
    cells themselves are recomputed every session unless ``--robustbench-reuse``.
``--robustbench-reuse``
    Return a cell's stored record when one exists instead of recomputing it.
``--robustbench-device auto|cpu|cuda``
    Where cells run (default ``auto``: CUDA when present).

Override the ``robustbench_registry`` fixture in a ``conftest.py`` to test plugins that
are not installed (``Registry(get_plugin_manager(extra_plugins=[("mine", my_module)]))``).
Nothing heavy is imported until a cell runs, so the plugin costs other test runs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from robustbench_us.plugins import Registry

DEFAULT_SUITE = "pytest-cells"


class CellMetrics(dict):
    """A finished cell's metrics (a plain ``dict`` of numbers, ``None`` where undefined), with its record."""

    def __init__(self, record: Mapping[str, Any], path: Path) -> None:
        super().__init__(record["metrics"])
        self.record = dict(record)
        self.cell_id: str = record["cell_id"]
        self.config: dict[str, Any] = record["config"]
        self.path = path


def cell_suite_data(*, dataset: str = "phantom", model: str = "resnet50-mtl", explainer: str = "gradcam",
                    attack: str = "fgsm", eps: float | None = None, eps_grey: float | None = None,
                    checkpoint: str | Path | None = None, sha256: str | None = None,
                    train: Mapping[str, Any] | None = None, input_size: int | None = None,
                    root: str | Path | None = None, dataset_options: Mapping[str, Any] | None = None,
                    model_options: Mapping[str, Any] | None = None,
                    explainer_options: Mapping[str, Any] | None = None,
                    attack_options: Mapping[str, Any] | None = None, region: str = "all", split_seed: int = 0,
                    part: str = "test", n_images: int = 16, batch_size: int = 16, seed: int = 0,
                    device: str = "auto", suite_name: str = DEFAULT_SUITE) -> dict[str, Any]:
    """The one-cell suite, as the TOML document ``robustbench-us run`` would read."""
    from robustbench_us.errors import SuiteError

    if (checkpoint is None) == (train is None):
        raise SuiteError(f"robustbench_cell(model={model!r}): give exactly one of checkpoint= (a .safetensors file) "
                         "or train= (training settings, e.g. {'epochs': 2}); an untrained model measures nothing.")
    if eps is not None and eps_grey is not None:
        raise SuiteError("robustbench_cell: give eps= (in [0, 1] units) or eps_grey= (grey levels), not both.")
    model_entry: dict[str, Any] = {"name": model, "options": dict(model_options or {})}
    if input_size is not None:
        model_entry["input_size"] = int(input_size)
    if checkpoint is not None:
        model_entry["checkpoint"] = str(checkpoint)
        if sha256 is not None:
            model_entry["sha256"] = sha256
    else:
        model_entry["train"] = dict(train or {})
    dataset_entry: dict[str, Any] = {"name": dataset, "options": dict(dataset_options or {}),
                                     "split_seed": split_seed, "part": part}
    if root is not None:
        dataset_entry["root"] = str(root)
    attack_entry: dict[str, Any] = {"name": attack, "options": dict(attack_options or {}), "region": region}
    if eps is not None:
        attack_entry["eps"] = float(eps)
    if eps_grey is not None:
        attack_entry["eps_grey"] = float(eps_grey)
    return {
        "suite": {"name": suite_name, "seed": seed, "n_images": n_images, "batch_size": batch_size,
                  "device": device},
        "datasets": [dataset_entry], "models": [model_entry],
        "explainers": [{"name": explainer, "options": dict(explainer_options or {})}],
        "attacks": [attack_entry],
    }


def run_cell(results_dir: str | Path, *, registry: Registry | None = None, reuse: bool = False,
             **cell: Any) -> CellMetrics:
    """Run one cell (keywords as :func:`cell_suite_data`) into ``results_dir``; return its metrics.

    A trained model is cached in ``results_dir`` and reused by every cell with the same
    dataset, model and training settings. The cell is recomputed unless ``reuse`` is true
    and a record of it exists. Raises :class:`~robustbench_us.errors.RobustBenchError` when
    the cell failed or its attack broke the contract (the record's error is in the message).
    """
    from robustbench_us.errors import RobustBenchError
    from robustbench_us.plugins import default_registry
    from robustbench_us.records import Status, read_record
    from robustbench_us.runner import expand_cells, run_suite
    from robustbench_us.store import ResultStore
    from robustbench_us.suite import parse_suite

    registry = registry or default_registry()
    data = cell_suite_data(**cell)
    shown = ", ".join(f"{k}={v!r}" for k, v in cell.items() if v is not None)
    suite = parse_suite(data, source=f"robustbench_cell({shown})", registry=registry)
    cells = expand_cells(suite, registry)
    if not cells:  # the grid drops pairs that cannot be measured
        explainer, model = data["explainers"][0]["name"], data["models"][0]["name"]
        raise RobustBenchError(f"robustbench_cell: explainer {explainer!r} needs a model with a segmentation head "
                               f"and model {model!r} has none; pick another explainer or a multi-task model.")
    (target,) = cells
    store = ResultStore(results_dir, suite.name)
    path = store.path_of(target.cell_id)
    if not reuse:
        path.unlink(missing_ok=True)  # records only: trained checkpoints stay cached
    run_suite(suite, results_dir, registry=registry, progress=False)
    record = read_record(path)
    if record["status"] != Status.OK:
        raise RobustBenchError(f"cell {target.cell_id} ended {record['status']}: {record.get('error')}")
    return CellMetrics(record, path)


# ------------------------------------------------------------------------------ pytest hooks and fixtures
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("robustbench-us", "robustbench-us benchmark cells (robustbench_cell fixture)")
    group.addoption("--robustbench-results", dest="robustbench_results", default=None, metavar="DIR",
                    help="keep cell records and trained checkpoints in DIR (default: a temporary folder)")
    group.addoption("--robustbench-reuse", dest="robustbench_reuse", action="store_true", default=None,
                    help="return a stored record when the cell already has one, instead of recomputing it")
    group.addoption("--robustbench-device", dest="robustbench_device", default=None,
                    help="device for cells: auto (default), cpu, cuda or cuda:N")
    parser.addini("robustbench_results", "folder for robustbench_cell records and trained checkpoints")
    parser.addini("robustbench_reuse", "reuse stored cell records (true/false)", type="bool", default=False)
    parser.addini("robustbench_device", "device for robustbench_cell: auto, cpu, cuda", default="auto")


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(name)
    return config.getini(name) if value is None else value


def pytest_report_header(config: pytest.Config) -> str | None:
    results = _option(config, "robustbench_results")
    return f"robustbench-us: cell results in {results}" if results else None


@pytest.fixture(scope="session")
def robustbench_registry() -> Registry:
    """The plugin registry cells are built from; override it in conftest.py to add uninstalled plugins."""
    from robustbench_us.plugins import default_registry

    return default_registry()


@pytest.fixture(scope="session")
def robustbench_results_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where cells keep records and trained checkpoints (``--robustbench-results``, else a temporary folder)."""
    configured = _option(request.config, "robustbench_results")
    if configured:
        path = Path(configured)
        if not path.is_absolute():
            path = Path(request.config.rootpath) / path
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("robustbench")


@pytest.fixture
def robustbench_cell(request: pytest.FixtureRequest, robustbench_registry: Registry,
                     robustbench_results_dir: Path) -> Callable[..., CellMetrics]:
    """Run one benchmark cell and return its metrics dict; the test fails with the cell's error if it did not finish.

    Keywords: ``dataset``, ``model``, ``explainer``, ``attack``, ``eps`` or ``eps_grey``,
    ``checkpoint`` (+ ``sha256``) or ``train``, ``input_size``, ``root``, ``n_images``,
    ``batch_size``, ``seed``, ``region``, ``part``, ``split_seed`` and ``*_options`` tables —
    the keys of a suite file (``robustbench-us`` docs/suites.md).
    """
    from robustbench_us.errors import RobustBenchError

    config = request.config
    defaults = {"device": _option(config, "robustbench_device") or "auto"}
    reuse = bool(_option(config, "robustbench_reuse"))

    def run(**cell: Any) -> CellMetrics:
        try:
            return run_cell(robustbench_results_dir, registry=robustbench_registry, reuse=reuse,
                            **(defaults | cell))
        except RobustBenchError as exc:
            message = f"robustbench_cell: {exc}"
        pytest.fail(message, pytrace=False)  # outside the except: no chained traceback

    return run
