#!/usr/bin/env bash
# The suite under the sanitizers, and short fuzzing runs. Not part of .ci/run (it takes about an
# hour on two cores); run it before a release or after touching parsing, threading or memory.
#
#   scripts/sanitize.sh [asan|tsan|fuzz|all]   (default all)
#
# asan: ASan + UBSan (-fno-sanitize-recover=undefined) build; the whole suite (C++, C, Python, CLI,
#       server) except speed and emulator tests.
# tsan: ThreadSanitizer build; the tests where sessions, pools and servers run on several threads.
# fuzz: clang/libFuzzer build of tests/fuzz; each target for FUZZ_SECONDS (default 30) from its
#       seed corpus (tests/fuzz/corpus/<target>); findings are left in build-fuzz/findings.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
jobs=$(nproc 2>/dev/null || echo 2)
scripts/install-deps.sh
python=${PYTHON:-/usr/bin/python3}

if [ "$what" = asan ] || [ "$what" = all ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV4_SANITIZE=ON -DPython_EXECUTABLE="$python" > build-asan.log
  cmake --build build-asan -j"$jobs" >> build-asan.log
  echo "== ASan + UBSan: the suite"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest -j"$jobs" -LE "bench|slow" -E "qemu|no_static_init|package" --output-on-failure --timeout 1800)
fi

if [ "$what" = tsan ] || [ "$what" = all ]; then
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV4_TSAN=ON -DDSV4_PYTHON=OFF > build-tsan.log
  cmake --build build-tsan -j"$jobs" --target dsv4_tests dsv4_cli >> build-tsan.log
  echo "== TSan: multi-threaded tests"
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/tests/dsv4_tests \
    -tc="*thread*,*several threads*,*batch*,*forward_batch*,*concurrent*,*serve*,*scheduler*,*cancel*"
  DSV4_CLI=$(pwd)/build-tsan/bin/dsv4 TSAN_OPTIONS=halt_on_error=1 "$python" -m pytest -q tests/serve
fi

if [ "$what" = fuzz ] || [ "$what" = all ]; then
  secs=${FUZZ_SECONDS:-30}
  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DDSV4_FUZZ=ON -DDSV4_PYTHON=OFF -DDSV4_BUILD_CLI=OFF -DDSV4_BUILD_EXAMPLES=OFF -DDSV4_SERVER=OFF -DDSV4_SHARED=OFF \
        -DDSV4_INSTALL=OFF > build-fuzz.log
  targets=(safetensors_header config tokenizer_load tokenizer_encode chat)
  cmake --build build-fuzz -j"$jobs" --target "${targets[@]/#/fuzz_}" >> build-fuzz.log
  mkdir -p build-fuzz/findings
  for t in "${targets[@]}"; do
    corpus=build-fuzz/corpus/$t
    mkdir -p "$corpus"
    cp -n tests/fuzz/corpus/$t/* "$corpus"/ 2>/dev/null || true
    echo "== fuzz_$t for ${secs} s"
    ASAN_OPTIONS=detect_leaks=1 build-fuzz/tests/fuzz_$t "$corpus" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -artifact_prefix=build-fuzz/findings/$t- -print_final_stats=1 2>&1 | grep -E "^(stat::|#[0-9]+ +DONE|==|SUMMARY)" || true
    if ls build-fuzz/findings/$t-* > /dev/null 2>&1; then echo "fuzz_$t: findings in build-fuzz/findings"; exit 1; fi
  done
fi
echo "sanitize ($what): all passed"
