"""ZarrsCodecPipeline: zarr-python's codec pipeline, with chunk I/O and codecs in Rust.

``from_array_metadata_and_store`` opens the array natively when the store maps to native
storage (``stores.py``) and zarrs can handle its codecs and data type. ``read``/``write``
turn zarr's per-chunk selections into one native batch (``selection.py``) and run it on a
worker thread (``_workers.py``), the GIL released inside: nothing that takes time (a native
call, a store's synchronous I/O, a numpy loop) runs on zarr's event loop, where it would
hold up every other read and write. When the native library or the store's synchronous API
moves the bytes, a whole read or write is one worker call; a store's async API is awaited on
the loop, between worker calls.

Everything else (a store, data type, codec or selection that is not native yet) goes to
zarr's own BatchedCodecPipeline, and is counted (``stats.py``) and logged once per pipeline
with the reason; with ``codec_pipeline.strict`` it raises instead.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import astuple, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import CodecPipeline, GetResult
from zarr.core.array_spec import ArrayConfig, ArraySpec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.core.common import concurrent_map
from zarr.storage import MemoryStore, StorePath, ZipStore
from zarr.abc.store import _store_supports_sync_io
from zarr.core.config import config
from zarr.core.metadata.v3 import ArrayV3Metadata

from . import _workers, stats
from ._bindings import ChunkBatch, NativeArray, Options, decode_variable_chunks, encode_variable_chunks
from .errors import ZarrsError, ZarrsMetadataError, ZarrsUnsupportedError
from .selection import ChunkPlan, GatherGroup, plan_batch, plan_gather
from .shards import ShardReader, raw_bytes
from .stores import codec_storage, native_storage
from .variable import from_elements, is_variable, to_elements

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Self

    from zarr.abc.codec import Codec
    from zarr.abc.store import ByteGetter, ByteSetter, Store
    from zarr.core.buffer import Buffer, BufferPrototype, NDBuffer
    from zarr.core.indexing import SelectorTuple
    from zarr.core.metadata import ArrayMetadata

__all__ = ["ZarrsCodecPipeline"]

logger = logging.getLogger("zarrs_cffi")

_PRESENT = GetResult(status="present")
_MISSING = GetResult(status="missing")

def _io_limit() -> int | None:
    """How many store requests may be in flight at once (zarr's ``async.concurrency``)."""
    limit = config.get("async.concurrency", None)
    return int(limit) if limit else None


async def _fetch(byte_getter: ByteGetter, prototype: BufferPrototype) -> Any:
    """A chunk's encoded bytes as a bytes-like object, or None if it is missing."""
    return raw_bytes(await byte_getter.get(prototype=prototype))


async def _store(byte_setter: ByteSetter, chunk: bytes | None, prototype: BufferPrototype) -> None:
    """Store encoded bytes, or delete the chunk when it is entirely the fill value."""
    if chunk is None:
        await byte_setter.delete()
    else:
        await byte_setter.set(prototype.buffer.from_bytes(chunk))


async def _store_all(batch: list[Any], encoded: list[Any]) -> None:
    """Store (or delete) every chunk of a batch through the store's async API."""
    prototype = batch[0][1].prototype
    await concurrent_map(
        [(info[0], chunk, prototype) for info, chunk in zip(batch, encoded, strict=True)], _store, _io_limit()
    )


async def _fetch_all(batch: list[Any]) -> list[Any]:
    """Every chunk's encoded bytes (None: missing), through the store's async API."""
    prototype = batch[0][1].prototype
    return await concurrent_map([(info[0], prototype) for info in batch], _fetch, _io_limit())


# The synchronous counterparts, for stores that serve synchronous I/O (``_sync_io``). They
# block, so they run only on worker threads (``_workers.run``), never on zarr's event loop.


def _fetch_sync(batch: list[Any]) -> list[Any]:
    prototype = batch[0][1].prototype
    return [raw_bytes(info[0].get_sync(prototype=prototype)) for info in batch]


def _store_sync(batch: list[Any], encoded: list[Any]) -> None:
    prototype = batch[0][1].prototype
    for info, chunk in zip(batch, encoded, strict=True):
        if chunk is None:
            info[0].delete_sync()
        else:
            info[0].set_sync(prototype.buffer.from_bytes(chunk))


def _sync_io(batch: list[Any]) -> bool:
    """Whether the batch's store serves synchronous I/O (MemoryStore, ...): then one
    worker call fetches, decodes (or encodes) and stores, with no coroutine per chunk."""
    if not batch:
        return False
    byte_getter = batch[0][0]
    if not isinstance(byte_getter, StorePath):
        return False
    store = byte_getter.store
    # Only zarr's own stores, exactly: a subclass or wrapper may override the async methods
    # (to log, count or transform) and not the sync ones, which would bypass it.
    return type(store) in (MemoryStore, ZipStore) and bool(_store_supports_sync_io(store))


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
    )


