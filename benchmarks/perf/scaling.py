"""How the cost of a whole suite grows with images, attack steps and cells — and whether memory stays flat.

    python benchmarks/perf/scaling.py                  # CPU: ResNet-18, 128×128 (the issue's CPU settings)
    python benchmarks/perf/scaling.py --device cuda    # GPU: ResNet-50, 224×224
    python benchmarks/perf/scaling.py --json out.json

Each point is one ``run_suite`` of a fresh results folder through the real runner,
on random images and an untrained torchvision ResNet (loaded from a checkpoint, so
nothing trains): the wall time, the runner's own timings from the records, and the
process's resident memory (and CUDA memory) after every record written. Times are
given on the wall clock and as this process's CPU time (on a CPU shared with other
jobs, the CPU time counts only this run's work). A least-squares line through each
sweep gives the fixed cost and the cost per unit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import BenchNet, describe, settings_for  # noqa: E402

from robustbench_us import DatasetSpec, ModelSpec, hookimpl  # noqa: E402
from robustbench_us.checkpoints import save_checkpoint  # noqa: E402
from robustbench_us.plugins import Registry, get_plugin_manager  # noqa: E402
from robustbench_us.protocols import Sample, Split  # noqa: E402
from robustbench_us.runner import run_suite  # noqa: E402
from robustbench_us.splits import grouped_stratified_split  # noqa: E402
from robustbench_us.store import ResultStore  # noqa: E402
from robustbench_us.suite import parse_suite  # noqa: E402


class NoiseImages:
    """Seeded uniform-noise images with alternating labels: cost depends on the shapes only."""

    classes = ("benign", "malignant")

    def __init__(self, count: int, image_size: int, seed: int) -> None:
        self.count, self.size, self.seed = count, image_size, seed
        self.labels = [i % 2 for i in range(count)]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Sample:
        g = torch.Generator().manual_seed(self.seed * 100_000 + i)
        return Sample(image=torch.rand(3, self.size, self.size, generator=g), label=self.labels[i], id=f"noise-{i}",
                      group=f"noise-{i}")

    def manifest_hash(self) -> str:
        return hashlib.sha256(f"noise:{self.count}:{self.size}:{self.seed}".encode()).hexdigest()

    def split(self, seed: int, fractions=(0.1, 0.1, 0.8)) -> Split:
        return grouped_stratified_split(self.labels, [f"g{i}" for i in range(self.count)], seed, fractions)


class ScalingPlugins:
    """A noise dataset and the benchmark ResNets as plugins, so the real runner can run them."""

    @hookimpl
    def register_datasets(self, register):
        register(DatasetSpec(name="perf-noise", factory=lambda *, root=None, image_size=128, seed=0, count=64:
                             NoiseImages(count, image_size, seed), description="seeded noise images"))

    @hookimpl
    def register_models(self, register):
        for arch in ("resnet18", "resnet50"):
            register(ModelSpec(name=f"perf-{arch}", factory=lambda *, input_size=128, arch=arch: BenchNet(arch),
                               input_size=128, description=f"torchvision {arch}, 2 classes, untrained"))


def resident_mib() -> float:
    """This process's resident set size in MiB (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemoryLog:
    """Samples memory every time the store writes a record (wraps ``ResultStore.write`` for this script)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples = device, []
        original = ResultStore.write

        def write(store: ResultStore, record: Any) -> Path:
            path = original(store, record)
            cuda = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None
            self.samples.append({"rss_mib": resident_mib(), "cuda_mib": cuda})
            return path

        ResultStore.write = write  # type: ignore[method-assign]


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b·x``: (fixed cost, cost per unit)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mx, b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--size", type=int, help="image side (cpu: 128, cuda: 224)")
    parser.add_argument("--arch", help="resnet18 or resnet50 (cpu: resnet18, cuda: resnet50)")
    parser.add_argument("--scale", type=int, default=1, help="multiply every image count by this (e.g. 8 on a GPU)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, help="write every point here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    s = settings_for(args.device, size=args.size, arch=args.arch)
    device = torch.device(s.device)
    k = args.scale
    root = Path(tempfile.mkdtemp(prefix="robustbench-us-scaling-"))
    checkpoint = root / f"perf-{s.arch}"
    torch.manual_seed(0)
    save_checkpoint(BenchNet(s.arch), checkpoint, {"architecture": f"perf-{s.arch}", "input_size": s.size})
    registry = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "gradcam,cams,iterative"},
                                           extra_plugins=[("perf", ScalingPlugins())]))
    memory = MemoryLog(device)
    print(f"settings: {json.dumps(describe(s))}", flush=True)

    def point(sweep: str, images: int, steps: int, eps_count: int, explainers: int, *,
              figures: bool = True) -> dict[str, Any]:
        name = f"{sweep}-{images}-{steps}-{eps_count}-{explainers}"
        suite = parse_suite({
            "suite": {"name": name, "seed": 0, "n_images": images, "batch_size": min(images, s.batch),
                      "device": s.device, "figures": figures},
            "datasets": [{"name": "perf-noise", "options": {"count": 2 * images}, "part": "test"}],
            "models": [{"name": f"perf-{s.arch}", "input_size": s.size, "checkpoint": f"{checkpoint}.safetensors"}],
            "explainers": [{"name": n} for n in ("gradcam", "gradcam++")[:explainers]],
            "attacks": [{"name": "ifgsm", "eps_grey": [1 + i for i in range(eps_count)], "options": {"steps": steps}}],
        }, registry=registry)
        first = len(memory.samples)
        start, cpu_start = time.perf_counter(), time.process_time()
        summary = run_suite(suite, root / "results", registry=registry, progress=False)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        assert summary.ok and not summary.invalid, summary
        records = ResultStore(root / "results", name).read_all()
        attack_s = sum(r["timing"]["attack_seconds"] for r in records) / explainers  # shared by the explainers
        row = {"sweep": sweep, "images": images, "steps": steps, "eps_values": eps_count, "explainers": explainers,
               "figures": figures, "cells": len(records), "wall_s": wall, "cpu_s": cpu,
               "clean_pass_s": records[0]["timing"]["clean_pass_seconds"], "attack_s": attack_s,
               "memory": memory.samples[first:]}
        rss = [m["rss_mib"] for m in row["memory"]]
        print(f"{sweep:<8} images={images:<4} steps={steps:<3} eps={eps_count:<2} explainers={explainers} "
              f"figures={'on ' if figures else 'off'} "
              f"cells={row['cells']:<3} wall={wall:8.2f} s  cpu={cpu:8.2f} s  clean={row['clean_pass_s']:7.2f} s  "
              f"attack={row['attack_s']:8.2f} s  rss={min(rss):.0f}..{max(rss):.0f} MiB", flush=True)
        return row

    rows = []
    point("warmup", 4 * k, 1, 1, 1)  # builds the kernels for these shapes; not reported
    rows += [point("images", n * k, 10, 1, 1) for n in (8, 16, 32)]
    rows += [point("steps", 16 * k, steps, 1, 1) for steps in (1, 5, 10, 20)]
    # Cells: more ε values (each one attack), with one explainer, then two (sharing each attack).
    rows += [point(f"cells-e{x}", 16 * k, 5, e, x) for x in (1, 2) for e in (1, 2, 4, 8)]
    # The same 8 cells without the per-cell figures (suite option figures = false).
    rows.append(point("no-figs", 16 * k, 5, 8, 1, figures=False))

    print("\nleast-squares fits (fixed cost + cost per unit):")
    fits = {}
    for sweep, unit, key in (("images", "image", "images"), ("steps", "step", "steps"),
                             ("cells-e1", "cell", "cells"), ("cells-e2", "cell", "cells")):
        pts = [r for r in rows if r["sweep"] == sweep]
        fits[sweep] = {}
        for clock in ("wall", "cpu"):
            a, b = fit_line([r[key] for r in pts], [r[f"{clock}_s"] for r in pts])
            fits[sweep][clock] = {"fixed_s": a, f"per_{unit}_s": b}
            print(f"  {sweep:<8} {clock:<4} time vs {key:<6}: {a:7.2f} s + {b:7.3f} s per {unit}")
    long_run = [m["rss_mib"] for r in rows if r["sweep"].startswith("cells") for m in r["memory"]]
    if long_run:
        print(f"\nresident memory over the {len(long_run)} cells of the cell sweep: first {long_run[0]:.0f} MiB, "
              f"max {max(long_run):.0f} MiB, last {long_run[-1]:.0f} MiB")
    with_figs = next(r for r in rows if r["sweep"] == "cells-e1" and r["eps_values"] == 8)
    without = next(r for r in rows if r["sweep"] == "no-figs")
    figures_per_cell = {clock: (with_figs[f"{clock}_s"] - without[f"{clock}_s"]) / with_figs["cells"]
                        for clock in ("wall", "cpu")}
    print(f"per-cell figures (suite option figures): {figures_per_cell['wall']:.2f} s wall, "
          f"{figures_per_cell['cpu']:.2f} s cpu per cell")
    if args.json:
        args.json.write_text(json.dumps({"settings": describe(s), "rows": rows, "fits": fits,
                                         "figures_s_per_cell": figures_per_cell}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
