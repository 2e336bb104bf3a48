# The CPU backend is compiled once per instruction-set tier and the best tier the machine runs is
# chosen when a backend is created (lib/backend/cpu/select.cpp).
#
# Each tier is an object library built with its own target flags, its code in namespace
# dsv4::cpu_<tier> and Eigen renamed to Eigen_<tier>. Its objects are then linked into one
# relocatable object (group sections resolved) whose symbols are made local except the tier's
# entry point: out-of-line copies of inline and template functions (std::, Eigen) compiled with,
# say, AVX-512 flags can then never be picked by the final link for code that runs on a CPU
# without AVX-512 (the linker keeps one copy of such a function for the whole binary otherwise).

set(DSV4_CPU_OP_SOURCES
  backend/cpu/cpu_backend.cpp
  backend/cpu/linear/linear.cpp
  backend/cpu/norm/norm_rope.cpp
  backend/cpu/mhc/mhc.cpp
  backend/cpu/attention/attention.cpp
  backend/cpu/attention/compressor.cpp
  backend/cpu/attention/indexer.cpp
  backend/cpu/moe/moe.cpp
)

# The relocatable link needs GNU ld's --force-group-allocation (lld lacks it): prefer ld.bfd.
find_program(DSV4_RELOC_LINKER NAMES ${CMAKE_LIBRARY_ARCHITECTURE}-ld.bfd ld.bfd ${CMAKE_LIBRARY_ARCHITECTURE}-ld ld
             HINTS /usr/bin NO_CMAKE_FIND_ROOT_PATH)
if(CMAKE_CROSSCOMPILING OR NOT DSV4_RELOC_LINKER)
  set(DSV4_RELOC_LINKER ${CMAKE_LINKER})
endif()

# dsv4_add_cpu_tier(TARGET tier KERNELS file... FLAGS flag...)
function(dsv4_add_cpu_tier target tier)
  cmake_parse_arguments(T "" "" "KERNELS;FLAGS" ${ARGN})
  set(obj dsv4_cpu_${tier})
  list(TRANSFORM DSV4_CPU_OP_SOURCES PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ OUTPUT_VARIABLE srcs)
  list(TRANSFORM T_KERNELS PREPEND ${CMAKE_CURRENT_SOURCE_DIR}/ OUTPUT_VARIABLE kernels)
  add_library(${obj} OBJECT ${srcs} ${kernels})
  target_include_directories(${obj} PRIVATE ${PROJECT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${obj} PRIVATE Eigen3::Eigen)
  target_compile_definitions(${obj} PRIVATE DSV4_CPU_NS=cpu_${tier} DSV4_CPU_TIER="${tier}" DSV4_CPU_ENTRY=dsv4_cpu_make_${tier}
                                             Eigen=Eigen_${tier} EIGEN_DONT_PARALLELIZE)
  # -fno-gnu-unique: function-local statics of inline functions become weak, so they turn local too.
  target_compile_options(${obj} PRIVATE ${T_FLAGS} $<$<CXX_COMPILER_ID:GNU>:-fno-gnu-unique>)
  if(DSV4_NATIVE)
    target_compile_options(${obj} PRIVATE -march=native)
  endif()
  dsv4_warnings(${obj})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${obj}.o)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${DSV4_RELOC_LINKER} -r --force-group-allocation -o ${out}.partial $<TARGET_OBJECTS:${obj}>
    COMMAND ${CMAKE_OBJCOPY} --keep-global-symbol=dsv4_cpu_make_${tier} ${out}.partial ${out}
    DEPENDS ${obj} $<TARGET_OBJECTS:${obj}>
    COMMAND_EXPAND_LISTS
    COMMENT "Linking the ${tier} CPU kernels into one object with local symbols")
  target_compile_definitions(${target} PRIVATE DSV4_HAVE_CPU_${tier}=1)
  set(DSV4_CPU_TIERS_BUILT ${DSV4_CPU_TIERS_BUILT} ${tier} PARENT_SCOPE)
  set_property(GLOBAL APPEND PROPERTY DSV4_CPU_TIER_OBJECTS ${out})
endfunction()

# The tiers for the target architecture. DSV4_CPU_TIERS (a list) restricts them. `target` (the
# code that selects a tier) gets DSV4_HAVE_CPU_<tier>; the tier objects are listed in the global
# property DSV4_CPU_TIER_OBJECTS, built by the custom target dsv4_cpu_tiers, for the libraries to
# link (dsv4_link_cpu_tiers).
function(dsv4_add_cpu_tiers target)
  set(DSV4_CPU_TIERS_BUILT "")
  set(want ${DSV4_CPU_TIERS})
  macro(tier name)
    if(NOT want OR "${name}" IN_LIST want)
      dsv4_add_cpu_tier(${target} ${name} ${ARGN})
    endif()
  endmacro()
  tier(portable KERNELS backend/cpu/linear/gemv_none.cpp)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    set(avx2 -mavx2 -mfma -mf16c -mbmi -mbmi2 -mlzcnt -mpopcnt)
    tier(avx2 KERNELS backend/cpu/linear/gemv_avx2.cpp FLAGS ${avx2})
    set(avx512 ${avx2} -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512cd)
    tier(avx512 KERNELS backend/cpu/linear/gemv_avx512.cpp FLAGS ${avx512})
    tier(avx512vnni KERNELS backend/cpu/linear/gemv_avx512.cpp FLAGS ${avx512} -mavx512vnni -mavx512vbmi)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64|ARM64")
    tier(neon KERNELS backend/cpu/linear/gemv_neon.cpp)
    tier(neondot KERNELS backend/cpu/linear/gemv_neon.cpp FLAGS -march=armv8.2-a+dotprod)
  endif()
  message(STATUS "dsv4: CPU kernel tiers: ${DSV4_CPU_TIERS_BUILT}")
  set_property(GLOBAL PROPERTY DSV4_CPU_TIERS_BUILT ${DSV4_CPU_TIERS_BUILT})
  set(DSV4_CPU_TIERS_BUILT ${DSV4_CPU_TIERS_BUILT} PARENT_SCOPE)
endfunction()

# Links the tier objects into a library target (each library that contains the CPU backend).
function(dsv4_link_cpu_tiers target)
  get_property(objs GLOBAL PROPERTY DSV4_CPU_TIER_OBJECTS)
  if(NOT TARGET dsv4_cpu_tiers)
    add_custom_target(dsv4_cpu_tiers DEPENDS ${objs})
  endif()
  set_source_files_properties(${objs} PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  target_sources(${target} PRIVATE ${objs})
  add_dependencies(${target} dsv4_cpu_tiers)
endfunction()
