# End-to-end check of `dsv4 logits` and `dsv4 info`: flags, output file, error exits.
# Invoked by ctest with -DCLI=... -DDATA=... -DWORK=...
cmake_minimum_required(VERSION 3.25)
set(model ${DATA}/goldens/official_a)
execute_process(COMMAND ${CLI} logits -m ${model} --ids 0,5,7,9,11,300 -o ${WORK}/cli_out.npy --chunks 2,3 --threads 2
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "dsv4 logits failed (${rc}): ${err}")
endif()
file(SIZE ${WORK}/cli_out.npy size)
# 128-byte header (dict padded to 64) + 6 x 1024 float32
if(NOT size EQUAL 24704)
  message(FATAL_ERROR "unexpected .npy size ${size}")
endif()
file(READ ${WORK}/cli_out.npy head OFFSET 10 LIMIT 70)
string(FIND "${head}" "'shape': (6, 1024)" pos)
if(pos LESS 0)
  message(FATAL_ERROR "bad .npy header: ${head}")
endif()

file(WRITE ${WORK}/ids.txt "0 5\n7,9 , 11\n300\n")
execute_process(COMMAND ${CLI} logits -m ${model} --ids-file ${WORK}/ids.txt -o ${WORK}/cli_out2.npy RESULT_VARIABLE rc)
file(SHA256 ${WORK}/cli_out2.npy h2)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "dsv4 logits --ids-file failed")
endif()

execute_process(COMMAND ${CLI} info -m ${model} --context 1048576 RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "F8_E4M3" OR NOT out MATCHES "session state at context 1048576" OR NOT out MATCHES "fp8: ")
  message(FATAL_ERROR "dsv4 info output unexpected (${rc}): ${out}")
endif()

# Errors: one line on stderr, non-zero exit, no crash.
foreach(args
    "logits;-m;${DATA}/nonexistent;--ids;1;-o;${WORK}/x.npy"
    "logits;-m;${model};--ids;1,99999;-o;${WORK}/x.npy"
    "logits;-m;${model};--ids;1,abc;-o;${WORK}/x.npy"
    "logits;-m;${model};--ids;1,2;-o;${WORK}/x.npy;--chunks;5"
    "logits;-m;${model};--ids;1"
    "frobnicate")
  execute_process(COMMAND ${CLI} ${args} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT rc MATCHES "^[12]$" OR NOT err MATCHES "^dsv4( [a-z]+)?: ")
    message(FATAL_ERROR "expected a clean error for '${args}', got rc=${rc}: ${err}")
  endif()
endforeach()

# Usage errors: one line and a hint to --help, exit status 2.
execute_process(COMMAND ${CLI} generate --no-such-flag RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "^dsv4 generate: .*no-such-flag.*\nRun 'dsv4 generate --help'")
  message(FATAL_ERROR "usage error not reported with a hint (${rc}): ${err}")
endif()
# --version, and --help of every command listing its flags with their defaults.
execute_process(COMMAND ${CLI} --version RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "^dsv4 [0-9]+\\.[0-9]+\\.[0-9]+")
  message(FATAL_ERROR "dsv4 --version: ${rc} ${out}")
endif()
foreach(cmd generate chat tokenize info logits bench serve)
  execute_process(COMMAND ${CLI} ${cmd} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "Usage: dsv4 ${cmd}" OR NOT out MATCHES "-h,--help")
    message(FATAL_ERROR "dsv4 ${cmd} --help (${rc}): ${out}")
  endif()
endforeach()
execute_process(COMMAND ${CLI} generate --help OUTPUT_VARIABLE out)
foreach(flag "--max-tokens N=256" "--temperature T=1.0" "--seed S=0" "--backend NAME=cpu" "--prompt-cache FILE" "--think MODE=none")
  string(FIND "${out}" "${flag}" at)
  if(at LESS 0)
    message(FATAL_ERROR "dsv4 generate --help lacks '${flag}':\n${out}")
  endif()
endforeach()
# --seed -1: a random seed, printed.
execute_process(COMMAND ${CLI} generate -p "def f(" -n 2 --seed -1 RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT err MATCHES "\\[dsv4\\] seed [0-9]+")
  message(FATAL_ERROR "--seed -1 (${rc}): ${err}")
endif()
# --prompt-cache: the second run of a prompt reuses all but its last token and prints the same text.
file(REMOVE ${WORK}/prompt.cache)
foreach(run 1 2)
  execute_process(COMMAND ${CLI} generate --raw --greedy -n 8 -p "import os\nimport sys\n" --prompt-cache ${WORK}/prompt.cache
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out_${run} ERROR_VARIABLE err_${run})
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "--prompt-cache run ${run} failed: ${err_${run}}")
  endif()
endforeach()
if(NOT out_1 STREQUAL out_2 OR NOT err_2 MATCHES "prompt cache: ([1-9][0-9]*) of ([0-9]+) prompt tokens reused")
  message(FATAL_ERROR "--prompt-cache did not reuse the prompt or changed the text:\n[${out_1}]\n[${out_2}]\n${err_2}")
endif()
file(WRITE ${WORK}/prompt.cache "garbage")
execute_process(COMMAND ${CLI} generate --raw --greedy -n 8 -p "import os\nimport sys\n" --prompt-cache ${WORK}/prompt.cache
                RESULT_VARIABLE rc OUTPUT_VARIABLE out_3 ERROR_VARIABLE err_3)
