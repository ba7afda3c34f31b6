#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, and runs a short real
# training run (examples/02_retrieval). Extra arguments go to the example
# (--steps N, --out DIR, --quick).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
bash scripts/build.sh
# Fine-tunes all-MiniLM-L6-v2 with ContAccum on the Debian dataset (about 12 min on 2 cores);
# results in out/main (results.md, metrics.json, log.jsonl, model/).
./build/examples/retrieval "$@"
