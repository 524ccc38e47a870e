# `cmake --install build [--prefix P]`: libnfk.a (+ libnfk_data_dir.a, the installed data_dir()
# default), the public headers include/nfk/*.h, the nfk CLI, and a CMake package, so that
#   find_package(nfk REQUIRED)   target_link_libraries(app PRIVATE nfk::nfk)
# works with -DCMAKE_PREFIX_PATH=P. tests/cli/consumer.sh checks exactly that.
include(CMakePackageConfigHelpers)

set(NFK_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/nfk CACHE STRING
    "Where the installed package's nfkConfig.cmake goes, relative to the prefix")

install(TARGETS nfk_lib nfk_data_dir_install EXPORT nfkTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS nfk_cli_install RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/python/nfk/plot.py DESTINATION ${CMAKE_INSTALL_DATADIR}/nfk)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/nfk DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(EXPORT nfkTargets NAMESPACE nfk:: DESTINATION ${NFK_INSTALL_CMAKEDIR})

# The dependencies a consumer must find again: the public ones (Torch, nlohmann_json) and, since
# libnfk is static, the private ones it links (zlib; gloo when it was found).
set(NFK_CONFIG_FIND_GLOO OFF)
if(TARGET gloo)
  set(NFK_CONFIG_FIND_GLOO ON)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/nfkConfig.cmake.in
  ${PROJECT_BINARY_DIR}/for-install/nfkConfig.cmake
  INSTALL_DESTINATION ${NFK_INSTALL_CMAKEDIR})
# 0.x: a minor release may break the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/for-install/nfkConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/for-install/nfkConfig.cmake
              ${PROJECT_BINARY_DIR}/for-install/nfkConfigVersion.cmake
        DESTINATION ${NFK_INSTALL_CMAKEDIR})
