"""Partial shard reads for stores reached through Python: this module only moves bytes.

When only part of a shard is read, fetching the whole shard wastes I/O. The native read
plan (``ArrayHandle.read_plan``, ``zarrs-ffi/src/plan.rs``) says what to fetch, round by
round: the shard index first, then only the inner chunks the selection touches (ranges
already coalesced with zarr's ``sharding_coalesce_*`` limits). This module fetches each
request through the store's async API, hands the responses back, and lets the plan decode
into the caller's buffer. It knows nothing of the shard layout: no index size, no marker
for missing chunks, no codec metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.common import concurrent_map
from zarr.storage import StorePath

from .._bindings import ArrayHandle, ChunkBatch, Options, REQUEST_RANGE, REQUEST_SUFFIX
from ..errors import ZarrsValueError

if TYPE_CHECKING:
    import numpy as np
    from zarr.core.buffer import BufferPrototype

    from .._bindings import ReadPlan

__all__ = ["ShardReader", "raw_bytes"]


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
    """Partial reads of one sharded array through a Python store."""

    array: ArrayHandle

    @classmethod
    def for_array(cls, array: ArrayHandle) -> ShardReader | None:
        """The reader for an opened array, or None unless its chunks are shards of a
        fixed-size data type (the native side decides both)."""
        if not array.sharded or array.element_size == 0:
            return None
        return cls(array=array)

    def _plan(self, options: Options, keys: list[str] | None, geometry: np.ndarray[Any, Any], coalesce: tuple[int, int]) -> ReadPlan:
        if keys is not None:
            try:
                return self.array.read_plan(options, ChunkBatch.build(keys, geometry), *coalesce)
            except ZarrsValueError:
                # A store path the native side would not take as a key: name chunks by
                # position instead (keys only name chunks in errors here).
                pass
        return self.array.read_plan(options, ChunkBatch.build(None, geometry), *coalesce)

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
        paths = [getattr(bg, "path", None) for bg in byte_getters]
        keys = paths if all(isinstance(p, str) and p for p in paths) else None
        # zarr turns coalescing off with a negative limit; the plan with a zero size limit.
        limits = (0, 0) if min(coalesce) < 0 else coalesce
        plan = await run(self._plan, options, keys, geometry, limits)
        requests = plan.requests()
        first = True
        while len(requests):
            responses = await _fetch(byte_getters, requests, prototype, coalesce, limit, first)
            await run(plan.supply, responses)
            requests, first = plan.requests(), False
        present = await run(plan.finish, out)
        return present.tolist()  # type: ignore[no-any-return]


def _request(row: Any) -> Any:
    """A zarr byte request for one plan request (None: the whole value)."""
    kind, offset, length = int(row["kind"]), int(row["offset"]), int(row["length"])
    if kind == REQUEST_RANGE:
        return RangeByteRequest(offset, offset + length)
    if kind == REQUEST_SUFFIX:
        return SuffixByteRequest(length)
    return None


async def _fetch(
    byte_getters: list[Any],
    requests: np.ndarray[Any, Any],
    prototype: BufferPrototype,
    coalesce: tuple[int, int],
    limit: int | None,
    first: bool,
) -> list[Any]:
    """Fetch one round of requests, in order (None: the value does not exist). A shard's
    several ranges go through ``Store.get_ranges`` where the store has it (one request per
    range the plan already merged, or fewer), the rest through ``get``, concurrently."""
    responses: list[Any] = [None] * len(requests)
    by_job: dict[int, list[int]] = {}
    for r, row in enumerate(requests):
        by_job.setdefault(int(row["job"]), []).append(r)
    # One unit of work per request, or per shard whose several ranges go to get_ranges;
    # at most ``limit`` units in flight, as zarr bounds its own fetches.
    units: list[tuple[Any, list[int], bool]] = []
    for job, rs in by_job.items():
        byte_getter = byte_getters[job]
        store: Any = getattr(byte_getter, "store", None)
        ranged = all(int(requests[r]["kind"]) == REQUEST_RANGE for r in rs)
        # After the first round (indexes, whole chunks), a shard's inner chunk ranges go
        # through get_ranges as zarr's sharding codec sends them (zarr's tests count them).
        if not first and ranged and isinstance(byte_getter, StorePath) and hasattr(store, "get_ranges"):
            units.append((byte_getter, rs, True))
        else:
            units.extend((byte_getter, [r], False) for r in rs)

    async def fetch(byte_getter: Any, rs: list[int], use_ranges: bool) -> None:
        if not use_ranges:
            buffer = await byte_getter.get(prototype=prototype, byte_range=_request(requests[rs[0]]))
            responses[rs[0]] = raw_bytes(buffer)
            return
        try:
            async for group in byte_getter.store.get_ranges(
                byte_getter.path,
                [_request(requests[r]) for r in rs],
                prototype=prototype,
                max_gap_bytes=coalesce[0],
                max_coalesced_bytes=coalesce[1],
            ):
                for i, buffer in group:
                    responses[rs[i]] = raw_bytes(buffer)
        except BaseExceptionGroup as group:
            # get_ranges reports every failure in a group. A missing key means the shard
            # was deleted after its index was read: the plan reads it as missing.
            _, rest = group.split(FileNotFoundError)
            if rest is not None:
                raise rest.exceptions[0] from group
            for r in rs:
                responses[r] = None

    await concurrent_map(units, fetch, limit)
    return responses
