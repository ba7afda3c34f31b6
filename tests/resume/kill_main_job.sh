#!/usr/bin/env bash
# kill -9 of the quick main job, then resume: the finished model equals an unbroken run's
# bit for bit, and log.jsonl holds every step exactly once, with no torn line.
#
#   kill_main_job.sh RETRIEVAL_BINARY WORK_DIR --data DIR --model DIR
#
# The interrupted run is killed three times, each time with SIGKILL (no handler runs):
#   1. in the middle of writing its 2nd checkpoint (CONTACCUM_CRASH_AT, a hook that raises
#      SIGKILL at a named point: here after the 2nd file of the 2nd checkpoint);
#   2. after a checkpoint's files are written, just before its folder is renamed into place;
#   3. at a random moment after the first checkpoint of that process appeared;
# and each rerun (a plain rerun, then --resume) continues from the latest checkpoint.
set -euo pipefail
bin="$1"
work="$2"
shift 2
inputs=("$@")
steps=6
# small evaluation sets: what is checked here is the run's state, not its metrics
job=(--quick --steps "$steps" --save-every 2 --eval-every 4 --eval-queries 10 --eval-corpus 60 "${inputs[@]}")

rm -rf "$work"
mkdir -p "$work"
say() { echo "[kill_main_job] $*"; }

say "reference: $steps steps in one process"
"$bin" "${job[@]}" --out "$work/ref" > "$work/ref.txt" 2>&1 || { cat "$work/ref.txt"; exit 1; }

run="$work/run"
expect_killed() {  # runs the job; it must die of SIGKILL
  set +e
  "$@" > "$work/last.txt" 2>&1
  local rc=$?
  set -e
  if [ "$rc" -ne 137 ]; then
    cat "$work/last.txt"
    say "expected the job to be killed (status 137), got $rc"
    exit 1
  fi
}
latest() { cat "$run/checkpoints/latest" 2> /dev/null || echo none; }

say "1: killed while writing its 2nd checkpoint"
expect_killed env CONTACCUM_CRASH_AT=checkpoint_file:5 "$bin" "${job[@]}" --out "$run"
say "   latest: $(latest)"
[ "$(latest)" = checkpoint-000002 ] || { say "latest should be checkpoint-000002"; exit 1; }

say "2: rerun, killed just before its first checkpoint is renamed into place"
expect_killed env CONTACCUM_CRASH_AT=checkpoint_rename:1 "$bin" "${job[@]}" --out "$run"
say "   latest: $(latest)"
grep -q "continuing from the latest checkpoint" "$work/last.txt" || { cat "$work/last.txt"; exit 1; }

say "3: rerun, killed at a random moment after its first checkpoint"
before="$(latest)"
"$bin" "${job[@]}" --out "$run" > "$work/last.txt" 2>&1 &
pid=$!
for _ in $(seq 1 600); do  # up to 60 s for a new checkpoint
  [ "$(latest)" != "$before" ] && break
  kill -0 "$pid" 2> /dev/null || break
  sleep 0.1
done
sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
kill -9 "$pid" 2> /dev/null || true
wait "$pid" || true
say "   latest: $(latest)"

say "4: --resume to the end"
"$bin" "${job[@]}" --out "$run" --resume > "$work/last.txt" 2>&1 || { cat "$work/last.txt"; exit 1; }
grep -q "resumed from" "$work/last.txt" || { cat "$work/last.txt"; exit 1; }

say "the models"
cmp "$work/ref/model/model.safetensors" "$run/model/model.safetensors"
say "   identical: $(stat -c %s "$run/model/model.safetensors") bytes"

say "the log"
python3 - "$run/log.jsonl" "$steps" << 'EOF'
import json, sys
path, steps = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    data = f.read()
assert data.endswith(b"\n"), "the last line is torn"
seen = []
for n, line in enumerate(data.split(b"\n")[:-1], 1):
    record = json.loads(line)  # a torn line fails here
    if record["event"] == "step":
        seen.append(record["step"])
assert seen == list(range(steps)), f"steps in the log: {seen}"
print(f"[kill_main_job]    every step once: {seen}")
EOF
cmp <(grep -o '"loss":[^,]*' "$work/ref/log.jsonl") <(grep -o '"loss":[^,]*' "$run/log.jsonl")
say "   losses identical to the unbroken run's"
say "ok"
