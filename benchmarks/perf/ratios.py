"""Print every ratio of the performance issue from one run (and, on CUDA, the throughput targets).

    python benchmarks/perf/ratios.py                    # CPU: ResNet-18, 128×128, 32 images, 10 steps
    python benchmarks/perf/ratios.py --device cuda      # GPU: ResNet-50, 224×224, bf16 autocast, channels-last
    python benchmarks/perf/ratios.py --json out.json    # also write every time and ratio as JSON

All workloads share one model and one set of images and run back to back in a
rotating order, ``--rounds`` times; each ratio is the median of its within-round
ratios, so load from other processes on a shared machine affects both sides of a
ratio alike. Every time is taken on two clocks: the wall clock and this process's
CPU time. On a CPU the targets are judged on CPU time (other jobs sharing the cores
inflate the wall clock but not the work done; run with ``--threads 1`` so CPU time
is also the latency of an unshared core), on CUDA on the wall clock; ``--clock``
overrides. Absolute times are medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import Bench, describe, interleaved, ratio, settings_for, synchronize  # noqa: E402

# (name, numerator, denominator, target, kind): "max" means the ratio must be at most the target,
# "min" at least. The numerator and denominator are workloads of Bench.
RATIOS = [
    ("attack cell / bare fwd+bwd loop (same passes)", "cell", "bare", 1.10, "max"),
    ("ifgsm plugin / bare fwd+bwd loop (same passes)", "ifgsm", "bare", None, None),
    ("Grad-CAM batch / one fwd+bwd", "gradcam", "bare1", 1.2, "max"),
    ("ART BasicIterativeMethod / our ifgsm (speed-up)", "art-bim", "ifgsm", 1.3, "min"),
    ("pytorch-grad-cam / our gradcam (speed-up)", "pgc", "gradcam", 2.5, "min"),
    ("Captum LayerGradCam / our gradcam (speed-up)", "captum", "gradcam", None, None),
    ("whole cell (attack + measure) / bare loop (same passes)", "cell+measure", "bare+measure", None, None),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]; sets the defaults below")
    parser.add_argument("--arch", help="torchvision ResNet (cpu: resnet18, cuda: resnet50)")
    parser.add_argument("--size", type=int, help="image side in pixels (cpu: 128, cuda: 224)")
    parser.add_argument("--images", type=int, help="images attacked and explained (cpu: 32, cuda: 512)")
    parser.add_argument("--batch", type=int, help="batch size (cpu: 32, cuda: 256)")
    parser.add_argument("--steps", type=int, help="attack steps (cpu: 10, cuda: 25)")
    parser.add_argument("--amp", choices=("none", "bf16"), help="autocast (cpu: none, cuda: bf16)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels-last memory format (cpu: off, cuda: on)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model for every workload (default off)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, help="untimed rounds before them (cpu: 0 after one priming pass, "
                                                   "cuda: 1, which also pays cuDNN autotuning and compilation)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"),
                        help="which clock judges the targets (cpu: this process's CPU time, the default on a CPU, "
                             "where other jobs share the cores; wall: the default on CUDA); both are printed")
    parser.add_argument("--skip", default="", help="comma-separated workloads to leave out, e.g. captum")
    parser.add_argument("--json", type=Path, help="write settings, times and ratios here")
    return parser.parse_args(argv)


def count_host_syncs(bench: Bench) -> int | None:
    """Synchronising CUDA calls made by one run of our ifgsm (None off CUDA)."""
    if bench.device.type != "cuda":
        return None
    workload = bench.ifgsm()
    workload()
    synchronize(bench.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            workload()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = settings_for(args.device, arch=args.arch, size=args.size, images=args.images, batch=args.batch,
                            steps=args.steps, amp=args.amp, channels_last=args.channels_last, compile=args.compile)
    bench = Bench(settings)
    s = settings
    skip = {name for name in args.skip.split(",") if name}
    builders = {
        "bare": lambda: bench.bare(s.steps),
        "cell": bench.cell,
        "ifgsm": bench.ifgsm,
        "art-bim": bench.art_bim,
        "bare1": lambda: bench.bare(1),
        "gradcam": bench.gradcam,
        "pgc": bench.pgc,
        "captum": bench.captum,
        # measure = one no-grad forward of the adversarial images + one Grad-CAM (forward + backward) + metrics.
        "cell+measure": lambda: bench.cell(measure=True),
        "bare+measure": lambda: bench.bare(s.steps + 1, forward_only=1),
    }
    workloads = {name: build() for name, build in builders.items() if name not in skip}
    print(f"settings: {json.dumps(describe(s))}", flush=True)
    warmup = args.warmup if args.warmup is not None else int(bench.device.type == "cuda")
    prime = bench.bare(1)  # builds the forward/backward kernels for these shapes before any timing
    all_times = interleaved(workloads, bench.device, rounds=args.rounds, warmup=warmup, prime=prime)
    # On a CPU shared with other jobs, this process's CPU time measures its own work; on a GPU the wall clock.
    clock = args.clock or ("wall" if bench.device.type == "cuda" else "cpu")
    other = "wall" if clock == "cpu" else "cpu"
    times = all_times[clock]
    median = {name: statistics.median(t) for name, t in times.items()}

    rows: list[dict[str, Any]] = []
    print(f"\n{'workload':<14} {'median s':>10} {'min s':>10} {'median ' + other + ' s':>16}   (clock: {clock})")
    for name, t in times.items():
        print(f"{name:<14} {median[name]:>10.4f} {min(t):>10.4f} {statistics.median(all_times[other][name]):>16.4f}")
    print(f"\n{'ratio':<58} {clock:>7} {other:>7}  target ({clock})")
    for label, num, den, target, kind in RATIOS:
        if num not in times or den not in times:
            continue
        value, value_other = ratio(times, num, den), ratio(all_times[other], num, den)
        ok = None if target is None else (value <= target if kind == "max" else value >= target)
        verdict = "" if ok is None else f"{'≤' if kind == 'max' else '≥'} {target:g}  {'PASS' if ok else 'FAIL'}"
        print(f"{label:<58} {value:>7.3f} {value_other:>7.3f}  {verdict}")
        rows.append({"ratio": label, "numerator": num, "denominator": den, "value": value, "clock": clock,
                     f"value_{other}": value_other, "target": target, "kind": kind, "pass": ok})

    throughput: dict[str, Any] = {}
    if "ifgsm" in median:
        throughput["attack_image_steps_per_s"] = s.images * s.steps / median["ifgsm"]
    if "bare" in median:
        throughput["bare_image_passes_per_s"] = s.images * s.steps / median["bare"]
    if "gradcam" in median:
        throughput["gradcam_images_per_s"] = s.images / median["gradcam"]
    if bench.device.type == "cuda":
        throughput["host_syncs_in_ifgsm"] = count_host_syncs(bench)
        throughput["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(bench.device) / 2**30
    targets = {"attack_image_steps_per_s": 6000, "gradcam_images_per_s": 10000} if bench.device.type == "cuda" else {}
    print()
    for key, value in throughput.items():
        goal = targets.get(key)
        tail = f"  target ≥ {goal:,}  {'PASS' if value >= goal else 'FAIL'}" if goal else ""
        unit = f"  (per {clock} second)" if key.endswith("_per_s") else ""
        print(f"{key:<32} {value:>12,.1f}{tail}{unit}" if isinstance(value, float)
              else f"{key:<32} {value!s:>12}{tail}")
    for note in bench.notes:
        print(f"note: {note}")
    if args.json:
        args.json.write_text(json.dumps({"settings": describe(s), "clock": clock, "times": all_times,
                                         "median": median, "ratios": rows,
                                         "throughput": throughput, "notes": bench.notes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
