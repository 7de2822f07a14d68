"""The native side of a pipeline: opening zarr's array metadata with zarrs.

``open_record`` decides whether an array can be native at all (its data type, its storage
transformers, whether zarrs accepts its metadata) and on which storage the native array
opens: the store's own bytes when the library can reach them (``stores.py``), else a
codec-only storage while the bytes move through the store's Python API. It raises
``Fallback`` with the reason when the array cannot be native. It blocks (native calls), so
the pipeline runs it on a worker thread, once, at the first read or write (``Opener``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.codecs import ShardingCodec
from zarr.core.metadata.v3 import ArrayV3Metadata

from .._bindings import ArrayHandle, Options
from .._core import config
from .._core.fallback import Fallback, fall_back
from .._core.metadata import as_raw_bits, metadata_json
from ..errors import ZarrsError, ZarrsMetadataError, ZarrsUnsupportedError
from .record import ArrayRecord
from .routes import route_for
from .shards import ShardReader
from .stores import codec_storage, storage_for
from .variable import is_variable

if TYPE_CHECKING:
    from zarr.abc.store import Store
    from zarr.core.metadata import ArrayMetadata

    from .._bindings import Storage
    from .routes import Route

__all__ = ["Opener", "open_record"]


def open_record(metadata: ArrayMetadata, store: Store, options: Options, *, direct_io: bool) -> ArrayRecord:
    """Open ``metadata`` natively on ``store``; raises ``Fallback`` saying why it cannot be."""
    if isinstance(metadata, ArrayV3Metadata) and metadata.storage_transformers:
        fall_back("store", "storage transformers")
    try:
        dtype = np.dtype(metadata.dtype.to_native_dtype())
    except (AttributeError, TypeError) as exc:
        fall_back("data type", f"data type without a numpy equivalent ({exc})")
    variable = None
    if is_variable(metadata.dtype):
        variable = "text" if type(metadata.dtype).__name__ == "VariableLengthUTF8" else "bytes"
    elif dtype.kind not in "biufcmMUSV" or dtype.hasobject or dtype.itemsize == 0:
        fall_back("data type", f"data type {dtype} is not native yet")
    order = None
    inner_chunks = None
    if isinstance(metadata, ArrayV3Metadata) and len(metadata.codecs) == 1:
        # zarr's sharding codec carries its byte layout outside the metadata (zarr >= 3.4).
        order = getattr(metadata.codecs[0], "subchunk_write_order", None)
        if isinstance(metadata.codecs[0], ShardingCodec):
            inner_chunks = tuple(int(n) for n in metadata.codecs[0].chunk_shape)
    try:
        storage = storage_for(store, direct_io=direct_io)
        python_io = storage if isinstance(storage, str) else None
        if isinstance(storage, str):
            storage = codec_storage()
        key = (storage, metadata_json(metadata), order if isinstance(order, str) else None, bool(python_io))
        opened = _OPENED.get(key) or _remember(key, _open(key, dtype, metadata.fill_value, variable))
    except ZarrsError as exc:
        fall_back("codec", f"zarrs cannot open this array: {exc}")
    array, document, native_dtype = opened.array, opened.document, opened.native_dtype
    if array.sharded:
        array.set_shard_index_cache(config.shard_index_cache_bytes())
    shards = None if variable else opened.shards
    if variable:
        # Bytes always move through the store's Python API (whole chunks, see variable.py).
        python_io = python_io or "variable-length data type"
    elif array.element_size != dtype.itemsize:
        fall_back("data type", f"element size {array.element_size} differs from numpy's {dtype.itemsize} for {dtype}")
    return ArrayRecord(
        array=array, dtype=dtype, native_dtype=native_dtype, store=store, options=options, python_io=python_io,
        shards=shards, sharded=array.sharded, variable=variable, inner_chunks=inner_chunks,
    )


class Opener:
    """Opens an array's native side once, at its first use, and keeps its route or the
    reason it cannot be native. No lock: two threads racing both open, the first result is
    kept (opening may start the library's I/O threads, never under a lock).

    Parameters
    ----------
    metadata, store
        What zarr built the pipeline from.
    options
        Native options, read from zarr's config when the pipeline was created.
    direct_io
        ``codec_pipeline.direct_io``, likewise.
    """

    def __init__(self, metadata: ArrayMetadata, store: Store, options: Options, direct_io: bool) -> None:
        self.metadata, self.store, self.options, self.direct_io = metadata, store, options, direct_io
        self.result: Route | Fallback | None = None

    def open(self) -> Route:
        """The route (opening the array if needed; blocks); raises ``Fallback``."""
        if self.result is None:
            config.apply_keep_warm()
            try:
                native = open_record(self.metadata, self.store, self.options, direct_io=self.direct_io)
                result: Route | Fallback = route_for(native)
            except Fallback as exc:
                result = exc
            if self.result is None:
                self.result = result
        if isinstance(self.result, Fallback):
            fall_back(self.result.kind, self.result.reason)
        return self.result


@dataclass(frozen=True)
class _Opened:
    """A native array as opened for one storage, metadata document and shard layout."""

    array: ArrayHandle
    document: str
    native_dtype: np.dtype[Any]
    shards: ShardReader | None


# Arrays opened lately, per (storage, metadata document, subchunk write order, whether
# bytes move through Python): an array opened again (every zarr.open_array builds a new
# pipeline) skips the native open. A native array serves concurrent calls already; the key
# holds all it was opened from (the data type and fill value are in the document). A forked
# child keeps the entries (the storages they hold are never freed there) but its stores map
# to storages of its own, so it never uses them.
_OPENED: dict[tuple[Any, ...], _Opened] = {}
_OPENED_MAX = 64


def _remember(key: tuple[Any, ...], opened: _Opened) -> _Opened:
    """Keep ``opened`` under ``key`` (dropping the oldest entry when full); two threads
    racing both open, the first kept is shared."""
    while len(_OPENED) >= _OPENED_MAX:
        try:
            del _OPENED[next(iter(_OPENED))]
        except (KeyError, RuntimeError, StopIteration):  # another thread changed it first
            break
    return _OPENED.setdefault(key, opened)


def _open(key: tuple[Any, ...], dtype: np.dtype[Any], fill_value: Any, variable: str | None) -> _Opened:
    storage, document, order, python_io = key
    array, document, native_dtype = _open_array(storage, document, dtype, fill_value, variable)
    if order is not None:
        array.set_subchunk_write_order(order)
    shards = ShardReader.for_array(array) if python_io and not variable else None
    return _Opened(array, document, native_dtype, shards)


def _open_array(
    storage: Storage, document: str, dtype: np.dtype[Any], fill_value: Any, variable: str | None
) -> tuple[ArrayHandle, str, np.dtype[Any]]:
    """The native array, the document it opened with and the data type zarrs decodes to:
    zarr's own, or its raw bits when zarrs lacks the type."""
    native_dtype = dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype
    try:
        return ArrayHandle.open_with_metadata(storage, document), document, native_dtype
    except (ZarrsUnsupportedError, ZarrsMetadataError):
        if variable:
            raise
        try:
            raw = as_raw_bits(json.loads(document), dtype, fill_value)
        except (TypeError, ValueError) as exc:
            fall_back("data type", f"data type {dtype} as raw bits: {exc}")
        if raw is None:
            raise
        document, native_dtype = raw
        return ArrayHandle.open_with_metadata(storage, document), document, native_dtype
