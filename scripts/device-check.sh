#!/usr/bin/env bash
# The GPU check, for a bare CUDA machine without internet (nvcc, CMake, a C++ compiler; the
# header-only dependencies carried in .devdeps, see scripts/prepare-device-deps.sh). Stages, each
# under a timeout; the summary table always prints last and is also written to $OUT (or ./device-check)
# as summary.txt and summary.json.
#
#   scripts/device-check.sh [--quick]      --quick: preflight, build and the op harness only
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
out=${OUT:-$PWD/device-check}
mkdir -p "$out"
jobs=$(nproc 2>/dev/null || echo 8)
bld=build-device
declare -a names results secs notes
t_start=$(date +%s)

stage() {  # stage NAME TIMEOUT_S NOTE-COMMAND... : runs "$@" with a timeout, logs to $out/NAME.log
  local name=$1 limit=$2
  shift 2
  local t0 rc
  t0=$(date +%s)
  echo "== stage $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" bash -c "set -o pipefail; $*" > "$out/$name.log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local res=pass
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then res=timeout; elif [ $rc -ne 0 ]; then res="fail($rc)";
  elif grep -q "skipped: no CUDA device" "$out/$name.log"; then res=skipped; fi
  names+=("$name"); results+=("$res"); secs+=("$dt")
  notes+=("$(grep -E '^(NOTE|FAIL|skipped)' "$out/$name.log" | head -3 | tr '\n' ' ' | cut -c1-150)")
  tail -5 "$out/$name.log"
  [ "$res" = pass ] || [ "$res" = skipped ]
}

summary() {
  {
    printf '\n%-12s %-12s %8s  %s\n' stage result seconds notes
    for i in "${!names[@]}"; do printf '%-12s %-12s %8s  %s\n' "${names[$i]}" "${results[$i]}" "${secs[$i]}" "${notes[$i]}"; done
    printf 'total %ss\n' $(( $(date +%s) - t_start ))
  } | tee "$out/summary.txt"
  {
    printf '{"stages": ['
    for i in "${!names[@]}"; do
      [ "$i" -gt 0 ] && printf ', '
      printf '{"stage": "%s", "result": "%s", "seconds": %s, "notes": "%s"}' "${names[$i]}" "${results[$i]}" "${secs[$i]}" "$(printf %s "${notes[$i]}" | tr -d '"\\')"
    done
    printf '], "total_seconds": %s}\n' $(( $(date +%s) - t_start ))
  } > "$out/summary.json"
}
trap summary EXIT

stage preflight 20 "nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm --format=csv; nvcc --version | tail -2; df -h . | tail -1; grep -m1 'model name' /proc/cpuinfo; nproc; echo NOTE \$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader)"

deps=""
[ -d .devdeps/include ] && deps="-DDSV4_HEADER_DEPS_DIR=$PWD/.devdeps/include"
stage build 240 "cmake -S . -B $bld -DCMAKE_BUILD_TYPE=Release -DDSV4_CUDA=ON -DDSV4_TOKENIZER=OFF -DDSV4_PYTHON=OFF -DDSV4_BUILD_EXAMPLES=OFF -DDSV4_INSTALL=OFF -DDSV4_SERVER=OFF -DDSV4_SHARED=OFF $deps && cmake --build $bld -j$jobs --target dsv4_cuda_tests dsv4_ops 2>&1 | grep -E 'error|warning|spill|Built target' ; test -x $bld/tests/dsv4_cuda_tests && echo NOTE built, \$(grep -c spill $out/build.log 2>/dev/null || true) spill warnings" || exit 1

# Op cases on the GPU against the double reference and the CPU backend; then the support matrix.
stage ops 90 "$bld/tests/dsv4_cuda_tests -tc='cuda op harness*'; rc=\$?; $bld/tests/dsv4_ops --backend cuda > $out/ops_matrix.txt; rc2=\$?; tail -14 $out/ops_matrix.txt; echo NOTE \$(grep -c FAIL $out/ops_matrix.txt) failing op cases; exit \$((rc | rc2))"
[ $quick -eq 1 ] && exit 0
stage goldens 90 "$bld/tests/dsv4_cuda_tests -tc='cuda goldens*,cuda graphs*' -s > $out/goldens_full.txt 2>&1; rc=\$?; grep -E 'skipped: no CUDA device|rel err|replay|test cases|assertions|ERROR|NOTE' $out/goldens_full.txt | sort -u; echo NOTE worst \$(grep -o 'rel err [0-9.e-]*' $out/goldens_full.txt | sort -t' ' -k3 -g | tail -1); exit \$rc"
stage sanitizer 90 "compute-sanitizer --tool memcheck --error-exitcode 7 $bld/tests/dsv4_cuda_tests -tc='cuda memcheck*' 2>&1 | tail -6"
stage speed 150 "$bld/tests/dsv4_cuda_tests -tc='cuda speed*,cuda tensor-core*' -s 2>&1 | grep -E 'NOTE|MESSAGE' ; $bld/tests/dsv4_ops --backend cuda --perf --real 2>&1 | tail -30"
