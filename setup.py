"""Builds nfk._nfk with the project's CMake for `pip install --no-build-isolation .`.

The metadata is in pyproject.toml; this file adds the one extension and a build_ext that drives
CMake instead of compiling it itself:

- the CMake build folder is $NFK_BUILD_DIR, else <repo>/build (the folder scripts/setup builds):
  an existing build is reused, so the install compiles only what changed (ccache makes a fresh
  folder cheap too); a folder without a CMake cache is configured first, with the installing
  Python and NFK_CMAKE_ARGS (e.g. -DCMAKE_PREFIX_PATH=... for another LibTorch);
- only the target _nfk (and the library it links) is built, with $NFK_BUILD_JOBS jobs;
- the torch that the installing Python imports must be the LibTorch that CMake links (same
  major.minor.patch): otherwise the install stops with one line saying which is which.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def _fail(msg):
    raise SystemExit(f"nfk setup: {msg}")


def _release(version):
    m = re.match(r"\d+\.\d+\.\d+", version or "")
    return m.group(0) if m else None


def _cmake_version():
    text = open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8").read()
    return re.search(r"project\(nfk VERSION ([0-9.]+)", text).group(1)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        cmake = shutil.which("cmake")
        if cmake is None:
            _fail("cmake is not on PATH (Debian: apt-get install cmake; or run scripts/setup)")
        build_dir = os.path.abspath(os.environ.get("NFK_BUILD_DIR") or os.path.join(ROOT, "build"))
        if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            args = [cmake, "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                    f"-DPython3_EXECUTABLE={sys.executable}"]
            if shutil.which("ninja"):
                args += ["-G", "Ninja"]
            args += shlex.split(os.environ.get("NFK_CMAKE_ARGS", ""))
            self._run(args)
        jobs = os.environ.get("NFK_BUILD_JOBS")
        self._run([cmake, "--build", build_dir, "--target", "_nfk"] + (["-j", jobs] if jobs else []),
                  check=False)
        info = self._build_info(build_dir)
        built = os.path.join(build_dir, "python", "nfk",
                             "_nfk" + sysconfig.get_config_var("EXT_SUFFIX"))
        if not os.path.exists(built):
            _fail(f"CMake built no {built}: the Python in {build_dir} is {info['python']}, "
                  f"this one is {sys.executable} (another Python version? set NFK_BUILD_DIR to "
                  "a new folder)")
        dest = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(built, dest)

    def _run(self, args, check=True):
        print("nfk setup:", " ".join(args), flush=True)
        r = subprocess.run(args)
        if check and r.returncode != 0:
            _fail(f"{os.path.basename(args[0])} failed (exit {r.returncode}); see above")
        self._last_rc = r.returncode

    def _build_info(self, build_dir):
        path = os.path.join(build_dir, "python", "build_info.json")
        if not os.path.exists(path):
            _fail(f"{build_dir} has no python/build_info.json: configure it with this checkout's "
                  "CMakeLists.txt (or set NFK_BUILD_DIR to a new folder)")
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        if info["bindings"]:
            _fail(f"CMake turned the Python bindings off in {build_dir}: {info['bindings']}")
        if info["nfk_version"] != _cmake_version():
            _fail(f"{build_dir} was configured for nfk {info['nfk_version']}, this checkout is "
                  f"{_cmake_version()}")
        try:  # the installing Python's torch (no build isolation: the one it will use)
            import torch
        except ImportError as e:
            _fail(f"{sys.executable} cannot import torch ({e}): install PyTorch into it first "
                  "(Debian: python3-torch, under /usr/bin/python3; a venv made with "
                  "--system-site-packages sees it), and build with --no-build-isolation")

        if _release(torch.__version__) != _release(info["libtorch_version"]):
            _fail(f"the torch {torch.__version__} that {sys.executable} imports is not the "
                  f"LibTorch {info['libtorch_version']} that {build_dir} links "
                  f"({info['libtorch_dir']}); reconfigure with NFK_CMAKE_ARGS=-DCMAKE_PREFIX_PATH="
                  f"{torch.utils.cmake_prefix_path} and a new NFK_BUILD_DIR")
        if getattr(self, "_last_rc", 0) != 0:
            _fail("the CMake build of the target _nfk failed; see above")
        return info


_pyproject = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
_version = re.search(r'^version = "([^"]+)"', _pyproject, re.M).group(1)
if _version != _cmake_version():
    _fail(f"pyproject.toml says version {_version}, CMakeLists.txt {_cmake_version()}: keep "
          "them equal")

os.makedirs(os.path.join(ROOT, "build", "setuptools"), exist_ok=True)
# setuptools' own scratch folders go under build/setuptools, beside (not among) CMake's files.
setup(ext_modules=[Extension("nfk._nfk", sources=[])], cmdclass={"build_ext": CMakeBuild},
      options={"build": {"build_base": os.path.join("build", "setuptools")},
               "egg_info": {"egg_base": os.path.join("build", "setuptools")}})
