cmake_minimum_required(VERSION 3.25)
# Speed regression guard: a small `dsv4 bench` run whose decode bandwidth ratio and prefill
# matmul ratio (each against ceilings measured in the same run) must stay above floors set at about
# 40% of what this CPU backend reaches on a 2-core VM (decode 0.44-0.76, prefill 0.43-0.60 in
# recent runs), so a change that makes either about 2.5x slower fails.
# Invoked with -DCLI=... -DCONFIG=... -DDECODE_FLOOR=... -DPREFILL_FLOOR=...
# Shared machines are noisy: up to three runs are made; a real regression fails all of them.
foreach(attempt 1 2 3)
  execute_process(COMMAND ${CLI} bench --config ${CONFIG} --contexts 1024 --prompts 256 --steps 24 --json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "dsv4 bench failed (${rc}): ${err}")
  endif()
  string(JSON bw GET "${out}" ceilings bandwidth_gbps)
  string(JSON mm GET "${out}" ceilings matmul_gflops)
  string(JSON dec GET "${out}" decode 0 bandwidth_ratio)
  string(JSON ms GET "${out}" decode 0 ms_per_token)
  string(JSON pre GET "${out}" prefill 0 matmul_ratio)
  string(JSON tps GET "${out}" prefill 0 tokens_per_s)
  message(STATUS "run ${attempt}: ceilings ${bw} GB/s, ${mm} GFLOP/s; decode ${ms} ms/token, ratio ${dec}; "
                 "prefill ${tps} tok/s, ratio ${pre} (floors ${DECODE_FLOOR}, ${PREFILL_FLOOR})")
  # CMake compares numbers as floating point with LESS.
  if(NOT dec LESS DECODE_FLOOR AND NOT pre LESS PREFILL_FLOOR)
    return()
  endif()
endforeach()
message(FATAL_ERROR "speed regression: decode bandwidth ratio ${dec} (floor ${DECODE_FLOOR}) or prefill matmul ratio ${pre} "
                    "(floor ${PREFILL_FLOOR}) stayed below its floor in three runs")
