#!/usr/bin/env bash
# Reproduce the published leaderboard: the study (Rasaee & Rivaz, IUS 2021) on BUSI,
# carried to BUS-BRA. Every number under leaderboards/ comes from these commands.
#
#   benchmarks/scripts/reproduce_paper.sh                 # full scale: 224×224, 80 epochs, 3 seeds (GPU)
#   benchmarks/scripts/reproduce_paper.sh --scale cpu     # the stated reduced CPU run
#   benchmarks/scripts/reproduce_paper.sh --deadline 3600 # stop cleanly after an hour; rerun to go on
#
# Options (environment):
#   ROBUSTBENCH_US_DATA  folder holding busi/ and busbra/ as downloaded (docs/datasets.md); needed by every
#                        step but publish, unless ROBUSTBENCH_US_DATA_PACKS is set
#   ROBUSTBENCH_US_DATA_PACKS  read the datasets from packs instead (robustbench-us data pack; docs/datasets.md):
#                        how to carry the data to a GPU machine or cluster node that lacks the files
#   SEEDS                training seeds (default "0 1 2"; seed 0 is the one the suites evaluate)
#   STEPS                which steps to run, any of: train pretrain suites publish joint control
#                        (default: the first four). `pretrain` runs the paper-busbra-native suite, whose
#                        BUS-BRA-trained model (official folds 2–5) is then fine-tuned on BUSI per seed.
#                        `joint` trains resnet50-mtl on BUSI + BUS-BRA folds 2–5 at once, per seed
#                        (model cards only: another step toward the accuracy target).
#                        `control` trains resnet50-mtl on BUSI alone with 4× the epochs and patience:
#                        as many optimiser steps as `joint` (BUSI + BUS-BRA folds 2–5 is 3.9× BUSI's
#                        training images), so what joint training gains beyond more steps is visible.
#   MODELS               which BUSI models the train step trains (default: all three,
#                        "resnet50 resnet50-mtl timm:convnext_atto"); e.g. MODELS=resnet50-mtl SEEDS="1 2"
#                        STEPS=train trains only those cards
#   SUITES               which suites the suites step runs (default: all six, "paper paper-seeds paper-maps
#                        paper-busbra paper-busbra-native paper-busbrapre"); the pretrain step runs paper-busbra-native
#                        regardless, since it trains the model that is fine-tuned
#   JOBS                 trainings / suites run at once (default 1; 3–4 fill one large GPU)
#   AMP                  1: train BUSI models with mixed precision (CUDA; default 1 at full scale)
#   EPOCHS               cap every BUSI training at this many epochs (a quick trial; the cards record it)
#   REPLACE_CARDS        1: publish a retrained card even where published records were measured with the
#                        weights of the card it replaces (by default that card is kept, and the script says so)
#   RB                   the command (default .venv/bin/robustbench-us, else robustbench-us)
#   DEADLINE             seconds (or --deadline SECONDS): then every running job gets SIGTERM, as a scheduler's
#                        time limit would send it, nothing more starts, and the script exits 124
#   GRACE                seconds a stopped job may take to finish its last write before SIGKILL (default 60)
#
# Re-running is cheap: existing checkpoints are kept (delete checkpoints/paper/ to retrain)
# and the runner skips finished cells. Logs: results/logs/<step>.log.
# Stopping: SIGTERM or Ctrl-C to this script, or its DEADLINE, sends SIGTERM to every job it started
# (robustbench-us then keeps every finished cell, and a training its last resume state), starts
# nothing more and exits (130 for a signal, 124 for the deadline). Run the same command again to go on.
set -euo pipefail

scale=""
deadline="${DEADLINE:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scale) scale="$2"; shift 2 ;;
    --scale=*) scale="${1#--scale=}"; shift ;;
    --deadline)
      (( $# > 1 )) || { echo "reproduce_paper.sh: --deadline needs a number of seconds, e.g. --deadline 3600" >&2; exit 2; }
      deadline="$2"; shift 2 ;;
    --deadline=*) deadline="${1#--deadline=}"; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {print}' "$0"; exit 0 ;;
    *) echo "reproduce_paper.sh: unknown argument $1 (use --scale cpu, --deadline SECONDS or nothing)" >&2; exit 2 ;;
  esac
