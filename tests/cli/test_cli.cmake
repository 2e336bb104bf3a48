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
if(NOT rc EQUAL 0 OR NOT out MATCHES "F8_E4M3" OR NOT out MATCHES "session cache at context 1048576")
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
  if(rc EQUAL 0 OR NOT rc MATCHES "^[12]$" OR NOT err MATCHES "^dsv4: ")
    message(FATAL_ERROR "expected a clean error for '${args}', got rc=${rc}: ${err}")
  endif()
endforeach()
