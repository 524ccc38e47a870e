# Builds the Python package `nfk` into <build>/python/nfk: the extension _nfk (pybind11, linked to
# nfk_lib) next to a copy of python/nfk/*.py. `pip install .` (setup.py) builds the target _nfk
# here and installs that extension with python/nfk into the installing environment.
# Sets NFK_PYTHON_ENABLED (and NFK_PYTHON_EXECUTABLE) for the tests, and writes
# <build>/python/build_info.json: "ON" or why the bindings are off, the interpreter, its torch
# version and the LibTorch version linked (setup.py turns "off" into its error message).
set(NFK_PYTHON_ENABLED OFF)
if(NOT DEFINED Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
  # Debian's python3-torch lives under /usr/bin/python3; a python3 earlier on PATH may lack it.
  set(Python3_EXECUTABLE /usr/bin/python3)
endif()
find_package(Python3 COMPONENTS Interpreter Development.Module)
if(Python3_FOUND)
  find_package(pybind11 CONFIG QUIET)
endif()
set(nfk_python_torch_version "")
if(Python3_FOUND AND pybind11_FOUND)
  execute_process(COMMAND ${Python3_EXECUTABLE} -c "import numpy, torch; print(torch.__version__)"
                  RESULT_VARIABLE nfk_python_probe OUTPUT_VARIABLE nfk_python_torch_version
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
endif()
# The torch that Python imports must be the LibTorch linked here: both load into one process
# (`import torch, nfk`), and two different libtorch builds there crash or misbehave. Versions are
# compared as major.minor.patch (Debian's python3-torch says 1.13.0a0, its LibTorch 1.13.0).
string(REGEX MATCH "^[0-9]+\\.[0-9]+\\.[0-9]+" nfk_python_torch_release "${nfk_python_torch_version}")
string(REGEX MATCH "^[0-9]+\\.[0-9]+\\.[0-9]+" nfk_libtorch_release "${Torch_VERSION}")

set(nfk_python_status "")
if(NOT Python3_FOUND)
  set(nfk_python_status "no Python 3 interpreter with development headers (Debian: python3-dev)")
elseif(NOT pybind11_FOUND)
  set(nfk_python_status "pybind11 not found (Debian: pybind11-dev)")
elseif(NOT nfk_python_probe EQUAL 0)
  set(nfk_python_status "${Python3_EXECUTABLE} cannot import numpy and torch")
elseif(nfk_libtorch_release AND NOT nfk_python_torch_release VERSION_EQUAL nfk_libtorch_release)
  set(nfk_python_status "the torch ${nfk_python_torch_version} that ${Python3_EXECUTABLE} imports \
is not the LibTorch ${Torch_VERSION} being linked (${Torch_DIR}); build against that torch's \
LibTorch: -DCMAKE_PREFIX_PATH=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')")
endif()
set(nfk_python_dir ${CMAKE_BINARY_DIR}/python/nfk)
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/python)
if(nfk_python_status)
  message(STATUS "nfk: Python bindings OFF (${nfk_python_status})")
  set(nfk_python_ext_suffix "")
else()
  set(NFK_PYTHON_ENABLED ON)
  set(NFK_PYTHON_EXECUTABLE ${Python3_EXECUTABLE})
  message(STATUS "nfk: Python bindings ON (${Python3_EXECUTABLE}, torch ${nfk_python_torch_version}"
                 ", pybind11 ${pybind11_VERSION})")
  # nfk_module.cpp holds PYBIND11_MODULE and registers the bind_*.cpp units (python/bindings.h).
  set(nfk_python_bindings nfk_module.cpp arrays.cpp call_scope.cpp errors.cpp bind_models.cpp
                          bind_projector.cpp bind_fit.cpp bind_classifier_fisher.cpp)
  list(TRANSFORM nfk_python_bindings PREPEND ${CMAKE_SOURCE_DIR}/python/)
  pybind11_add_module(_nfk MODULE NO_EXTRAS ${nfk_python_bindings})
  target_link_libraries(_nfk PRIVATE nfk_lib)
  target_compile_definitions(_nfk PRIVATE NFK_LIBTORCH_VERSION="${Torch_VERSION}")
  # A front end: it sees only the public headers (include/nfk/, through nfk_lib).
  set_target_properties(_nfk PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${nfk_python_dir})
  file(GLOB nfk_python_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/python/nfk/*.py)
  foreach(f ${nfk_python_sources})
    get_filename_component(name ${f} NAME)
    configure_file(${f} ${nfk_python_dir}/${name} COPYONLY)
  endforeach()
endif()
# JSON strings: CMake paths and versions hold no quotes or backslashes on the systems we build on.
file(WRITE ${CMAKE_BINARY_DIR}/python/build_info.json "{
  \"bindings\": \"${nfk_python_status}\",
  \"python\": \"${Python3_EXECUTABLE}\",
  \"python_torch_version\": \"${nfk_python_torch_version}\",
  \"libtorch_version\": \"${Torch_VERSION}\",
  \"libtorch_dir\": \"${Torch_DIR}\",
  \"nfk_version\": \"${PROJECT_VERSION}\"
}
")
