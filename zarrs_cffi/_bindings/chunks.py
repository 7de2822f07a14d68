"""Batch reads and writes through native storage (``ffi/batch.rs``) and native I/O of
encoded chunk bytes (``ffi/encoded_io.rs``): the ``ArrayHandle`` methods that move a batch
of chunks between storage and numpy, or storage and Python bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ZarrsValueError
from .batch import _key_args, _pointers
from .codec import _encoded_chunks
from .convert import _in_buffer, _out_buffer, _u64, _u64_ptr, lib
from .handle import ArrayBase
from .library import check, ffi

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from .batch import ChunkBatch
    from .options import Options

__all__ = ["ChunksMixin"]


class ChunksMixin(ArrayBase):
    """``read_chunks``, ``write_chunks``, ``fetch_encoded`` and ``store_encoded``."""

    __slots__ = ()

    def read_chunks(self, options: Options, batch: ChunkBatch, out: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Read a batch into ``out`` (``out.ndim`` must equal the array's); returns presence."""
        self._check_out(out)
        geometry, geometry_len = self._geometry_args(batch)
        out_shape = _u64(out.shape, "out.shape")
        present = np.zeros(len(batch), dtype=np.uint8)
        check(
            lib().zarrs_array_read_chunks(
                self._handle, options._cdata(), len(batch), batch.keys, len(batch.keys),
                _u64_ptr(batch.key_offsets), geometry, geometry_len,
                _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
                ffi.from_buffer("uint8_t[]", present, require_writable=True), len(batch),
            )
        )
        return present.view(np.bool_)

    def write_chunks(self, options: Options, batch: ChunkBatch, value: npt.NDArray[Any]) -> None:
        """Write a batch from ``value`` (the array's ndim, or 0-d to broadcast)."""
        self._check_elements(value, "value")
        if value.ndim not in (0, self.ndim):
            raise ZarrsValueError(f"value has {value.ndim} dimensions; the array has {self.ndim}")
        geometry, geometry_len = self._geometry_args(batch)
        value_shape = _u64(value.shape, "value.shape")
        check(
            lib().zarrs_array_write_chunks(
                self._handle, options._cdata(), len(batch), batch.keys, len(batch.keys),
                _u64_ptr(batch.key_offsets), geometry, geometry_len,
                _in_buffer(value, "value"), value.nbytes, _u64_ptr(value_shape), value.ndim,
            )
        )

    def fetch_encoded(self, options: Options, keys: Sequence[str]) -> list[bytes | None]:
        """The stored bytes of each key (None: missing), fetched natively and concurrently,
        not decoded: for ``decode_chunks`` and as ``existing`` for ``encode_chunks``."""
        data, offsets = _key_args(keys)
        out = ffi.new("ZarrsEncodedChunks **")
        check(lib().zarrs_array_fetch_encoded(self._handle, options._cdata(), len(keys), data, len(data), _u64_ptr(offsets), out))
        return _encoded_chunks(out, len(keys))

    def store_encoded(self, options: Options, keys: Sequence[str], encoded: Sequence[Any]) -> None:
        """Store each key's encoded bytes natively (None: erase the key), concurrently; each
        value replaced atomically, as ``write_chunks`` does."""
        if len(encoded) != len(keys):
            raise ZarrsValueError(f"{len(encoded)} encoded chunks for {len(keys)} keys")
        data, offsets = _key_args(keys)
        pointers, lengths, _keep = _pointers(encoded)
        check(
            lib().zarrs_array_store_encoded(
                self._handle, options._cdata(), len(keys), data, len(data), _u64_ptr(offsets), pointers, lengths
            )
        )
