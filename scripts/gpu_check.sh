#!/usr/bin/env bash
# The GPU check (issue 14): builds contaccum against the CUDA LibTorch of the machine it runs
# on, runs the CUDA tests (tests/gpu/test_cuda.cpp) and the BERT-base strategy benchmark
# (benchmarks/gpu_strategies.cpp) in bf16 and fp32, and writes what they print to $OUT (or
# to build-gpu/results when OUT is unset). Meant to finish within 8 minutes on one H100.
#
#   bash scripts/gpu_check.sh --prepare   # here, on the development machine (Debian)
#   bash scripts/gpu_check.sh             # on the GPU machine, from the repository root
#
# The GPU machine has CMake, ninja, a C++ compiler and PyTorch with CUDA, but none of
# contaccum's other dependencies and no network. --prepare copies them from this machine's
# Debian packages into .gpu-deps/ (git-ignored, ~45 MB; carry it to the GPU machine):
# the header-only range-v3, nlohmann-json, Boost.PFR and Catch2 v2, and ICU's and PCRE2's
# headers with their shared libraries (glibc >= 2.34 there). .gpu-deps/deps.cmake declares
# the targets ContaccumDependencies.cmake would otherwise find. FAISS and c10d are off.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
deps="$here/.gpu-deps"

if [ "${1:-}" = "--prepare" ]; then
  for f in /usr/include/range/v3/all.hpp /usr/include/nlohmann/json.hpp /usr/include/boost/pfr.hpp \
           /usr/include/catch2/catch.hpp /usr/include/unicode/uchar.h /usr/include/pcre2.h; do
    [ -f "$f" ] || { echo "gpu_check --prepare: no $f (run scripts/setup.sh)" >&2; exit 1; }
  done
  rm -rf "$deps"
  mkdir -p "$deps/include/boost" "$deps/lib/cmake"
  cp -r /usr/include/range /usr/include/meta /usr/include/concepts /usr/include/nlohmann /usr/include/catch2 \
        /usr/include/unicode /usr/include/pcre2.h "$deps/include/"
  cp -r /usr/include/boost/pfr /usr/include/boost/pfr.hpp "$deps/include/boost/"
  cp -r /usr/lib/cmake/Catch2 "$deps/lib/cmake/"
  cp /usr/lib/libCatch2WithMain.a "$deps/lib/"  # Catch2Targets.cmake checks that it exists
  multiarch=/usr/lib/x86_64-linux-gnu
  for lib in libicuuc.so.72 libicudata.so.72 libpcre2-8.so.0; do cp -L "$multiarch/$lib" "$deps/lib/"; done
  cat > "$deps/deps.cmake" <<'EOF'
# Written by scripts/gpu_check.sh --prepare: contaccum's dependencies from .gpu-deps/, as the
# targets cmake/ContaccumDependencies.cmake looks for (CMAKE_PROJECT_INCLUDE).
set(_gpu_deps ${CMAKE_CURRENT_LIST_DIR})
foreach(_target range-v3::range-v3 nlohmann_json::nlohmann_json Boost::headers)
  add_library(${_target} INTERFACE IMPORTED GLOBAL)
  set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${_gpu_deps}/include)
endforeach()
add_library(ICU::uc SHARED IMPORTED GLOBAL)
set_target_properties(ICU::uc PROPERTIES IMPORTED_LOCATION ${_gpu_deps}/lib/libicuuc.so.72
  INTERFACE_INCLUDE_DIRECTORIES ${_gpu_deps}/include INTERFACE_LINK_LIBRARIES ${_gpu_deps}/lib/libicudata.so.72)
add_library(PkgConfig::PCRE2 SHARED IMPORTED GLOBAL)
set_target_properties(PkgConfig::PCRE2 PROPERTIES IMPORTED_LOCATION ${_gpu_deps}/lib/libpcre2-8.so.0
  INTERFACE_INCLUDE_DIRECTORIES ${_gpu_deps}/include)
set(Catch2_DIR ${_gpu_deps}/lib/cmake/Catch2 CACHE PATH "Catch2 v2 from .gpu-deps")
EOF
  echo "gpu_check --prepare: $(du -sh "$deps" | cut -f1) in $deps; carry .gpu-deps to the GPU machine"
  exit 0
fi

[ -f "$deps/deps.cmake" ] || { echo "gpu_check: no $deps/deps.cmake: run 'bash scripts/gpu_check.sh --prepare' first (on the development machine) and carry .gpu-deps" >&2; exit 1; }
results="${OUT:-$here/build-gpu/results}"
mkdir -p "$results"
python="$(command -v python3)"
torch_prefix="$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
"$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "devices", torch.cuda.device_count(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' | tee "$results/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$results/device.txt" 2>/dev/null || true
export LD_LIBRARY_PATH="$deps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

start=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
  -DCMAKE_PROJECT_INCLUDE="$deps/deps.cmake" -DCONTACCUM_WITH_FAISS=OFF -DCONTACCUM_WITH_C10D=OFF \
  -DCONTACCUM_BUILD_EXAMPLES=OFF > "$results/configure.log" 2>&1 \
  || { tail -40 "$results/configure.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" --target contaccum_gpu_tests bench_gpu_strategies 2>&1 | tail -5 | tee "$results/build.log"
echo "gpu_check: built in $(( $(date +%s) - start )) s"

status=0
./build-gpu/tests/contaccum_gpu_tests --durations yes 2>&1 | tee "$results/cuda_tests.txt" || status=1
for precision in bf16 fp32; do
  ./build-gpu/benchmarks/bench_gpu_strategies --precision "$precision" --repeats 3 --out "$results/strategies_$precision.md" \
    2> "$results/strategies_$precision.log" || { status=1; tail -20 "$results/strategies_$precision.log"; }
  cat "$results/strategies_$precision.md" 2>/dev/null || true
done
echo "gpu_check: finished in $(( $(date +%s) - start )) s, status $status; results in $results"
exit "$status"
