"""How a pipeline's chunk bytes move: one interface, three routes, chosen once per array.

- ``StorageRoute``: the native library reaches the store itself (``stores.py``); a whole read
  or write is one worker call.
- ``SyncStoreRoute``: the store's synchronous API (zarr's own ``MemoryStore``, ``ZipStore``)
  fetches and stores in the same worker call that decodes or encodes.
- ``AsyncStoreRoute``: the store's async API moves the bytes, concurrently, on zarr's event
  loop; planning, codecs and numpy's part run on worker threads between the awaits.

The codecs always run natively. A route plans the batch (``selection.plan``, which raises
``Fallback`` for what it cannot plan) before any byte moves, so a fallback never follows a
partial write. Nothing here blocks the event loop: every blocking step runs through
``workers.run``. Variable-length types read and write whole chunks (``variable.py``).
"""

from __future__ import annotations

import threading
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.store import _store_supports_sync_io
from zarr.core.common import concurrent_map
from zarr.storage import LocalStore, MemoryStore, ZipStore

from . import completion

from .._core import workers

from . import variable
from .._bindings import ChunkBatch
from .._core.config import io_limit
from .._selection import ChunkPlan, OrthogonalPicks, PointPicks, plan, plan_batch
from .shards import raw_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from zarr.core.buffer import BufferPrototype

    from .._bindings import Options
    from .record import ArrayRecord
    from .._selection import ChunkRequest, GatherGroup

__all__ = ["AsyncStoreRoute", "StorageRoute", "Route", "SyncStoreRoute", "route_for"]

Requests = list["ChunkRequest"]
Array = np.ndarray[Any, Any]

#: The most requests a native read may have to be planned on the event loop and started
#: natively (``StorageRoute.read``); larger ones are planned on a worker. This bound is what
#: keeps the loop's share short: planning boxes (``plan_batch``) costs about 1.4 µs per
#: chunk (4.4 µs for 1, 15 µs for 8, 29 µs for 18, 93 µs for 64; 3-d uint16 boxes), so at
#: most ~25 µs here, against the 56-101 µs a worker round trip costs a small read.
ASYNC_READ_MAX = 16
#: Whether a read is started natively also when it is the only one in flight on its loop.
#: Off: one read after another (zarr's synchronous API) is no faster this way (16^3 boxes,
#: benchmarks/call_share.py: ours / zarrs-python 0.69-0.91 against 0.62-0.81 through the
#: worker, same runs), since both ways pay the same two wake-ups of an idle thread; with
#: reads in flight together on one loop (asyncio.gather, threads sharing zarr's loop) the
#: worker path's GIL hand-offs add up and this path is ~25% faster (400 gathered reads:
#: 244-254 against 331-344 µs per read).
ASYNC_READ_ALONE = False

# Reads in flight per event loop: a loop runs on one thread, so a thread-local count is
# the loop's.
_in_flight = threading.local()


class Route:
    """Moves one array's chunk bytes between its store and the native codecs.

    Parameters
    ----------
    native
        The natively opened array the route serves.
    """

    #: Whether the bytes move through the store's Python API (counted in ``stats``).
    python_io = True
    #: Whether reads of scattered selections are gathered natively (``gather_picks``).
    gathers = False

    def __init__(self, native: ArrayRecord) -> None:
        self.native = native
        #: The inner chunk shape that gathered reads split boxes at (``selection.split_inner``),
        #: when a shard read once per box costs little: its index is read again per box.
        self.split_inner: tuple[int, ...] | None = None

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        """Decode zarr's selections of ``batch`` into ``out``; which chunks exist."""
        raise NotImplementedError

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        """Encode zarr's selections of ``value`` and store every chunk of ``batch``."""
        raise NotImplementedError


