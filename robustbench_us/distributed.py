"""Sharding a suite's images across processes (``torchrun`` / ``torch.distributed``).

The runner evaluates every batch through a batch sizer; under torch.distributed it
uses :class:`ShardedBatchSizer` instead, which splits the images into the same
batches a single process would use, runs batch ``k`` on rank ``k mod world`` and
gathers the results onto every rank in the original order. Every rank therefore
sees the same tensors and takes the same path through the runner, but computes
only its share of the clean pass, the attacks and the adversarial pass. Because a
batch holds the same images (and draws from the same seed) as in one process,
the records match a single-process run's (identical on CPU). Only rank 0 takes
the results folder's lock and writes records.

Launch with ``torchrun --nproc_per_node N -m robustbench_us run <suite>``: the
runner joins the process group that torchrun describes in the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), with
NCCL on CUDA and gloo on CPU, and puts rank ``r`` on ``cuda:LOCAL_RANK``. Outside
torchrun (no process group, or a group of one) nothing here changes anything.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from robustbench_us.errors import RobustBenchError
from robustbench_us.faults import BatchSizer

T = TypeVar("T")


class DistributedError(RobustBenchError):
    """Another rank failed, or the process group could not be set up."""


def is_active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """The number of processes sharing the work (1 outside a process group)."""
    return dist.get_world_size() if is_active() else 1


def is_writer() -> bool:
    """Whether this process writes records: rank 0, or the only process."""
    return rank() == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); return this rank's device.

    An already initialised group is used as it is. ``cuda`` without an index becomes
    ``cuda:LOCAL_RANK`` (modulo the GPUs this process can see), so each process of a node gets its own GPU.
    """
    wanted = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if not dist.is_available() or (wanted <= 1 and not dist.is_initialized()):
        return device
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend)
        except (ValueError, RuntimeError) as exc:
            raise DistributedError(
                f"WORLD_SIZE={wanted} asks for {wanted} processes but joining the {backend} process group "
                f"failed: {exc}. Launch with torchrun (which sets RANK, MASTER_ADDR and MASTER_PORT), or unset "
                "WORLD_SIZE to run in one process.") from None
    if device.type == "cuda" and device.index is None:
        # Modulo the visible GPUs: under "srun --gpus-per-task 1" each task sees one GPU, whatever its LOCAL_RANK.
        local = int(os.environ.get("LOCAL_RANK", rank())) % max(1, torch.cuda.device_count())
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def provenance() -> dict[str, Any]:
    """What a record notes about the process group (nothing for a single process)."""
    return {"world_size": world_size()} if is_active() else {}


def batch_sizer(batch_size: int, device: torch.device) -> BatchSizer:
    """A :class:`ShardedBatchSizer` under torch.distributed, else the plain :class:`BatchSizer`."""
    return ShardedBatchSizer(batch_size, device) if is_active() else BatchSizer(batch_size)


def shard(items: list[T]) -> list[T]:
    """This rank's share of ``items``: every ``world``-th one, starting at its rank."""
    return items[rank()::world_size()]


def all_gather_list(items: list[T]) -> list[T]:
    """Every rank's ``items``, concatenated in rank order (``items`` itself in one process)."""
    if not is_active():
        return items
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]


def from_writer(value: T) -> T:
    """Rank 0's ``value`` on every rank (``value`` itself in one process)."""
    if not is_active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def writer_lock(lock: contextlib.AbstractContextManager[Any]) -> contextlib.AbstractContextManager[Any]:
    """``lock`` on rank 0, nothing on the others.

    The results folder's lock keeps separate runs apart; the ranks of one run must
    not queue on it, or rank 0 would wait in a collective for a rank that waits for
    rank 0's lock.
    """
    return lock if is_writer() else contextlib.nullcontext()


