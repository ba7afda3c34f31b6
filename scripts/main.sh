#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, and runs a short real
# training run (examples/00_quickstart). Extra arguments go to the example.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
bash scripts/build.sh
./build/examples/quickstart "$@"
