#!/usr/bin/env bash
# Finish the full-scale leaderboard on a lent GPU, in one command of at most 10 minutes (run it
# again on the same warm machine to go on). What the first GPU run left undone, at once:
#   1. STEPS="pretrain suites" SUITES=paper-busbrapre: resnet50-mtl trained on BUS-BRA's official
#      folds 2-5 inside the paper-busbra-native suite (and its 8 cells), fine-tuned on BUSI per
#      seed, then the paper-busbrapre suite (80 cells);
#   2. MODELS=resnet50-mtl SEEDS="1 2" STEPS=train: the multi-task model's seed-1 and seed-2 cards.
# Everything is stopped (SIGTERM: records already written stay) after DEADLINE seconds; a second
# run on the same machine resumes the trainings and skips finished cells. Then whatever exists is
# packed for the trip back: $OUT/finish.tar.gz.partNN (15 MiB parts; no weights). Until then,
# $OUT/snapshot.tar.gz holds the records, cards and logs of a minute ago.
#
#   benchmarks/scripts/gpu_finish.sh [DEADLINE]       # seconds, default 540
#
# Environment:
#   PACKS   the datasets as packs (default .device/packs): benchmarks/scripts/gpu_prepare.sh makes
#           them where the files are and cuts them into carry folders .device/carry1, 2, ...
#           (one per call); this script joins those parts first
#   WHEELS  wheels of what the GPU image lacks and the project's own (default .device/whl, from
#           gpu_prepare.sh), installed into /tmp/rb-site; the checkout's code is what runs
#   OUT     where the log and the parts go (default ./out; on the lent machine, its $OUT)
#   RB      the robustbench-us command (default: python3 -m robustbench_us with the above)
# Back where the checkout lives: cat finish.tar.gz.part* | tar xzf - ; then
# STEPS=publish benchmarks/scripts/reproduce_paper.sh (tables, site, summary).
set -uo pipefail

cd "$(dirname "$0")/../.."
deadline="${1:-540}"
out="${OUT:-out}"
packs="${PACKS:-.device/packs}"
wheels="${WHEELS:-.device/whl}"
mkdir -p "$out"
say() { echo "== $(date +%T) $*"; }

# gpu_prepare.sh cut the packs and wheels into parts, one per call's carry folder: join them.
if ! compgen -G "$packs/*.rbpack" > /dev/null && compgen -G ".device/carry*/part-*" > /dev/null; then
  mapfile -t parts < <(for p in .device/carry*/part-*; do echo "${p##*/} $p"; done | sort | cut -d' ' -f2)
  say "joining ${#parts[@]} carried part(s) into .device/"
  cat "${parts[@]}" | tar xf - -C .device || { echo "gpu_finish.sh: the carried parts do not join: ${parts[*]}" >&2; exit 2; }
fi
if ! compgen -G "$packs/*.rbpack" > /dev/null; then
  echo "gpu_finish.sh: no dataset packs in $packs; make them where the data is (see the header of $0)" >&2
  exit 2
fi
if [[ -z "${RB:-}" ]]; then
  # The wheels go to a folder of their own; the checkout's code runs first on the path, the
  # project's wheel lends it the plugins' entry points (what worked on the first lease).
  if ! compgen -G "$wheels/robustbench_us-*.whl" > /dev/null; then
    echo "gpu_finish.sh: no robustbench_us wheel in $wheels; run benchmarks/scripts/gpu_prepare.sh" >&2; exit 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/rb-site "$wheels"/*.whl \
    || exit 2
  export PYTHONPATH="$PWD:$PWD/plugins:/tmp/rb-site${PYTHONPATH:+:$PYTHONPATH}"
  printf '#!/bin/sh\nexec python3 -m robustbench_us "$@"\n' > /tmp/rb-site/rb && chmod +x /tmp/rb-site/rb
  RB=/tmp/rb-site/rb
  "$RB" plugins > /dev/null || { echo "gpu_finish.sh: robustbench-us does not start here (see above)" >&2; exit 2; }
fi
export RB ROBUSTBENCH_US_DATA_PACKS="$packs"
say "start; deadline ${deadline}s; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"

# Each in its own process group, so that the deadline stops every job it started.
setsid env STEPS="pretrain suites" SUITES=paper-busbrapre JOBS="${JOBS:-4}" \
  benchmarks/scripts/reproduce_paper.sh > "$out/pretrain.log" 2>&1 &
pretrain=$!
setsid env MODELS=resnet50-mtl SEEDS="1 2" STEPS=train JOBS=2 \
  benchmarks/scripts/reproduce_paper.sh > "$out/cards.log" 2>&1 &
cards=$!

# What comes back: everything these jobs write but weights and resume states.
pack() {  # pack TAR-OPTION...: a gzipped tar of the outputs that exist so far, to standard output
  local paths=() path
  for path in results/logs results/paper-busbra-native results/paper-busbrapre checkpoints/paper/*.json \
      leaderboards/models/paper; do
    [[ -e "$path" ]] && paths+=("$path")
  done
  (( ${#paths[@]} )) || return 1
  tar czf - --exclude='*.safetensors' --exclude='*.resume.pt' --exclude='*.tmp' "$@" "${paths[@]}"
}
# Every minute, the small part (records, cards, logs; no figures) in one file, in case the
# command is killed before the end: $OUT/snapshot.tar.gz.
snapshot() {
  if pack --exclude='*/figures' > "$out/snapshot.tar.gz.tmp" 2> /dev/null; then
    mv "$out/snapshot.tar.gz.tmp" "$out/snapshot.tar.gz"
  else
    rm -f "$out/snapshot.tar.gz.tmp"
  fi
}
stopped=0 last=$SECONDS
while kill -0 "$pretrain" 2> /dev/null || kill -0 "$cards" 2> /dev/null; do
  if (( SECONDS >= deadline )); then
    say "deadline: stopping (run this again on the same machine to go on)"
    kill -TERM -- "-$pretrain" "-$cards" 2> /dev/null
    for _ in $(seq 30); do
      kill -0 "$pretrain" 2> /dev/null || kill -0 "$cards" 2> /dev/null || break
      sleep 1
    done
    kill -KILL -- "-$pretrain" "-$cards" 2> /dev/null
    stopped=1
    break
  fi
  if (( SECONDS - last >= ${SNAPSHOT_EVERY:-60} )); then
    last=$SECONDS
    say "records: $(find results -path '*/records/*.json' 2> /dev/null | wc -l); cards: $(ls checkpoints/paper/*.json 2> /dev/null | wc -l)"
    snapshot
  fi
  sleep 2
done
wait "$pretrain"; rc_pretrain=$?
wait "$cards"; rc_cards=$?
say "pretrain+busbrapre rc=$rc_pretrain, cards rc=$rc_cards (logs: $out/pretrain.log, $out/cards.log, results/logs/)"

# Everything, in parts small enough to come back.
shopt -s nullglob
rm -f "$out"/finish.tar.gz.part*
pack | split -b 15m -d - "$out/finish.tar.gz.part"
parts=("$out"/finish.tar.gz.part*)
say "packed ${#parts[@]} part(s): $(du -ch "${parts[@]}" | tail -1 | cut -f1) in all"
rm -f "$out/snapshot.tar.gz"  # the parts hold everything it held
(( ${#parts[@]} <= 6 )) || echo "gpu_finish.sh: ${#parts[@]} parts; at most 8 files come back from a lent machine" >&2
(( stopped )) && exit 124
(( rc_pretrain == 0 && rc_cards == 0 ))
