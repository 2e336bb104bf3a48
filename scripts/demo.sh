#!/usr/bin/env bash
# The main job on the embedded demo model: installs dependencies, builds the dsv4 tool, and
# generates a continuation of a Python prompt (the demo model was trained on Python source).
# Usage: scripts/demo.sh [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="${PYTHON:-/usr/bin/python3}" > /dev/null
cmake --build build -j"$jobs" --target dsv4_cli
prompt=${1:-$'import os\nimport sys\n\n\ndef read_config(path):\n'}
printf '%s' "$prompt"
./build/bin/dsv4 generate --raw -p "$prompt" -n 96 --temperature 0.6 --top-k 40 --seed 7
echo
