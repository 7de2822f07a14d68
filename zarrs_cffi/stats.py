"""Per-process counts of stored chunks handled natively and of those that fell back, and why.

The unit is the stored chunk: one key in the store, as zarr's chunk grid addresses it. For a
sharded array that is the shard, not the inner chunks inside it (an 800 MB write into 28
shards counts 28). A chunk read or written twice counts twice.

Tests assert on these to prove the fast path; users read them to see what their workload
actually does (``zarrs_cffi.stats()``).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PipelineStats", "reset_stats", "stats"]


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of the counters.

    Every count is of stored chunks (store keys): for a sharded array, shards, however many
    inner chunks each holds or a read touches.

    Parameters
    ----------
    native_reads, native_writes : int
        Stored chunks (shards, for sharded arrays) decoded or encoded by the native library.
    python_io_reads, python_io_writes : int
        Of those, the ones whose bytes moved through the store's own Python API (stores the
        native library cannot reach itself, such as MemoryStore or ZipStore).
    fallback_reads, fallback_writes : int
        Stored chunks (shards) handed to zarr's own pipeline.
    fallback_reasons : Mapping[str, int]
        For each reason, how many stored chunks (shards) fell back for it.
    """

    native_reads: int = 0
    native_writes: int = 0
    python_io_reads: int = 0
    python_io_writes: int = 0
    fallback_reads: int = 0
    fallback_writes: int = 0
    fallback_reasons: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def fallbacks(self) -> int:
        """Stored chunks (shards) that fell back, reads and writes together."""
        return self.fallback_reads + self.fallback_writes

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only mapping cannot be pickled; send a plain dict (multiprocessing,
        # concurrent.futures and dask workers return stats by pickling them).
        return (_restore, (self.native_reads, self.native_writes, self.python_io_reads, self.python_io_writes,
                           self.fallback_reads, self.fallback_writes, dict(self.fallback_reasons)))


def _restore(
    native_reads: int, native_writes: int, python_io_reads: int, python_io_writes: int, fallback_reads: int,
    fallback_writes: int, reasons: dict[str, int],
) -> PipelineStats:
    return PipelineStats(
        native_reads, native_writes, python_io_reads, python_io_writes, fallback_reads, fallback_writes,
        fallback_reasons=MappingProxyType(reasons),
    )


_lock = threading.Lock()
_counts: Counter[str] = Counter()
_reasons: Counter[str] = Counter()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork: it would never be released.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def record_native(kind: str, chunks: int, *, python_io: bool = False) -> None:
    with _lock:
        _counts[f"native_{kind}"] += chunks
        if python_io:
            _counts[f"python_io_{kind}"] += chunks


def record_fallback(kind: str, chunks: int, reason: str) -> None:
    with _lock:
        _counts[f"fallback_{kind}"] += chunks
        _reasons[reason] += chunks


def stats() -> PipelineStats:
    """The counts since the process started or :func:`reset_stats` was last called.

    Returns
    -------
    PipelineStats
        A snapshot: later reads and writes do not change it.

    Examples
    --------
    >>> import zarrs_cffi
    >>> zarrs_cffi.stats().fallbacks  # doctest: +SKIP
    0
    """
    with _lock:
        return PipelineStats(
            native_reads=_counts["native_reads"],
            native_writes=_counts["native_writes"],
            python_io_reads=_counts["python_io_reads"],
            python_io_writes=_counts["python_io_writes"],
            fallback_reads=_counts["fallback_reads"],
            fallback_writes=_counts["fallback_writes"],
            fallback_reasons=MappingProxyType(dict(_reasons)),
        )


def reset_stats() -> None:
    """Set every counter of this process back to zero (other processes keep theirs)."""
    with _lock:
        _counts.clear()
        _reasons.clear()
