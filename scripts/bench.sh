#!/usr/bin/env bash
# Runs the benchmarks and writes their results into docs/ (tables and PNG plots).
#   bash scripts/bench.sh [--quick]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
bash scripts/build.sh --target bench_strategies
mkdir -p docs/img
./build/benchmarks/bench_strategies "$@"
gnuplot benchmarks/strategies.gp
echo "wrote docs/benchmarks.md, docs/img/strategies_time.png, docs/img/strategies_memory.png"