@contextlib.contextmanager
def writer_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the others (e.g. train once, the others load the checkpoint).

    If rank 0 fails, the other ranks raise :class:`DistributedError` instead of running the block.
    """
    if not is_active():
        yield
        return
    if is_writer():
        try:
            yield
        except BaseException as exc:
            from_writer(f"{type(exc).__name__}: {exc}")
            raise
        from_writer(None)
        return
    failure = from_writer(None)
    if failure is not None:
        raise DistributedError(f"rank 0 failed before rank {rank()} could start: {failure}")
    yield


def _exchange(status: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    statuses: list[Any] = [None] * world_size()
    dist.all_gather_object(statuses, status)
    return statuses


class ShardedBatchSizer(BatchSizer):
    """A :class:`BatchSizer` whose batches are spread over the ranks and gathered back in order.

    Batch ``k`` of ``[0, n)`` (``batch_size`` images each, as in one process) runs on
    rank ``k mod world``; every rank returns the whole ``torch.cat`` of all batches,
    on ``device``. Out of memory halves the batch size within a rank's batches only,
    so the split between ranks never changes. Every rank must call :meth:`run` the
    same number of times in the same order (the runner does: all ranks take the same
    path). If ``fn`` raises on one rank, it raises there and the other ranks raise
    :class:`DistributedError`, so no rank is left waiting.
    """

    def __init__(self, batch_size: int, device: torch.device) -> None:
        super().__init__(batch_size)
        self.plan_size = int(batch_size)
        self.device = torch.device(device)
        self.local = BatchSizer(batch_size)

    def plan(self, n: int) -> list[slice]:
        """The batches of ``[0, n)``, identical on every rank and to a single process's."""
        return [slice(start, min(n, start + self.plan_size)) for start in range(0, n, self.plan_size)]

    def run(self, fn: Callable[[slice], torch.Tensor], n: int) -> torch.Tensor:
        world, me = world_size(), rank()
        plan = self.plan(n)
        mine = [(k, s) for k, s in enumerate(plan) if k % world == me]
        parts: list[torch.Tensor] = []
        failure: BaseException | None = None
        try:
            for _, s in mine:
                parts.append(self.local.run(lambda t, s=s: fn(slice(s.start + t.start, s.start + t.stop)),
                                            s.stop - s.start))
        except Exception as exc:  # noqa: BLE001 - re-raised below once every rank knows
            failure = exc
        self.batch_size = self.local.batch_size
        rows = [len(p) for p in parts]
        meta = (tuple(parts[0].shape[1:]), parts[0].dtype) if parts and failure is None else None
        error = None if failure is None else f"{type(failure).__name__}: {failure}"
        statuses = _exchange((error, rows, meta))
        if failure is not None:
            raise failure
        failed = [(r, status[0]) for r, status in enumerate(statuses) if status[0] is not None]
        if failed:
            other, message = failed[0]
            raise DistributedError(f"rank {other} of {world} raised {message}")
        metas = [status[2] for status in statuses if status[2] is not None]
        if not metas:
            return torch.cat(parts)  # no batches anywhere: the same error as one process
        shape, dtype = metas[0]
        return self._gather(parts, [status[1] for status in statuses], shape, dtype, len(plan))

    def _gather(self, parts: list[torch.Tensor], rows: list[list[int]], shape: tuple[int, ...],
                dtype: torch.dtype, batches: int) -> torch.Tensor:
        world = world_size()
        # Gloo moves host memory; NCCL moves device memory.
        wire = torch.device("cpu") if dist.get_backend() == "gloo" else self.device
        carried = torch.uint8 if dtype == torch.bool else dtype
        longest = max(sum(r) for r in rows)
        buffer = torch.zeros((longest, *shape), dtype=carried, device=wire)
        if parts:
            local = torch.cat(parts).to(device=wire, dtype=carried)
            buffer[:len(local)] = local
        received = [torch.empty_like(buffer) for _ in range(world)]
        dist.all_gather(received, buffer)
        cursor, out = [0] * world, []
        for k in range(batches):
            owner, index = k % world, k // world
            size = rows[owner][index]
            out.append(received[owner][cursor[owner]:cursor[owner] + size])
            cursor[owner] += size
        return torch.cat(out).to(device=self.device, dtype=dtype)
