"""The route where the native library reads and writes the store's bytes itself
(``stores.storage_for``: local files, S3 and HTTP).

A read or write is one worker call; scattered reads are gathered natively
(``ArrayHandle.gather_orthogonal`` / ``gather_points``). Two kinds of small read skip the
worker:

* a read of local files made while no other call of the pipeline is in flight on its loop,
  estimated to decode at most ``codec_pipeline.loop_read_bytes``, runs on the loop thread
  itself: the loop has nothing else of ours to do, and the hop to a worker and back (two
  thread wake-ups and two GIL hand-offs) was most of our share of such a read. The budget
  bounds how long the loop is held (a few hundred microseconds); remote stores never
  qualify, since their latency is not bounded by the bytes.
* a small read of boxes made while other calls are in flight on the loop is planned on the
  loop and started natively (``completion.py``): the library's reading threads read and the
  loop is woken through a file descriptor, with no Python worker and no GIL hand-off.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from zarr.storage import LocalStore

import numpy as np

from ..._selection import OrthogonalPicks, PointPicks
from ..._core import config
from .. import completion
from .base import BlockingRoute, calls, keys_of, read_buffer

if TYPE_CHECKING:
    from ..._bindings import ChunkBatch, Options
    from ..._selection import Planner, ReadPlan
    from ..record import ArrayRecord
    from .base import Array, Requests

__all__ = ["ASYNC_READ_ALONE", "ASYNC_READ_MAX", "StorageRoute", "gather_picks"]

#: The most requests a native read may have to be planned on the event loop, to be read
#: there or started natively (``StorageRoute.read``); larger ones are planned on a worker.
#: The bound keeps the loop's share short: planning boxes costs about as much per chunk as
#: a worker round trip costs a whole small read at this size (figures:
#: benchmarks/RESULTS.md, §0c).
ASYNC_READ_MAX = 16
#: Whether a read is started natively also when it is the only call in flight on its loop
#: (then never read on the loop). Off: a lone read within the budget is cheapest read on
#: the loop, and one beyond it gains nothing, since both the worker and the completion path
#: pay two wake-ups of an idle thread; with reads in flight together on one loop
#: (asyncio.gather, threads sharing zarr's loop) the worker path's GIL hand-offs add up and
#: this path is faster (benchmarks/call_share.py; figures: RESULTS.md, §0c).
ASYNC_READ_ALONE = False


def _others_ready() -> bool:
    """Whether the running loop has other callbacks ready to run (True when it cannot
    tell): only then is a loop iteration spent to see whether they are reads of ours. On a
    busy machine that iteration cost a lone read ~100 µs (its poll lets the kernel switch
    threads); asyncio's own loops keep their ready callbacks in ``_ready``."""
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    return ready is None or len(ready) > 0


