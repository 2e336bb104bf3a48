# Every dependency comes from Debian packages (scripts/install-deps.sh installs them).
#
# DSV4_HEADER_DEPS_DIR: a folder holding the header-only dependencies themselves (Eigen/,
# nlohmann/, doctest/), used instead of installed CMake packages: cross builds (whose sysroot has
# no such packages) and machines without them (copy the headers in with the tree).
set(DSV4_HEADER_DEPS_DIR "" CACHE PATH "Folder with Eigen/, nlohmann/ and doctest/ headers (instead of installed packages)")
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
find_package(spdlog QUIET)  # logging lands with the log callback (public API issue)
find_package(Threads REQUIRED)
if(DSV4_TOKENIZER)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)  # the tokenizer's Unicode regexes
endif()
