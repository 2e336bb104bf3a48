cmake_minimum_required(VERSION 3.25)
# The x86-64 binary on CPUs without AVX-512 and without AVX, emulated by qemu-user: each picks
# the best tier it runs (avx2, portable) and matches the goldens; an instruction of a higher tier
# anywhere on the way (static initialisers, shared inline code) would stop it with SIGILL.
# Invoked with -DTESTS=<dsv4_tests>. Reported as skipped (SKIP_REGULAR_EXPRESSION) without qemu-x86_64.
find_program(QEMU qemu-x86_64)
if(NOT QEMU)
  message("skipped: qemu-x86_64 not found (Debian package qemu-user)")
  return()
endif()
foreach(pair "Haswell;avx2" "Nehalem;portable")
  list(GET pair 0 cpu)
  list(GET pair 1 tier)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env DSV4_EXPECT_CPU_TIER=${tier} ${QEMU} -cpu ${cpu} ${TESTS}
                          "-tc=kernel tier*,golden official_a*,golden tiny_a_bf16*"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "qemu -cpu ${cpu} (expected tier ${tier}) failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "qemu -cpu ${cpu}: tier ${tier}, goldens pass")
endforeach()
