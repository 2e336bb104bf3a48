# Install rules: headers, libdsv4.a / libdsv4.so, the dsv4 CLI, the demo model as data, a CMake
# package (find_package(dsv4 CONFIG) -> dsv4::dsv4) and dsv4.pc for pkg-config.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(DSV4_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dsv4)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")

set(_targets dsv4)
if(TARGET dsv4_shared)
  list(APPEND _targets dsv4_shared)
endif()
install(TARGETS ${_targets} EXPORT dsv4Targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT dsv4Targets NAMESPACE dsv4:: DESTINATION ${DSV4_CMAKE_DIR} COMPONENT dev)

if(TARGET dsv4_cli)
  install(TARGETS dsv4_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
endif()
# The demo model, found by the CLI relative to its own location (bin/../share/dsv4/models).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/models/demo-code DESTINATION ${CMAKE_INSTALL_DATADIR}/dsv4/models COMPONENT runtime)

set(DSV4_HAS_SHARED OFF)
if(TARGET dsv4_shared)
  set(DSV4_HAS_SHARED ON)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dsv4Config.cmake.in ${PROJECT_BINARY_DIR}/dsv4Config.cmake
                              INSTALL_DESTINATION ${DSV4_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dsv4ConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dsv4Config.cmake ${PROJECT_BINARY_DIR}/dsv4ConfigVersion.cmake
        DESTINATION ${DSV4_CMAKE_DIR} COMPONENT dev)

set(DSV4_PC_REQUIRES_PRIVATE "")
if(DSV4_TOKENIZER)
  set(DSV4_PC_REQUIRES_PRIVATE "libpcre2-8")
endif()
# The static library's CUDA runtime (the shared one carries it inside).
set(DSV4_PC_LIBS_PRIVATE "")
if(DSV4_HAVE_CUDA)
  set(DSV4_PC_LIBS_PRIVATE "-L${CUDAToolkit_LIBRARY_DIR} -lcudart_static -ldl -lrt")
endif()
file(RELATIVE_PATH DSV4_PC_PREFIX_REL ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" DSV4_PC_PREFIX_REL "${DSV4_PC_PREFIX_REL}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/dsv4.pc.in ${PROJECT_BINARY_DIR}/dsv4.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/dsv4.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
