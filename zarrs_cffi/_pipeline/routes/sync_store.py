"""The route for zarr's in-memory and zip stores: the store's synchronous API fetches and
stores on the worker thread that decodes or encodes, one worker call per read or write and
no coroutine per chunk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..shards import raw_bytes
from .base import BlockingRoute, keys_of, needs_old

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..._bindings import ChunkBatch, Options
    from ..._selection import ChunkRequest
    from .base import Array, Requests

__all__ = ["SyncStoreRoute", "fetch_sync", "store_sync"]


class SyncStoreRoute(BlockingRoute):
    """The store's synchronous API moves the bytes, on the worker thread."""

    def _decode(self, batch: Requests, chunks: ChunkBatch, buffer: Array) -> tuple[list[bool], list[Any] | None]:
        # In-memory stores hand out whole shards without copying, and the native shard
        # decoder reads only the inner chunks a subset needs.
        native = self.native
        encoded = fetch_sync(batch)
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
        store_sync(batch, self.native.array.encode_chunks(options, chunks, source, existing, keys_of(batch)))


def fetch_sync(batch: Sequence[ChunkRequest]) -> list[Any]:
    """Every chunk's encoded bytes (None: missing), through the store's synchronous API
    (blocks: worker threads only)."""
    if not batch:
        return []
    prototype = batch[0].spec.prototype
    return [raw_bytes(request.byte_getter.get_sync(prototype=prototype)) for request in batch]


def store_sync(batch: Sequence[ChunkRequest], encoded: Sequence[Any]) -> None:
    """Store (or delete, for None) every chunk of a batch through the store's synchronous
    API (blocks: worker threads only)."""
    prototype = batch[0].spec.prototype
    for request, chunk in zip(batch, encoded, strict=True):
        if chunk is None:
            request.byte_getter.delete_sync()
        else:
            request.byte_getter.set_sync(prototype.buffer.from_bytes(chunk))
