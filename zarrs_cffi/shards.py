"""Partial shard reads for stores reached through Python.

When only part of a shard is read, fetching the whole shard wastes I/O. As zarr's own
sharding codec does, this fetches the shard index (one byte-range request), then only the
inner chunks the selection touches (coalesced through ``Store.get_ranges`` where zarr has
it, one ranged ``get`` each otherwise), and hands them to the native codec-only calls:
the index decodes through a codec-only array of the index codecs, and the inner chunks
through one of the inner codecs, straight into the caller's buffer.

Only arrays whose codecs are exactly one ``sharding_indexed`` codec with a fixed-size index
(``bytes`` and optionally ``crc32c``) take this path; others read whole shards.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.common import concurrent_map
from zarr.storage import StorePath

from ._bindings import ChunkBatch, NativeArray, Options

if TYPE_CHECKING:
    from zarr.core.buffer import BufferPrototype

    from ._bindings import Storage

__all__ = ["ShardReader", "raw_bytes"]

_MISSING = 2**64 - 1


def raw_bytes(buffer: Any) -> Any:
    """A store's buffer as a bytes-like object (a numpy view where possible), or None."""
    if buffer is None:
        return None
    try:
        return buffer.as_numpy_array()
    except (AttributeError, TypeError, ValueError):
        return buffer.to_bytes()


