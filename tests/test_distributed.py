"""Sharding a suite over two gloo processes gives the records one process gives."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from robustbench_us import distributed
from robustbench_us.faults import BatchSizer
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.runner import run_suite
from robustbench_us.store import ResultStore
from robustbench_us.suite import parse_suite
from tests.fakes import toy

ENV = {"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm,iterative"}
WORLD = 2
DEADLINE_S = 300


def toy_registry() -> Registry:
    return Registry(get_plugin_manager(environ=ENV, extra_plugins=[("toy", toy)]))


def toy_suite(registry: Registry):
    # 10 images in batches of 4: rank 0 gets batches [0:4] and [8:10], rank 1 gets [4:8] (uneven shares).
    return parse_suite({
        "suite": {"name": "dist", "seed": 3, "n_images": 10, "batch_size": 4},
        "datasets": [{"name": "toy-squares", "options": {"count": 60}}],
        "models": [{"name": "tiny-cnn", "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "augment": False}}],
        "explainers": [{"name": "gradcam"}],
        "attacks": [{"name": "fgsm", "eps": [0.0, 8 / 255]},
                    {"name": "pgd", "eps": 4 / 255, "options": {"steps": 3}},  # random start: seeds must line up
                    {"name": "raising", "eps": 0.01}, {"name": "over-budget", "eps": 0.01}],
    }, registry=registry)


def _edge_cases() -> dict[str, object]:
    """The sharded sizer's corners, run on every rank: a rank without batches, and one rank failing."""
    sizer = distributed.ShardedBatchSizer(4, torch.device("cpu"))
    out: dict[str, object] = {}
    # 3 rows: one batch, owned by rank 0; rank 1 computes nothing but still gets the rows.
    ones = sizer.run(lambda s: torch.arange(s.start, s.stop).float().view(-1, 1) * torch.ones(1, 2), 3)
    out["one_batch"] = ones.tolist()
    flags = sizer.run(lambda s: torch.arange(s.start, s.stop) % 2 == 0, 6)
    out["bool"] = [str(flags.dtype), flags.tolist()]

    def fail_on_rank_1(s: slice) -> torch.Tensor:
        if distributed.rank() == 1:
            raise ValueError("only rank 1 breaks")
        return torch.zeros(s.stop - s.start)

    try:
        sizer.run(fail_on_rank_1, 8)
    except Exception as exc:  # noqa: BLE001 - recorded for the parent to check
        out["failure"] = f"{type(exc).__name__}: {exc}"
    return out


def _worker(rank: int, port: int, results: str, report: str) -> None:
    # As under torchrun: the launcher hosts the rendezvous store and every rank joins it as a client.
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCHELASTIC_USE_AGENT_STORE": "True"})
    torch.set_num_threads(1)
    registry = toy_registry()
    summary = run_suite(toy_suite(registry), results, registry=registry, progress=False)
    info = {"rank": distributed.rank(), "world": distributed.world_size(), "written": [str(p) for p in summary.written],
            "failed": summary.failed, "invalid": summary.invalid} | _edge_cases()
    Path(report, f"rank{rank}.json").write_text(json.dumps(info))
    torch.distributed.destroy_process_group()


def _launcher_store() -> torch.distributed.TCPStore:
    """The rendezvous store, listening on a port the OS picks and holds until the store is dropped.

    Finding a free port, closing it and letting rank 0 bind it again leaves a gap in which another
    process can take the port (the gloo run then aborts); a store bound here has no such gap.
    """
    return torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                                      timeout=timedelta(seconds=DEADLINE_S))


def _spawn(results: Path, report: Path) -> None:
    store = _launcher_store()
    context = mp.start_processes(_worker, args=(store.port, str(results), str(report)), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD} gloo workers did not finish in {DEADLINE_S} s (a collective deadlocked?)")
    del store  # held until every worker has finished


