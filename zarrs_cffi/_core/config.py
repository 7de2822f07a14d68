"""zarr's configuration, read the way the pipeline needs it (as zarrs-python reads it).

Read when a pipeline is created (``options_from_config``, ``direct_io``) or when a call
needs it (``io_limit``, ``strict``); this module keeps no state of its own.
"""

from __future__ import annotations

from zarr.core.config import config

from .._bindings import Options, keep_warm
from ..errors import ZarrsValueError

__all__ = ["apply_keep_warm", "direct_io", "io_limit", "options_from_config", "strict"]


def _config_int(key: str) -> int:
    value = config.get(key, None)
    return int(value) if value is not None else 0


def options_from_config() -> Options:
    """Native options from zarr's config, as zarrs-python reads them."""
    validate = config.get("codec_pipeline.validate_checksums", None)
    return Options(
        num_threads=_config_int("threading.max_workers"),
        chunk_concurrent_minimum=_config_int("codec_pipeline.chunk_concurrent_minimum"),
        chunk_concurrent_maximum=_config_int("codec_pipeline.chunk_concurrent_maximum"),
        validate_checksums=True if validate is None else bool(validate),
        max_variable_chunk_bytes=_config_int("codec_pipeline.max_variable_chunk_bytes"),
        fsync=bool(config.get("codec_pipeline.fsync", False)),
    )


def direct_io() -> bool:
    """Whether native filesystem reads bypass the page cache (``codec_pipeline.direct_io``)."""
    return bool(config.get("codec_pipeline.direct_io", False))


def strict() -> bool:
    """Whether a fallback is an error (``codec_pipeline.strict``)."""
    return bool(config.get("codec_pipeline.strict", False))


def io_limit() -> int | None:
    """How many store requests may be in flight at once (zarr's ``async.concurrency``)."""
    limit = config.get("async.concurrency", None)
    return int(limit) if limit else None


def apply_keep_warm() -> None:
    """Set the process's keep-warm window from ``codec_pipeline.keep_warm_us``, if set.

    Called when an array is first used natively (never at open, which makes no native
    call). Process-wide: the last array opened under a setting decides it; unset leaves
    it as it is.
    """
    value = config.get("codec_pipeline.keep_warm_us", None)
    if value is None:
        return
    try:
        microseconds = int(value)
    except (TypeError, ValueError):
        microseconds = -1
    if microseconds < 0 or isinstance(value, (bool, float)):
        raise ZarrsValueError(f"codec_pipeline.keep_warm_us must be a non-negative integer, not {value!r}")
    keep_warm(microseconds)
