#!/usr/bin/env bash
# The main job on the embedded demo model: load it, describe it, and run the reference prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="${PYTHON:-/usr/bin/python3}" > /dev/null
cmake --build build -j"$jobs" --target dsv4_cli
model=models/demo-code
./build/bin/dsv4 info -m "$model" --context 65536
# "def fibonacci(n):\n" as token ids (the tokenizer lands with the text-generation issue).
ids=326,295,535,273,1098,501,1333,323
./build/bin/dsv4 logits -m "$model" --ids "$ids" -o build/demo_logits.npy
python_bin=/usr/bin/python3
if "$python_bin" -c "import numpy" 2>/dev/null; then
  "$python_bin" - <<'PY'
import numpy as np
l = np.load("build/demo_logits.npy")
top = np.argsort(-l[-1])[:5]
print("next-token top 5 after the prompt:", [(int(t), round(float(l[-1, t]), 3)) for t in top])
print("reference greedy token: 266")
PY
fi
