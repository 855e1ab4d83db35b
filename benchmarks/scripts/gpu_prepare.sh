#!/usr/bin/env bash
# Prepare, where the dataset files are, what benchmarks/scripts/gpu_finish.sh needs on a lent GPU:
# the datasets as packs at 224 px, the wheels the GPU image lacks and the project's own wheel (its
# plugins' entry points), cut into carry folders that
# each fit beside the working tree in one call's 64 MiB (the packs alone are about 65 MiB).
#
#   benchmarks/scripts/gpu_prepare.sh
#
# Writes .device/packs/, .device/whl/ and .device/carry1/, .device/carry2/, ... (git-ignored), then
# prints the calls: one per carry folder on the same warm machine, the last one running
# gpu_finish.sh (which joins the parts first).
# Environment: ROBUSTBENCH_US_DATA (default ../shared/data), RB (the command), BUDGET_MB (room per
# call beside the tree; default 64 MiB less the tracked files, less 2 MiB).
set -euo pipefail

cd "$(dirname "$0")/../.."
export ROBUSTBENCH_US_DATA="${ROBUSTBENCH_US_DATA:-../shared/data}"
RB="${RB:-$( [[ -x .venv/bin/robustbench-us ]] && echo .venv/bin/robustbench-us || echo robustbench-us )}"
dev=.device
mkdir -p "$dev/packs" "$dev/whl"

compgen -G "$dev/packs/busi-224px-*.rbpack" > /dev/null || "$RB" data pack busi --image-size 224 --out "$dev/packs"
compgen -G "$dev/packs/busbra-224px-*.rbpack" > /dev/null || "$RB" data pack busbra --image-size 224 \
  --option split=official-5fold --option fold=1 --out "$dev/packs"
if ! compgen -G "$dev/whl/jsonschema-*.whl" > /dev/null; then
  # Record validation needs jsonschema, which the GPU image (Python 3.12) lacks.
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dev/whl" jsonschema jsonschema-specifications referencing rpds-py
fi
# The project's own wheel, for its entry points (the plugins); the checkout's code runs (PYTHONPATH).
# Built again when pyproject.toml (which lists the entry points) changed since.
own=$(ls "$dev"/whl/robustbench_us-*.whl 2> /dev/null | head -1)
if [[ -z "$own" || pyproject.toml -nt "$own" ]]; then
  rm -f "$dev"/whl/robustbench_us-*.whl
  "$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )" -m pip wheel -q --no-deps -w "$dev/whl" . \
    > /dev/null
fi

if [[ -n "${BUDGET_MB:-}" ]]; then
  budget=$(( BUDGET_MB * 1024 * 1024 ))
else
  tree=$(git ls-files -z 2> /dev/null | du -cb --files0-from=- 2> /dev/null | tail -1 | cut -f1)
  budget=$(( 64 * 1024 * 1024 - ${tree:-0} - 2 * 1024 * 1024 ))
fi
(( budget >= 1024 * 1024 )) || { echo "gpu_prepare.sh: the tracked files leave no room to carry data" >&2; exit 2; }
rm -rf "$dev"/carry* "$dev/parts"
mkdir -p "$dev/parts"
tar cf - -C "$dev" packs whl | split -b "$budget" -d -a 2 - "$dev/parts/part-"
n=0
for part in "$dev"/parts/part-*; do
  n=$((n + 1))
  mkdir -p "$dev/carry$n"
  mv "$part" "$dev/carry$n/"
done
rmdir "$dev/parts"
echo "carry folders: $n ($(( budget / 1024 / 1024 )) MiB at most each)"
for ((i = 1; i <= n; i++)); do
  if (( i < n )); then
    echo "  call $i: carry [\"$dev/carry$i\"], command: true"
  else
    echo "  call $i: carry [\"$dev/carry$i\"], command: OUT=\$OUT benchmarks/scripts/gpu_finish.sh 540"
  fi
done
echo "each call within 30 s of the last, so the machine stays warm and keeps what earlier calls carried"
