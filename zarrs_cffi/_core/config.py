"""Every configuration key the package reads: its default, its type check and its error.

zarr's global config (``zarr.config``) holds the pipeline's keys; each array's
``ArrayConfig`` (a chunk spec's ``config``) holds the per-array ones. A key is read when a
pipeline is created (``options_from_config``, ``direct_io``), when an array is first used
(``apply_keep_warm``, ``loop_read_bytes``, ``shard_index_cache_bytes``) or when a call needs it (``io_limit``, ``strict``,
``write_empty_chunks``, ``coalesce``); this module keeps no state of its own.

The native library reads one setting itself, for C callers: the environment variable
``ZARRS_FFI_KEEP_WARM_US`` (``process/warm.rs``), which ``codec_pipeline.keep_warm_us``
overrides.

| key | type | default | what it sets |
|---|---|---|---|
| ``threading.max_workers`` | int >= 0 or None | None (the CPU count) | native threads |
| ``codec_pipeline.chunk_concurrent_minimum`` | int >= 0 or None | None (zarrs' own) | chunks decoded at once, at least |
| ``codec_pipeline.chunk_concurrent_maximum`` | int >= 0 or None | None (zarrs' own) | chunks decoded at once, at most |
| ``codec_pipeline.max_variable_chunk_bytes`` | int >= 0 or None | None (the library's cap) | a variable-length chunk's decoded size |
| ``codec_pipeline.validate_checksums`` | bool | True | crc32c checks on read |
| ``codec_pipeline.fsync`` | bool | False | fsync each chunk file and its directory |
| ``codec_pipeline.direct_io`` | bool | False | local reads bypass the page cache |
| ``codec_pipeline.strict`` | bool | False | a fallback is an error |
| ``codec_pipeline.shard_index_cache_bytes`` | int >= 0 or None | None (32 MiB) | shard indexes kept per remote sharded array (0: none) |
| ``codec_pipeline.keep_warm_us`` | int >= 0 or None | None (as it is) | the keep-warm window |
| ``codec_pipeline.loop_read_bytes`` | int >= 0 or None | None (256 KiB) | a lone small local read's decoded size, at most, to run on the event loop (0: never) |
| ``async.concurrency`` | int >= 0 or None | None (no limit) | store requests in flight |
| ``ArrayConfig.write_empty_chunks`` | bool | zarr's | store chunks of only the fill value |
| ``ArrayConfig.sharding_coalesce_max_gap_bytes`` | int (negative: never merge) | 1 MiB | Python-store shard reads: ranges merged across gaps up to this |
| ``ArrayConfig.sharding_coalesce_max_bytes`` | int | 16 MiB | ... into requests of at most this |
"""

from __future__ import annotations

from typing import Any

from zarr.core.config import config

from .._bindings import Options, keep_warm
from ..errors import ZarrsValueError

__all__ = [
    "apply_keep_warm", "coalesce", "direct_io", "io_limit", "loop_read_bytes", "options_from_config",
    "shard_index_cache_bytes", "strict", "write_empty_chunks",
]

#: ``codec_pipeline.loop_read_bytes`` unset: four 32^3 chunks of 2-byte elements, whose
#: decoding holds the loop for a few hundred microseconds at most (benchmarks/RESULTS.md,
#: call_share.py's native call).
LOOP_READ_BYTES = 256 << 10

#: ``codec_pipeline.shard_index_cache_bytes`` unset: the native library's own default.
SHARD_INDEX_CACHE_BYTES = 32 << 20

#: zarr >= 3.4's defaults for its sharding codec's range coalescing (``ArrayConfig``).
COALESCE_MAX_GAP_BYTES = 1 << 20
COALESCE_MAX_BYTES = 16 << 20

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _bool(key: str, value: Any) -> bool:
    """``value`` of ``key`` as a bool: a bool, 0 or 1, or a word (an environment variable)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ZarrsValueError(f"{key} must be true or false, not {value!r}")


def _count(key: str, value: Any) -> int | None:
    """``value`` of ``key`` as a non-negative integer, or None when unset."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ZarrsValueError(f"{key} must be a non-negative integer, not {value!r}")
    return value


