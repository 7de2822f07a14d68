"""Build the Rust cdylib (setuptools-rust) and the out-of-line cffi module (build_ffi.py).

The cffi module is ABI mode (no C compilation, no link against the cdylib): setuptools-rust
builds C extensions before Rust ones, so an API-mode module could not link the library in a
clean build. zarrs_cffi._ffi dlopens the packaged library at first use instead.
"""

from setuptools import setup
from setuptools_rust import Binding, RustExtension

setup(
    rust_extensions=[
        RustExtension(
            "zarrs_cffi.libzarrs_ffi",
            path="zarrs-ffi/Cargo.toml",
            binding=Binding.NoBinding,
            debug=False,
        )
    ],
    cffi_modules=["build_ffi.py:ffibuilder"],
)
