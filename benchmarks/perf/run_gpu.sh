#!/usr/bin/env bash
# Every GPU figure of docs/performance.md in one command, on one CUDA device:
#
#   benchmarks/perf/run_gpu.sh [OUT_DIR]        # default OUT_DIR: perf-gpu-<date>
#
# Writes ratios.json / ratios.log (our attack and Grad-CAM vs bare passes, ART and
# pytorch-grad-cam, images·steps/s, host syncs, peak memory), scaling.json / scaling.log,
# and nvidia-smi.txt naming the card. About 5 minutes on an H100.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-perf-gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
PY="${PYTHON:-.venv/bin/python}"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
# ResNet-50, 224×224, bf16 autocast, channels-last, 512 images in batches of 256, 25 steps.
"$PY" benchmarks/perf/ratios.py --device cuda --rounds 5 --json "$OUT/ratios.json" 2>&1 | tee "$OUT/ratios.log"
# The same with torch.compile for the attack (reported separately: compilation may or may not pay).
"$PY" benchmarks/perf/ratios.py --device cuda --rounds 5 --compile --skip pgc,captum,cell+measure,bare+measure \
    --json "$OUT/ratios_compile.json" 2>&1 | tee "$OUT/ratios_compile.log" || echo "compile run failed" >&2
# Cost through the real runner, 8× the CPU image counts (the runner runs float32; see docs/performance.md).
"$PY" benchmarks/perf/scaling.py --device cuda --scale 8 --json "$OUT/scaling.json" 2>&1 | tee "$OUT/scaling.log"
echo "results in $OUT"
