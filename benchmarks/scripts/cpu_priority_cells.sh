#!/usr/bin/env bash
# The reduced CPU grid (`--scale cpu`) in parallel lanes, most informative cells first: on a
# machine too slow for a whole suite in one sitting, the cells that answer the study's questions
# are measured first. One lane per model and suite (the runner locks per dataset × model); each
# lane is a sequence of `run_cells.py` calls, and every finished cell is the record
# `robustbench-us run <suite> --scale cpu` would write, so a later `run` skips it.
#
#   benchmarks/scripts/cpu_priority_cells.sh            # start every lane in the background
#   LANES="paper-resnet50 maps-resnet50" benchmarks/scripts/cpu_priority_cells.sh
#
# Needs ROBUSTBENCH_US_DATA (or ROBUSTBENCH_US_DATA_PACKS) and the checkpoints of
# `STEPS=train benchmarks/scripts/reproduce_paper.sh --scale cpu`. Logs: results/logs/cpu-<lane>.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${ROBUSTBENCH_US_DATA:-}${ROBUSTBENCH_US_DATA_PACKS:-}" ]]; then
  echo "cpu_priority_cells.sh: no data. Set ROBUSTBENCH_US_DATA to the folder holding busi/ and busbra/," \
    "or ROBUSTBENCH_US_DATA_PACKS to a folder of packs." >&2
  exit 2
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1   # many lanes at one thread each share the cores better
PY="${PY:-.venv/bin/python}"
cells() { nice -n 5 "$PY" benchmarks/scripts/run_cells.py "$@" --scale cpu; }

lane_paper() {  # label attacks: the study's budget first, then the sweep outward
  local model=$1
  for eps in 1 4 8 2; do
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