def route_for(native: ArrayRecord) -> Route:
    """The route for ``native``'s store, chosen once when the array is opened."""
    store = native.store
    route: Route
    if native.python_io is None:
        route = StorageRoute(native)
        # Local files: a shard's index read once more per box is one more small pread.
        if isinstance(store, LocalStore):
            route.split_inner = native.inner_chunks
        return route
    # Only zarr's own stores, exactly: a subclass or wrapper may override the async methods
    # (to log, count or transform) and not the sync ones, which would bypass it.
    if type(store) in (MemoryStore, ZipStore) and _store_supports_sync_io(store):
        route = SyncStoreRoute(native)
        if type(store) is MemoryStore:
            # Its values are handed out without a copy: a shard fetched once per box is free.
            route.split_inner = native.inner_chunks
        return route
    return AsyncStoreRoute(native)


class _BlockingRoute(Route):
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

    def _read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        native = self.native
        planned = plan(batch, native.array.ndim, drop_axes, out.itemsize, self.split_inner, True, self.gathers)
        if isinstance(planned, ChunkPlan):
            view, buffer = read_buffer(native, out, planned)
            present, _ = self._decode(batch, planned.batch, buffer)
            if buffer is not view:
                view[...] = buffer
            return present
        if isinstance(planned, (OrthogonalPicks, PointPicks)):
            return gather_picks(native, planned, out)
        present = [False] * len(batch)
        for group, scratch in scratch_buffers(planned, native.native_dtype):
            found, _ = self._decode([batch[i] for i in group.indices], group.batch, scratch)
            gather(group, scratch, out, drop_axes)
            for i, p in zip(group.indices, found, strict=True):
                present[i] = p
        return present

    def _write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        """Gathered selections are a read-modify-write: each chunk's bounding box is decoded
        into scratch, zarr's selections of ``value`` scattered into it, and the boxes stored
        back (merged with the rest of each chunk, natively)."""
        native = self.native
        planned = plan(batch, native.array.ndim, drop_axes, value.itemsize)
        if isinstance(planned, ChunkPlan):
            self._encode(batch, planned.batch, write_source(native, value, planned), options, None)
            return
        assert isinstance(planned, list)  # a write is never planned as native picks
        for group in planned:
            sub = [batch[i] for i in group.indices]
            scratch = np.empty(group.scratch_shape, dtype=native.native_dtype)
            _, existing = self._decode_for_write(sub, group.batch, scratch)
            scatter(group, scratch, value, drop_axes)
            self._encode(sub, group.batch, scratch, options, existing)


class StorageRoute(_BlockingRoute):
    """The native library reads and writes the store's bytes itself.

    A small read of boxes made while other reads are in flight on the same loop is planned
    on the event loop and started natively (``_completion``): the library's reading threads
    read and the loop is woken through a file descriptor, with no Python worker and no GIL
    hand-off. Everything else (a read alone, larger batches, picks, gather groups, writes)
    runs on ``workers.run`` (see ``ASYNC_READ_ALONE``).
    """

    python_io = False
    gathers = True

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        count = _in_flight
        others = getattr(count, "reads", 0)
        count.reads = others + 1
        try:
            if (others or ASYNC_READ_ALONE) and 0 < len(batch) <= ASYNC_READ_MAX:
                native = self.native
                # On the loop thread: the bound on the batch keeps this short (ASYNC_READ_MAX).
                planned = plan_batch(batch, native.array.ndim, drop_axes)
                if planned is not None:
                    view, buffer = read_buffer(native, out, planned)
                    if buffer is view:
                        started = completion.submit(native.array, native.options, planned.batch, buffer)
                        if started is not None:
                            present: list[bool] = await started
                            return present
            return await super().read(batch, out, drop_axes)
        finally:
            count.reads -= 1

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        if self.native.store.read_only:
            # zarr's own error, exactly as a write through the store would raise it.
            self.native.store._check_writable()
        await super().write(batch, value, drop_axes, options)

    def _decode(self, batch: Requests, chunks: ChunkBatch, buffer: Array) -> tuple[list[bool], list[Any] | None]:
        native = self.native
        present: list[bool] = native.array.read_chunks(native.options, chunks, buffer).tolist()
        return present, None

    def _decode_for_write(
        self, batch: Requests, chunks: ChunkBatch, buffer: Array
    ) -> tuple[list[bool], list[Any] | None]:
        # A read-modify-write fetches each chunk once: its stored bytes are decoded here
        # for the scatter and merged again by ``_encode``, rather than ``read_chunks`` and
        # ``write_chunks`` each fetching them.
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
        encoded = array.encode_chunks(options, chunks, source, existing, _keys_of(batch))
        array.store_encoded(options, [r.byte_getter.path for r in batch], encoded)


