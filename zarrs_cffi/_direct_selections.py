"""The direct API's selections that zarr's own indexers plan: writes of scattered
selections (``oindex``, ``vindex``, masks, stepped slices) and every read and write of a
variable-length data type; and ``Array.blocks``.

zarr's indexer turns a selection into per-chunk selections (``ChunkRequest``s, as zarr
hands them to a codec pipeline), and from there the pipeline's own pieces do the work:
a scattered write is a read-modify-write of each chunk's bounding box
(``_selection/boxes.py``: the box read natively into scratch, the selection copied in with
numpy, the box written back natively, merged into its chunk and the chunk stored whole), and
variable-length chunks are decoded and encoded whole natively, numpy selecting
(``_pipeline/variable.py``). A write holds the write locks of every chunk it touches
(``keylocks``) from its first fetch to its last store, and each chunk is replaced whole,
so it ends old or new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from zarr.core.array_spec import ArrayConfig, ArraySpec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.chunk_grids import ChunkGrid
from zarr.core.indexing import (
    BasicIndexer,
    CoordinateIndexer,
    MaskIndexer,
    OrthogonalIndexer,
    ensure_tuple,
    is_coordinate_selection,
    is_mask_selection,
    is_pure_fancy_indexing,
    is_pure_orthogonal_indexing,
    replace_lists,
)

from zarr.errors import VindexInvalidSelectionError

from ._core import keylocks
from ._core.fallback import Fallback
from ._pipeline import variable
from ._pipeline.record import ArrayRecord
from ._selection.boxes import copy_into_boxes, plan_boxes
from ._selection.requests import ChunkRequest
from .errors import ZarrsUnsupportedError, ZarrsValueError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

    from ._bindings import ArrayHandle, Options
    from ._direct_open import Typed

__all__ = ["Selections", "kind_of"]


class _Key(NamedTuple):
    """What the pipeline's pieces read of zarr's ``StorePath``: the store key."""

    path: str


def kind_of(selection: Any, ndim: int) -> str:
    """How zarr's ``__getitem__``/``__setitem__`` reads ``selection``: ``"points"``
    (``vindex``), ``"orthogonal"`` or ``"basic"``."""
    if is_pure_fancy_indexing(selection, ndim):
        return "points"
    if is_pure_orthogonal_indexing(selection, ndim):
        return "orthogonal"
    return "basic"


@dataclass(frozen=True)
class Selections:
    """One array's selections through zarr's indexers.

    Parameters
    ----------
    native
        The array's handle.
    typed
        Its data type and zarr's metadata (the chunk grid and fill value the indexers and
        chunk specs take).
    key_of
        The native store key of a chunk, by its grid indices.
    lock_prefix
        What names the array's stored objects in the write-lock table.
    store
        zarr's store of the same bytes, or None (whether it deletes chunks of only the fill
        value, for variable-length writes).
    """

    native: ArrayHandle
    typed: Typed
    key_of: Callable[[tuple[int, ...]], str]
    lock_prefix: str
    store: Any

    @property
    def grid(self) -> ChunkGrid:
        """zarr's chunk grid of the array, as its indexers take it (built once)."""
        grid: ChunkGrid | None = self.__dict__.get("_grid")
        if grid is None:
            grid = ChunkGrid.from_metadata(self.typed.metadata)
            object.__setattr__(self, "_grid", grid)
        return grid

    def indexer(self, kind: str, selection: Any) -> Any:
        """zarr's indexer of ``selection`` (``kind``: ``basic``, ``orthogonal`` or
        ``points``); zarr's ``IndexError`` (or ``ValueError``) for one it refuses."""
        shape, grid = self.typed.metadata.shape, self.grid
        if kind == "basic":
            return BasicIndexer(selection, shape, grid)
        if kind == "orthogonal":
            return OrthogonalIndexer(selection, shape, grid)
        selection = replace_lists(ensure_tuple(selection))
        if is_coordinate_selection(selection, shape):
            return CoordinateIndexer(selection, shape, grid)
        if is_mask_selection(selection, shape):
            return MaskIndexer(selection[0], shape, grid)
        raise VindexInvalidSelectionError(
            "unsupported selection type for vectorized indexing; only coordinate selection (tuple of "
            f"integer arrays) and mask selection (single Boolean array) are supported; got {selection!r}"
        )

    def requests(self, indexer: Any, options: Options) -> list[ChunkRequest]:
        """The indexer's chunks as the pipeline's requests (keys, specs, selections)."""
        metadata, grid = self.typed.metadata, self.grid
        config = ArrayConfig.from_dict({"write_empty_chunks": bool(options.store_empty_chunks)})
        prototype = default_buffer_prototype()

        def spec(shape: tuple[int, ...]) -> ArraySpec:
            return ArraySpec(shape=shape, dtype=metadata.dtype, fill_value=metadata.fill_value, config=config, prototype=prototype)

        # A regular grid's chunks share one spec, as zarr builds them (the boxes planner
        # reads a shared spec's shape once).
        regular = spec(tuple(grid.chunk_shape)) if grid.is_regular else None

        def shape_of(coords: tuple[int, ...]) -> tuple[int, ...]:
            chunk = grid[coords]
            if chunk is None:  # never for the indexer's own chunks
                raise IndexError(f"chunk {coords} is outside the grid")
            return tuple(chunk.codec_shape)

        return [
            ChunkRequest(_Key(self.key_of(tuple(coords))), regular or spec(shape_of(tuple(coords))), chunk, out, complete)
            for coords, chunk, out, complete in indexer
        ]

    def _record(self, options: Options) -> ArrayRecord:
        return ArrayRecord(
            array=self.native, dtype=self.typed.dtype, native_dtype=self.typed.dtype, store=self.store,
            options=options, variable=self.typed.variable,
        )

    def read(self, kind: str, selection: Any, options: Options) -> npt.NDArray[Any]:
        """The values of a selection of a variable-length array, shaped as zarr shapes them:
        every chunk touched fetched natively and concurrently, decoded whole natively."""
        indexer = self.indexer(kind, selection)
        out = np.empty(indexer.shape, dtype=self.typed.dtype)
        batch = self.requests(indexer, options)
        if batch:
            encoded = self.native.fetch_encoded(options, [request.byte_getter.path for request in batch])
            variable.read_chunks(self._record(options), batch, out, indexer.drop_axes, encoded)
        return out.reshape(indexer.sel_shape) if hasattr(indexer, "sel_shape") else out

    def write(self, kind: str, selection: Any, value: Any, options: Options) -> None:
        """Write ``value`` (zarr's shape of the selection, or one that broadcasts to it) to a
        selection, holding the write locks of every chunk it touches."""
        indexer = self.indexer(kind, selection)
        data = self._value(value, indexer, kind == "points")
        batch = self.requests(indexer, options)
        if not batch:
            return
        keys = [request.byte_getter.path for request in batch]
        with keylocks.holding(self.lock_prefix, keys):
            if self.typed.variable:
                self._write_variable(batch, keys, data, indexer.drop_axes, options)
            else:
                self._write_boxes(batch, data, indexer.drop_axes, options)

    def _value(self, value: Any, indexer: Any, points: bool) -> npt.NDArray[Any]:
        """``value`` as the data type (in the byte order zarrs encodes from), in the
        indexer's shape or 0-d; coordinate selections take it flat, as zarr does."""
        typed = self.typed
        try:
            data = np.asarray(value, dtype=typed.dtype)
        except (TypeError, ValueError) as exc:
            raise ZarrsValueError(f"value cannot be converted to {typed.dtype}: {exc}") from exc
        if points and data.ndim > 1:
            data = data.reshape(-1)
        if data.ndim and data.shape != tuple(indexer.shape):
            try:
                data = np.broadcast_to(data, indexer.shape)
            except ValueError as exc:
                raise ZarrsValueError(f"value of shape {data.shape} does not fit a selection of shape {indexer.shape}") from exc
        if typed.native_dtype is not None and data.dtype != typed.native_dtype:
            data = data.astype(typed.native_dtype)
        return data

    def _write_boxes(self, batch: list[ChunkRequest], value: npt.NDArray[Any], drop_axes: tuple[int, ...], options: Options) -> None:
        native, native_dtype = self.native, self.typed.native_dtype
        assert native_dtype is not None
        try:
            groups = plan_boxes(batch, native.ndim, native_dtype.itemsize)
        except Fallback as exc:
            raise ZarrsUnsupportedError(f"the direct API cannot write this selection: {exc.reason}") from None
        for group in groups:
            scratch = np.empty(group.scratch_shape, dtype=native_dtype)
            # The boxes are read and written back natively, each merged into its chunk by
            # the library: the stored bytes never cross into Python (fetching them once
            # and passing them back and forth as Python bytes costs more copies of a
            # whole shard than a second fetch does).
            native.read_chunks(options, group.batch, scratch)
            copy_into_boxes(group, scratch, value, drop_axes)
            native.write_chunks(options, group.batch, scratch)

    def _write_variable(
        self, batch: list[ChunkRequest], keys: list[str], value: npt.NDArray[Any], drop_axes: tuple[int, ...], options: Options
    ) -> None:
        partial = [i for i, request in enumerate(batch) if not request.is_complete]
        old = dict(zip(partial, self.native.fetch_encoded(options, [keys[i] for i in partial]), strict=True)) if partial else {}
        encoded = variable.encode_chunks(self._record(options), batch, value, drop_axes, old)
        self.native.store_encoded(options, keys, encoded)


