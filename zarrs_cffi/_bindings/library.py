"""Loads the native library: the only module that opens it and sees cffi's ``lib``.

Loading is lazy and happens once: zarr imports every installed codec-pipeline plugin, so a
failure here must never surface at ``import zarrs_cffi`` time, only when native code is
first needed (where the pipeline turns it into a visible fallback).
"""

from __future__ import annotations

import threading
from enum import IntEnum
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import (
    ZarrsChecksumError,
    ZarrsCodecError,
    ZarrsError,
    ZarrsMemoryError,
    ZarrsMetadataError,
    ZarrsPanicError,
    ZarrsReadOnlyError,
    ZarrsStorageError,
    ZarrsUnsupportedError,
    ZarrsValueError,
)

try:
    from .._zarrs_cffi_ffi import ffi
except ImportError:  # running from a source tree where the module was not built
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(
        (Path(__file__).parents[2] / "zarrs-ffi" / "include" / "zarrs_ffi_cdef.h").read_text()
    )

__all__ = ["Result", "check", "ffi", "lib", "library_path"]


class Result(IntEnum):
    """``ZarrsResult`` in zarrs_ffi.h: stable values, never renumbered (a test compares
    them with the library's)."""

    SUCCESS = 0
    NULL_POINTER = 1
    INVALID_ARGUMENT = 2
    BUFFER_SIZE = 3
    STORAGE = 4
    INVALID_METADATA = 5
    CODEC = 6
    CHECKSUM = 7
    UNSUPPORTED = 8
    READ_ONLY = 9
    PANIC = 10
    OUT_OF_MEMORY = 11


_ERRORS: dict[int, type[ZarrsError]] = {
    Result.NULL_POINTER: ZarrsValueError,
    Result.INVALID_ARGUMENT: ZarrsValueError,
    Result.BUFFER_SIZE: ZarrsValueError,
    Result.STORAGE: ZarrsStorageError,
    Result.INVALID_METADATA: ZarrsMetadataError,
    Result.CODEC: ZarrsCodecError,
    Result.CHECKSUM: ZarrsChecksumError,
    Result.UNSUPPORTED: ZarrsUnsupportedError,
    Result.READ_ONLY: ZarrsReadOnlyError,
    Result.PANIC: ZarrsPanicError,
    Result.OUT_OF_MEMORY: ZarrsMemoryError,
}

_lock = threading.Lock()
_lib: Any = None


def library_path() -> Path:
    """The path of the packaged native library.

    It has the platform's plain library name, with no Python ABI tag: the same file serves
    every Python 3 (setup.py names it). A source tree built before setup.py named it so has it
    only under an extension-module name (``libzarrs_ffi.cpython-312-x86_64-linux-gnu.so``):
    that is used only when the plain name is absent, so a stale copy left next to a fresh
    build is never loaded instead of it.
    """
    import sys

    name = {"win32": "zarrs_ffi.dll", "darwin": "libzarrs_ffi.dylib"}.get(
        sys.platform, "libzarrs_ffi.so"
    )
    here = Path(__file__).parents[1]  # the package directory
    if (here / name).is_file():
        return here / name
    stem, _, suffix = name.rpartition(".")
    older = sorted(here.glob(f"{stem}.*.{suffix}"))
    if older:
        return older[0]
    raise ZarrsError(
        f"the native library {name} is not in {here}: build it (scripts/setup, or pip install .)"
    )


def lib() -> Any:
    """The loaded native library, loading and version-checking it on first use."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                loaded = ffi.dlopen(str(library_path()))
                native_version = ffi.string(loaded.zarrs_ffi_version()).decode()
                if native_version != __version__:
                    raise ZarrsError(
                        f"native library version {native_version} does not match "
                        f"zarrs_cffi {__version__}: reinstall the package"
                    )
                _lib = loaded
    return _lib


def check(code: int) -> None:
    """Raise the matching exception, with the native message, unless ``code`` is success."""
    if code == Result.SUCCESS:
        return
    message = ffi.string(lib().zarrs_last_error()).decode("utf-8", "replace")
    raise _ERRORS.get(code, ZarrsError)(message or f"native error code {code}", code)
