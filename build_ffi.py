"""cffi builder: out-of-line ABI mode over the committed cdef (zarrs-ffi/include).

``set_source(..., None)`` makes cffi generate a pure-Python module
(``zarrs_cffi/_zarrs_cffi_ffi.py``) instead of a C extension: nothing is compiled or linked
against a Python version, so the package's wheels are ``py3-none`` (tests/interop/test_wheel.py
checks the module in the wheel is a ``.py`` file).
"""

from pathlib import Path

from cffi import FFI

CDEF = Path(__file__).parent / "zarrs-ffi" / "include" / "zarrs_ffi_cdef.h"

ffibuilder = FFI()
ffibuilder.cdef(CDEF.read_text())
# None as the source: ABI mode (the library is dlopened at run time by zarrs_cffi._bindings.library).
ffibuilder.set_source("zarrs_cffi._zarrs_cffi_ffi", None)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
