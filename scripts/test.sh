#!/usr/bin/env bash
# The test command: installs dependencies, builds everything, runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
# Debian's interpreter (it has numpy and pytest); override with PYTHON=...
python=${PYTHON:-/usr/bin/python3}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDSV4_BUILD_TESTS=ON -DPython_EXECUTABLE="$python"
cmake --build build -j"$jobs"
# Timed checks (label "bench": the ratio guard) are opt-in: ctest --test-dir build -L bench
ctest --test-dir build --output-on-failure -j"$jobs" -LE bench
