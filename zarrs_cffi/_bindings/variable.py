"""Variable-length chunks (``string``, ``bytes``) between element bytes with offsets and
encoded bytes (``ffi/variable.rs``). Whole chunks only; no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ZarrsValueError
from .batch import _pointers
from .convert import _bytes_ptr, _check_named, _u64_ptr, lib
from .library import Result, check, ffi

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

    from .array import ArrayHandle
    from .options import Options

__all__ = ["decode_variable_chunks", "encode_variable_chunks"]


def _shapes(shapes: Sequence[Sequence[int]], ndim: int) -> npt.NDArray[np.uint64]:
    array = np.array(shapes, dtype=np.uint64).reshape(len(shapes), ndim)
    return np.ascontiguousarray(array)


def decode_variable_chunks(
    array: ArrayHandle,
    options: Options,
    encoded: Sequence[Any],
    shapes: Sequence[Sequence[int]],
    names: Callable[[int], str] | None = None,
) -> list[tuple[bytes, npt.NDArray[np.uint64]]]:
    """Decode whole chunks of a variable-length type: per chunk, the element bytes and the
    ``elements + 1`` offsets into them. Errors name the failing chunk ``names(i)`` (``i``:
    its position), else ``chunk-<i>``."""
    if len(encoded) != len(shapes):
        raise ZarrsValueError(f"{len(encoded)} encoded chunks for {len(shapes)} shapes")
    pointers, lengths, _keep = _pointers(encoded)
    shape_array = _shapes(shapes, array.ndim)
    out = ffi.new("ZarrsVariableChunks **")
    code = lib().zarrs_array_decode_variable_chunks(
        array._handle, options._cdata(), len(encoded), pointers, lengths,
        _u64_ptr(shape_array.reshape(-1)), shape_array.size, out,
    )
    if code != Result.SUCCESS:
        _check_named(code, names)
    handle = ffi.gc(out[0], lib().zarrs_variable_chunks_free)
    data_ptr = ffi.new("const uint8_t **")
    data_len = ffi.new("size_t *")
    offsets_ptr = ffi.new("const uint64_t **")
    offsets_len = ffi.new("size_t *")
    result = []
    for i in range(len(encoded)):
        check(lib().zarrs_variable_chunks_get(handle, i, data_ptr, data_len, offsets_ptr, offsets_len))
        blob = bytes(ffi.buffer(data_ptr[0], data_len[0])) if data_len[0] else b""
        element_offsets = np.frombuffer(ffi.buffer(offsets_ptr[0], 8 * offsets_len[0]), dtype=np.uint64).copy()
        result.append((blob, element_offsets))
    return result


def encode_variable_chunks(
    array: ArrayHandle, options: Options, shapes: Sequence[Sequence[int]], data: bytes, offsets: npt.NDArray[np.uint64]
) -> list[bytes]:
    """Encode whole chunks of a variable-length type from their elements back to back
    (``data``) and the elements' byte offsets (total elements + 1)."""
    shape_array = _shapes(shapes, array.ndim)
    offsets = np.ascontiguousarray(offsets, dtype=np.uint64)
    out = ffi.new("ZarrsEncodedChunks **")
    check(
        lib().zarrs_array_encode_variable_chunks(
            array._handle, options._cdata(), len(shapes), _u64_ptr(shape_array.reshape(-1)), shape_array.size,
            _bytes_ptr(data), len(data), _u64_ptr(offsets), offsets.size, out,
        )
    )
    handle = ffi.gc(out[0], lib().zarrs_encoded_chunks_free)
    ptr = ffi.new("const uint8_t **")
    size = ffi.new("size_t *")
    result = []
    for i in range(len(shapes)):
        check(lib().zarrs_encoded_chunks_get(handle, i, ptr, size))
        result.append(bytes(ffi.buffer(ptr[0], size[0])))
    return result
