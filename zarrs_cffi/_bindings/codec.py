"""Codec-only calls of ``ArrayHandle``: encoding and decoding bytes the caller moves
(``ffi/codec.rs``), and reading the ``ZarrsEncodedChunks`` they return.

No I/O: chunks arrive and leave as Python bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ZarrsValueError
from .batch import _batch_key, _pointers
from .convert import _check_named, _in_buffer, _out_buffer, _u64, _u64_ptr, lib
from .handle import ArrayBase
from .library import Result, check, ffi

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

    from .batch import ChunkBatch
    from .options import Options

__all__ = ["CodecMixin"]


def _encoded_chunks(out: Any, count: int) -> list[bytes | None]:
    """The ``count`` values of the ``ZarrsEncodedChunks`` written to ``out`` (None: no
    value), copied out; the handle is freed once collected."""
    handle = ffi.gc(out[0], lib().zarrs_encoded_chunks_free)
    ptr = ffi.new("const uint8_t **")
    size = ffi.new("size_t *")
    result: list[bytes | None] = []
    for i in range(count):
        check(lib().zarrs_encoded_chunks_get(handle, i, ptr, size))
        result.append(None if ptr[0] == ffi.NULL else bytes(ffi.buffer(ptr[0], size[0])))
    return result


class CodecMixin(ArrayBase):
    """``decode_chunks`` and ``encode_chunks``."""

    __slots__ = ()

    def decode_chunks(
        self,
        options: Options,
        batch: ChunkBatch,
        encoded: Sequence[bytes | None],
        out: npt.NDArray[Any],
        names: Callable[[int], str] | None = None,
    ) -> None:
        """Decode caller-fetched chunk bytes (None: missing) into ``out``.

        Errors name the failing chunk by the batch's key, or for a batch without keys by
        ``names(i)`` (``i``: its position), else as ``chunk-<i>``.
        """
        self._check_elements(out, "out")
        if len(encoded) != len(batch):
            raise ZarrsValueError(f"{len(encoded)} encoded chunks for a batch of {len(batch)}")
        pointers, lengths, _keep = _pointers(encoded)
        geometry, geometry_len = self._geometry_args(batch)
        out_shape = _u64(out.shape, "out.shape")
        code = lib().zarrs_array_decode_chunks(
            self._handle, options._cdata(), len(batch), pointers, lengths,
            geometry, geometry_len, _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
        )
        if code != Result.SUCCESS:
            _check_named(code, _batch_key(batch) or names)

    def encode_chunks(
        self,
        options: Options,
        batch: ChunkBatch,
        value: npt.NDArray[Any],
        existing: Sequence[bytes | None] | None = None,
        names: Callable[[int], str] | None = None,
    ) -> list[bytes | None]:
        """Encode chunks from ``value``; None in the result means "delete this chunk".

        ``existing`` holds the current encoded bytes of chunks written only in part. Errors
        name chunks as ``decode_chunks``' do.
        """
        self._check_elements(value, "value")
        existing = existing if existing is not None else [None] * len(batch)
        if len(existing) != len(batch):
            raise ZarrsValueError(f"{len(existing)} existing chunks for a batch of {len(batch)}")
        pointers, lengths, _keep = _pointers(existing)
        geometry, geometry_len = self._geometry_args(batch)
        value_shape = _u64(value.shape, "value.shape")
        out = ffi.new("ZarrsEncodedChunks **")
        code = lib().zarrs_array_encode_chunks(
            self._handle, options._cdata(), len(batch), geometry, geometry_len,
            _in_buffer(value, "value"), value.nbytes, _u64_ptr(value_shape), value.ndim,
            pointers, lengths, out,
        )
        if code != Result.SUCCESS:
            _check_named(code, _batch_key(batch) or names)
        return _encoded_chunks(out, len(batch))
