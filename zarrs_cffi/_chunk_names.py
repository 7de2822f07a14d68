"""How the direct API names an array's chunks: the write locks' keys of a region or a chunk,
and the chunk grid the native gathers take."""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.core.chunk_key_encodings import V2ChunkKeyEncoding, parse_chunk_key_encoding

from ._bindings import ChunkBatch
from ._core import keylocks
from ._selection.whole import Grid

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._bindings import ArrayHandle

__all__ = ["ChunkNames"]


class ChunkNames:
    """One array's chunks by name.

    Parameters
    ----------
    native
        The array's handle.
    lock_prefix
        What names the array's stored objects in the write-lock table (``keylocks``).
    """

    def __init__(self, native: ArrayHandle, lock_prefix: str) -> None:
        self._native = native
        self.lock_prefix = lock_prefix
        # The chunk shape of a regular grid, else each axis's chunk boundaries: computed at
        # the first write.
        self._grid: tuple[int, ...] | list[list[int]] | None = None
        self._key_of: Callable[[tuple[int, ...]], str] | None = None
        # The grid as the native gathers take it, at the first oindex or vindex.
        self._gathers: Grid | None = None

    def grid(self) -> Grid:
        """The chunk grid as the native gathers take it (computed once)."""
        if self._gathers is None:
            grid = self._grid or self._shape_grid()
            key_of = self._key_of or self._chunk_key_function()
            shape = self._native.shape
            if isinstance(grid, tuple):
                self._gathers = Grid.regular(shape, grid, key_of)
            else:
                self._gathers = Grid(shape, tuple(np.array(edges, dtype=np.int64) for edges in grid), key_of)
        return self._gathers

    def _shape_grid(self) -> tuple[int, ...] | list[list[int]]:
        """The chunk shape of a regular grid, else each axis's chunk boundaries (0, then the
        end of each chunk); computed once."""
        if self._grid is None:
            metadata = self._native.metadata
            grid = metadata.get("chunk_grid")
            if metadata.get("zarr_format") == 2 or (isinstance(grid, dict) and grid.get("name") == "regular"):
                self._grid = tuple(self._native.chunk_shape([0] * self._native.ndim))
            else:
                bounds = []
                for axis, count in enumerate(self._native.chunk_grid_shape):
                    edges, at, index = [0], 0, [0] * self._native.ndim
                    for i in range(count):
                        index[axis] = i
                        at += self._native.chunk_shape(index)[axis]
                        edges.append(at)
                    bounds.append(edges)
                self._grid = bounds
        return self._grid

    def region_batch(self, start: Sequence[int], extent: Sequence[int]) -> ChunkBatch:
        """The chunks a region touches as a native batch: per chunk its key, its shape, the
        part of it in the region and where that lands in a buffer of the region's shape."""
        grid = self.grid()
        per_axis = []
        for edges, lo, n in zip(grid.edges, start, extent, strict=True):
            first = int(np.searchsorted(edges, lo, side="right")) - 1
            last = int(np.searchsorted(edges, lo + n, side="left"))
            chunks = np.arange(first, last)
            begin = np.maximum(edges[chunks], lo)
            end = np.minimum(edges[chunks + 1], lo + n)
            per_axis.append((chunks, edges[chunks + 1] - edges[chunks], begin - edges[chunks], end - begin, begin - lo))
        combos = list(itertools.product(*[range(len(axis[0])) for axis in per_axis]))
        geometry = np.array(
            [[[axis[part][i] for axis, i in zip(per_axis, combo)] for part in (1, 2, 3, 4)] for combo in combos],
            dtype=np.uint64,
        ).reshape(len(combos), 4, len(per_axis))
        keys = [grid.key_of(tuple(int(axis[0][i]) for axis, i in zip(per_axis, combo))) for combo in combos]
        return ChunkBatch.build(keys, geometry)

    def holding(self, start: Sequence[int], extent: Sequence[int]) -> keylocks.Holding:
        """The write locks of every chunk (shard) the region ``start`` + ``extent`` touches."""
        if not all(extent):
            return keylocks.Holding([])
        grid = self._grid or self._shape_grid()
        key = self._key_of or self._chunk_key_function()
        # start, extent and grid have one entry per axis (``basic_region``).
        if isinstance(grid, tuple):
            first = [b // c for b, c in zip(start, grid)]
            last = [(b + e - 1) // c for b, e, c in zip(start, extent, grid)]
            if first == last:  # one chunk: the common small write, kept short (it holds the GIL)
                return keylocks.Holding([self.lock_prefix + key(tuple(first))])
            ranges = [range(f, l + 1) for f, l in zip(first, last)]
        else:
            ranges = [
                range(bisect_right(edges, b) - 1, bisect_left(edges, b + e))
                for b, e, edges in zip(start, extent, grid)
            ]
        return keylocks.holding(self.lock_prefix, [key(index) for index in itertools.product(*ranges)])

    def holding_chunk(self, chunk_indices: Sequence[int]) -> keylocks.Holding:
        key = self._key_of or self._chunk_key_function()
        return keylocks.holding(self.lock_prefix, [key(tuple(int(i) for i in chunk_indices))])

    def _chunk_key_function(self) -> Callable[[tuple[int, ...]], str]:
        """How the write locks name a chunk: zarr's encoder of the metadata's chunk key
        encoding (a sixth of a native call's cost, and a write of hundreds of chunks names
        each) when it gives the native keys of the first and the last chunk, else the
        native call."""
        native = self._native.chunk_key
        key_of: Callable[[tuple[int, ...]], str] = native
        try:
            metadata = self._native.metadata
            if metadata.get("zarr_format") == 2:
                encoding: Any = V2ChunkKeyEncoding(separator=metadata.get("dimension_separator") or ".")
            else:
                encoding = parse_chunk_key_encoding(metadata["chunk_key_encoding"])
            probes = [(0,) * self._native.ndim, tuple(max(0, n - 1) for n in self._native.chunk_grid_shape)]
            first = native(probes[0])
            node = first[: len(first) - len(encoding.encode_chunk_key(probes[0]))]
            encode: Callable[[tuple[int, ...]], str] = encoding.encode_chunk_key
            if all(native(probe) == node + encode(probe) for probe in probes):

                def key_of(index: tuple[int, ...]) -> str:
                    return node + encode(index)

        except (KeyError, TypeError, ValueError):
            pass  # an encoding zarr does not know: the native call names every chunk
        self._key_of = key_of
        return key_of
