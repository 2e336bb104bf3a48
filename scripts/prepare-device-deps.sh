#!/usr/bin/env bash
# Copies the header-only dependencies (Eigen, nlohmann-json, doctest, spdlog, fmt) from this
# machine's Debian packages into .devdeps/include (git-ignored), for a build machine without them
# and without internet (the GPU machine of scripts/device-check.sh): carry .devdeps with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.devdeps/include
rm -rf .devdeps
mkdir -p "$out"
for d in /usr/include/eigen3/Eigen /usr/include/nlohmann /usr/include/doctest /usr/include/spdlog /usr/include/fmt; do
  [ -d "$d" ] || { echo "missing $d (scripts/install-deps.sh installs it)"; exit 1; }
  cp -rL "$d" "$out/"
done
echo "prepared $(du -sh .devdeps | cut -f1) of headers in .devdeps/include"
