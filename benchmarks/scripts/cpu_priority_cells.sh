#!/usr/bin/env bash
# The reduced CPU run as it was actually done: the paper suites' cells at --scale cpu, most
# informative first, in parallel lanes (one per model; the runner locks per dataset × model).
# Each lane is a sequence of `run_cells.py` calls; whatever finishes is a record identical to
# what `robustbench-us run <suite> --scale cpu` writes, and a later `run` skips it.
#
#   benchmarks/scripts/cpu_priority_cells.sh            # start every lane in the background
#   LANES="paper-resnet50 maps-resnet50" benchmarks/scripts/cpu_priority_cells.sh
#
# Logs: results/logs/cpu-<lane>.log. Needs the checkpoints of reproduce_paper.sh --scale cpu (STEPS=train).
set -uo pipefail
cd "$(dirname "$0")/../.."
export ROBUSTBENCH_US_DATA="${ROBUSTBENCH_US_DATA:-../shared/data}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1   # many lanes at one thread each share a loaded machine better
PY="${PY:-.venv/bin/python}"
cells() {  # retried: a shared working tree can be mid-edit for a moment (an import error)
  local try
  for try in 1 2 3; do
    nice -n 5 "$PY" benchmarks/scripts/run_cells.py "$@" --scale cpu && return 0
    sleep 20
  done
  return 1
}

lane_paper() {  # label attacks: the study's budget first, then the sweep outward
  local model=$1
  for eps in 1 4 8 2 0.5; do
    cells paper --model "$model" --attack ifgsm --attack random-sign --attack fgsm --attack pgd --eps-grey "$eps"
  done
}

lane_maps() {  # explanation attacks at Ghorbani et al.'s 8/255, Grad-CAM (the study's explainer) first
  local model=$1; shift
  local explainers=("$@")
  for explainer in "${explainers[@]}"; do
    for attack in mass-center topk target-map; do
      cells paper-maps --model "$model" --explainer "$explainer" --attack "$attack" --eps-grey 8
    done
  done
  for explainer in "${explainers[@]}"; do
    cells paper-maps --model "$model" --explainer "$explainer" --eps-grey 1
  done
}

lane_busbra() {  # the BUSI checkpoints on BUS-BRA, no retraining
  for eps in 1 4; do
    for model in resnet50 resnet50-mtl timm:convnext_atto; do
      cells paper-busbra --model "$model" --attack ifgsm --attack random-sign --eps-grey "$eps"
    done
  done
}

lane_busbra_native() {  # trains resnet50-mtl on BUS-BRA folds 2–5 (cached by the runner), then attacks it
  for eps in 1 4; do
    cells paper-busbra-native --attack ifgsm --attack random-sign --eps-grey "$eps"
  done
}

declare -A LANE=(
  [paper-resnet50]="lane_paper resnet50" [paper-resnet50-mtl]="lane_paper resnet50-mtl"
  [paper-convnext]="lane_paper timm:convnext_atto"
  [maps-resnet50]="lane_maps resnet50 gradcam saliency gradcam++"
  [maps-resnet50-mtl]="lane_maps resnet50-mtl gradcam segmentation saliency gradcam++"
  [maps-convnext]="lane_maps timm:convnext_atto gradcam saliency gradcam++"
  [busbra]="lane_busbra" [busbra-native]="lane_busbra_native"
)
LANES="${LANES:-paper-resnet50 paper-resnet50-mtl maps-resnet50 maps-resnet50-mtl busbra paper-convnext busbra-native maps-convnext}"
mkdir -p results/logs
for lane in $LANES; do
  [[ -n "${LANE[$lane]:-}" ]] || { echo "unknown lane $lane (known: ${!LANE[*]})" >&2; exit 2; }
  nohup bash -c "$(declare -f cells lane_paper lane_maps lane_busbra lane_busbra_native); PY=$PY; ${LANE[$lane]}" \
    > "results/logs/cpu-$lane.log" 2>&1 &
  echo "lane $lane: pid $! (results/logs/cpu-$lane.log)"
done