if(NOT rc EQUAL 0 OR NOT out_3 STREQUAL out_1 OR NOT err_3 MATCHES "not used")
  message(FATAL_ERROR "a bad --prompt-cache file must be reported and ignored (${rc}): ${err_3}")
endif()

# Text generation on the embedded demo model (the default model): --raw --greedy reproduces the
# reference continuation byte for byte.
file(READ ${DATA}/../../models/demo-code/reference.json ref)
string(JSON n LENGTH "${ref}" generations)
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  string(JSON prompt GET "${ref}" generations ${i} prompt)
  string(JSON text GET "${ref}" generations ${i} text)
  file(WRITE ${WORK}/prompt_${i}.txt "${prompt}")
  execute_process(COMMAND ${CLI} generate --raw --greedy -n 32 INPUT_FILE ${WORK}/prompt_${i}.txt
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT out STREQUAL text)
    message(FATAL_ERROR "generate --raw --greedy differs from reference ${i} (rc ${rc}):\n[${out}]\nwant\n[${text}]\n${err}")
  endif()
  if(NOT err MATCHES "prefill [0-9.]+ tok/s" OR NOT err MATCHES "decode [0-9.]+ tok/s")
    message(FATAL_ERROR "generate printed no statistics: ${err}")
  endif()
endforeach()

# tokenize / --decode round trip
file(WRITE ${WORK}/tok_in.txt "def f(x):\n    return x ** 2  # 深度\n")
execute_process(COMMAND ${CLI} tokenize INPUT_FILE ${WORK}/tok_in.txt RESULT_VARIABLE rc OUTPUT_VARIABLE ids)
file(WRITE ${WORK}/ids_in.txt "${ids}")
execute_process(COMMAND ${CLI} tokenize --decode INPUT_FILE ${WORK}/ids_in.txt RESULT_VARIABLE rc2 OUTPUT_VARIABLE back)
file(READ ${WORK}/tok_in.txt orig)
if(NOT rc EQUAL 0 OR NOT rc2 EQUAL 0 OR NOT back STREQUAL orig)
  message(FATAL_ERROR "tokenize round trip failed: ${ids} -> ${back}")
endif()

# chat: a scripted session in think mode shows reasoning apart from the answer
file(WRITE ${WORK}/chat_in.txt "def add(a, b):\nsecond turn\n/exit\n")
execute_process(COMMAND ${CLI} chat --think high --greedy -n 8 INPUT_FILE ${WORK}/chat_in.txt
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "\\[reasoning\\]")
  message(FATAL_ERROR "chat failed (${rc}): ${out} ${err}")
endif()

# bad text input: clear one-line errors
file(WRITE ${WORK}/empty.txt "")
execute_process(COMMAND ${CLI} generate INPUT_FILE ${WORK}/empty.txt RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "empty prompt")
  message(FATAL_ERROR "empty prompt not rejected: ${err}")
endif()
string(ASCII 195 40 bad_utf8)
file(WRITE ${WORK}/bad_utf8.txt "hello ${bad_utf8}")
execute_process(COMMAND ${CLI} generate --raw INPUT_FILE ${WORK}/bad_utf8.txt RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "not valid UTF-8")
  message(FATAL_ERROR "invalid UTF-8 not rejected: ${err}")
endif()
execute_process(COMMAND ${CLI} generate -p "a long prompt that does not fit" --context 4 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "context limit is 4")
  message(FATAL_ERROR "over-long prompt not rejected: ${err}")
endif()
execute_process(COMMAND ${CLI} generate -p x --think medium RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "medium")
  message(FATAL_ERROR "bad --think not rejected: ${err}")
endif()

# bench: flag errors are clean
# (device 99: refused whether the build lacks CUDA, the machine has no GPU, or it has fewer)
execute_process(COMMAND ${CLI} bench --backend cuda --device 99 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "backend cuda is not built|cuda device 99 does not exist")
  message(FATAL_ERROR "bench --backend cuda not rejected: ${err}")
endif()

# every model command takes --backend / --device and refuses what is not there
foreach(cmd info generate logits)
  set(extra "")
  if(cmd STREQUAL "generate")
    set(extra -p x -n 1)
  elseif(cmd STREQUAL "logits")
    set(extra --ids 1,2 -o ${WORK}/cli_backend.npy)
  endif()
  execute_process(COMMAND ${CLI} ${cmd} -m ${DATA}/goldens/official_a --backend cuda --device 99 ${extra} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT err MATCHES "backend cuda is not built|cuda device 99 does not exist")
    message(FATAL_ERROR "${cmd} --backend cuda not rejected: ${err}")
  endif()
  execute_process(COMMAND ${CLI} ${cmd} -m ${DATA}/goldens/official_a --backend cpu --device 3 ${extra} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT err MATCHES "device 3 does not exist")
    message(FATAL_ERROR "${cmd} --device 3 not rejected: ${err}")
  endif()
endforeach()
execute_process(COMMAND ${CLI} info -m ${DATA}/goldens/official_a --backend cpu --threads 1 RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "backends compiled in: cpu" OR NOT out MATCHES "model bound to: cpu:0" OR NOT out MATCHES "1 threads")
  message(FATAL_ERROR "info does not list backends and devices: ${out} ${err}")
endif()
execute_process(COMMAND ${CLI} bench --preset tiny RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "unknown preset")
  message(FATAL_ERROR "bad preset not rejected: ${err}")
endif()
