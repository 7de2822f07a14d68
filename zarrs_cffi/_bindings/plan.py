"""Reads whose bytes the caller fetches, and write planning (``ffi/plan.rs``): ``ReadPlan``,
the request kinds (``REQUEST_*``) and the ``ArrayHandle`` methods that create a plan or
say what a write needs.

The plan knows the byte layout (shard indexes); Python only moves the bytes it asks for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ZarrsValueError
from .batch import _pointers
from .convert import _out_buffer, _u64, _u64_ptr, lib
from .handle import ArrayBase
from .library import check, ffi

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from .batch import ChunkBatch
    from .options import Options

__all__ = ["REQUEST_RANGE", "REQUEST_SUFFIX", "REQUEST_WHOLE", "PlanMixin", "ReadPlan"]

#: A request's kind, as ``ZarrsByteRequestKind``: the whole value, a range or a suffix.
REQUEST_WHOLE, REQUEST_RANGE, REQUEST_SUFFIX = 0, 1, 2

# ``ZarrsByteRequest`` as numpy reads it (C layout: the enum is 4 bytes, padded to 8).
_REQUEST_DTYPE = np.dtype(
    {"names": ["job", "kind", "offset", "length"], "formats": ["<u8", "<i4", "<u8", "<u8"], "offsets": [0, 8, 16, 24], "itemsize": 32}
)


class ReadPlan:
    """A read whose bytes the caller fetches (``ZarrsReadPlan``).

    ``requests()`` says what to fetch: per request, the job (position in the batch), the
    kind (``REQUEST_WHOLE``, ``REQUEST_RANGE``, ``REQUEST_SUFFIX``), offset and length.
    ``supply()`` answers them in order (None: the value does not exist); repeat until
    ``requests()`` is empty, then ``finish(out)`` decodes into ``out``. The plan knows the
    byte layout (shard indexes); the caller only moves bytes.
    """

    __slots__ = ("_array", "_handle", "_jobs")

    def __init__(self, handle: Any, array: ArrayBase, jobs: int) -> None:
        self._handle = ffi.gc(handle, lib().zarrs_read_plan_free)
        # The plan refers to its array: keep it alive as long as the plan.
        self._array = array
        self._jobs = jobs

    def requests(self) -> npt.NDArray[Any]:
        """The current round's requests: a structured array with fields ``job``, ``kind``,
        ``offset`` and ``length`` (a copy)."""
        pointer = ffi.new("const ZarrsByteRequest **")
        count = ffi.new("size_t *")
        check(lib().zarrs_read_plan_requests(self._handle, pointer, count))
        n = int(count[0])
        if n == 0:
            return np.zeros(0, dtype=_REQUEST_DTYPE)
        return np.frombuffer(ffi.buffer(pointer[0], n * _REQUEST_DTYPE.itemsize), dtype=_REQUEST_DTYPE).copy()

    def supply(self, responses: Sequence[Any]) -> None:
        """Answer the current round's requests, in order (None: the value is missing)."""
        pointers, lengths, _keep = _pointers(responses)
        check(lib().zarrs_read_plan_supply(self._handle, len(responses), pointers, lengths))

    def finish(self, out: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Decode every job into ``out``; returns which chunks exist."""
        self._array._check_out(out)
        out_shape = _u64(out.shape, "out.shape")
        present = np.zeros(self._jobs, dtype=np.uint8)
        check(
            lib().zarrs_read_plan_finish(
                self._handle, _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
                ffi.from_buffer("uint8_t[]", present, require_writable=True), self._jobs,
            )
        )
        return present.view(np.bool_)


class PlanMixin(ArrayBase):
    """``read_plan``, ``sharded`` and ``needs_old``."""

    __slots__ = ()

    def read_plan(
        self, options: Options, batch: ChunkBatch, max_gap_bytes: int = 1 << 20, max_coalesced_bytes: int = 16 << 20
    ) -> ReadPlan:
        """Plan reading ``batch`` (keys name chunks in errors; None keys: ``chunk-<i>``) with
        the caller's own I/O. Inner chunk ranges of a shard are coalesced when at most
        ``max_gap_bytes`` apart, into ranges of at most ``max_coalesced_bytes`` (0: no
        merging)."""
        for name, value in (("max_gap_bytes", max_gap_bytes), ("max_coalesced_bytes", max_coalesced_bytes)):
            if not 0 <= value < 2**64:
                raise ZarrsValueError(f"{name} must be between 0 and 2**64 - 1, got {value}")
        geometry, geometry_len = self._geometry_args(batch)
        keyed = len(batch.key_offsets) == len(batch) + 1
        out = ffi.new("ZarrsReadPlan **")
        check(
            lib().zarrs_array_read_plan_create(
                self._handle, options._cdata(), len(batch),
                batch.keys if keyed else ffi.NULL, len(batch.keys) if keyed else 0,
                _u64_ptr(batch.key_offsets) if keyed else ffi.NULL,
                geometry, geometry_len, max_gap_bytes, max_coalesced_bytes, out,
            )
        )
        return ReadPlan(out[0], self, len(batch))

    @property
    def sharded(self) -> bool:
        """Whether the array's chunks are shards (its array-to-bytes codec is sharding)."""
        flag = ffi.new("uint8_t *")
        check(lib().zarrs_array_is_sharded(self._handle, flag))
        return bool(flag[0])

    def needs_old(self, batch: ChunkBatch, complete: Sequence[bool] | npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Which chunks of a write must have their stored bytes fetched before
        ``encode_chunks``: written in part and not ``complete`` (zarr's per-chunk flag: the
        selection covers all of the chunk inside the array), or written in part and a shard."""
        flags = np.ascontiguousarray(complete, dtype=bool).astype(np.uint8)
        if flags.shape != (len(batch),):
            raise ZarrsValueError(f"{flags.size} complete flags for a batch of {len(batch)}")
        geometry, geometry_len = self._geometry_args(batch)
        needs = np.zeros(len(batch), dtype=np.uint8)
        check(
            lib().zarrs_array_needs_old(
                self._handle, len(batch), geometry, geometry_len,
                ffi.from_buffer("uint8_t[]", flags), len(batch),
                ffi.from_buffer("uint8_t[]", needs, require_writable=True), len(batch),
            )
        )
        return needs.view(np.bool_)
