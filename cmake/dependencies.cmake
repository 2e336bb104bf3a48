# Every dependency comes from Debian packages (scripts/install-deps.sh installs them).
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(spdlog QUIET)  # logging lands with the log callback (public API issue)
find_package(Threads REQUIRED)
if(DSV4_BUILD_TESTS)
  find_package(doctest REQUIRED)
endif()
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)  # the tokenizer's Unicode regexes