done
GRACE="${GRACE:-60}"
for value in "${deadline:-1}" "$GRACE"; do
  if ! [[ "$value" =~ ^[0-9]+$ ]] || (( 10#$value < 1 )); then
    echo "reproduce_paper.sh: '$value' is not a number of seconds for DEADLINE (--deadline) or GRACE;" \
      "give a whole number above 0, e.g. --deadline 3600" >&2
    exit 2
  fi
done

cd "$(dirname "$0")/../.."
RB="${RB:-$( [[ -x .venv/bin/robustbench-us ]] && echo .venv/bin/robustbench-us || echo robustbench-us )}"
SEEDS="${SEEDS:-0 1 2}"
STEPS="${STEPS:-train pretrain suites publish}"
JOBS="${JOBS:-1}"
if [[ -z "${ROBUSTBENCH_US_DATA:-}${ROBUSTBENCH_US_DATA_PACKS:-}" && "$STEPS" != publish ]]; then
  echo "reproduce_paper.sh: no data. Set ROBUSTBENCH_US_DATA to the folder holding busi/ and busbra/, or" \
    "ROBUSTBENCH_US_DATA_PACKS to a folder of packs (robustbench-us data pack; docs/datasets.md)." >&2
  exit 2
fi

# Training recipe per scale. Full scale is the project's defaults (the study's recipe:
# Adam, cross-entropy + Dice/BCE for the mask head, flips/±5°/10 % shifts after splitting).
if [[ -z "$scale" ]]; then
  size=224; train_args=(--epochs 80 --patience 10 --lr 1e-4 --batch-size 32); convnext_args=()
  [[ "${AMP:-1}" == 1 ]] && train_args+=(--amp)
  scale_flag=(); suffix=""
elif [[ "$scale" == cpu ]]; then
  # Must match [scales.cpu] of robustbench_us/suites/paper*.toml (input_size = 64).
  size=64; train_args=(--epochs 6 --patience 3 --lr 1e-3 --batch-size 32 --device cpu --no-progress)
  # ConvNeXt-atto is ~15× cheaper than ResNet-50; with 6 epochs its best validation loss was
  # the all-benign epoch 2 (test sensitivity 0), so at this scale it trains for up to 20.
  convnext_args=(--epochs 20 --patience 8)
  scale_flag=(--scale cpu); suffix="-cpu"
else
  echo "reproduce_paper.sh: unknown scale '$scale' (defined: cpu)" >&2; exit 2
fi

[[ -n "${EPOCHS:-}" ]] && convnext_args+=(--epochs "$EPOCHS") && train_args+=(--epochs "$EPOCHS")
ckpt=checkpoints/paper
cards="leaderboards/models/paper${suffix}"
logs=results/logs
mkdir -p "$ckpt" "$cards" "$logs"
slug() { echo "${1#timm:}"; }
contains() { local word="$1"; shift; [[ " $* " == *" $word "* ]]; }  # contains WORD LIST...
has() { contains "$1" $STEPS; }
only_from() {  # only_from VAR WHAT ALLOWED...: exit 2 unless every word of $VAR is one of ALLOWED
  local var="$1" what="$2" name
  shift 2
  for name in ${!var:-}; do
    contains "$name" "$@" || { echo "reproduce_paper.sh: $var names '$name'; $what: $*" >&2; exit 2; }
  done
}
all_models=(resnet50 resnet50-mtl timm:convnext_atto)
all_suites=(paper paper-seeds paper-maps paper-busbra paper-busbra-native paper-busbrapre)
only_from MODELS "the suites evaluate only" "${all_models[@]}"
only_from SUITES "the suites are" "${all_suites[@]}"
read -ra models <<< "${MODELS:-${all_models[*]}}"
read -ra run_suites <<< "${SUITES:-${all_suites[*]}}"
(( ${#models[@]} )) || { echo "reproduce_paper.sh: MODELS is empty; name at least one of: ${all_models[*]}" >&2; exit 2; }

# Jobs run JOBS at a time, in the order started; each logs to results/logs/<name>.log.
# `await NAME...` waits for those jobs; `finish` waits for all and fails naming the failed ones.
# Each job is a process group of its own (set -m while it starts), so stopping one reaches every
# process it started.
failed=() stopped=() not_started=()
stopping="" stop_status=0
declare -A pid_of=()
start() {  # start NAME CMD...
  local name="$1"; shift
  while (( $(jobs -rp | wc -l) >= JOBS )) && [[ -z "$stopping" ]]; do wait -n || true; done
  if [[ -n "$stopping" ]]; then
    echo "[$(date +%T)] not started: $name (stopped by $stopping)"; not_started+=("$name"); return 0
  fi
  echo "[$(date +%T)] start $name"
  set -m
  (
    set +m
    job_stopped=0
    trap 'job_stopped=1' TERM INT
    if "$@" > "$logs/$name.log" 2>&1; then rc=0; else rc=$?; fi
    if (( job_stopped )); then echo "[$(date +%T)] stopped $name (exit $rc; see $logs/$name.log)"; exit 124; fi
    if (( rc == 0 )); then echo "[$(date +%T)] done  $name"; exit 0; fi
    echo "[$(date +%T)] FAILED $name (see $logs/$name.log)"; tail -5 "$logs/$name.log"; exit 1
  ) &
  pid_of[$name]=$!
  set +m
}
rb() {  # rb ARGS...: the robustbench-us command, unless this job has been told to stop
  if (( ${job_stopped:-0} )); then return 124; fi
  "$RB" "$@"
}
await() {
  local name pid rc
  for name in "$@"; do
    pid="${pid_of[$name]:-}"
    [[ -n "$pid" ]] || continue
    while :; do
      rc=0
      wait "$pid" || rc=$?
      # A trapped signal (the deadline, TERM, Ctrl-C) ends `wait` early while the job still runs.
      if (( rc > 128 )) && kill -0 "$pid" 2> /dev/null; then continue; fi
      break
    done
    if (( rc == 124 )) || { [[ -n "$stopping" ]] && (( rc != 0 )); }; then
      stopped+=("$name")
    elif (( rc != 0 )); then
      failed+=("$name")
    fi
    unset "pid_of[$name]"
  done
}
stop_jobs() {  # stop_jobs REASON STATUS: SIGTERM to every running job, SIGKILL to any still running after GRACE s
  [[ -z "$stopping" ]] || return 0
  stopping="$1" stop_status="$2"
  echo "[$(date +%T)] $stopping: stopping every job; what they finished is kept"
  local pid waited=0
  for pid in "${pid_of[@]}"; do kill -TERM -- "-$pid" 2> /dev/null || true; done
  while [[ -n "$(jobs -rp)" ]] && (( waited < GRACE )); do sleep 1; waited=$((waited + 1)); done
  if [[ -n "$(jobs -rp)" ]]; then
    echo "[$(date +%T)] still running after GRACE=${GRACE}s: killed"
    for pid in "${pid_of[@]}"; do kill -KILL -- "-$pid" 2> /dev/null || true; done
  fi
}
stop_exit() {  # after a stop: say what did not finish and exit with its status
  [[ -n "$stopping" ]] || return 0
  echo "reproduce_paper.sh: stopped by $stopping; unfinished: ${stopped[*]:-none}; not started:" \
    "${not_started[*]:-none}. Finished cells, checkpoints and training progress are kept:" \
    "run the same command again to go on (logs in $logs/)." >&2
  exit "$stop_status"
}
finish() {
  await "${!pid_of[@]}"
  if (( ${#failed[@]} )); then
    echo "reproduce_paper.sh: failed: ${failed[*]} (logs in $logs/)" >&2; exit 1
  fi
  stop_exit
}
trap 'stop_jobs "a TERM signal" 130' TERM
trap 'stop_jobs "an interrupt" 130' INT
if [[ -n "$deadline" ]]; then
  trap 'stop_jobs "the deadline (${deadline} s)" 124' USR1
  set -m
  ( set +m; sleep "$deadline"; kill -USR1 "$$" 2> /dev/null ) &
  watchdog=$!
  set +m
  disown "$watchdog"
  trap 'kill -- "-$watchdog" 2> /dev/null || true' EXIT
fi

publish_cards() {  # publish_cards "FOLDER..." CARD...: copy the cards trained at this scale's size into $cards
  # A published card is not replaced by another model's card while a record under FOLDER/*/records/
  # was measured with its weights (a retrained seed 0 beside the published records); REPLACE_CARDS=1
  # replaces it anyway.
  python3 - "$size" "$cards" "${REPLACE_CARDS:-0}" "$@" <<'PY'
import glob, json, shutil, sys
from pathlib import Path

size, cards, replace = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
folders, new = sys.argv[4].split(), sys.argv[5:]
measured = {}
for folder in folders:
    for path in glob.glob(f"{folder}/*/records/*.json"):
        try:
            sha = (json.loads(Path(path).read_text()).get("provenance") or {}).get("checkpoint_sha256")
        except (OSError, ValueError):
            continue
        if sha:
            measured[sha] = measured.get(sha, 0) + 1
for card in map(Path, new):
    if not card.is_file():
        continue
    info = json.loads(card.read_text())
    if int(info.get("input_size") or 0) != int(size):
        print(f"not published here (trained at another size): {card}")
        continue
    target = cards / card.name
    old = json.loads(target.read_text()).get("sha256") if target.is_file() else None
    if old and old != info.get("sha256") and measured.get(old) and not replace:
        print(f"kept the published {target} ({measured[old]} records were measured with its weights, sha256 "
              f"{old[:12]}…); {card} (sha256 {str(info.get('sha256'))[:12]}…) is not published. REPLACE_CARDS=1 "
              "replaces it, once those records are measured again with the new weights.")
        continue
    shutil.copyfile(card, target)
PY
}
train_busi() {  # train_busi MODEL SEED
  local model="$1" seed="$2" out="$ckpt/busi-$(slug "$1")-s$2" extra=()
  [[ "$model" == timm:convnext* ]] && extra=("${convnext_args[@]}")
  rb -v train "$model" --dataset busi --image-size "$size" "${train_args[@]}" "${extra[@]}" \
    --seed "$seed" --split-seed 0 --out "$out" --no-progress
}
await_trainings() {  # await_trainings SEED...: wait for the BUSI trainings of these seeds (named as train_jobs does)
  local seed model
  for seed in "$@"; do for model in "${all_models[@]}"; do await "train-$(slug "$model")-s$seed"; done; done
}
train_jobs() {  # train_jobs SEED...: start the BUSI trainings of these seeds that have no checkpoint yet
  local seed model
  for seed in "$@"; do
    for model in "${models[@]}"; do
      if [[ -f "$ckpt/busi-$(slug "$model")-s$seed.safetensors" ]]; then
        echo "keep $ckpt/busi-$(slug "$model")-s$seed.safetensors"
      else
        start "train-$(slug "$model")-s$seed" train_busi "$model" "$seed"
      fi
    done
  done
}
suite_job() { start "suite-$1$suffix" rb run "$1" "${scale_flag[@]}" --no-progress; }
suite_step() {  # suite_step SUITE: the suites step's job for SUITE, unless SUITES leaves it out
  if contains "$1" "${run_suites[@]}"; then suite_job "$1"; else echo "skip suite $1 (not in SUITES)"; fi
}

# Toward the AUC ≥ 0.93 target with public ultrasound only (no ImageNet weights): the
# paper-busbra-native suite trains resnet50-mtl on BUS-BRA's official folds 2–5 (fold 1, its
# test fold, stays unseen) and evaluates it; that model is then fine-tuned on BUSI per seed.
finetune() {  # finetune SEED (after paper-busbra-native has trained its model)
  local pre out="$ckpt/busi-resnet50-mtl-busbrapre-s$1"
  pre=$(ls results/paper-busbra-native${suffix}/checkpoints/busbra__resnet50-mtl_${size}-*.safetensors | head -1)
  cp "${pre%.safetensors}.json" "$cards/busbra-f2345-resnet50-mtl-s0.json"
  rb -v train resnet50-mtl --dataset busi --init-from "$pre" --image-size "$size" "${train_args[@]}" \
    --seed "$1" --split-seed 0 --out "$out" --no-progress
}

# A checkpoint trained at another scale must not be evaluated silently at this one.
for card in "$ckpt"/busi-*-s0.json; do
  [[ -f "$card" ]] || continue
  python3 - "$card" "$size" <<'PY'
import json, sys
card, size = json.load(open(sys.argv[1])), int(sys.argv[2])
got = card.get("input_size") or card.get("image_size")
if got is not None and int(got) != size:
    sys.exit(f"{sys.argv[1]} was trained at {got} px but this scale evaluates at {size} px; "
             "retrain (delete it and rerun with this --scale) or pick the matching --scale.")
PY
done

seeds=($SEEDS)
first="${seeds[0]}"
# 1. Seed-0 models (the suites evaluate them) and the BUS-BRA model, side by side.
has train && train_jobs "$first"
has pretrain && suite_job paper-busbra-native
await_trainings "$first"
# 2. The suites on the seed-0 models; meanwhile the other seeds and the BUSI fine-tunes.
if has suites; then suite_step paper; suite_step paper-busbra; suite_step paper-maps; fi
if has train; then train_jobs "${seeds[@]:1}"; fi
if has pretrain; then
  await "suite-paper-busbra-native$suffix"
  for seed in $SEEDS; do
    if [[ -f "$ckpt/busi-resnet50-mtl-busbrapre-s$seed.safetensors" ]]; then
      echo "keep $ckpt/busi-resnet50-mtl-busbrapre-s$seed.safetensors"
    else
      start "finetune-resnet50-mtl-busbrapre-s$seed" finetune "$seed"
    fi
  done
  await "finetune-resnet50-mtl-busbrapre-s$first"
  if has suites; then suite_step paper-busbrapre; fi
elif has suites; then
  suite_step paper-busbra-native
fi
# 3. Seeds 1 and 2 under the study's attacks (paper-seeds names their checkpoints).
if has suites; then
  await_trainings 1 2
  suite_step paper-seeds
fi
finish

# Joint training on BUSI and BUS-BRA's official folds 2–5 (fold 1 held out), per seed.
if has joint; then
  for seed in $SEEDS; do
    out="$ckpt/busi+busbra-resnet50-mtl-s$seed"
    if [[ -f "$out.safetensors" ]]; then echo "keep $out.safetensors"; continue; fi
    start "joint-resnet50-mtl-s$seed" rb -v train resnet50-mtl --dataset busi --dataset busbra \
      --dataset-option busbra:split=official-5fold --dataset-option busbra:fold=1 --image-size "$size" \
      "${train_args[@]}" --seed "$seed" --split-seed 0 --out "$out" --no-progress
  done
  finish
  publish_cards "results leaderboards/site/suites" "$ckpt"/busi+busbra-*.json
fi

# The control for `joint`: BUSI alone, 4× the epochs and the patience (the same number of
# optimiser steps, and of steps without improvement before stopping).
if has control; then
  long_args=()
  for ((i = 0; i < ${#train_args[@]}; i++)); do
    arg="${train_args[i]}"; long_args+=("$arg")
    if [[ "$arg" == --epochs || "$arg" == --patience ]]; then long_args+=("$(( ${train_args[i + 1]} * 4 ))"); ((++i)); fi
  done
  for seed in $SEEDS; do
    out="$ckpt/busi-resnet50-mtl-long-s$seed"
    if [[ -f "$out.safetensors" ]]; then echo "keep $out.safetensors"; continue; fi
    start "control-resnet50-mtl-long-s$seed" rb -v train resnet50-mtl --dataset busi --image-size "$size" \
      "${long_args[@]}" --seed "$seed" --split-seed 0 --out "$out" --no-progress
  done
  finish
fi

# Model cards (sha256, recipe, val/test metrics) are published; the weights stay local.
stop_exit
publish_cards "results leaderboards/site/suites" "$ckpt"/busi-*.json

stop_exit
if has publish; then
  # Suites published earlier whose records this checkout's results/ lacks (a fresh clone, a GPU run
  # that brought back only new suites): republish the site's own records. Their figures are kept
  # from the site for every unchanged record (leaderboard publish checks each record's integrity).
  for suite in "${all_suites[@]}"; do
    site_records="leaderboards/site/suites/$suite$suffix/records" records="results/$suite$suffix/records"
    if compgen -G "$site_records/*.json" > /dev/null && ! compgen -G "$records/*.json" > /dev/null; then
      mkdir -p "$records" && cp "$site_records"/*.json "$records/"
      echo "took the $(ls "$site_records" | wc -l) published records of $suite$suffix from $site_records"
    fi
  done
  # results/ now holds exactly the records about to be published: a card whose old weights none of
  # them was measured with gives way to the newly trained one (a full rerun on a new machine).
  publish_cards "results" "$ckpt"/busi-*.json
  # Tables and site for the suites that have records; one not run yet gets no empty table.
  ran=()
  for suite in "${all_suites[@]}"; do
    if compgen -G "results/$suite$suffix/records/*.json" > /dev/null; then
      ran+=("$suite")
      "$RB" leaderboard "$suite" "${scale_flag[@]}"
    else
      echo "no records of $suite$suffix yet: no table, not on the site"
    fi
  done
  (( ${#ran[@]} )) || { echo "reproduce_paper.sh: nothing to publish: no suite has records under results/" >&2; exit 1; }
  "$RB" leaderboard publish "${ran[@]/%/$suffix}" --figure-format webp \
    --title "robustbench_us: the study reproduced on BUSI, carried to BUS-BRA (${suffix:+reduced CPU scale}${suffix:-full scale, 224 px})"
  PYBIN="$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python )"
  "$PYBIN" benchmarks/scripts/summarize_paper.py ${scale:+--scale "$scale"}
fi
