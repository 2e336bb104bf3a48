# Every dependency comes from Debian packages (scripts/install-deps.sh installs them).
#
# DSV4_HEADER_DEPS_DIR: a folder holding the header-only dependencies themselves (Eigen/,
# nlohmann/, doctest/, spdlog/, fmt/), used instead of installed CMake packages: cross builds (whose sysroot has
# no such packages) and machines without them (copy the headers in with the tree).
set(DSV4_HEADER_DEPS_DIR "" CACHE PATH "Folder with Eigen/, nlohmann/, doctest/, spdlog/ and fmt/ headers (instead of installed packages)")
if(DSV4_HEADER_DEPS_DIR)
  foreach(t Eigen3::Eigen nlohmann_json::nlohmann_json doctest::doctest)
    if(NOT TARGET ${t})
      add_library(${t} INTERFACE IMPORTED)
      set_target_properties(${t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${DSV4_HEADER_DEPS_DIR})
    endif()
  endforeach()
else()
  find_package(Eigen3 3.4 REQUIRED NO_MODULE)
  find_package(nlohmann_json 3.10 REQUIRED)
  if(DSV4_BUILD_TESTS)
    find_package(doctest REQUIRED)
  endif()
endif()
# spdlog (and fmt) header-only, inside one source file of the library (lib/util/log.cpp): no
# runtime library, nothing of them in the public headers.
if(DSV4_HEADER_DEPS_DIR)
  find_path(DSV4_SPDLOG_INCLUDE spdlog/spdlog.h PATHS ${DSV4_HEADER_DEPS_DIR} NO_DEFAULT_PATH NO_CMAKE_FIND_ROOT_PATH)
  find_path(DSV4_FMT_INCLUDE fmt/format.h PATHS ${DSV4_HEADER_DEPS_DIR} NO_DEFAULT_PATH NO_CMAKE_FIND_ROOT_PATH)
else()
  find_path(DSV4_SPDLOG_INCLUDE spdlog/spdlog.h)
  find_path(DSV4_FMT_INCLUDE fmt/format.h)
endif()
if(NOT DSV4_SPDLOG_INCLUDE OR NOT DSV4_FMT_INCLUDE)
  message(FATAL_ERROR "dsv4 needs the spdlog and fmt headers (Debian: libspdlog-dev, which brings libfmt-dev)")
endif()
find_package(Threads REQUIRED)
if(DSV4_TOKENIZER)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)  # the tokenizer's Unicode regexes
endif()