def _zarr_pipeline(metadata: ArrayMetadata) -> CodecPipeline:
    """zarr's own pipeline for ``metadata``, built as zarr's create_codec_pipeline does."""
    if isinstance(metadata, ArrayV3Metadata):
        chunk_shape = getattr(metadata.chunk_grid, "chunk_shape", (1,) * len(metadata.shape))
        spec = ArraySpec(
            shape=chunk_shape,
            dtype=metadata.data_type,
            fill_value=metadata.fill_value,
            config=ArrayConfig.from_dict({}),
            prototype=default_buffer_prototype(),
        )
        return BatchedCodecPipeline.from_codecs(metadata.codecs).evolve_from_array_spec(spec)
    from zarr.codecs._v2 import V2Codec

    spec = ArraySpec(
        shape=metadata.chunks,
        dtype=metadata.dtype,
        fill_value=metadata.fill_value,
        config=ArrayConfig.from_dict({"order": metadata.order}),
        prototype=default_buffer_prototype(),
    )
    v2 = V2Codec(filters=metadata.filters, compressor=metadata.compressor)
    return BatchedCodecPipeline.from_codecs([v2]).evolve_from_array_spec(spec)


def _metadata_json(metadata: ArrayMetadata) -> str:
    """The array's metadata document for zarrs, without its user attributes: they play no
    part in encoding or decoding, and any JSON Python writes (lone surrogates in escapes,
    found by zarr's property tests) would otherwise make zarrs refuse the whole array."""
    documents = metadata.to_buffer_dict(default_buffer_prototype())
    document = documents.get("zarr.json") or documents[".zarray"]
    text = document.to_bytes().decode("utf-8")
    if '"attributes"' not in text:
        return text
    parsed = json.loads(text)
    parsed.pop("attributes", None)
    return json.dumps(parsed)


@dataclass(frozen=True)
class _Native:
    """The native side of a pipeline: the array, and what reads and writes need."""

    array: NativeArray
    # zarr's in-memory data type, and the same in native byte order (what zarrs decodes to
    # and encodes from; they differ for big-endian arrays).
    dtype: np.dtype[Any]
    native_dtype: np.dtype[Any]
    store: Store
    options: Options
    # Why chunk bytes move through the store's Python API (the codecs still run natively);
    # None when the native library reaches the store itself.
    python_io: str | None = None
    # Partial shard reads through Python (byte ranges), for python_io arrays it applies to.
    shards: ShardReader | None = None
    # The chunks are shards: a write covering a shard's part inside the array still keeps
    # the inner chunks beyond it (zarr does), so it merges with the old shard.
    sharded: bool = False
    # "text" or "bytes" for variable-length data types (``variable.py``), else None.
    variable: str | None = None


def _open_native(metadata: ArrayMetadata, store: Store) -> _Native | str:
    """Open ``metadata`` natively on ``store``, or say why it cannot be."""
    if isinstance(metadata, ArrayV3Metadata) and metadata.storage_transformers:
        return "storage transformers"
    try:
        dtype = np.dtype(metadata.dtype.to_native_dtype())
    except (AttributeError, TypeError) as exc:
        return f"data type without a numpy equivalent ({exc})"
    variable = None
    if is_variable(metadata.dtype):
        variable = "text" if type(metadata.dtype).__name__ == "VariableLengthUTF8" else "bytes"
    elif dtype.kind not in "biufcmMUSV" or dtype.hasobject or dtype.itemsize == 0:
        return f"data type {dtype} is not native yet"
    native_dtype = dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype
    direct_io = bool(config.get("codec_pipeline.direct_io", False))
    try:
        storage = native_storage(store, direct_io=direct_io)
        python_io = storage if isinstance(storage, str) else None
        if isinstance(storage, str):
            storage = codec_storage()
        document = _metadata_json(metadata)
        try:
            array = NativeArray.open_with_metadata(storage, document)
        except (ZarrsUnsupportedError, ZarrsMetadataError):
            if variable:
                raise
            # A fixed-size type zarrs lacks (null-terminated or raw bytes, structured, Zarr v2
            # datetimes): its chunks are its bytes in the stored byte order, so zarrs handles
            # it as raw bits and numpy converts the byte order.
            try:
                raw = _as_raw_bits(json.loads(document), dtype, metadata.fill_value)
            except (TypeError, ValueError) as exc:
                return f"data type {dtype} as raw bits: {exc}"
            if raw is None:
                raise
            document, native_dtype = raw
            array = NativeArray.open_with_metadata(storage, document)
        shards = ShardReader.from_metadata(json.loads(document), storage) if python_io else None
    except ZarrsError as exc:
        return f"zarrs cannot open this array: {exc}"
    if isinstance(metadata, ArrayV3Metadata) and len(metadata.codecs) == 1:
        # zarr's sharding codec carries its byte layout outside the metadata (zarr >= 3.4).
        order = getattr(metadata.codecs[0], "subchunk_write_order", None)
        if isinstance(order, str):
            array.set_subchunk_write_order(order)
    if variable:
        # Bytes always move through the store's Python API (whole chunks, see variable.py).
        python_io = python_io or "variable-length data type"
    elif array.element_size != dtype.itemsize:
        return f"element size {array.element_size} differs from numpy's {dtype.itemsize} for {dtype}"
    return _Native(
        array=array, dtype=dtype, native_dtype=native_dtype, store=store, options=options_from_config(),
        python_io=python_io, shards=shards if not variable else None, sharded='"sharding_indexed"' in document,
        variable=variable,
    )


