"""pip install . : builds the dsv4 Python module with CMake (offline: pip install --no-build-isolation .)."""
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = os.path.join(os.path.abspath(self.build_temp), "cmake")
        os.makedirs(build_dir, exist_ok=True)
        subprocess.check_call([
            "cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
            "-DDSV4_PYTHON=ON", "-DDSV4_BUILD_TESTS=OFF", "-DDSV4_BUILD_CLI=OFF", "-DDSV4_BUILD_EXAMPLES=OFF",
            "-DDSV4_SHARED=OFF", "-DDSV4_INSTALL=OFF", "-DDSV4_SERVER=OFF",
            f"-DPython_EXECUTABLE={sys.executable}",
        ])
        # The C++ build takes a few minutes on two cores; say so (pip shows this with -v).
        print(f"dsv4: building the C++ engine with CMake in {build_dir} ({os.cpu_count() or 2} jobs)", file=sys.stderr, flush=True)
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "_dsv4", "-j", str(os.cpu_count() or 2)])
        built = os.path.join(build_dir, "python", "dsv4")
        so = [f for f in os.listdir(built) if f.startswith("_dsv4") and f.endswith(".so")]
        if not so:
            raise RuntimeError("CMake did not produce the _dsv4 extension")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(built, so[0]), target)


setup(
    name="dsv4",
    version="0.1.0",
    description="DeepSeek-V4 inference engine",
    packages=["dsv4"],
    package_dir={"dsv4": "bindings/python/dsv4"},
    package_data={"dsv4": ["__init__.pyi", "py.typed"]},
    ext_modules=[Extension("dsv4._dsv4", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["numpy"],
    zip_safe=False,
)
