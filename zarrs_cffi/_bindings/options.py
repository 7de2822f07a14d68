"""The library's version, the process's keep-warm window and ``Options`` (``ffi/mod.rs``,
``ffi/options.rs``).

No handle lives here: these are process-wide settings and the options struct every data
call takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ZarrsValueError
from .convert import lib
from .library import check, ffi

def native_version() -> str:
    """The version string the native library reports."""
    return str(ffi.string(lib().zarrs_ffi_version()).decode())


def keep_warm(microseconds: int | None = None) -> int:
    """Set (if given) and return the process's keep-warm window, in microseconds.

    For that long after each call of the codec pipeline starts or ends, one native thread
    keeps a CPU awake (spinning at nice 19, doing no work), so the thread wake-ups of the next
    call do not wait for a halted CPU. ``Array``'s own region and chunk calls do not start it
    (they hand nothing to other threads, and a spinning thread beside them slowed them). It
    helps where an idle CPU halts at once (a virtual machine without guest halt-polling): a
    small read through zarr wakes sleeping threads several times, and each wake-up of a
    halted CPU is slow. What it saves and what it costs (the CPU time of the window, which
    other threads of the machine may want): benchmarks/RESULTS.md, "Keep-warm on and off".
    Off (0) unless set; Linux only (elsewhere it cannot be turned on). At most 1,000,000
    (one second); 0 turns it off at once. Also set by zarr's config
    ``codec_pipeline.keep_warm_us`` or the environment variable ``ZARRS_FFI_KEEP_WARM_US``.
    """
    if microseconds is not None:
        if isinstance(microseconds, bool) or not isinstance(microseconds, int) or microseconds < 0:
            raise ZarrsValueError(f"keep_warm: microseconds must be a non-negative int, not {microseconds!r}")
        check(lib().zarrs_set_keep_warm(microseconds))
    out = ffi.new("uint64_t *")
    check(lib().zarrs_keep_warm(out))
    return int(out[0])


@dataclass(frozen=True)
class Options:
    """Options for data calls (``ZarrsOptions`` in the C header).

    Parameters
    ----------
    num_threads : int, default 0
        Threads per call; 0 means one per logical CPU.
    chunk_concurrent_minimum : int, default 0
        The fewest chunks processed concurrently when balancing chunk and codec
        concurrency; 0 means the zarrs default (4).
    chunk_concurrent_maximum : int, default 0
        The most chunks processed concurrently; 0 means no limit beyond the thread count.
    validate_checksums : bool, default True
        Verify checksums such as crc32c while decoding.
    store_empty_chunks : bool, default False
        Store chunks that are entirely the fill value instead of erasing them.
    max_variable_chunk_bytes : int, default 0
        The most bytes one variable-length (``string``, ``bytes``) chunk may decode to,
        through each of its compressors; more raises ``ZarrsCodecError``. 0 means the
        default, 1 GiB. Fixed-size chunks are bounded by their metadata instead.
    fsync : bool, default False
        Make local writes durable: each chunk file is fsynced before it replaces the old
        one and its directory after, so a write that returned survives a power loss (a
        process's death needs no fsync). Slower; other stores ignore it.

    Raises
    ------
    ZarrsValueError
        A count outside what the C struct holds (``uint32_t``; ``uint64_t`` for
        ``max_variable_chunk_bytes``).
    """

    num_threads: int = 0
    chunk_concurrent_minimum: int = 0
    chunk_concurrent_maximum: int = 0
    validate_checksums: bool = True
    store_empty_chunks: bool = False
    max_variable_chunk_bytes: int = 0
    fsync: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.max_variable_chunk_bytes < 2**64:
            raise ZarrsValueError(f"max_variable_chunk_bytes must be between 0 and 2**64 - 1, got {self.max_variable_chunk_bytes}")
        for name in ("num_threads", "chunk_concurrent_minimum", "chunk_concurrent_maximum"):
            value = getattr(self, name)
            if not 0 <= value < 2**32:
                raise ZarrsValueError(f"{name} must be between 0 and 2**32 - 1, got {value}")

    def _cdata(self) -> Any:
        # One struct per distinct options value, built on first use and reused: the
        # pipeline passes the same options on every call. Looked up by identity first (holding the instance, so its id is not reused): a dataclass's
        # hash of every field costs more than the rest of a small read's checks.
        mine = _BY_ID.get(id(self))
        if mine is not None and mine[0] is self:
            return mine[1]
        cached = _OPTIONS_CACHE.get(self)
        if cached is None:
            cached = ffi.new(
                "ZarrsOptions *",
                {
                    "num_threads": self.num_threads,
                    "chunk_concurrent_minimum": self.chunk_concurrent_minimum,
                    "chunk_concurrent_maximum": self.chunk_concurrent_maximum,
                    # uint8_t flags in C: 0 or 1.
                    "validate_checksums": int(bool(self.validate_checksums)),
                    "store_empty_chunks": int(bool(self.store_empty_chunks)),
                    "max_variable_chunk_bytes": self.max_variable_chunk_bytes,
                    "fsync": int(bool(self.fsync)),
                },
            )
            _OPTIONS_CACHE[self] = cached
        if len(_BY_ID) >= 1024:
            _BY_ID.clear()
        _BY_ID[id(self)] = (self, cached)
        return cached


_OPTIONS_CACHE: dict[Options, Any] = {}
# id -> (instance, struct): at most 1024 instances held, then forgotten at once.
_BY_ID: dict[int, tuple[Options, Any]] = {}
