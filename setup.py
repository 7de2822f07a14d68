"""Build the Rust cdylib (setuptools-rust) and the out-of-line cffi module (build_ffi.py).

The cffi module is ABI mode (no C compilation, no link against the cdylib): setuptools-rust
builds C extensions before Rust ones, so an API-mode module could not link the library in a
clean build. zarrs_cffi._bindings.library dlopens the packaged library at first use instead.

Nothing in the package is tied to a Python version: the generated cffi module is pure Python
and the library is a plain C ABI that never links libpython. So the library keeps its plain
platform name (``libzarrs_ffi.so``, not ``libzarrs_ffi.cpython-312-x86_64-linux-gnu.so``,
which setuptools-rust would give any extension module) and wheels are tagged
``py3-none-<platform>``, one wheel for every Python 3 (the tag getsentry/milksnake gives
cffi-over-Rust wheels). ``scripts/wheel`` builds one and makes it manylinux.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext
from setuptools_rust import Binding, RustExtension

LIBRARY = "zarrs_cffi.libzarrs_ffi"
# The platform's own name for the library: zarrs_cffi._bindings.library.library_path() looks for exactly
# this name (keep the two in step).
LIBRARY_FILE = {"win32": "zarrs_ffi.dll", "darwin": "libzarrs_ffi.dylib"}.get(
    sys.platform, "libzarrs_ffi.so"
)


class build_ext_plain_library_name(build_ext):
    """Place the library under its platform name instead of a CPython extension-module name.

    setuptools-rust asks ``build_ext.get_ext_fullpath`` where the library goes; that path
    comes from here, for wheels and for in-place (editable) builds alike.
    """

    def get_ext_filename(self, fullname: str) -> str:
        # Asked with the dotted name, or (by get_ext_fullpath) with its last part only.
        if fullname in (LIBRARY, LIBRARY.rpartition(".")[2]):
            return os.path.join(*fullname.split(".")[:-1], LIBRARY_FILE)
        return str(super().get_ext_filename(fullname))


class bdist_wheel_py3_none(bdist_wheel):
    """Tag wheels ``py3-none-<platform>``: platform-specific, Python-version independent."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    rust_extensions=[
        RustExtension(
            LIBRARY,
            path="zarrs-ffi/Cargo.toml",
            binding=Binding.NoBinding,
            debug=False,
        )
    ],
    cffi_modules=["build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": build_ext_plain_library_name, "bdist_wheel": bdist_wheel_py3_none},
)
