"""Python values into the pointers and lengths the C calls take, and errors back out.

Every wrapper module reaches the library through ``lib()`` here and raises through
``check`` (or ``_check_named``). Nothing here knows a handle or a byte format.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ZarrsError, ZarrsValueError
from . import library
from .library import Result, check, ffi

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt


def lib() -> Any:
    """The loaded library, looked up on ``library`` at each call: one patch of
    ``zarrs_cffi._bindings.library.lib`` reaches the calls of every wrapper module (tests
    count native calls that way)."""
    return library.lib()


def _u64(values: Sequence[int] | npt.NDArray[Any], name: str) -> npt.NDArray[np.uint64]:
    array = np.ascontiguousarray(values, dtype=np.uint64)
    if array.ndim != 1:
        raise ZarrsValueError(f"{name} must be one-dimensional")
    return array


def _u64_cells(values: Sequence[int], name: str) -> Any:
    """A new C ``uint64_t`` array of ``values`` (Python or numpy integers): for the few
    coordinates of a region, cheaper than a numpy array and its buffer."""
    try:
        return ffi.new("uint64_t[]", values)
    except (OverflowError, TypeError) as exc:
        raise ZarrsValueError(f"{name} must be integers from 0 to 2**64 - 1, not {values!r}") from exc


def _flat_u64(values: npt.NDArray[Any]) -> npt.NDArray[np.uint64]:
    """``values`` flattened into a C-contiguous ``uint64`` array (a view when it is one)."""
    return np.ascontiguousarray(values, dtype=np.uint64).reshape(-1)


def _u64_ptr(array: npt.NDArray[np.uint64]) -> Any:
    return ffi.from_buffer("uint64_t[]", array)


def _bytes_ptr(data: bytes) -> Any:
    return ffi.from_buffer("uint8_t[]", data)


def _in_buffer(array: npt.NDArray[Any], name: str) -> Any:
    if not array.flags.c_contiguous:
        raise ZarrsValueError(f"{name} must be C-contiguous")
    return ffi.from_buffer("uint8_t[]", array)


def _out_buffer(array: npt.NDArray[Any], name: str) -> Any:
    if not array.flags.c_contiguous:
        raise ZarrsValueError(f"{name} must be C-contiguous")
    if not array.flags.writeable:
        raise ZarrsValueError(f"{name} must be writeable")
    return ffi.from_buffer("uint8_t[]", array, require_writable=True)


def _str(text: str) -> tuple[bytes, int]:
    data = text.encode("utf-8")
    return data, len(data)


def _read_string(call: Any) -> str:
    """Run a C call following the (buf, buf_len, len_out) convention and decode its text."""
    length = ffi.new("size_t *")
    # The first call with an empty buffer reports the size; BUFFER_SIZE is expected.
    code = call(ffi.NULL, 0, length)
    if code not in (Result.SUCCESS, Result.BUFFER_SIZE):
        check(code)
    buf = ffi.new("char[]", max(length[0], 1))
    check(call(buf, length[0], length))
    return bytes(ffi.buffer(buf, length[0])).decode("utf-8")


# How the codec-only calls, which take no keys, name a chunk in their errors: by position.
_POSITION = re.compile(r"chunk-(\d+)(?= in )")


def _check_named(code: int, name: Callable[[int], str] | None) -> None:
    """``check`` for a codec-only call: an error naming the failing chunk by its position in
    the batch (``chunk-<i> in <array>: ...``) names it ``name(i)`` instead, the store key
    the caller fetched it from. Costs nothing unless the call failed."""
    try:
        check(code)
    except ZarrsError as exc:
        message = str(exc)
        match = _POSITION.match(message)
        if name is None or match is None:
            raise
        try:
            key = name(int(match.group(1)))
        except (IndexError, KeyError, UnicodeDecodeError):
            raise exc from None
        raise type(exc)(key + message[match.end() :], exc.code) from None