def _records(results: Path) -> dict[str, dict]:
    return {r["cell_id"]: r for r in ResultStore(results, "dist").read_all()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict, list[dict]]:
    single_dir = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers run one thread each; the same kernels give the same bits
    try:
        registry = toy_registry()
        run_suite(toy_suite(registry), single_dir, registry=registry, progress=False)
    finally:
        torch.set_num_threads(threads)
    dist_dir, report = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("report")
    _spawn(dist_dir, report)
    reports = [json.loads((report / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return _records(single_dir), _records(dist_dir), reports


def test_two_gloo_processes_write_the_records_of_one(runs):
    single, sharded, _ = runs
    assert sorted(sharded) == sorted(single) and len(single) == 5
    for cell_id, record in single.items():
        other = sharded[cell_id]
        assert other["status"] == record["status"], cell_id
        assert other["config"] == record["config"], cell_id
        assert other["metrics"] == record["metrics"], cell_id  # exact: same batches, same seeds, same kernels
        assert (other["error"] or "").splitlines()[:1] == (record["error"] or "").splitlines()[:1], cell_id
        assert other["provenance"]["world_size"] == WORLD and "world_size" not in record["provenance"]
        # Rank 0 trained, rank 1 loaded its checkpoint; the weights equal the single process's.
        # (Not checkpoint_sha256: safetensors writes its metadata in a random order, so the digest varies.)
        mine, theirs = (load_file(r["provenance"]["checkpoint"]) for r in (record, other))
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    statuses = sorted(r["status"] for r in single.values())
    assert statuses == ["failed", "invalid", "ok", "ok", "ok"]
    pgd = next(r for r in single.values() if r["config"]["attack"] == "pgd")
    assert pgd["metrics"]["linf"] > 0  # the random start really ran, and matched across processes


def test_rank_zero_writes_and_every_rank_agrees(runs):
    _, sharded, reports = runs
    assert [r["rank"] for r in reports] == [0, 1] and {r["world"] for r in reports} == {WORLD}
    assert reports[0]["written"] == reports[1]["written"] and len(reports[0]["written"]) == len(sharded)
    assert reports[0]["failed"] == reports[1]["failed"] and len(reports[0]["failed"]) == 1
    assert reports[0]["invalid"] == reports[1]["invalid"] and len(reports[0]["invalid"]) == 1


def test_sharded_batches_gather_in_order_and_failures_reach_every_rank(runs):
    _, _, reports = runs
    for report in reports:
        assert report["one_batch"] == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]
        assert report["bool"] == ["torch.bool", [True, False, True, False, True, False]]
    assert reports[1]["failure"] == "ValueError: only rank 1 breaks"
    assert reports[0]["failure"] == "DistributedError: rank 1 of 2 raised ValueError: only rank 1 breaks"


def test_no_other_process_can_take_the_rendezvous_port_before_the_workers_join():
    # The race of the old free-port probe: between probing and rank 0's bind, anyone could bind the port.
    store = _launcher_store()
    with socket.socket() as other, pytest.raises(OSError) as taken:
        other.bind(("127.0.0.1", store.port))
    assert taken.value.errno == errno.EADDRINUSE
    assert store.port > 0


def test_a_single_process_is_left_alone(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    device = torch.device("cpu")
    assert distributed.init_from_env(device) == device
    assert not distributed.is_active() and distributed.rank() == 0 and distributed.is_writer()
    assert type(distributed.batch_sizer(4, device)) is BatchSizer
    assert distributed.provenance() == {}
    assert distributed.shard([1, 2, 3]) == [1, 2, 3]
    assert distributed.all_gather_list(["a"]) == ["a"] and distributed.from_writer(7) == 7
    with distributed.writer_first():
        pass


def test_world_size_without_torchrun_is_a_clear_error(monkeypatch):
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(distributed.DistributedError, match="Launch with torchrun"):
        distributed.init_from_env(torch.device("cpu"))
