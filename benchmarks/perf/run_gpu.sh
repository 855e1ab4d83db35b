#!/usr/bin/env bash
# Every GPU figure of docs/performance.md in one command, on any machine with one CUDA GPU:
#
#   benchmarks/perf/run_gpu.sh [RESULTS_DIR]        # default RESULTS_DIR: perf-gpu-<date>
#
# Writes ratios.json / ratios.log (our attack and Grad-CAM vs bare passes, ART and
# pytorch-grad-cam, images·steps/s, host syncs, peak memory), scaling.json / scaling.log,
# and nvidia-smi.txt naming the card. About 5 minutes on a data-centre GPU (A100/H100 class).
# PYTHON: the interpreter with robustbench-us and its test extras (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/../.."
dest="${1:-perf-gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$dest"
PY="${PYTHON:-.venv/bin/python}"
nvidia-smi > "$dest/nvidia-smi.txt" 2>&1 || true
# ResNet-50, 224×224, bf16 autocast, channels-last, 512 images in batches of 256, 25 steps.
"$PY" benchmarks/perf/ratios.py --device cuda --rounds 5 --json "$dest/ratios.json" 2>&1 | tee "$dest/ratios.log"
# The same with torch.compile for the attack (reported separately: compilation may or may not pay).
"$PY" benchmarks/perf/ratios.py --device cuda --rounds 5 --compile --skip pgc,captum,cell+measure,bare+measure \
    --json "$dest/ratios_compile.json" 2>&1 | tee "$dest/ratios_compile.log" || echo "compile run failed" >&2
# Cost through the real runner, 8× the CPU image counts (the runner runs float32; see docs/performance.md).
"$PY" benchmarks/perf/scaling.py --device cuda --scale 8 --json "$dest/scaling.json" 2>&1 | tee "$dest/scaling.log"
echo "results in $dest"
