"""cffi builder: out-of-line ABI mode over the committed cdef (zarrs-ffi/include)."""

from pathlib import Path

from cffi import FFI

CDEF = Path(__file__).parent / "zarrs-ffi" / "include" / "zarrs_ffi_cdef.h"

ffibuilder = FFI()
ffibuilder.cdef(CDEF.read_text())
ffibuilder.set_source("zarrs_cffi._zarrs_cffi_ffi", None)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
