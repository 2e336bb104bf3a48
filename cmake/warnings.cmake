# dsv4_warnings(target): the warning set every first-party target builds with.
function(dsv4_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
      -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual)
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wshadow=local)
    # GCC 12 reports false positives inside its own AVX-512 intrinsics when Eigen inlines them.
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
  endif()
endfunction()