def _as_raw_bits(
    document: dict[str, Any], dtype: np.dtype[Any], fill_value: Any
) -> tuple[str, np.dtype[Any]] | None:
    """``document`` with its data type replaced by raw bits of the same size, and the numpy
    data type whose bytes are the stored bytes; None when a codec depends on the element
    type (a filter, or an array-to-array codec)."""
    stored = dtype
    if document.get("zarr_format") == 3:
        endian = _bytes_endian(document.get("codecs", []))
        if endian is not None:
            stored = dtype.newbyteorder("<" if endian == "little" else ">")
        def plain(codecs: list[Any]) -> bool:
            for codec in codecs:
                name = codec.get("name") if isinstance(codec, dict) else codec
                if name == "sharding_indexed":
                    if not plain(codec["configuration"]["codecs"]):
                        return False
                elif name not in ("bytes", "crc32c", "gzip", "zstd", "blosc"):
                    return False
            return True

        if not plain(document.get("codecs", [])):
            return None
        fill = _fill_bytes(fill_value, dtype, stored)
        document["data_type"] = f"r{dtype.itemsize * 8}"
        document["fill_value"] = list(fill)
        # Raw bits have no byte order: the bytes codec takes no endian setting.
        def strip(codecs: list[Any]) -> None:
            for codec in codecs:
                if isinstance(codec, dict) and codec.get("name") == "bytes":
                    codec.pop("configuration", None)
                elif isinstance(codec, dict) and codec.get("name") == "sharding_indexed":
                    strip(codec["configuration"]["codecs"])

        strip(document["codecs"])
    else:
        if document.get("filters"):
            return None
        fill = _fill_bytes(fill_value, dtype, dtype)
        document["dtype"] = f"|V{dtype.itemsize}"
        document["fill_value"] = base64.standard_b64encode(fill).decode("ascii")
    return json.dumps(document), stored


def _fill_bytes(fill_value: Any, dtype: np.dtype[Any], stored: np.dtype[Any]) -> bytes:
    """The fill value's bytes in the stored byte order; zeros for a Zarr v2 null fill value,
    which zarr reads as the data type's default."""
    if fill_value is None:
        return bytes(dtype.itemsize)
    return np.array(fill_value, dtype=dtype).astype(stored).tobytes()


def _bytes_endian(codecs: list[Any]) -> str | None:
    """The endian setting of the bytes codec in a v3 codec chain (inside sharding too)."""
    for codec in codecs:
        if not isinstance(codec, dict):
            continue
        if codec.get("name") == "bytes":
            return (codec.get("configuration") or {}).get("endian")
        if codec.get("name") == "sharding_indexed":
            return _bytes_endian(codec["configuration"]["codecs"])
    return None


def _restore(kind: str, *args: Any) -> ZarrsCodecPipeline:
    """Unpickle: rebuild from the source, reading zarr's config as it is now."""
    if kind == "metadata":
        return ZarrsCodecPipeline.from_array_metadata_and_store(*args)
    pipeline = ZarrsCodecPipeline.from_codecs(args[0])
    return pipeline if args[1] is None else pipeline.evolve_from_array_spec(args[1])


