"""``ArrayHandle``: an open native array, composed of one mixin per C group.

This module holds the array group itself (``ffi/array.rs``): opening, the array's shape,
chunk grid, data type, metadata and chunk keys, and the region and whole-chunk calls behind
``zarrs_cffi.Array``. The other groups' methods come from ``chunks.py`` (``ffi/batch.rs``,
``ffi/encoded_io.rs``), ``completion.py``, ``gather.py``, ``codec.py`` and ``plan.py``; they
are plain class attributes of ``ArrayHandle``, so tests may patch them there.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ZarrsValueError
from .chunks import ChunksMixin
from .codec import CodecMixin
from .completion import CompletionMixin
from .convert import _in_buffer, _out_buffer, _read_string, _str, _u64, _u64_cells, _u64_ptr, lib
from .gather import GatherMixin
from .library import Result, check, ffi
from .plan import PlanMixin

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from .options import Options
    from .storage import Storage

__all__ = ["ArrayHandle"]


class ArrayHandle(ChunksMixin, CompletionMixin, GatherMixin, CodecMixin, PlanMixin):
    """An open native array (``ZarrsArray``)."""

    __slots__ = ()

    def __init__(self, handle: Any, storage: Storage) -> None:
        self._handle = ffi.gc(handle, lib().zarrs_array_free)
        self.storage = storage
        ndim = ffi.new("size_t *")
        check(lib().zarrs_array_dimensionality(self._handle, ndim))
        self.ndim = int(ndim[0])
        # Fixed for the handle's life (no C call changes it): read once, not per call.
        self._shape = self._dims(lib().zarrs_array_shape)
        size = ffi.new("size_t *")
        # 0 for variable-length data types, whose elements have no fixed size.
        code = lib().zarrs_array_element_size(self._handle, size)
        self.element_size = int(size[0]) if code == Result.SUCCESS else 0
        if code not in (Result.SUCCESS, Result.UNSUPPORTED):
            check(code)

    @classmethod
    def open(cls, storage: Storage, path: str = "/") -> ArrayHandle:
        """Open the array at ``path``, reading its metadata from the store."""
        out = ffi.new("ZarrsArray **")
        data, size = _str(path)
        check(lib().zarrs_array_open(storage._handle, data, size, out))
        return cls(out[0], storage)

    @classmethod
    def open_with_metadata(
        cls, storage: Storage, metadata: str | dict[str, Any], path: str = "/", *, create: bool = False
    ) -> ArrayHandle:
        """Open (or, with ``create``, create) the array at ``path`` from metadata JSON."""
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        out = ffi.new("ZarrsArray **")
        path_data, path_size = _str(path)
        meta_data, meta_size = _str(text)
        function = lib().zarrs_array_create if create else lib().zarrs_array_open_with_metadata
        check(function(storage._handle, path_data, path_size, meta_data, meta_size, out))
        return cls(out[0], storage)

    def _dims(self, function: Any) -> tuple[int, ...]:
        out = np.zeros(self.ndim, dtype=np.uint64)
        check(function(self._handle, _u64_ptr(out), self.ndim))
        return tuple(int(v) for v in out)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def chunk_grid_shape(self) -> tuple[int, ...]:
        return self._dims(lib().zarrs_array_chunk_grid_shape)

    def _indices(self, chunk_indices: Sequence[int]) -> npt.NDArray[np.uint64]:
        indices = _u64(chunk_indices, "chunk_indices")
        if indices.size != self.ndim:
            raise ZarrsValueError(f"chunk indices {tuple(chunk_indices)} need {self.ndim} values")
        return indices

    def chunk_shape(self, chunk_indices: Sequence[int]) -> tuple[int, ...]:
        indices = self._indices(chunk_indices)
        out = np.zeros(self.ndim, dtype=np.uint64)
        check(lib().zarrs_array_chunk_shape(self._handle, _u64_ptr(indices), self.ndim, _u64_ptr(out)))
        return tuple(int(v) for v in out)

    @property
    def data_type(self) -> str:
        return _read_string(lambda b, n, o: lib().zarrs_array_data_type(self._handle, b, n, o))

    @property
    def metadata(self) -> dict[str, Any]:
        text = _read_string(lambda b, n, o: lib().zarrs_array_metadata(self._handle, b, n, o))
        result: dict[str, Any] = json.loads(text)
        return result

    def chunk_key(self, chunk_indices: Sequence[int]) -> str:
        indices = self._indices(chunk_indices)
        ptr = _u64_ptr(indices)
        return _read_string(
            lambda b, n, o: lib().zarrs_array_chunk_key(self._handle, ptr, self.ndim, b, n, o)
        )

    def _check_region(self, start: Sequence[int], data: npt.NDArray[Any]) -> None:
        # The C call reads ``ndim`` values from each of start and shape.
        if len(start) != self.ndim or data.ndim != self.ndim:
            raise ZarrsValueError(
                f"a region of this {self.ndim}-dimensional array needs {self.ndim} start values "
                f"and a {self.ndim}-dimensional buffer, not {len(start)} and {data.ndim}"
            )

    def retrieve_subset(
        self, options: Options, start: Sequence[int], out: npt.NDArray[Any]
    ) -> None:
        """Read the region at ``start`` with ``out.shape`` into ``out``."""
        self._check_elements(out, "out")
        self._check_region(start, out)
        check(
            lib().zarrs_array_retrieve_subset(
                self._handle, options._cdata(), _u64_cells(start, "start"), _u64_cells(out.shape, "shape"), self.ndim,
                _out_buffer(out, "out"), out.nbytes,
            )
        )

    def store_subset(self, options: Options, start: Sequence[int], data: npt.NDArray[Any]) -> None:
        """Write ``data`` to the region at ``start`` with ``data.shape``."""
        self._check_elements(data, "data")
        self._check_region(start, data)
        check(
            lib().zarrs_array_store_subset(
                self._handle, options._cdata(), _u64_cells(start, "start"), _u64_cells(data.shape, "shape"), self.ndim,
                _in_buffer(data, "data"), data.nbytes,
            )
        )

    def retrieve_chunk(self, options: Options, chunk_indices: Sequence[int], out: npt.NDArray[Any]) -> bool:
        """Decode a whole chunk into ``out``; returns whether it was stored."""
        self._check_elements(out, "out")
        indices = self._indices(chunk_indices)
        present = ffi.new("uint8_t *")
        check(
            lib().zarrs_array_retrieve_chunk(
                self._handle, options._cdata(), _u64_ptr(indices), self.ndim,
                _out_buffer(out, "out"), out.nbytes, present,
            )
        )
        return bool(present[0])

    def store_chunk(self, options: Options, chunk_indices: Sequence[int], data: npt.NDArray[Any]) -> None:
        """Encode and store a whole chunk."""
        self._check_elements(data, "data")
        indices = self._indices(chunk_indices)
        check(
            lib().zarrs_array_store_chunk(
                self._handle, options._cdata(), _u64_ptr(indices), self.ndim,
                _in_buffer(data, "data"), data.nbytes,
            )
        )

    _SUBCHUNK_ORDERS = {"morton": 0, "lexicographic": 1, "colexicographic": 2, "unordered": 1}

    def set_subchunk_write_order(self, order: str) -> None:
        """How inner chunks are laid out in shards written from now on: ``"morton"``
        (default), ``"lexicographic"``, ``"colexicographic"`` or ``"unordered"``."""
        if order not in self._SUBCHUNK_ORDERS:
            raise ZarrsValueError(f"unknown subchunk write order {order!r}")
        check(lib().zarrs_array_set_subchunk_write_order(self._handle, self._SUBCHUNK_ORDERS[order]))

    def set_shard_index_cache(self, max_bytes: int) -> None:
        """Keep at most ``max_bytes`` of shard indexes across reads (0: none). Only remote
        sharded arrays keep any; each use is conditional on the shard's ETag."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 0 <= max_bytes < 1 << 64:
            raise ZarrsValueError(f"max_bytes must be a non-negative integer, not {max_bytes!r}")
        check(lib().zarrs_array_set_shard_index_cache(self._handle, max_bytes))

    def shard_index_cache_usage(self) -> tuple[int, int]:
        """(shard indexes held, bytes they count against the budget)."""
        entries, used = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        check(lib().zarrs_array_shard_index_cache_usage(self._handle, entries, used))
        return int(entries[0]), int(used[0])

    def erase_chunk(self, options: Options, chunk_indices: Sequence[int]) -> None:
        """Erase a chunk; it then reads as the fill value (durably with ``options.fsync``)."""
        indices = self._indices(chunk_indices)
        check(lib().zarrs_array_erase_chunk(self._handle, options._cdata(), _u64_ptr(indices), self.ndim))
