# Builds the Python package `nfk` into <build>/python/nfk: the extension _nfk (pybind11, linked to
# nfk_lib) next to a copy of python/nfk/*.py, so that PYTHONPATH=<build>/python imports it.
# Sets NFK_PYTHON_ENABLED (and NFK_PYTHON_EXECUTABLE) for the tests.
set(NFK_PYTHON_ENABLED OFF)
if(NOT DEFINED Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
  # Debian's python3-torch lives under /usr/bin/python3; a python3 earlier on PATH may lack it.
  set(Python3_EXECUTABLE /usr/bin/python3)
endif()
find_package(Python3 COMPONENTS Interpreter Development.Module)
if(Python3_FOUND)
  find_package(pybind11 CONFIG QUIET)
endif()
if(Python3_FOUND AND pybind11_FOUND)
  execute_process(COMMAND ${Python3_EXECUTABLE} -c "import numpy, torch"
                  RESULT_VARIABLE nfk_python_probe OUTPUT_QUIET ERROR_QUIET)
endif()

if(NOT Python3_FOUND)
  message(STATUS "nfk: Python bindings OFF (no Python 3 interpreter with development headers)")
elseif(NOT pybind11_FOUND)
  message(STATUS "nfk: Python bindings OFF (pybind11 not found; Debian: pybind11-dev)")
elseif(NOT nfk_python_probe EQUAL 0)
  message(STATUS "nfk: Python bindings OFF (${Python3_EXECUTABLE} cannot import numpy and torch)")
else()
  set(NFK_PYTHON_ENABLED ON)
  set(NFK_PYTHON_EXECUTABLE ${Python3_EXECUTABLE})
  message(STATUS "nfk: Python bindings ON (${Python3_EXECUTABLE}, pybind11 ${pybind11_VERSION})")
  set(nfk_python_dir ${CMAKE_BINARY_DIR}/python/nfk)
  # nfk_module.cpp holds PYBIND11_MODULE and registers the bind_*.cpp units (python/bindings.h).
  set(nfk_python_bindings nfk_module.cpp arrays.cpp call_scope.cpp errors.cpp bind_models.cpp
                          bind_projector.cpp bind_fit.cpp)
  list(TRANSFORM nfk_python_bindings PREPEND ${CMAKE_SOURCE_DIR}/python/)
  pybind11_add_module(_nfk MODULE NO_EXTRAS ${nfk_python_bindings})
  target_link_libraries(_nfk PRIVATE nfk_lib)
  # A front end: it sees only the public headers (include/nfk/, through nfk_lib).
  set_target_properties(_nfk PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${nfk_python_dir})
  file(GLOB nfk_python_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/python/nfk/*.py)
  foreach(f ${nfk_python_sources})
    get_filename_component(name ${f} NAME)
    configure_file(${f} ${nfk_python_dir}/${name} COPYONLY)
  endforeach()
endif()