def block_region(selection: Any, edges: tuple[np.ndarray[Any, Any], ...]) -> tuple[slice, ...]:
    """The region of the chunks a block selection (``Array.blocks``: per axis a chunk index
    or a step-1 slice of them) covers, given each axis's chunk boundaries."""
    if not isinstance(selection, tuple):
        selection = (selection,)
    ndim = len(edges)
    if sum(item is Ellipsis for item in selection) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in [item for item in selection if not isinstance(item, np.ndarray)]:
        at = next(i for i, item in enumerate(selection) if item is Ellipsis)
        selection = (*selection[:at], *([slice(None)] * (ndim - len(selection) + 1)), *selection[at + 1 :])
    if len(selection) > ndim:
        raise IndexError(f"too many indices for an array of {ndim} dimensions: {len(selection)}")
    selection = (*selection, *([slice(None)] * (ndim - len(selection))))
    region = []
    for item, bounds in zip(selection, edges, strict=True):
        count = len(bounds) - 1
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            index = int(item) + count if item < 0 else int(item)
            if not 0 <= index < count:
                raise IndexError(f"block index {int(item)} out of bounds for {count} chunks")
            region.append(slice(int(bounds[index]), int(bounds[index + 1])))
        elif isinstance(item, slice):
            start, stop, step = item.indices(count)
            if step != 1:
                raise IndexError(f"only slices with step 1 select blocks, not {item}")
            stop = max(start, stop)
            region.append(slice(int(bounds[start]), int(bounds[stop])))
        else:
            raise IndexError(f"block selections take integers and slices, not {type(item).__name__}")
    return tuple(region)