@dataclass(frozen=True, eq=False)
class ZarrsCodecPipeline(CodecPipeline):
    """A zarr codec pipeline that reads and writes chunks with the Rust zarrs library.

    Select it with ``zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"})``.
    zarr constructs it; it is not meant to be instantiated directly.

    Parameters
    ----------
    fallback
        zarr's own pipeline, used for everything that is not native.
    native
        The native array, or None when this pipeline always falls back.
    reason
        Why ``native`` is None.
    source
        What the pipeline was built from, to rebuild it when unpickled.
    """

    fallback: CodecPipeline
    native: _Native | None
    reason: str | None
    source: tuple[Any, ...]
    _logged: set[str] = field(default_factory=set, repr=False, compare=False)

    # zarr looks pipelines up by this qualified name (zarr.registry.fully_qualified_name).
    __module__ = "zarrs_cffi"

    @classmethod
    def from_array_metadata_and_store(cls, array_metadata: ArrayMetadata, store: Store) -> Self:
        native = _open_native(array_metadata, store)
        return cls(
            fallback=_zarr_pipeline(array_metadata),
            native=native if isinstance(native, _Native) else None,
            reason=native if isinstance(native, str) else None,
            source=("metadata", array_metadata, store),
        )

    @classmethod
    def from_codecs(cls, codecs: Iterable[Codec]) -> Self:
        codecs = tuple(codecs)
        return cls(
            fallback=BatchedCodecPipeline.from_codecs(codecs),
            native=None,
            reason="pipeline built from codecs alone (no store)",
            source=("codecs", codecs, None),
        )

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> Self:
        source = self.source if self.source[0] != "codecs" else ("codecs", self.source[1], array_spec)
        return replace(self, fallback=self.fallback.evolve_from_array_spec(array_spec), source=source)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, self.source)

    # zarr compares arrays (a frozen dataclass holding the pipeline) by value, e.g. an
    # unpickled array with the original: two pipelines built from the same source are equal.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ZarrsCodecPipeline):
            return NotImplemented
        return self.fallback == other.fallback and self.source == other.source

    def __hash__(self) -> int:
        return hash(self.fallback)

    def __dask_tokenize__(self) -> object:
        """dask's token: what the pipeline was built from and the settings it read.

        Cheap and deterministic: the metadata document (or the codecs and chunk spec), zarr's
        pipeline for them, and the native options. Never the store, nor the route to it
        (which follows from the store): dask would hash a store's contents (a MemoryStore's
        every byte) again for each field holding it, and the token of the array holding
        this pipeline covers the store already.
        """
        try:
            from dask.tokenize import normalize_token
        except ImportError:  # pragma: no cover - dask < 2024.2
            from dask.base import normalize_token
        kind, built_from, spec = self.source
        if kind == "metadata":
            described: object = _metadata_json(built_from)
        else:
            described = normalize_token((tuple(built_from), spec))
        native = self.native
        settings = None if native is None else (astuple(native.options), str(native.native_dtype))
        return ("zarrs_cffi.ZarrsCodecPipeline", kind, described, normalize_token(self.fallback), settings, self.reason)

    def __iter__(self) -> Iterator[Codec]:
        return iter(self.fallback)  # type: ignore[call-overload,no-any-return]

    @property
    def supports_partial_decode(self) -> bool:
        return self.fallback.supports_partial_decode

    @property
    def supports_partial_encode(self) -> bool:
        return self.fallback.supports_partial_encode

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        # chunk_grid: a ChunkGrid, or its metadata in newer zarr; passed through as is.
        self.fallback.validate(shape=shape, dtype=dtype, chunk_grid=chunk_grid)

    def compute_encoded_size(self, byte_length: int, array_spec: ArraySpec) -> int:
        return self.fallback.compute_encoded_size(byte_length, array_spec)

    async def decode(
        self, chunk_bytes_and_specs: Iterable[tuple[Buffer | None, ArraySpec]]
    ) -> Iterable[NDBuffer | None]:
        return await self.fallback.decode(chunk_bytes_and_specs)

    async def encode(
        self, chunk_arrays_and_specs: Iterable[tuple[NDBuffer | None, ArraySpec]]
    ) -> Iterable[Buffer | None]:
        return await self.fallback.encode(chunk_arrays_and_specs)

    def _fall_back(self, kind: str, chunks: int, reason: str) -> None:
        if self.source[0] == "codecs":
            # Built from codecs alone: zarr's sharding codec does this for the chunks inside
            # a shard, whose read or write already fell back and was counted (or refused).
            return
        if config.get("codec_pipeline.strict", False):
            raise ZarrsUnsupportedError(f"zarrs_cffi cannot handle this natively: {reason}")
        stats.record_fallback(kind, chunks, reason)
        if reason not in self._logged:
            self._logged.add(reason)
            logger.warning("zarrs_cffi: using zarr's own pipeline for %s: %s", kind, reason)

    def _target(self, buffer: NDBuffer) -> tuple[_Native, np.ndarray[Any, Any]] | str:
        """The native array and ``buffer`` as numpy, or why this call cannot be native."""
        native = self.native
        if native is None:
            return self.reason or "not native"
        try:
            array = buffer.as_numpy_array()
        except (AttributeError, TypeError, ValueError):
            return f"{type(buffer).__name__} is not a CPU numpy buffer"
        if not isinstance(array, np.ndarray) or array.dtype != native.dtype:
            return f"buffer of type {type(array).__name__} / {getattr(array, 'dtype', '?')}"
        return native, array

    async def read(
        self,
        batch_info: Iterable[tuple[ByteGetter, ArraySpec, SelectorTuple, SelectorTuple, bool]],
        out: NDBuffer,
        drop_axes: tuple[int, ...] = (),
    ) -> tuple[GetResult, ...]:
        batch = list(batch_info)
        if not batch:
            return ()
        target = self._target(out)
        if isinstance(target, str):
            return await self._read_fallback(batch, out, drop_axes, target)
        native, array = target
        sync_io = native.python_io is not None and _sync_io(batch)
        present: list[bool] | str
        if native.variable:
            if sync_io:
                present = await _workers.run(_read_variable_now, native, batch, array, drop_axes, None)
            else:
                encoded = await _fetch_all(batch)
                present = await _workers.run(_read_variable_now, native, batch, array, drop_axes, encoded)
        elif native.python_io is None or sync_io:
            # Nothing to await on the loop: planning, I/O, decoding and numpy's part run in
            # one worker call.
            present = await _workers.run(_read_now, native, batch, array, drop_axes)
        else:
            present = await self._read_async_io(native, batch, array, drop_axes)
        if isinstance(present, str):
            return await self._read_fallback(batch, out, drop_axes, present)
        stats.record_native("reads", len(batch), python_io=native.python_io is not None)
        return tuple(_PRESENT if p else _MISSING for p in present)

    async def _read_fallback(
        self, batch: list[Any], out: NDBuffer, drop_axes: tuple[int, ...], reason: str
    ) -> tuple[GetResult, ...]:
        self._fall_back("reads", len(batch), reason)
        return tuple(await self.fallback.read(batch, out, drop_axes))

    async def _read_async_io(
        self, native: _Native, batch: list[Any], out: np.ndarray[Any, Any], drop_axes: tuple[int, ...]
    ) -> list[bool] | str:
        """A read whose bytes the store's async API fetches (on the loop, concurrently);
        planning, decoding and numpy's part run on worker threads."""
        plan = await _workers.run(_plan, native, batch, drop_axes, out.itemsize)
        if isinstance(plan, str):
            return plan
        if isinstance(plan, ChunkPlan):
            view, buffer = _read_buffer(native, out, plan)
            present = await self._read_through_store(native, batch, plan.batch, buffer)
            if buffer is not view:
                await _workers.run(np.copyto, view, buffer)
            return present
        present = [False] * len(batch)
        for group in plan:
            scratch = np.empty(group.scratch_shape, dtype=native.native_dtype)
            found = await self._read_through_store(native, [batch[i] for i in group.indices], group.batch, scratch)
            await _workers.run(_gather, group, scratch, out, drop_axes)
            for i, p in zip(group.indices, found, strict=True):
                present[i] = p
        return present

    async def _read_through_store(
        self, native: _Native, batch: list[Any], chunks: ChunkBatch, buffer: np.ndarray[Any, Any]
    ) -> list[bool]:
        """The store's own API fetches the bytes, concurrently; zarrs decodes the batch.
        Shards read in part fetch their index and the inner chunks needed (``shards.py``)."""
        geometry = chunks.geometry
        if native.shards is not None:
            # Like zarr's sharding codec: a subset of a shard fetches its index, then the
            # inner chunks it needs (zarr's own tests count these requests).
            partial = (geometry[:, 2, :] != geometry[:, 0, :]).any(axis=1)
        else:
            partial = np.zeros(len(batch), dtype=bool)
        present = [False] * len(batch)
        whole = np.flatnonzero(~partial)
        if whole.size:
            encoded = await _fetch_all([batch[i] for i in whole])
            subset = chunks if whole.size == len(batch) else ChunkBatch.build(None, geometry[whole])
            await _workers.run(native.array.decode_chunks, native.options, subset, encoded, buffer)
            for i, chunk in zip(whole, encoded, strict=True):
                present[i] = chunk is not None
        parts = np.flatnonzero(partial)
        if parts.size and native.shards is not None:
            array_config = batch[0][1].config
            coalesce = (
                int(getattr(array_config, "sharding_coalesce_max_gap_bytes", 1 << 20)),
                int(getattr(array_config, "sharding_coalesce_max_bytes", 16 << 20)),
            )
            found = await native.shards.read(
                [batch[i][0] for i in parts], geometry[parts], batch[0][1].prototype, native.options, buffer,
                coalesce, _io_limit(), _workers.run,
            )
            for i, p in zip(parts, found, strict=True):
                present[i] = p
        return present

    async def write(
        self,
        batch_info: Iterable[tuple[ByteSetter, ArraySpec, SelectorTuple, SelectorTuple, bool]],
        value: NDBuffer,
        drop_axes: tuple[int, ...] = (),
    ) -> None:
        batch = list(batch_info)
        if not batch:
            return
        target = self._target(value)
        if isinstance(target, str):
            await self._write_fallback(batch, value, drop_axes, target)
            return
        native, array = target
        if native.store.read_only and native.python_io is None:
            # Native storage: zarr's own error, exactly as a write through the store would
            # raise it. A store whose bytes move through Python raises its own error when asked
            # to store (icechunk's ReadOnlyError, which is not zarr's ValueError).
            native.store._check_writable()
        sync_io = native.python_io is not None and _sync_io(batch)
        if native.variable:
            if sync_io:
                await _workers.run(_write_variable_now, native, batch, array, drop_axes)
            else:
                await self._write_variable_async_io(native, batch, array, drop_axes)
            stats.record_native("writes", len(batch), python_io=True)
            return
        options = native.options
        if batch[0][1].config.write_empty_chunks or not native.store.supports_deletes:
            # A store that cannot delete (ZipStore) keeps fill-value chunks instead.
            options = replace(options, store_empty_chunks=True)
        if native.python_io is None or sync_io:
            reason = await _workers.run(_write_now, native, batch, array, drop_axes, options)
        else:
            reason = await self._write_async_io(native, batch, array, drop_axes, options)
        if reason is not None:
            await self._write_fallback(batch, value, drop_axes, reason)
            return
        stats.record_native("writes", len(batch), python_io=native.python_io is not None)

    async def _write_fallback(self, batch: list[Any], value: NDBuffer, drop_axes: tuple[int, ...], reason: str) -> None:
        self._fall_back("writes", len(batch), reason)
        await self.fallback.write(batch, value, drop_axes)

    async def _write_async_io(
        self,
        native: _Native,
        batch: list[Any],
        value: np.ndarray[Any, Any],
        drop_axes: tuple[int, ...],
        options: Options,
    ) -> str | None:
        """A write whose bytes the store's async API moves (on the loop, concurrently):
        encoded natively on worker threads, and nothing is stored until every chunk of the
        batch (or gather group) has encoded. Returns why it cannot be native, or None."""
        plan = await _workers.run(_plan_write, native, batch, value, drop_axes)
        if isinstance(plan, str):
            return plan
        if isinstance(plan, tuple):
            chunk_plan, source, needs_old = plan
            partial = np.flatnonzero(needs_old)
            existing: list[Any] = [None] * len(batch)
            if partial.size:
                fetched = await _fetch_all([batch[i] for i in partial])
                for i, chunk in zip(partial, fetched, strict=True):
                    existing[i] = chunk
            encoded = await _workers.run(native.array.encode_chunks, options, chunk_plan.batch, source, existing)
            await _store_all(batch, encoded)
            return None
        for group in plan:
            sub = [batch[i] for i in group.indices]
            existing = await _fetch_all(sub)
            encoded = await _workers.run(_scatter_and_encode, native, group, existing, value, drop_axes, options)
            await _store_all(sub, encoded)
        return None

    async def _write_variable_async_io(
        self, native: _Native, batch: list[Any], value: np.ndarray[Any, Any], drop_axes: tuple[int, ...]
    ) -> None:
        partial = [i for i, info in enumerate(batch) if not info[4]]
        fetched = await _fetch_all([batch[i] for i in partial]) if partial else []
        old = dict(zip(partial, fetched, strict=True))
        encoded = await _workers.run(_encode_variable, native, batch, value, drop_axes, old)
        await _store_all(batch, encoded)


