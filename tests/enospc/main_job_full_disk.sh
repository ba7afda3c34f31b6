#!/usr/bin/env bash
# The quick main job on a full disk (tests/enospc/full_disk.c preloaded): first with no room
# at all under the output folder, then once per kind of file the job writes, with the disk
# filling exactly when that file is written. Each time the job must fail with ENOSPC and the
# file named, exit non-zero and leave no metrics.json (the mark of a finished run), no empty
# file and no temporary file behind. A plot that cannot be written is not a failed run (the
# plots are optional: gnuplot may be absent) but must not be left half drawn.
#
#   main_job_full_disk.sh SHIM RETRIEVAL_BINARY WORK_DIR --data DIR --model DIR
set -euo pipefail
shim="$1"
bin="$2"
work="$3"
shift 3
inputs=("$@")
say() { echo "[main_job_full_disk] $*"; }
rm -rf "$work"
mkdir -p "$work"

# One file per way the job writes (the other files go through the same code): the step log,
# the TensorBoard events, a checkpoint file (synced, in a folder renamed into place), the
# `latest` pointer (replaced atomically, as results.md and the plot data are), the exported
# weights, the exported tokenizer (copied), metrics.json (written last), a plot (gnuplot).
targets=("" log.jsonl tfevents optimizer.safetensors latest .tmp-model/model.safetensors
         .tmp-model/tokenizer.json metrics.json training.png)
i=0
for target in "${targets[@]}"; do
  i=$((i + 1))
  out="$work/out-$i"
  run="$work/run-$i.txt"
  say "${target:-every file}: the disk is full when it is written"
  set +e
  env LD_PRELOAD="$shim" CONTACCUM_TEST_FULL_DISK="$out" CONTACCUM_TEST_FULL_DISK_AFTER=0 \
    CONTACCUM_TEST_FULL_DISK_MATCH="$target" \
    "$bin" --quick --steps 1 --save-every 1 --eval-every 1 --eval-queries 5 --eval-corpus 20 --fresh \
    --out "$out" "${inputs[@]}" > "$run" 2>&1
  rc=$?
  set -e
  grep -E "error|not drawn" "$run" | tail -n 2 | sed 's/^/    /' || true
  empty="$(find "$out" -type f -size 0 | grep -v '/log.jsonl$' || true)"
  [ -z "$empty" ] || { say "empty files left: $empty"; exit 1; }
  partial="$(find "$out" -name '*.tmp-*' -o -name '.tmp-*' || true)"
  [ -z "$partial" ] || { say "temporary files left: $partial"; exit 1; }
  if [ "$target" = training.png ]; then
    [ "$rc" -eq 0 ] || { say "a plot that cannot be drawn failed the run"; exit 1; }
    grep -q "training.png was not drawn whole" "$run" || { say "the half-drawn plot was not reported"; exit 1; }
    [ ! -e "$out/training.png" ] || { say "a half-drawn training.png was left"; exit 1; }
    continue
  fi
  [ "$rc" -ne 0 ] || { say "the job exited 0 on a full disk"; exit 1; }
  grep -q "No space left on device" "$run" || { say "the error does not name ENOSPC"; exit 1; }
  grep -q "$out/[^ ]*${target}" "$run" || { say "the error does not name the file under $out"; exit 1; }
  [ ! -e "$out/metrics.json" ] || { say "metrics.json written: the run looks finished"; exit 1; }
done
say "ok"
