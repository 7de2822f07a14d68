"""Exceptions raised by zarrs_cffi.

Every error from the native library is a `ZarrsError`; each subclass also inherits the
builtin it corresponds to, so callers can catch either (``except ValueError`` still works
for a corrupt chunk).
"""

from __future__ import annotations

__all__ = [
    "ZarrsChecksumError",
    "ZarrsCodecError",
    "ZarrsError",
    "ZarrsMemoryError",
    "ZarrsMetadataError",
    "ZarrsPanicError",
    "ZarrsReadOnlyError",
    "ZarrsStorageError",
    "ZarrsUnsupportedError",
    "ZarrsValueError",
]


class ZarrsError(Exception):
    """Base class of every error raised by zarrs_cffi.

    Parameters
    ----------
    message : str
        What went wrong, naming the chunk key, array or argument where known.
    code : int, default 0
        The native result code (``ZARRS_ERROR_*`` in zarrs_ffi.h), or 0 for errors raised
        by the Python layers.

    Attributes
    ----------
    code : int
        The native result code, as given.
    """

    code: int

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class ZarrsValueError(ZarrsError, ValueError):
    """An invalid argument: wrong shape, dtype, buffer size or region.

    Takes the parameters of `ZarrsError`.
    """


class ZarrsStorageError(ZarrsError, OSError):
    """The storage failed: an I/O error, a permission problem.

    Takes the parameters of `ZarrsError`.
    """


class ZarrsMetadataError(ZarrsError, ValueError):
    """Array metadata is missing or invalid.

    Takes the parameters of `ZarrsError`.
    """


class ZarrsCodecError(ZarrsError, ValueError):
    """A chunk could not be encoded or decoded: corrupt or truncated bytes.

    Takes the parameters of `ZarrsError`.
    """


class ZarrsChecksumError(ZarrsCodecError):
    """A chunk checksum (e.g. crc32c) did not match.

    Takes the parameters of `ZarrsError`.
    """


class ZarrsUnsupportedError(ZarrsError, NotImplementedError):
    """The array uses a codec, data type or feature the native library cannot handle.

    Takes the parameters of `ZarrsError`.
    """


class ZarrsReadOnlyError(ZarrsError, ValueError):
    """A write to read-only storage.

    Takes the parameters of `ZarrsError`.
    """


class ZarrsMemoryError(ZarrsError, MemoryError):
    """Memory for a chunk, shard or decoded stream (sized by the metadata or the stored
    bytes) could not be allocated; nothing was read or written, and the library stays usable.

    Takes the parameters of `ZarrsError`.
    """


class ZarrsPanicError(ZarrsError, RuntimeError):
    """An internal error in the native library (a caught panic): please report it.

    Takes the parameters of `ZarrsError`.
    """
