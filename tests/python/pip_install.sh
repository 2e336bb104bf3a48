#!/usr/bin/env bash
# `pip install .` offline into a fresh virtual environment (system site-packages for numpy),
# then import the installed module outside the source tree and run a forward pass.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv --system-site-packages "$work/venv"
cp -r "$root" "$work/src"   # build from a copy: pip must not touch the checkout
rm -rf "$work/src/build" "$work/src/.git"
(cd "$work/src" && "$work/venv/bin/python" -m pip install -q --no-index --no-build-isolation .)
cd "$work"
"$work/venv/bin/python" - "$root/tests/data/goldens/official_a" <<'PY'
import sys, dsv4, numpy as np
assert "venv" in dsv4.__file__, dsv4.__file__
s = dsv4.Session(dsv4.Model(sys.argv[1]))
l = s.forward([0, 5, 7])
assert l.shape == (1024,) and np.isfinite(l).all()
print("pip-installed dsv4", dsv4.__version__, "from", dsv4.__file__)
PY
