"""Builds the native module memfit._memfit with the project's CMake (see pyproject.toml).

The C++ build goes to build-pip/ in the source tree (ccache makes a rebuild
cheap); only the _memfit target is built (no tests, benchmarks or CLI).
MEMFIT_PIP_JOBS sets the parallel jobs (default 2); MEMFIT_PIP_NO_NATIVE=1
installs the pure-Python package alone (capture, fit, generated steps; no
memfit.optimize / simulate).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        if os.environ.get("MEMFIT_PIP_NO_NATIVE") == "1":
            return
        build = ROOT / "build-pip"
        build.mkdir(exist_ok=True)
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        "-DMEMFIT_BUILD_TESTS=OFF", "-DMEMFIT_BUILD_BENCH=OFF", f"-DMEMFIT_PYTHON={sys.executable}"],
                       check=True, stdout=subprocess.DEVNULL)
        jobs = os.environ.get("MEMFIT_PIP_JOBS", "2")
        subprocess.run(["cmake", "--build", str(build), "--target", "_memfit", "-j", jobs], check=True,
                       stdout=subprocess.DEVNULL)
        built = sorted((build / "python").glob("_memfit*.so"))
        if not built:
            raise RuntimeError(f"CMake built no _memfit module in {build / 'python'} (pybind11-dev and the Python "
                               f"headers installed?)")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[-1], target)


# setuptools' own build directory goes under build-pip/ too (build/ is the CMake build of scripts/test.sh).
setup(ext_modules=[Extension("memfit._memfit", sources=[])], cmdclass={"build_ext": CMakeBuild},
      options={"build": {"build_base": "build-pip/setuptools"}})
