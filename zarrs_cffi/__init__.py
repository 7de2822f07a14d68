"""zarrs_cffi: read and write Zarr arrays with the Rust zarrs library.

Use it through zarr::

    import zarr
    zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"})

or directly with :class:`zarrs_cffi.Array`. Importing this package never loads the
native library; that happens on first use.
"""

from __future__ import annotations

from ._bindings import Options, keep_warm
from ._core.results import result_pool_bytes
from ._version import __version__
from .array import Array
from .errors import (
    ZarrsChecksumError,
    ZarrsCodecError,
    ZarrsError,
    ZarrsMemoryError,
    ZarrsMetadataError,
    ZarrsPanicError,
    ZarrsReadOnlyError,
    ZarrsStorageError,
    ZarrsUnsupportedError,
    ZarrsValueError,
)
from ._pipeline.codec_pipeline import ZarrsCodecPipeline
from .stats import PipelineStats, reset_stats, stats

__all__ = [
    "Array",
    "Options",
    "PipelineStats",
    "ZarrsChecksumError",
    "ZarrsCodecError",
    "ZarrsCodecPipeline",
    "ZarrsError",
    "ZarrsMemoryError",
    "ZarrsMetadataError",
    "ZarrsPanicError",
    "ZarrsReadOnlyError",
    "ZarrsStorageError",
    "ZarrsUnsupportedError",
    "ZarrsValueError",
    "__version__",
    "keep_warm",
    "reset_stats",
    "result_pool_bytes",
    "stats",
]


def _register() -> None:
    # The entry point registers the pipeline when the package is installed; this covers
    # imports from a source tree too.
    from zarr.registry import register_pipeline

    register_pipeline(ZarrsCodecPipeline)


_register()