def _integer(key: str, value: Any, default: int) -> int:
    """``value`` of ``key`` as an integer (negative allowed), or ``default`` when unset."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ZarrsValueError(f"{key} must be an integer, not {value!r}")
    return value


def _flag(key: str, default: bool) -> bool:
    return _bool(key, config.get(key, default))


def _setting(key: str) -> int | None:
    return _count(key, config.get(key, None))


def options_from_config() -> Options:
    """Native options from zarr's config, as zarrs-python reads them (unset counts are 0,
    which the library reads as its own default)."""
    return Options(
        num_threads=_setting("threading.max_workers") or 0,
        chunk_concurrent_minimum=_setting("codec_pipeline.chunk_concurrent_minimum") or 0,
        chunk_concurrent_maximum=_setting("codec_pipeline.chunk_concurrent_maximum") or 0,
        validate_checksums=_flag("codec_pipeline.validate_checksums", True),
        max_variable_chunk_bytes=_setting("codec_pipeline.max_variable_chunk_bytes") or 0,
        fsync=_flag("codec_pipeline.fsync", False),
    )


def direct_io() -> bool:
    """Whether native filesystem reads bypass the page cache (``codec_pipeline.direct_io``)."""
    return _flag("codec_pipeline.direct_io", False)


def strict() -> bool:
    """Whether a fallback is an error (``codec_pipeline.strict``)."""
    return _flag("codec_pipeline.strict", False)


def shard_index_cache_bytes() -> int:
    """The most bytes of shard indexes one remote sharded array keeps across reads
    (``codec_pipeline.shard_index_cache_bytes``; 0: none). Read whenever a pipeline opens
    its array: arrays opened again share their native handle, and each open sets its
    budget, so an unset key restores the default rather than keeping an earlier open's."""
    budget = _setting("codec_pipeline.shard_index_cache_bytes")
    return SHARD_INDEX_CACHE_BYTES if budget is None else budget


def io_limit() -> int | None:
    """How many store requests may be in flight at once (zarr's ``async.concurrency``;
    None or 0: no limit)."""
    return _setting("async.concurrency") or None


def loop_read_bytes() -> int:
    """The most bytes a read may be estimated to decode to run on zarr's event loop itself
    when no other call of the pipeline is in flight there (``codec_pipeline.loop_read_bytes``;
    0: never). Read when an array is first used."""
    budget = _setting("codec_pipeline.loop_read_bytes")
    return LOOP_READ_BYTES if budget is None else budget


def apply_keep_warm() -> None:
    """Set the process's keep-warm window from ``codec_pipeline.keep_warm_us``, if set.

    Called when an array is first used natively (never at open, which makes no native
    call). Process-wide: the last array opened under a setting decides it; unset leaves
    it as it is.
    """
    microseconds = _setting("codec_pipeline.keep_warm_us")
    if microseconds is not None:
        keep_warm(microseconds)


def write_empty_chunks(spec: Any) -> bool:
    """Whether chunks holding only the fill value are stored (a chunk spec's
    ``ArrayConfig.write_empty_chunks``) rather than deleted."""
    return _bool("write_empty_chunks", spec.config.write_empty_chunks)


def coalesce(spec: Any) -> tuple[int, int]:
    """How partial shard reads through a Python store merge byte ranges: across gaps of at
    most the first value, into requests of at most the second (zarr's ``ArrayConfig``;
    zarr before 3.4 has neither key)."""
    array_config = spec.config
    gap = getattr(array_config, "sharding_coalesce_max_gap_bytes", None)
    most = getattr(array_config, "sharding_coalesce_max_bytes", None)
    return (
        _integer("sharding_coalesce_max_gap_bytes", gap, COALESCE_MAX_GAP_BYTES),
        _integer("sharding_coalesce_max_bytes", most, COALESCE_MAX_BYTES),
    )
