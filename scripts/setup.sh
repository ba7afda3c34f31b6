#!/usr/bin/env bash
# Installs everything contaccum needs on a fresh Debian (bookworm) machine.
# Idempotent: a second run only checks and returns quickly.
#   - Debian packages: compiler toolchain, range-v3, Boost (with PFR), Catch2, JSON, OpenBLAS
#   - .venv: torch==2.13.0 (CPU wheel; its share/cmake/Torch is our LibTorch) + the
#     Python reference packages the parity tests run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

apt_pkgs=(build-essential cmake ninja-build pkg-config git
          librange-v3-dev libboost1.81-dev catch2 nlohmann-json3-dev
          libopenblas-dev gnuplot-nox)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "[setup] apt: all packages present"
fi

# Python virtualenv. torch FIRST: anything needing torch installed before it would pull
# the CUDA build (GBs).
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.contaccum-reqs"
reqs="$here/scripts/requirements.txt"
if [ ! -f "$stamp" ] || ! cmp -s "$reqs" "$stamp"; then
  "$py" -m pip install -q --upgrade pip
  "$py" -m pip install -q torch==2.13.0
  "$py" -m pip install -q -r "$reqs"
  cp "$reqs" "$stamp"
fi
"$py" -c "import torch; assert torch.__version__.startswith('2.13'), torch.__version__" \
  || { echo "[setup] ERROR: .venv torch is not 2.13"; exit 1; }
echo "[setup] python refs: $("$py" -c 'import torch,numpy;print("torch",torch.__version__,"numpy",numpy.__version__)')"