@dataclass(frozen=True)
class ShardReader:
    """What partial reads of one sharded array need."""

    shard_shape: tuple[int, ...]
    inner_shape: tuple[int, ...]
    per_shard: tuple[int, ...]
    index_at_end: bool
    index_size: int
    inner: NativeArray
    index: NativeArray

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], storage: Storage) -> ShardReader | None:
        """The reader for Zarr v3 ``metadata`` (a dict), or None if it does not apply."""
        codecs = metadata.get("codecs")
        grid = metadata.get("chunk_grid", {})
        if metadata.get("zarr_format") != 3 or not isinstance(codecs, list) or len(codecs) != 1:
            return None
        if codecs[0].get("name") != "sharding_indexed" or grid.get("name") != "regular":
            return None
        config = codecs[0]["configuration"]
        index_codecs = config.get("index_codecs", [])
        names = [c.get("name") if isinstance(c, dict) else c for c in index_codecs]
        if names not in (["bytes"], ["bytes", "crc32c"]):
            return None
        shard_shape = tuple(int(n) for n in grid["configuration"]["chunk_shape"])
        inner_shape = tuple(int(n) for n in config["chunk_shape"])
        if len(shard_shape) != len(inner_shape) or any(s % i for s, i in zip(shard_shape, inner_shape, strict=True)):
            return None
        per_shard = tuple(s // i for s, i in zip(shard_shape, inner_shape, strict=True))
        count = int(np.prod(per_shard))
        index_size = 16 * count + (4 if "crc32c" in names else 0)
        inner_metadata = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": list(shard_shape),
            "data_type": metadata["data_type"],
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(inner_shape)}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": metadata["fill_value"],
            "codecs": config["codecs"],
        }
        index_shape = [*per_shard, 2]
        index_metadata = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": index_shape,
            "data_type": "uint64",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": index_shape}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": _MISSING,
            "codecs": index_codecs,
        }
        return cls(
            shard_shape=shard_shape,
            inner_shape=inner_shape,
            per_shard=per_shard,
            index_at_end=config.get("index_location", "end") != "start",
            index_size=index_size,
            inner=NativeArray.open_with_metadata(storage, json.dumps(inner_metadata)),
            index=NativeArray.open_with_metadata(storage, json.dumps(index_metadata)),
        )

    def _index_request(self) -> Any:
        if self.index_at_end:
            return SuffixByteRequest(self.index_size)
        return RangeByteRequest(0, self.index_size)

    def _decode_indexes(self, options: Options, encoded: list[Any]) -> np.ndarray[Any, Any]:
        """Decode shard indexes (None: the shard is missing) into ``(n, *per_shard, 2)``."""
        n = len(encoded)
        shape = [*self.per_shard, 2]
        out = np.empty((n * shape[0], *shape[1:]), dtype=np.uint64)
        geometry = np.zeros((n, 4, len(shape)), dtype=np.uint64)
        geometry[:, 0] = shape
        geometry[:, 2] = shape
        geometry[:, 3, 0] = np.arange(n, dtype=np.uint64) * shape[0]
        self.index.decode_chunks(options, ChunkBatch.build(None, geometry), encoded, out)
        return out.reshape(n, *shape)

    async def read(
        self,
        byte_getters: list[Any],
        geometry: np.ndarray[Any, Any],
        prototype: BufferPrototype,
        options: Options,
        out: np.ndarray[Any, Any],
        coalesce: tuple[int, int],
        limit: int | None,
        run: Any,
    ) -> list[bool]:
        """Read the shard subsets of ``geometry`` (rows as in ``ChunkBatch.geometry``) into
        ``out``; returns which shards exist. The store's async API fetches (on the event
        loop); ``run`` runs everything else on a worker thread and returns an awaitable."""
        request = self._index_request()

        async def fetch_index(byte_getter: Any) -> Any:
            buffer = await byte_getter.get(prototype=prototype, byte_range=request)
            return raw_bytes(buffer)

        encoded_indexes = await concurrent_map([(bg,) for bg in byte_getters], fetch_index, limit)
        present = [e is not None for e in encoded_indexes]
        batch, ranges, owners = await run(self._plan, options, encoded_indexes, geometry)
        fetched = await asyncio.gather(
            *(
                self._fetch_ranges(byte_getters[shard], ranges[shard], prototype, coalesce, limit)
                for shard in range(len(byte_getters))
            )
        )
        gone = [chunks is None for chunks in fetched]
        encoded = [None if shard < 0 or gone[shard] else fetched[shard][k] for shard, k in owners]
        present = [p and not g for p, g in zip(present, gone, strict=True)]
        if batch is not None:
            await run(self.inner.decode_chunks, options, batch, encoded, out)
        return present

    def _plan(
        self, options: Options, encoded_indexes: list[Any], geometry: np.ndarray[Any, Any]
    ) -> tuple[ChunkBatch | None, list[list[tuple[int, int]]], list[tuple[int, int]]]:
        """Decode the shard indexes (None: the shard is missing) and plan the inner chunks:
        the batch that decodes them into the caller's buffer, the byte ranges to fetch per
        shard, and per inner chunk its (shard, position in the shard's ranges), shard -1
        for a missing one."""
        stored = [i for i, e in enumerate(encoded_indexes) if e is not None]
        indexes = self._decode_indexes(options, [encoded_indexes[i] for i in stored]) if stored else None
        ndim = len(self.inner_shape)
        inner = np.array(self.inner_shape, dtype=np.int64)
        rows: list[np.ndarray[Any, Any]] = []
        ranges: list[list[tuple[int, int]]] = [[] for _ in encoded_indexes]
        owners: list[tuple[int, int]] = []
        index_of = {shard: k for k, shard in enumerate(stored)}
        for shard, g in enumerate(geometry):
            start = g[1].astype(np.int64)
            stop = start + g[2].astype(np.int64)
            lo = start // inner
            hi = (stop - 1) // inner + 1
            # Every inner chunk the subset touches, and its part of the subset (vectorised).
            coords = np.indices(tuple(hi - lo)).reshape(ndim, -1).T + lo
            origin = coords * inner
            sub_start = np.maximum(start, origin)
            sub_stop = np.minimum(stop, origin + inner)
            block = np.empty((len(coords), 4, ndim), dtype=np.uint64)
            block[:, 0] = inner
            block[:, 1] = sub_start - origin
            block[:, 2] = sub_stop - sub_start
            block[:, 3] = g[3].astype(np.int64) + (sub_start - start)
            rows.append(block)
            if shard not in index_of:
                owners.extend([(-1, 0)] * len(coords))
                continue
            assert indexes is not None
            entries = indexes[index_of[shard]][tuple(coords.T)]  # (m, 2): offset, length
            for offset, nbytes in entries.tolist():
                if offset == _MISSING:
                    owners.append((-1, 0))
                else:
                    owners.append((shard, len(ranges[shard])))
                    ranges[shard].append((offset, nbytes))
        batch = ChunkBatch.build(None, np.concatenate(rows)) if rows else None
        return batch, ranges, owners

    @staticmethod
    async def _fetch_ranges(
        byte_getter: Any,
        ranges: list[tuple[int, int]],
        prototype: BufferPrototype,
        coalesce: tuple[int, int],
        limit: int | None,
    ) -> list[Any] | None:
        """The bytes of each ``(offset, length)`` range of one shard; None if the shard is
        gone (deleted since its index was read)."""
        if not ranges:
            return []
        requests = [RangeByteRequest(o, o + n) for o, n in ranges]
        store: Any = getattr(byte_getter, "store", None)
        result: list[Any] = [None] * len(ranges)
        if isinstance(byte_getter, StorePath) and hasattr(store, "get_ranges"):
            # zarr >= 3.4: merged requests, concurrent, as zarr's sharding codec reads.
            try:
                async for group in store.get_ranges(
                    byte_getter.path,
                    requests,
                    prototype=prototype,
                    max_gap_bytes=coalesce[0],
                    max_coalesced_bytes=coalesce[1],
                ):
                    for i, buffer in group:
                        result[i] = raw_bytes(buffer)
            except BaseExceptionGroup as group:
                # get_ranges reports every failure in a group. A missing key means the shard
                # was deleted after its index was read: like zarr, read it as missing.
                _, rest = group.split(FileNotFoundError)
                if rest is not None:
                    raise rest.exceptions[0] from group
                return None
        else:

            async def fetch(request: Any) -> Any:
                buffer = await byte_getter.get(prototype=prototype, byte_range=request)
                return raw_bytes(buffer)

            result = await concurrent_map([(r,) for r in requests], fetch, limit)
        if any(r is None for r in result):
            return None
        return result