class SyncStoreRoute(_BlockingRoute):
    """The store's synchronous API fetches and stores, on the worker thread that decodes or
    encodes: one worker call per read or write, no coroutine per chunk."""

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        if self.native.variable:
            present: list[bool] = await workers.run(self._read_variable, batch, out, drop_axes)
            return present
        return await super().read(batch, out, drop_axes)

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        if self.native.variable:
            await workers.run(self._write_variable, batch, value, drop_axes)
        else:
            await super().write(batch, value, drop_axes, options)

    def _decode(self, batch: Requests, chunks: ChunkBatch, buffer: Array) -> tuple[list[bool], list[Any] | None]:
        # In-memory stores hand out whole shards without copying, and the native shard
        # decoder reads only the inner chunks a subset needs.
        native = self.native
        encoded = _fetch_sync(batch)
        native.array.decode_chunks(native.options, chunks, encoded, buffer)
        return [chunk is not None for chunk in encoded], encoded

    def _encode(
        self, batch: Requests, chunks: ChunkBatch, source: Array, options: Options, existing: list[Any] | None
    ) -> None:
        if existing is None:
            needs = needs_old(self.native, batch, chunks)
            prototype = batch[0].spec.prototype
            existing = [
                raw_bytes(request.byte_getter.get_sync(prototype=prototype)) if old else None
                for request, old in zip(batch, needs, strict=True)
            ]
        _store_sync(batch, self.native.array.encode_chunks(options, chunks, source, existing, _keys_of(batch)))

    def _read_variable(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        return variable.read_chunks(self.native, batch, out, drop_axes, _fetch_sync(batch))

    def _write_variable(self, batch: Requests, value: Array, drop_axes: tuple[int, ...]) -> None:
        partial = [i for i, request in enumerate(batch) if not request.is_complete]
        old = dict(zip(partial, _fetch_sync([batch[i] for i in partial]), strict=True)) if partial else {}
        _store_sync(batch, variable.encode_chunks(self.native, batch, value, drop_axes, old))


class AsyncStoreRoute(Route):
    """The store's async API moves the bytes (on the loop, concurrently); planning, codecs
    and numpy's part run on worker threads."""

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        native = self.native
        if native.variable:
            encoded = await _fetch_all(batch)
            present: list[bool] = await workers.run(variable.read_chunks, native, batch, out, drop_axes, encoded)
            return present
        planned = await workers.run(plan, batch, native.array.ndim, drop_axes, out.itemsize, None, True)
        if isinstance(planned, ChunkPlan):
            view, buffer = read_buffer(native, out, planned)
            present = await self._read_chunks(batch, planned.batch, buffer)
            if buffer is not view:
                await workers.run(np.copyto, view, buffer)
            return present
        present = [False] * len(batch)
        for group, scratch in scratch_buffers(planned, native.native_dtype):
            found = await self._read_chunks([batch[i] for i in group.indices], group.batch, scratch)
            await workers.run(gather, group, scratch, out, drop_axes)
            for i, p in zip(group.indices, found, strict=True):
                present[i] = p
        return present

    async def _read_chunks(self, batch: Requests, chunks: ChunkBatch, buffer: Array) -> list[bool]:
        """Fetch concurrently and decode the batch. Like zarr's sharding codec, a shard read
        in part fetches its index, then only the inner chunks it needs (``shards.py``; zarr's
        own tests count these requests)."""
        native = self.native
        geometry = chunks.geometry
        if native.shards is not None:
            partial = (geometry[:, 2, :] != geometry[:, 0, :]).any(axis=1)
        else:
            partial = np.zeros(len(batch), dtype=bool)
        present = [False] * len(batch)
        whole = np.flatnonzero(~partial)
        if whole.size:
            encoded = await _fetch_all([batch[i] for i in whole])
            subset = chunks if whole.size == len(batch) else ChunkBatch.build(None, geometry[whole])
            names = (lambda j: str(batch[whole[j]].byte_getter.path)) if subset is not chunks else None
            await workers.run(native.array.decode_chunks, native.options, subset, encoded, buffer, names)
            for i, chunk in zip(whole, encoded, strict=True):
                present[i] = chunk is not None
        parts = np.flatnonzero(partial)
        if parts.size and native.shards is not None:
            spec = batch[0].spec
            coalesce = (
                int(getattr(spec.config, "sharding_coalesce_max_gap_bytes", 1 << 20)),
                int(getattr(spec.config, "sharding_coalesce_max_bytes", 16 << 20)),
            )
            found = await native.shards.read(
                [batch[i].byte_getter for i in parts], geometry[parts], spec.prototype, native.options, buffer,
                coalesce, io_limit(), workers.run,
            )
            for i, p in zip(parts, found, strict=True):
                present[i] = p
        return present

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        """Encoded natively on worker threads; nothing is stored until every chunk of the
        batch (or gather group) has encoded."""
        native = self.native
        if native.variable:
            await self._write_variable(batch, value, drop_axes)
            return
        planned = await workers.run(_plan_write, native, batch, value, drop_axes)
        if isinstance(planned, tuple):
            chunk_plan, source, needs = planned
            existing: list[Any] = [None] * len(batch)
            partial = np.flatnonzero(needs)
            if partial.size:
                for i, chunk in zip(partial, await _fetch_all([batch[i] for i in partial]), strict=True):
                    existing[i] = chunk
            encoded = await workers.run(
                native.array.encode_chunks, options, chunk_plan.batch, source, existing, _keys_of(batch)
            )
            await _store_all(batch, encoded)
            return
        for group in planned:
            sub = [batch[i] for i in group.indices]
            existing = await _fetch_all(sub)
            encoded = await workers.run(
                _scatter_and_encode, native, group, existing, value, drop_axes, options, _keys_of(sub)
            )
            await _store_all(sub, encoded)

    async def _write_variable(self, batch: Requests, value: Array, drop_axes: tuple[int, ...]) -> None:
        partial = [i for i, request in enumerate(batch) if not request.is_complete]
        old = dict(zip(partial, await _fetch_all([batch[i] for i in partial]), strict=True))
        encoded = await workers.run(variable.encode_chunks, self.native, batch, value, drop_axes, old)
        await _store_all(batch, encoded)


def _keys_of(batch: Sequence[ChunkRequest]) -> Callable[[int], str]:
    """The store key of the ``i``-th chunk of ``batch``, for errors of codec-only calls."""
    return lambda i: str(batch[i].byte_getter.path)


# Byte movers. The synchronous ones block, so they run only on worker threads.


async def _fetch(byte_getter: Any, prototype: BufferPrototype) -> Any:
    """A chunk's encoded bytes as a bytes-like object, or None if it is missing."""
    return raw_bytes(await byte_getter.get(prototype=prototype))


async def _store(byte_setter: Any, chunk: bytes | None, prototype: BufferPrototype) -> None:
    """Store encoded bytes, or delete the chunk when it is entirely the fill value."""
    if chunk is None:
        await byte_setter.delete()
    else:
        await byte_setter.set(prototype.buffer.from_bytes(chunk))


async def _fetch_all(batch: Sequence[ChunkRequest]) -> list[Any]:
    """Every chunk's encoded bytes (None: missing), through the store's async API."""
    if not batch:
        return []
    prototype = batch[0].spec.prototype
    return await concurrent_map([(request.byte_getter, prototype) for request in batch], _fetch, io_limit())


async def _store_all(batch: Sequence[ChunkRequest], encoded: Sequence[Any]) -> None:
    """Store (or delete) every chunk of a batch through the store's async API."""
    prototype = batch[0].spec.prototype
    items = [(request.byte_getter, chunk, prototype) for request, chunk in zip(batch, encoded, strict=True)]
    await concurrent_map(items, _store, io_limit())


def _fetch_sync(batch: Sequence[ChunkRequest]) -> list[Any]:
    if not batch:
        return []
    prototype = batch[0].spec.prototype
    return [raw_bytes(request.byte_getter.get_sync(prototype=prototype)) for request in batch]


def _store_sync(batch: Sequence[ChunkRequest], encoded: Sequence[Any]) -> None:
    prototype = batch[0].spec.prototype
    for request, chunk in zip(batch, encoded, strict=True):
        if chunk is None:
            request.byte_getter.delete_sync()
        else:
            request.byte_getter.set_sync(prototype.buffer.from_bytes(chunk))


# numpy's part of a read or write; run on worker threads.


def read_buffer(native: ArrayRecord, out: Array, planned: ChunkPlan) -> tuple[Array, Array]:
    """zarr's output in the native buffer's dimensions, and the buffer to decode into: the
    output itself when it can be written directly, else a scratch copy in native order."""
    view = np.expand_dims(out, planned.inserted_axes) if planned.inserted_axes else out
    if view.flags.c_contiguous and view.flags.writeable and view.dtype == native.native_dtype:
        return view, view
    return view, np.empty(view.shape, native.native_dtype)


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


def scratch_buffers(groups: Sequence[GatherGroup], dtype: np.dtype[Any]) -> Iterator[tuple[GatherGroup, Array]]:
    """Each group with its scratch buffer, all views of one allocation: the groups of a
    read are decoded and gathered one after the other, and a buffer whose pages are already
    mapped is cheaper to decode into than a fresh one (page faults)."""
    if not groups:
        return
    flat = np.empty(max(prod(group.scratch_shape) for group in groups), dtype=dtype)
    for group in groups:
        yield group, flat[: prod(group.scratch_shape)].reshape(group.scratch_shape)


def gather(group: GatherGroup, scratch: Array, out: Array, drop_axes: tuple[int, ...]) -> None:
    """Copy zarr's selections from the decoded bounding boxes into ``out``."""
    if group.points is not None:
        flat, where = group.points
        out[where] = scratch.reshape(-1)[flat]
        return
    for view, selection, out_selection in group.items:
        values = scratch[view][selection]
        if drop_axes:
            values = values.squeeze(axis=drop_axes)
        out[out_selection] = values


def scatter(group: GatherGroup, scratch: Array, value: Array, drop_axes: tuple[int, ...]) -> None:
    """Copy zarr's selections of ``value`` into the decoded bounding boxes."""
    expand = tuple(None if d in drop_axes else slice(None) for d in range(scratch.ndim))
    for view, selection, out_selection in group.items:
        if value.ndim == 0:
            scratch[view][selection] = value
            continue
        values = value[out_selection]
        if drop_axes:
            values = values[expand]
        scratch[view][selection] = values


def needs_old(native: ArrayRecord, batch: Sequence[ChunkRequest], chunks: ChunkBatch) -> np.ndarray[Any, Any]:
    """Which chunks must have their old bytes fetched before they are encoded: the native
    side decides (written in part and not complete, or written in part and a shard, whose
    inner chunks beyond the array's shape zarr keeps)."""
    return native.array.needs_old(chunks, [request.is_complete for request in batch])


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


def _plan_write(
    native: ArrayRecord, batch: Requests, value: Array, drop_axes: tuple[int, ...]
) -> tuple[ChunkPlan, Array, Array] | list[GatherGroup]:
    """A contiguous plan with its source and which chunks need their old bytes, else gather
    groups; raises ``Fallback`` when neither applies."""
    planned = plan(batch, native.array.ndim, drop_axes, value.itemsize)
    if isinstance(planned, ChunkPlan):
        return planned, write_source(native, value, planned), needs_old(native, batch, planned.batch)
    assert isinstance(planned, list)  # a write is never planned as native picks
    return planned


def _scatter_and_encode(
    native: ArrayRecord, group: GatherGroup, existing: list[Any], value: Array, drop_axes: tuple[int, ...], options: Options,
    names: Callable[[int], str],
) -> list[Any]:
    scratch = np.empty(group.scratch_shape, dtype=native.native_dtype)
    native.array.decode_chunks(native.options, group.batch, existing, scratch, names)
    scatter(group, scratch, value, drop_axes)
    encoded: list[Any] = native.array.encode_chunks(options, group.batch, scratch, existing, names)
    return encoded