# What follows runs on worker threads (``_workers.run``): planning, native calls, the
# store's synchronous I/O and numpy's part of a read or write. Nothing here awaits.


def _plan(
    native: _Native, batch: list[Any], drop_axes: tuple[int, ...], itemsize: int
) -> ChunkPlan | list[GatherGroup] | str:
    """A contiguous plan, else gather groups, else why the batch cannot be native."""
    plan = plan_batch(batch, native.array.ndim, drop_axes)
    if isinstance(plan, ChunkPlan):
        return plan
    return plan_gather(batch, native.array.ndim, itemsize)


def _read_buffer(
    native: _Native, out: np.ndarray[Any, Any], plan: ChunkPlan
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """zarr's output in the native buffer's dimensions, and the buffer to decode into: the
    output itself when it can be written directly, else a scratch copy in native order."""
    view = np.expand_dims(out, plan.inserted_axes) if plan.inserted_axes else out
    if view.flags.c_contiguous and view.flags.writeable and view.dtype == native.native_dtype:
        return view, view
    return view, np.empty(view.shape, native.native_dtype)


def _decode_now(native: _Native, batch: list[Any], chunks: ChunkBatch, buffer: np.ndarray[Any, Any]) -> list[bool]:
    """Decode ``chunks`` into ``buffer``: the native library fetches the bytes itself, or
    the store's synchronous API does."""
    if native.python_io is None:
        return native.array.read_chunks(native.options, chunks, buffer).tolist()  # type: ignore[no-any-return]
    # In-memory stores hand out whole shards without copying, and the native shard decoder
    # reads only the inner chunks a subset needs.
    encoded = _fetch_sync(batch)
    native.array.decode_chunks(native.options, chunks, encoded, buffer)
    return [chunk is not None for chunk in encoded]


def _read_now(
    native: _Native, batch: list[Any], out: np.ndarray[Any, Any], drop_axes: tuple[int, ...]
) -> list[bool] | str:
    """A whole read whose bytes need no awaiting (native I/O or synchronous store I/O);
    returns which chunks exist, or why the batch cannot be native."""
    plan = _plan(native, batch, drop_axes, out.itemsize)
    if isinstance(plan, str):
        return plan
    if isinstance(plan, ChunkPlan):
        view, buffer = _read_buffer(native, out, plan)
        present = _decode_now(native, batch, plan.batch, buffer)
        if buffer is not view:
            view[...] = buffer
        return present
    present = [False] * len(batch)
    for group in plan:
        scratch = np.empty(group.scratch_shape, dtype=native.native_dtype)
        found = _decode_now(native, [batch[i] for i in group.indices], group.batch, scratch)
        _gather(group, scratch, out, drop_axes)
        for i, p in zip(group.indices, found, strict=True):
            present[i] = p
    return present


def _gather(
    group: GatherGroup, scratch: np.ndarray[Any, Any], out: np.ndarray[Any, Any], drop_axes: tuple[int, ...]
) -> None:
    """Copy zarr's selections from the decoded bounding boxes into ``out``."""
    for view, selection, out_selection in group.items:
        values = scratch[view][selection]
        if drop_axes:
            values = values.squeeze(axis=drop_axes)
        out[out_selection] = values


def _scatter(
    group: GatherGroup, scratch: np.ndarray[Any, Any], value: np.ndarray[Any, Any], drop_axes: tuple[int, ...]
) -> None:
    """Copy zarr's selections of ``value`` into the decoded bounding boxes."""
    expand = tuple(None if d in drop_axes else slice(None) for d in range(scratch.ndim))
    for view, selection, out_selection in group.items:
        if value.ndim == 0:
            scratch[view][selection] = value
            continue
        values = value[out_selection]
        if drop_axes:
            values = values[expand]
        scratch[view][selection] = values


def _needs_old(native: _Native, batch: list[Any], chunks: ChunkBatch) -> np.ndarray[Any, Any]:
    """Which chunks are written in part, so their old bytes are merged. zarr marks a chunk
    complete when the selection covers all of it inside the array (an edge chunk); a shard
    still keeps its inner chunks beyond the array's shape."""
    geometry = chunks.geometry
    complete = np.array([info[4] and not native.sharded for info in batch], dtype=bool)
    return (geometry[:, 2, :] != geometry[:, 0, :]).any(axis=1) & ~complete  # type: ignore[no-any-return]


def _write_source(native: _Native, value: np.ndarray[Any, Any], plan: ChunkPlan) -> np.ndarray[Any, Any]:
    source = _source(value, plan)
    return source if source.dtype == native.native_dtype else source.astype(native.native_dtype)


def _encode_now(
    native: _Native,
    batch: list[Any],
    chunks: ChunkBatch,
    source: np.ndarray[Any, Any],
    options: Options,
    existing: list[Any] | None = None,
) -> None:
    """Store ``chunks`` from ``source`` (whose shape the geometry addresses, or 0-d): natively,
    or encoded natively and stored through the store's synchronous API (the old bytes of
    chunks written in part fetched first, unless given). Nothing is stored until every
    chunk has encoded."""
    if native.python_io is None:
        native.array.write_chunks(options, chunks, source)
        return
    if existing is None:
        needs_old = _needs_old(native, batch, chunks)
        prototype = batch[0][1].prototype
        existing = [
            raw_bytes(info[0].get_sync(prototype=prototype)) if old else None
            for info, old in zip(batch, needs_old, strict=True)
        ]
    _store_sync(batch, native.array.encode_chunks(options, chunks, source, existing))


def _write_now(
    native: _Native, batch: list[Any], value: np.ndarray[Any, Any], drop_axes: tuple[int, ...], options: Options
) -> str | None:
    """A whole write whose bytes need no awaiting (native I/O or synchronous store I/O);
    returns why the batch cannot be native, or None. Gathered selections are a
    read-modify-write: each chunk's bounding box is decoded into scratch, zarr's selections
    of ``value`` scattered into it, and the boxes stored back (merged with the rest of each
    chunk, natively)."""
    plan = _plan(native, batch, drop_axes, value.itemsize)
    if isinstance(plan, str):
        return plan
    if isinstance(plan, ChunkPlan):
        _encode_now(native, batch, plan.batch, _write_source(native, value, plan), options)
        return None
    for group in plan:
        sub = [batch[i] for i in group.indices]
        scratch = np.empty(group.scratch_shape, dtype=native.native_dtype)
        existing: list[Any] | None = None
        if native.python_io is None:
            native.array.read_chunks(native.options, group.batch, scratch)
        else:
            existing = _fetch_sync(sub)
            native.array.decode_chunks(native.options, group.batch, existing, scratch)
        _scatter(group, scratch, value, drop_axes)
        _encode_now(native, sub, group.batch, scratch, options, existing)
    return None


def _plan_write(
    native: _Native, batch: list[Any], value: np.ndarray[Any, Any], drop_axes: tuple[int, ...]
) -> tuple[ChunkPlan, np.ndarray[Any, Any], np.ndarray[Any, Any]] | list[GatherGroup] | str:
    """For writes through a store's async API: a contiguous plan with its source and which
    chunks need their old bytes, else gather groups, else why the batch cannot be native."""
    plan = _plan(native, batch, drop_axes, value.itemsize)
    if isinstance(plan, ChunkPlan):
        return plan, _write_source(native, value, plan), _needs_old(native, batch, plan.batch)
    return plan


def _scatter_and_encode(
    native: _Native,
    group: GatherGroup,
    existing: list[Any],
    value: np.ndarray[Any, Any],
    drop_axes: tuple[int, ...],
    options: Options,
) -> list[Any]:
    scratch = np.empty(group.scratch_shape, dtype=native.native_dtype)
    native.array.decode_chunks(native.options, group.batch, existing, scratch)
    _scatter(group, scratch, value, drop_axes)
    return native.array.encode_chunks(options, group.batch, scratch, existing)


def _read_variable_now(
    native: _Native, batch: list[Any], out: np.ndarray[Any, Any], drop_axes: tuple[int, ...], encoded: list[Any] | None
) -> list[bool]:
    """Variable-length types: zarrs decodes whole chunks, numpy selects from them. The bytes
    are fetched through the store's synchronous API unless given."""
    if encoded is None:
        encoded = _fetch_sync(batch)
    stored = [i for i, chunk in enumerate(encoded) if chunk is not None]
    shapes = [batch[i][1].shape for i in stored]
    decoded = (
        decode_variable_chunks(native.array, native.options, [encoded[i] for i in stored], shapes) if stored else []
    )
    chunks = dict(zip(stored, decoded, strict=True))
    text = native.variable == "text"
    for i, (_, spec, chunk_selection, out_selection, _) in enumerate(batch):
        if i not in chunks:
            out[out_selection] = spec.fill_value
            continue
        blob, offsets = chunks[i]
        values = from_elements(blob, offsets, spec.shape, out.dtype, text)[chunk_selection]
        if drop_axes:
            values = values.squeeze(axis=drop_axes)
        out[out_selection] = values
    return [chunk is not None for chunk in encoded]


def _encode_variable(
    native: _Native, batch: list[Any], value: np.ndarray[Any, Any], drop_axes: tuple[int, ...], old: dict[int, Any]
) -> list[bytes | None]:
    """Variable-length types: merge into whole chunk arrays with numpy (decoding the old
    chunks, ``old`` by position in the batch, natively where written in part) and encode
    natively; None means "delete this chunk"."""
    text = native.variable == "text"
    ndim = native.array.ndim
    expand = tuple(None if d in drop_axes else slice(None) for d in range(ndim))
    stored = [(i, chunk) for i, chunk in old.items() if chunk is not None]
    decoded: dict[int, tuple[bytes, np.ndarray[Any, Any]]] = {}
    if stored:
        old_elements = decode_variable_chunks(
            native.array, native.options, [c for _, c in stored], [batch[i][1].shape for i, _ in stored]
        )
        decoded = {i: d for (i, _), d in zip(stored, old_elements, strict=True)}
    arrays: list[np.ndarray[Any, Any] | None] = []
    for i, (_, spec, chunk_selection, out_selection, _) in enumerate(batch):
        fill = np.full(spec.shape, spec.fill_value, dtype=value.dtype)
        chunk = from_elements(*decoded[i], spec.shape, value.dtype, text) if i in decoded else fill.copy()
        if value.ndim == 0:
            chunk[chunk_selection] = value
        else:
            values = value[out_selection]
            chunk[chunk_selection] = values[expand] if drop_axes else values
        keep = spec.config.write_empty_chunks or not native.store.supports_deletes
        arrays.append(chunk if keep or not np.array_equal(chunk, fill) else None)
    kept = [i for i, chunk in enumerate(arrays) if chunk is not None]
    encoded: list[bytes | None] = [None] * len(batch)
    if kept:
        data, offsets = to_elements([arrays[i] for i in kept], text)  # type: ignore[misc]
        shapes = [batch[i][1].shape for i in kept]
        new_chunks = encode_variable_chunks(native.array, native.options, shapes, data, offsets)
        for i, chunk_bytes in zip(kept, new_chunks, strict=True):
            encoded[i] = chunk_bytes
    return encoded


def _write_variable_now(
    native: _Native, batch: list[Any], value: np.ndarray[Any, Any], drop_axes: tuple[int, ...]
) -> None:
    """``_encode_variable`` with the store's synchronous API fetching and storing."""
    partial = [i for i, info in enumerate(batch) if not info[4]]
    old = dict(zip(partial, _fetch_sync([batch[i] for i in partial]), strict=True)) if partial else {}
    _store_sync(batch, _encode_variable(native, batch, value, drop_axes, old))


def _source(array: np.ndarray[Any, Any], plan: ChunkPlan) -> np.ndarray[Any, Any]:
    """The value of a contiguous write in the native buffer's shape (or 0-d to broadcast)."""
    if array.size == 1:
        # One value broadcast everywhere (zarr passes scalars as 1-element arrays).
        return array.reshape(())
    source = array
    if plan.inserted_axes and array.ndim == len(plan.buffer_shape) - len(plan.inserted_axes):
        source = np.expand_dims(source, plan.inserted_axes)
    if source.shape != plan.buffer_shape:
        source = np.broadcast_to(source, plan.buffer_shape)
    return np.ascontiguousarray(source)
