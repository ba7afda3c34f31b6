#!/usr/bin/env bash
# Runs the benchmarks and writes their results into docs/ (tables and PNG plots).
#   bash scripts/bench.sh [--quick]   (--plots-only: redraw the plots from docs/benchmarks.md)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
bash scripts/build.sh --target bench_strategies
mkdir -p docs/img
if [ "${1:-}" != "--plots-only" ]; then ./build/benchmarks/bench_strategies "$@"; fi
for what in time memory; do
  awk -v what=$what -f benchmarks/tables_to_dat.awk docs/benchmarks.md > docs/img/strategies_$what.dat
done
gnuplot benchmarks/strategies.gp
echo "wrote docs/benchmarks.md, docs/img/strategies_time.png, docs/img/strategies_memory.png"
