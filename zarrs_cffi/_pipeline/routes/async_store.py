"""The route for every other store (fsspec, icechunk, wrappers): the store's async API
moves the bytes, concurrently, on zarr's event loop; planning, codecs and numpy's part run
on worker threads between the awaits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.core.common import concurrent_map

from ..._bindings import ChunkBatch
from ..._core import config, workers
from ..._selection import ChunkPlan
from ..._selection.boxes import copy_from_boxes, copy_into_boxes, scratch_buffers
from ..shards import raw_bytes
from .base import Route, keys_of, needs_old, read_buffer, write_source

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from zarr.core.buffer import BufferPrototype

    from ..._bindings import Options
    from ..._selection import BoxGroup, ChunkRequest
    from ..record import ArrayRecord
    from .base import Array, Requests

__all__ = ["AsyncStoreRoute", "fetch_all", "store_all"]


class AsyncStoreRoute(Route):
    """The store's async API moves the bytes (on the loop, concurrently); planning, codecs
    and numpy's part run on worker threads."""

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        native = self.native
        planned = await workers.run(self.planner.read, batch, drop_axes)
        if isinstance(planned, ChunkPlan):
            view, buffer = read_buffer(native, out, planned)
            present = await self._read_chunks(batch, planned.batch, buffer)
            if buffer is not view:
                await workers.run(np.copyto, view, buffer)
            return present
        assert isinstance(planned, list)  # this route's planner makes no native picks
        present = [False] * len(batch)
        for group, scratch in scratch_buffers(planned, native.native_dtype):
            found = await self._read_chunks([batch[i] for i in group.indices], group.batch, scratch)
            await workers.run(copy_from_boxes, group, scratch, out, drop_axes)
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
            encoded = await fetch_all([batch[i] for i in whole])
            subset = chunks if whole.size == len(batch) else ChunkBatch.build(None, geometry[whole])
            names = (lambda j: str(batch[whole[j]].byte_getter.path)) if subset is not chunks else None
            await workers.run(native.array.decode_chunks, native.options, subset, encoded, buffer, names)
            for i, chunk in zip(whole, encoded, strict=True):
                present[i] = chunk is not None
        parts = np.flatnonzero(partial)
        if parts.size and native.shards is not None:
            spec = batch[0].spec
            found = await native.shards.read(
                [batch[i].byte_getter for i in parts], geometry[parts], spec.prototype, native.options, buffer,
                config.coalesce(spec), config.io_limit(), workers.run,
            )
            for i, p in zip(parts, found, strict=True):
                present[i] = p
        return present

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        """Encoded natively on worker threads; nothing is stored until every chunk of the
        batch (or box group) has encoded."""
        native = self.native
        planned = await workers.run(_plan_write, native, self.planner.write, batch, value, drop_axes)
        if isinstance(planned, tuple):
            chunk_plan, source, needs = planned
            existing: list[Any] = [None] * len(batch)
            partial = np.flatnonzero(needs)
            if partial.size:
                for i, chunk in zip(partial, await fetch_all([batch[i] for i in partial]), strict=True):
                    existing[i] = chunk
            encoded = await workers.run(
                native.array.encode_chunks, options, chunk_plan.batch, source, existing, keys_of(batch)
            )
            await store_all(batch, encoded)
            return
        for group in planned:
            sub = [batch[i] for i in group.indices]
            existing = await fetch_all(sub)
            encoded = await workers.run(
                _copy_into_and_encode, native, group, existing, value, drop_axes, options, keys_of(sub)
            )
            await store_all(sub, encoded)


def _plan_write(
    native: ArrayRecord, plan: Callable[[Requests, tuple[int, ...]], Any], batch: Requests, value: Array,
    drop_axes: tuple[int, ...],
) -> tuple[ChunkPlan, Array, Array] | list[BoxGroup]:
    """A contiguous plan with its source and which chunks need their old bytes, else box
    groups; raises ``Fallback`` when neither applies."""
    planned = plan(batch, drop_axes)
    if isinstance(planned, ChunkPlan):
        return planned, write_source(native, value, planned), needs_old(native, batch, planned.batch)
    assert isinstance(planned, list)
    return planned


def _copy_into_and_encode(
    native: ArrayRecord, group: BoxGroup, existing: list[Any], value: Array, drop_axes: tuple[int, ...],
    options: Options, names: Callable[[int], str],
) -> list[Any]:
    scratch = np.empty(group.scratch_shape, dtype=native.native_dtype)
    native.array.decode_chunks(native.options, group.batch, existing, scratch, names)
    copy_into_boxes(group, scratch, value, drop_axes)
    encoded: list[Any] = native.array.encode_chunks(options, group.batch, scratch, existing, names)
    return encoded


async def _fetch(byte_getter: Any, prototype: BufferPrototype) -> Any:
    """A chunk's encoded bytes as a bytes-like object, or None if it is missing."""
    return raw_bytes(await byte_getter.get(prototype=prototype))


async def _store(byte_setter: Any, chunk: bytes | None, prototype: BufferPrototype) -> None:
    """Store encoded bytes, or delete the chunk when it is entirely the fill value."""
    if chunk is None:
        await byte_setter.delete()
    else:
        await byte_setter.set(prototype.buffer.from_bytes(chunk))


async def fetch_all(batch: Sequence[ChunkRequest]) -> list[Any]:
    """Every chunk's encoded bytes (None: missing), through the store's async API."""
    if not batch:
        return []
    prototype = batch[0].spec.prototype
    return await concurrent_map([(request.byte_getter, prototype) for request in batch], _fetch, config.io_limit())


async def store_all(batch: Sequence[ChunkRequest], encoded: Sequence[Any]) -> None:
    """Store (or delete) every chunk of a batch through the store's async API."""
    prototype = batch[0].spec.prototype
    items = [(request.byte_getter, chunk, prototype) for request, chunk in zip(batch, encoded, strict=True)]
    await concurrent_map(items, _store, config.io_limit())