class StorageRoute(BlockingRoute):
    """The native library reads and writes the store's bytes itself.

    Parameters
    ----------
    record, planner
        As for every route.

    Attributes
    ----------
    loop_read_bytes
        The most bytes a lone read may be estimated to decode to run on the event loop
        (``codec_pipeline.loop_read_bytes``, read when the route is made, at the array's
        first use); 0 for a store that is not local files.
    """

    python_io = False

    def __init__(self, record: ArrayRecord, planner: Planner) -> None:
        super().__init__(record, planner)
        local = isinstance(record.store, LocalStore)
        self.loop_read_bytes = config.loop_read_bytes() if local else 0
        # What a box decodes is whole chunks, or whole inner chunks of a shard read in part.
        self._unit = record.inner_chunks if local else None
        self._itemsize = record.native_dtype.itemsize

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        if 0 < len(batch) <= ASYNC_READ_MAX:
            if not ASYNC_READ_ALONE and getattr(calls, "count", 0) <= 1 and self.fits_the_loop(batch):
                if _others_ready():
                    # Reads handed over together (asyncio.gather, threads sharing zarr's
                    # loop) are queued on the loop already: let them show up first.
                    await asyncio.sleep(0)
                if getattr(calls, "count", 0) <= 1:
                    return self._read(batch, out, drop_axes)
            if ASYNC_READ_ALONE or getattr(calls, "count", 0) > 1:
                started = self._start_on_loop(batch, out, drop_axes)
                if started is not None:
                    present: list[bool] = await started
                    return present
        return await super().read(batch, out, drop_axes)

    def fits_the_loop(self, batch: Requests) -> bool:
        """Whether ``batch`` is estimated to decode to at most ``loop_read_bytes``: the
        whole chunks its selections touch, or for shards read in part, the inner chunks
        their bounding boxes touch. A guess from the selections alone (no byte is read); a
        selection it cannot bound counts the whole chunk."""
        budget = self.loop_read_bytes
        if not budget:
            return False
        unit = self._unit
        total = 0
        for request in batch:
            shape = request.spec.shape
            size = self._itemsize
            for axis, selection in enumerate(request.chunk_selection):
                edge = shape[axis]
                step = unit[axis] if unit is not None else edge
                if isinstance(selection, slice) and step < edge:
                    start, stop, _ = selection.indices(edge)
                    covered = (-(-stop // step) - start // step) * step if stop > start else 0
                    size *= min(covered, edge)
                elif isinstance(selection, int) and step < edge:
                    size *= step
                else:
                    size *= edge
            total += size
            if total > budget:
                return False
        return True

    def _start_on_loop(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> Any:
        """Plan a small read on the loop thread (``ASYNC_READ_MAX`` bounds its cost) and
        start it natively; the awaitable of its result, or None when it is not boxes
        decoded straight into ``out``."""
        native = self.native
        planned = self.planner.contiguous(batch, drop_axes)
        if planned is None:
            return None
        view, buffer = read_buffer(native, out, planned)
        if buffer is not view:
            return None
        return completion.submit(native.array, native.options, planned.batch, buffer)

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        if self.native.store.read_only:
            # zarr's own error, exactly as a write through the store would raise it.
            self.native.store._check_writable()
        await super().write(batch, value, drop_axes, options)

    def _read_picks(self, planned: ReadPlan, out: Array) -> list[bool]:
        assert isinstance(planned, (OrthogonalPicks, PointPicks))
        return gather_picks(self.native, planned, out)

    def _decode(self, batch: Requests, chunks: ChunkBatch, buffer: Array) -> tuple[list[bool], list[Any] | None]:
        native = self.native
        present: list[bool] = native.array.read_chunks(native.options, chunks, buffer).tolist()
        return present, None

    def _decode_for_write(
        self, batch: Requests, chunks: ChunkBatch, buffer: Array
    ) -> tuple[list[bool], list[Any] | None]:
        # A read-modify-write fetches each chunk once: its stored bytes are decoded here
        # for the copy into the boxes and merged again by ``_encode``, rather than
        # ``read_chunks`` and ``write_chunks`` each fetching them.
        native = self.native
        existing: list[Any] = native.array.fetch_encoded(native.options, [r.byte_getter.path for r in batch])
        native.array.decode_chunks(native.options, chunks, existing, buffer)
        return [chunk is not None for chunk in existing], existing

    def _encode(
        self, batch: Requests, chunks: ChunkBatch, source: Array, options: Options, existing: list[Any] | None
    ) -> None:
        array = self.native.array
        if existing is None:
            array.write_chunks(options, chunks, source)
            return
        encoded = array.encode_chunks(options, chunks, source, existing, keys_of(batch))
        array.store_encoded(options, [r.byte_getter.path for r in batch], encoded)


def gather_picks(native: ArrayRecord, planned: OrthogonalPicks | PointPicks, out: Array) -> list[bool]:
    """Gather picks natively, each chunk decoded once and its picked elements written
    straight into ``out``; which chunks are stored. An output the native side cannot write
    (not C-contiguous, another byte order) is gathered into a copy and copied back."""
    view = out
    if isinstance(planned, OrthogonalPicks) and planned.inserted_axes:
        view = np.expand_dims(out, planned.inserted_axes)
    direct = view.flags.c_contiguous and view.flags.writeable and view.dtype == native.native_dtype
    # The copy starts as ``out``: elements no chunk picks keep their values.
    target = view if direct else np.ascontiguousarray(view, dtype=native.native_dtype)
    array = native.array
    if isinstance(planned, OrthogonalPicks):
        present = array.gather_orthogonal(
            native.options, planned.keys, planned.key_offsets, planned.chunk_shapes, planned.picks,
            planned.indices, planned.positions, target,
        )
    else:
        present = array.gather_points(
            native.options, planned.keys, planned.key_offsets, planned.chunk_shapes, planned.counts,
            planned.coords, planned.offsets, target,
        )
    if target is not view:
        view[...] = target
    result: list[bool] = present.tolist()
    return result
