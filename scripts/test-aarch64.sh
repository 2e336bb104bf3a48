#!/usr/bin/env bash
# AArch64: cross-compiles the engine and its op / golden tests with Debian's aarch64 toolchain and
# runs them under qemu-user, once on a CPU with the dot-product extension (tiers portable, neon,
# neondot) and once on one without (the neon tier is then the best). Correctness only: qemu
# emulates, so nothing here says how fast the NEON kernels are.
# Usage: scripts/test-aarch64.sh [BUILD_DIR]   (installs g++-aarch64-linux-gnu and qemu-user)
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in g++-aarch64-linux-gnu qemu-user libeigen3-dev nlohmann-json3-dev doctest-dev libspdlog-dev cmake; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
dir=${1:-build-aarch64}
mkdir -p "$dir/deps"
ln -sfn /usr/include/eigen3/Eigen "$dir/deps/Eigen"
ln -sfn /usr/include/nlohmann "$dir/deps/nlohmann"
ln -sfn /usr/include/doctest "$dir/deps/doctest"
ln -sfn /usr/include/spdlog "$dir/deps/spdlog"
ln -sfn /usr/include/fmt "$dir/deps/fmt"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
      -DDSV4_TOKENIZER=OFF -DDSV4_HEADER_DEPS_DIR="$(cd "$dir/deps" && pwd)" > "$dir/configure.log"
cmake --build "$dir" -j"$(nproc 2>/dev/null || echo 2)"
run() { qemu-aarch64 -L /usr/aarch64-linux-gnu "$@"; }
echo "== qemu-aarch64 -cpu max (dot product): every tier, every op against its double reference (awkward shapes)"
# (the emulated device in a process of its own: qemu-user keeps the memory of the isolated
# backends' regions, and the two together pass this machine's 24 GiB)
QEMU_CPU=max run "$dir/tests/dsv4_ops" --awkward --skip-backend device-emu
QEMU_CPU=max run "$dir/tests/dsv4_ops" --awkward --backend device-emu
echo "== qemu-aarch64 -cpu max: goldens"
DSV4_EXPECT_CPU_TIER=neondot QEMU_CPU=max run "$dir/tests/dsv4_tests" -tc="golden official_a*,golden tiny_a (HF*,golden tiny_a_bf16*,kernel tier*"
echo "== qemu-aarch64 -cpu cortex-a53 (no dot product): the neon tier is chosen and matches the goldens"
DSV4_EXPECT_CPU_TIER=neon QEMU_CPU=cortex-a53 run "$dir/tests/dsv4_tests" -tc="golden official_a*,kernel tier*"
QEMU_CPU=cortex-a53 run "$dir/tests/dsv4_ops" --backend cpu/neon --op linear --awkward
echo "aarch64: all passed"
