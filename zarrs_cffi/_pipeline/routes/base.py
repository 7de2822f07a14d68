"""What every route shares: the interface, the blocking template, and numpy's part of
moving zarr's output and value to and from native buffers (run on worker threads)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._core import workers
from ..._selection import ChunkPlan
from ..._selection.boxes import copy_from_boxes, copy_into_boxes, scratch_buffers

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..._bindings import ChunkBatch, Options
    from ..._selection import ChunkRequest, Planner, ReadPlan
    from ..record import ArrayRecord

__all__ = ["BlockingRoute", "Route", "calls", "keys_of", "needs_old", "read_buffer", "write_source"]

Requests = list["ChunkRequest"]
Array = np.ndarray[Any, Any]

#: The pipeline's calls in flight on this thread's event loop (``count``), reads and writes
#: of every array and route, counted by ``ZarrsCodecPipeline``: a loop runs on one thread,
#: so a thread-local count is the loop's. A route reads it to know whether a read is alone.
calls = threading.local()


class Route:
    """Moves one array's chunk bytes between its store and the native codecs.

    Parameters
    ----------
    record
        The natively opened array the route serves.
    planner
        How its batches are planned (``_selection.Planner``), chosen with the route.
    """

    #: Whether the bytes move through the store's Python API (counted in ``stats``).
    python_io = True

    def __init__(self, record: ArrayRecord, planner: Planner) -> None:
        self.native = record
        self.planner = planner

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        """Decode zarr's selections of ``batch`` into ``out``; which chunks exist."""
        raise NotImplementedError

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        """Encode zarr's selections of ``value`` and store every chunk of ``batch``."""
        raise NotImplementedError


class BlockingRoute(Route):
    """A route whose bytes need no awaiting: planning, I/O, codecs and numpy's part of a
    read or write run in one worker call. Subclasses say how chunks are fetched and stored."""

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        present: list[bool] = await workers.run(self._read, batch, out, drop_axes)
        return present

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        await workers.run(self._write, batch, value, drop_axes, options)

    def _decode(self, batch: Requests, chunks: ChunkBatch, buffer: Array) -> tuple[list[bool], list[Any] | None]:
        """Fetch and decode ``chunks`` into ``buffer``: which exist, and their bytes when
        they passed through Python (the old bytes a read-modify-write merges with)."""
        raise NotImplementedError

    def _decode_for_write(
        self, batch: Requests, chunks: ChunkBatch, buffer: Array
    ) -> tuple[list[bool], list[Any] | None]:
        """``_decode`` for a read-modify-write: the bytes it returns are merged by ``_encode``."""
        return self._decode(batch, chunks, buffer)

    def _encode(
        self, batch: Requests, chunks: ChunkBatch, source: Array, options: Options, existing: list[Any] | None
    ) -> None:
        """Encode ``chunks`` from ``source`` and store them; nothing is stored until every
        chunk has encoded. ``existing``: the old bytes, when already fetched."""
        raise NotImplementedError

    def _read_picks(self, planned: ReadPlan, out: Array) -> list[bool]:
        """Gather a plan of native picks (only routes whose planner makes them)."""
        raise NotImplementedError

    def _read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        native = self.native
        planned = self.planner.read(batch, drop_axes)
        if isinstance(planned, ChunkPlan):
            view, buffer = read_buffer(native, out, planned)
            present, _ = self._decode(batch, planned.batch, buffer)
            if buffer is not view:
                view[...] = buffer
            return present
        if not isinstance(planned, list):
            return self._read_picks(planned, out)
        present = [False] * len(batch)
        for group, scratch in scratch_buffers(planned, native.native_dtype):
            found, _ = self._decode([batch[i] for i in group.indices], group.batch, scratch)
            copy_from_boxes(group, scratch, out, drop_axes)
            for i, p in zip(group.indices, found, strict=True):
                present[i] = p
        return present

    def _write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        """Box writes are a read-modify-write: each chunk's bounding box is decoded into
        scratch, zarr's selections of ``value`` copied into it, and the boxes stored back
        (merged with the rest of each chunk, natively)."""
        native = self.native
        planned = self.planner.write(batch, drop_axes)
        if isinstance(planned, ChunkPlan):
            self._encode(batch, planned.batch, write_source(native, value, planned), options, None)
            return
        for group in planned:
            sub = [batch[i] for i in group.indices]
            scratch = np.empty(group.scratch_shape, dtype=native.native_dtype)
            _, existing = self._decode_for_write(sub, group.batch, scratch)
            copy_into_boxes(group, scratch, value, drop_axes)
            self._encode(sub, group.batch, scratch, options, existing)


def keys_of(batch: Sequence[ChunkRequest]) -> Callable[[int], str]:
    """The store key of the ``i``-th chunk of ``batch``, for errors of codec-only calls."""
    return lambda i: str(batch[i].byte_getter.path)


def read_buffer(native: ArrayRecord, out: Array, planned: ChunkPlan) -> tuple[Array, Array]:
    """zarr's output in the native buffer's dimensions, and the buffer to decode into: the
    output itself when it can be written directly, else a scratch copy in native order."""
    view = np.expand_dims(out, planned.inserted_axes) if planned.inserted_axes else out
    if view.flags.c_contiguous and view.flags.writeable and view.dtype == native.native_dtype:
        return view, view
    return view, np.empty(view.shape, native.native_dtype)


def write_source(native: ArrayRecord, value: Array, planned: ChunkPlan) -> Array:
    """The value of a contiguous write in the native buffer's shape (or 0-d to broadcast),
    in native byte order."""
    if value.size == 1:
        # One value broadcast everywhere (zarr passes scalars as 1-element arrays).
        source = value.reshape(())
    else:
        source = value
        inserted = planned.inserted_axes
        if inserted and value.ndim == len(planned.buffer_shape) - len(inserted):
            source = np.expand_dims(source, inserted)
        if source.shape != planned.buffer_shape:
            source = np.broadcast_to(source, planned.buffer_shape)
        source = np.ascontiguousarray(source)
    return source if source.dtype == native.native_dtype else source.astype(native.native_dtype)


def needs_old(native: ArrayRecord, batch: Sequence[ChunkRequest], chunks: ChunkBatch) -> np.ndarray[Any, Any]:
    """Which chunks must have their old bytes fetched before they are encoded: the native
    side decides (written in part and not complete, or written in part and a shard, whose
    inner chunks beyond the array's shape zarr keeps)."""
    return native.array.needs_old(chunks, [request.is_complete for request in batch])
