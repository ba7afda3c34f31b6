#!/usr/bin/env bash
# Runs the benchmarks and writes their results into docs/ (tables and PNG plots).
#   bash scripts/bench.sh [--quick]   (--plots-only: redraw the plots from docs/benchmarks.md)
#   bash scripts/bench.sh --text      tokenizer and embedding throughput -> docs/benchmarks_text.md
#   bash scripts/bench.sh --driver    ContAccum over GradCache, token budgets -> out/bench_driver.md (docs/benchmarks.md)
#   bash scripts/bench.sh --checkpoint checkpoint write/load vs step time -> out/bench_checkpoint.md (docs/checkpoints.md)
#   bash scripts/bench.sh --memory    predicted vs measured step memory, per method and per strategy ->
#                                     out/bench_memory.md, out/bench_memory_strategies.md (docs/budgets.md)
#   bash scripts/bench.sh --faiss     FAISS vs exact search -> out/bench_faiss.md (docs/search.md)
#   bash scripts/bench.sh --dist      the quick main job on 1 vs 2 processes -> out/bench_dist.md (docs/distributed.md)
#   bash scripts/bench.sh --train     training step vs sentence-transformers, fp32 and bf16 -> out/bench_train.md
#                                     (docs/benchmarks_train.md); --train-quick: fewer steps and rounds
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
py="$here/.venv/bin/python"

# --text: tokenizers and embedding throughput vs HF tokenizers / sentence-transformers.
if [ "${1:-}" = "--text" ]; then
  bash scripts/build.sh --target bench_text
  run=out/bench_text
  rm -rf "$run" && mkdir -p "$run" docs/img
  "$py" tests/reference/tokenizer_reference.py lines data/debian/Translation-en "$run/lines.txt" 12000
  "$py" tests/reference/tokenizer_reference.py train-bpe "$run/lines.txt" "$run/bpe"
  "$py" tests/reference/tokenizer_reference.py train-unigram "$run/lines.txt" "$run/unigram"
  args=("$run/lines.txt" models/all-MiniLM-L6-v2 "$run/bpe/tokenizer.json" 1000 3 2 "$run/unigram/tokenizer.json")
  for i in 1 2 3; do
    echo "[bench] text run $i/3: contaccum"
    ./build/benchmarks/bench_text "${args[@]}" >> "$run/ours.jsonl"
    echo "[bench] text run $i/3: reference"
    "$py" benchmarks/text_reference.py "${args[@]}" 2>/dev/null >> "$run/theirs.jsonl"
  done
  "$py" benchmarks/text_report.py "$run" docs/benchmarks_text.md docs/img/text_throughput.dat
  gnuplot benchmarks/text.gp
  echo "wrote docs/benchmarks_text.md, docs/img/text_throughput.png"
  exit 0
fi
# --memory / --faiss: one benchmark each, its Markdown table kept under out/ (the docs
# named above quote it with the date and the machine).
if [ "${1:-}" = "--driver" ]; then
  bash scripts/build.sh --target bench_driver
  mkdir -p out
  ./build/benchmarks/bench_driver --out out/bench_driver.md
  echo "wrote out/bench_driver.md"
  exit 0
fi
if [ "${1:-}" = "--checkpoint" ]; then
  bash scripts/build.sh --target bench_checkpoint
  mkdir -p out
  ./build/benchmarks/bench_checkpoint --out out/bench_checkpoint.md
  echo "wrote out/bench_checkpoint.md"
  exit 0
fi
# --dist: the quick main job as 1 process and as 2 ranks (--nproc 2), one thread per
# process, alternated twice; global pairs/s and rank 0's share of step time in collectives.
if [ "${1:-}" = "--dist" ]; then
  bash scripts/build.sh --target retrieval
  run=out/bench_dist
  rm -rf "$run" && mkdir -p "$run"
  job=(--quick --steps 20 --save-every 100 --eval-every 100 --eval-queries 20 --eval-corpus 120 --fresh)
  for i in 1 2; do
    for n in 1 2; do
      echo "[bench] dist round $i/2: $n process(es)"
      OMP_NUM_THREADS=1 ./build/examples/retrieval "${job[@]}" --nproc "$n" --out "$run/n$n-$i" > "$run/n$n-$i.txt" 2>&1
    done
  done
  "$py" benchmarks/dist_report.py "$run"
  echo "wrote $run.md"
  exit 0
