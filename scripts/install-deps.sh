#!/usr/bin/env bash
# Installs the Debian packages dsv4 builds and tests with. Idempotent; skips apt when all are present.
set -euo pipefail
pkgs=(cmake g++ make pkg-config libeigen3-dev libspdlog-dev doctest-dev nlohmann-json3-dev libpcre2-dev
      python3 python3-dev python3-numpy python3-pytest python3-venv python3-pip python3-setuptools pybind11-dev
      qemu-user libcpp-httplib-dev curl libcli11-dev libedit-dev)  # libcli11-dev: the CLI's options; libedit-dev: line editing in chat; qemu-user: the suite runs the binary on emulated CPUs without AVX-512 / AVX; cpp-httplib: dsv4 serve
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
