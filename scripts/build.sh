#!/usr/bin/env bash
# Configures and builds contaccum (tests, examples) in ./build with 2 jobs; the benchmarks
# build on demand (scripts/bench.sh, or `--target benchmarks`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
torch_prefix="$(.venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')"
build_type="${CONTACCUM_BUILD_TYPE:-Release}"
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type" -DCMAKE_PREFIX_PATH="$torch_prefix"
fi
cmake --build build -j "${CONTACCUM_JOBS:-2}" "$@"