fi
# --train: one training step (tokenization included) of contaccum and of
# sentence-transformers on the same model files, pairs and 2 threads, sides alternated.
if [ "${1:-}" = "--train" ] || [ "${1:-}" = "--train-quick" ]; then
  bash scripts/build.sh --target bench_train_step
  run=out/bench_train
  rm -rf "$run" && mkdir -p "$run"
  steps=6 warmup=1 rounds=2
  if [ "$1" = "--train-quick" ]; then steps=3 rounds=1; fi
  "$py" benchmarks/train_step_reference.py --make-pairs data/debian-beir "$run/pairs.jsonl" 1024
  for i in $(seq "$rounds"); do
    for mode in mnrl cached; do
      echo "[bench] train round $i/$rounds, $mode: contaccum fp32 padded, sentence-transformers, contaccum fp32 unpadded, bf16 unpadded (where the CPU has bf16)"
      ./build/benchmarks/bench_train_step "$run/pairs.jsonl" models/all-MiniLM-L6-v2 "$mode" "$steps" "$warmup" 2 fp32 padded >> "$run/results.jsonl"
      "$py" benchmarks/train_step_reference.py "$run/pairs.jsonl" models/all-MiniLM-L6-v2 "$mode" "$steps" "$warmup" 2 2>/dev/null >> "$run/results.jsonl"
      ./build/benchmarks/bench_train_step "$run/pairs.jsonl" models/all-MiniLM-L6-v2 "$mode" "$steps" "$warmup" 2 fp32 unpadded >> "$run/results.jsonl"
      # bf16 pays only where the CPU has bf16 instructions (AVX512-BF16 or AMX); elsewhere
      # LibTorch emulates it, at 20x the fp32 step, and the column is left out.
      if grep -qE "avx512_bf16|amx_bf16" /proc/cpuinfo; then
        ./build/benchmarks/bench_train_step "$run/pairs.jsonl" models/all-MiniLM-L6-v2 "$mode" "$steps" "$warmup" 2 bf16 unpadded >> "$run/results.jsonl"
      fi
    done
  done
  "$py" benchmarks/train_step_report.py "$run/results.jsonl" > out/bench_train.md
  cat out/bench_train.md
  exit 0
fi
if [ "${1:-}" = "--memory" ]; then
  bash scripts/build.sh --target bench_memory
  mkdir -p out
  ./build/benchmarks/bench_memory --out out/bench_memory.md
  ./build/benchmarks/bench_memory --strategies --out out/bench_memory_strategies.md
  echo "wrote out/bench_memory.md, out/bench_memory_strategies.md"
  exit 0
fi
if [ "${1:-}" = "--faiss" ]; then
  bash scripts/build.sh --target bench_faiss || {
    echo "bench.sh --faiss: bench_faiss was not built (FAISS not found: scripts/setup.sh installs libfaiss-dev)" >&2
    exit 1
  }
  mkdir -p out
  ./build/benchmarks/bench_faiss --kinds flat,ivf,hnsw | tee out/bench_faiss.md
  echo "wrote out/bench_faiss.md"
  exit 0
fi
bash scripts/build.sh --target bench_strategies
mkdir -p docs/img
if [ "${1:-}" != "--plots-only" ]; then ./build/benchmarks/bench_strategies "$@"; fi
for what in time memory; do
  awk -v what=$what -f benchmarks/tables_to_dat.awk docs/benchmarks.md > docs/img/strategies_$what.dat
done
gnuplot benchmarks/strategies.gp
echo "wrote docs/benchmarks.md, docs/img/strategies_time.png, docs/img/strategies_memory.png"
