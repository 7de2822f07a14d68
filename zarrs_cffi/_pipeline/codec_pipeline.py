"""ZarrsCodecPipeline: zarr-python's codec pipeline, with chunk I/O and codecs in Rust.

The pipeline is an orchestrator. Creating it (``from_array_metadata_and_store``, on every
``zarr.open_array``) only reads zarr's config, so opening an array costs less than with
zarr's own pipeline: the array is opened natively (``opening.py``) and its route and planner
chosen (``routes/``: native storage, the store's sync API or its async API) on a worker thread
at the first read or write, so an array opened and never read costs no native work; zarr's
own pipeline, which most arrays never use, is evolved for the array's chunks (most of its
cost) when first needed (``fallback``); its codec chain is checked at creation, so zarr's
warnings about it come when zarr's would.
``read``/``write`` hand zarr's batch to the route, which plans it (its ``_selection.Planner``) and
runs the blocking parts on worker threads (``_core/workers.py``): nothing that takes time runs on
zarr's event loop. A write first holds the locks of the keys it touches (``_core/keylocks.py``),
so writers in one process never lose each other's updates.

Whatever cannot be native (a store, data type, codec, buffer or selection) calls
``fall_back`` (``_core/fallback.py``), caught here in one place: counted (``stats.py``), logged once per pipeline
with the reason, and handed to zarr's own BatchedCodecPipeline; with
``codec_pipeline.strict`` it raises ``ZarrsUnsupportedError`` instead.
"""

from __future__ import annotations

import logging
from dataclasses import astuple, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import CodecPipeline, GetResult
from zarr.core.codec_pipeline import BatchedCodecPipeline

from .. import stats
from .._core import config, fallback, keylocks, workers
from .._core.fallback import Fallback, fall_back
from .._core.metadata import metadata_json
from .._selection import requests
from ..errors import ZarrsUnsupportedError
from .opening import Opener
from .routes.base import calls

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator
    from typing import Self, TypeVar

    from zarr.abc.codec import Codec
    from zarr.abc.store import ByteGetter, ByteSetter, Store
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer
    from zarr.core.indexing import SelectorTuple
    from zarr.core.metadata import ArrayMetadata

    from .record import ArrayRecord
    from .routes import Route

    T = TypeVar("T")

__all__ = ["ZarrsCodecPipeline"]

logger = logging.getLogger("zarrs_cffi")

_PRESENT = GetResult(status="present")
_MISSING = GetResult(status="missing")
_FROM_CODECS = "pipeline built from codecs alone (no store)"


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
    source : tuple
        What the pipeline was built from, to rebuild it when unpickled (and to build zarr's
        own pipeline from when first needed).
    opener : Opener or None
        Opens the native side at first use; None for a pipeline built from codecs alone,
        which always falls back.
    zarr_pipeline : CodecPipeline or None
        zarr's own pipeline, when already built (always for a pipeline built from codecs).
    zarr_codecs : CodecPipeline or None
        zarr's pipeline for the array's codec chain, not yet evolved for its chunks
        (checked, and warned about, at creation, as zarr does).
    """

    source: tuple[Any, ...]
    opener: Opener | None = field(default=None, repr=False)
    zarr_pipeline: CodecPipeline | None = field(default=None, repr=False)
    zarr_codecs: CodecPipeline | None = field(default=None, repr=False, compare=False)
    _logged: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    # zarr looks pipelines up by this qualified name (zarr.registry.fully_qualified_name).
    __module__ = "zarrs_cffi"

    @classmethod
    def from_array_metadata_and_store(cls, array_metadata: ArrayMetadata, store: Store) -> Self:
        """The pipeline for an array, as zarr builds it on every open: no native work yet.

        Parameters
        ----------
        array_metadata : ArrayMetadata
            The array's metadata (Zarr v2 or v3).
        store : Store
            The store holding it.

        Returns
        -------
        ZarrsCodecPipeline
            A pipeline that opens the array natively at its first read or write.
        """
        opener = Opener(array_metadata, store, config.options_from_config(), config.direct_io())
        # zarr's chain checks (and warnings) now, as zarr's own open does; evolving it, most
        # of the cost, waits for a fallback.
        codecs = fallback.zarr_codecs(array_metadata)
        return cls(source=("metadata", array_metadata, store), opener=opener, zarr_codecs=codecs)

    @classmethod
    def from_codecs(cls, codecs: Iterable[Codec]) -> Self:
        """A pipeline without a store (zarr builds these inside sharding): always zarr's.

        Parameters
        ----------
        codecs : iterable of Codec
            The codec chain.

        Returns
        -------
        ZarrsCodecPipeline
            A pipeline that hands every call to zarr's ``BatchedCodecPipeline``.
        """
        codecs = tuple(codecs)
        return cls(source=("codecs", codecs, None), zarr_pipeline=BatchedCodecPipeline.from_codecs(codecs))

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> Self:
        """This pipeline with zarr's pipeline evolved for ``array_spec`` (native side shared).

        Parameters
        ----------
        array_spec : ArraySpec
            The chunk spec zarr evolves its codecs for.

        Returns
        -------
        ZarrsCodecPipeline
            The evolved pipeline.
        """
        source = self.source if self.source[0] != "codecs" else ("codecs", self.source[1], array_spec)
        return replace(self, zarr_pipeline=self.fallback.evolve_from_array_spec(array_spec), source=source)

    @property
    def fallback(self) -> CodecPipeline:
        """zarr's own pipeline for this array: what is not native runs there. Built at its
        first use (most arrays never fall back), as zarr builds its default; two threads
        racing may both build it, which is harmless."""
        built = self.zarr_pipeline
        if built is None:
            built = fallback.zarr_pipeline(self.source[1], self.zarr_codecs)
            object.__setattr__(self, "zarr_pipeline", built)
        return built

    @property
    def native(self) -> ArrayRecord | None:
        """The natively opened array (opening it now if no read or write has yet; this
        blocks), or None when the pipeline falls back (``reason`` says why)."""
        try:
            return self._open().native
        except Fallback:
            return None

    @property
    def reason(self) -> str | None:
        """Why the array cannot be native (opening it now if needed), or None when it is."""
        try:
            self._open()
        except Fallback as exc:
            return exc.reason
        return None

    def _open(self) -> Route:
        if self.opener is None:
            fall_back("store", _FROM_CODECS)
        return self.opener.open()

    async def _route(self) -> Route:
        """The route, opened on a worker thread at the first read or write."""
        opener = self.opener
        if opener is None:
            fall_back("store", _FROM_CODECS)
        if opener.result is None:
            route: Route = await workers.run(opener.open)
            return route
        return opener.open()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, self.source)

    # zarr compares arrays (a frozen dataclass holding the pipeline) by value, e.g. an
    # unpickled array with the original: two pipelines built from the same source are equal.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ZarrsCodecPipeline):
            return NotImplemented
        return self.source == other.source and self.fallback == other.fallback

    def __hash__(self) -> int:
        return hash(self.fallback)

    def __dask_tokenize__(self) -> object:
        """dask's token: what the pipeline was built from and the settings it read.

        Cheap and deterministic, and opens nothing natively: the metadata document (or the
        codecs and chunk spec), zarr's pipeline for them, and the native options. Never the
        store, nor the route to it (which follows from the store): dask would hash a store's
        contents (a MemoryStore's every byte) again for each field holding it, and the token
        of the array holding this pipeline covers the store already.
        """
        try:
            from dask.tokenize import normalize_token
        except ImportError:  # pragma: no cover - dask < 2024.2
            from dask.base import normalize_token
        kind, built_from, spec = self.source
        if kind == "metadata":
            described: object = metadata_json(built_from)
        else:
            described = normalize_token((tuple(built_from), spec))
        opener = self.opener
        settings = None if opener is None else (astuple(opener.options), opener.direct_io)
        return ("zarrs_cffi.ZarrsCodecPipeline", kind, described, normalize_token(self.fallback), settings)

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

    async def read(
        self,
        batch_info: Iterable[tuple[ByteGetter, ArraySpec, SelectorTuple, SelectorTuple, bool]],
        out: NDBuffer,
        drop_axes: tuple[int, ...] = (),
    ) -> tuple[GetResult, ...]:
        """Decode zarr's batch of chunk selections into ``out``: natively in one batch,
        else (counted) through zarr's pipeline.

        Parameters
        ----------
        batch_info : iterable of tuple
            Per chunk: byte getter, chunk spec, chunk selection, output selection, whether
            the selection covers the whole chunk.
        out : NDBuffer
            The output buffer zarr allocated.
        drop_axes : tuple of int, default ()
            Axes zarr's selection drops from the output.

        Returns
        -------
        tuple of GetResult
            Per chunk, whether it is stored ("present") or read as the fill value.
        """
        batch = requests(batch_info)
        if not batch:
            return ()

        async def native(route: Route) -> tuple[GetResult, ...]:
            present = await route.read(batch, _numpy(route.native, out), drop_axes)
            return tuple(_PRESENT if p else _MISSING for p in present)

        async def fallback() -> tuple[GetResult, ...]:
            return tuple(await self.fallback.read(batch, out, drop_axes))

        return await self._run("reads", len(batch), native, fallback)

    async def write(
        self,
        batch_info: Iterable[tuple[ByteSetter, ArraySpec, SelectorTuple, SelectorTuple, bool]],
        value: NDBuffer,
        drop_axes: tuple[int, ...] = (),
    ) -> None:
        """Encode zarr's selections of ``value`` and store every chunk of the batch, natively
        in one batch, else (counted) through zarr's pipeline.

        Parameters
        ----------
        batch_info : iterable of tuple
            Per chunk: byte setter, chunk spec, chunk selection, value selection, whether
            the selection covers the whole chunk.
        value : NDBuffer
            The values (a 1-element buffer is broadcast).
        drop_axes : tuple of int, default ()
            Axes zarr's selection drops from ``value``.
        """
        batch = requests(batch_info)
        if not batch:
            return

        async def native(route: Route) -> None:
            options = route.native.options
            if config.write_empty_chunks(batch[0].spec) or not route.native.store.supports_deletes:
                # A store that cannot delete (ZipStore) keeps fill-value chunks instead.
                options = replace(options, store_empty_chunks=True)
            await route.write(batch, _numpy(route.native, value), drop_axes, options)

        async def fallback() -> None:
            await self.fallback.write(batch, value, drop_axes)

        if self.source[0] == "codecs":
            # zarr's sharding codec writing inside a shard whose key the outer write holds.
            await self._run("writes", len(batch), native, fallback)
            return
        # Held on the loop from before the first fetch until the last store, around the
        # fallback too: no worker thread ever waits for a key (keylocks.py).
        async with keylocks.holding(
            keylocks.store_prefix(batch[0].byte_getter.store), [r.byte_getter.path for r in batch]
        ):
            await self._run("writes", len(batch), native, fallback)

    async def _run(
        self, kind: str, chunks: int, native: Callable[[Route], Awaitable[T]], fallback: Callable[[], Awaitable[T]]
    ) -> T:
        """``native`` on the array's route, else (on ``Fallback``) zarr's pipeline, counted.
        Counted as in flight on this loop (``routes.calls``) until it returns."""
        in_flight = calls
        in_flight.count = getattr(in_flight, "count", 0) + 1
        try:
            route = await self._route()
            result = await native(route)
        except Fallback as exc:
            self._fall_back(kind, chunks, exc.reason)
            return await fallback()
        finally:
            in_flight.count -= 1
        stats.record_native(kind, chunks, python_io=route.python_io)
        return result

    def _fall_back(self, kind: str, chunks: int, reason: str) -> None:
        if self.source[0] == "codecs":
            # Built from codecs alone: zarr's sharding codec does this for the chunks inside
            # a shard, whose read or write already fell back and was counted (or refused).
            return
        if config.strict():
            raise ZarrsUnsupportedError(f"zarrs_cffi cannot handle this natively: {reason}")
        stats.record_fallback(kind, chunks, reason)
        if reason not in self._logged:
            self._logged.add(reason)
            logger.warning("zarrs_cffi: using zarr's own pipeline for %s: %s", kind, reason)


def _numpy(native: ArrayRecord, buffer: NDBuffer) -> np.ndarray[Any, Any]:
    """zarr's buffer as the numpy array native calls fill or read; raises ``Fallback``.

    Only the buffer's own memory will do. ``as_numpy_array()`` may be a host copy (zarr's
    GPU buffer returns ``cupy.asnumpy``): a read filling it would be lost, silently. So it
    is used only when it is ``as_ndarray_like()`` itself (the common case, one identity
    test) or a numpy view of exactly the same memory; anything else falls back. Writes
    take the same rule, so that one decision covers a buffer class whichever way it goes.
    """
    try:
        own = buffer.as_ndarray_like()
        array = buffer.as_numpy_array()
    except (AttributeError, TypeError, ValueError):
        fall_back("buffer", f"{_qualname(buffer)} is not a CPU numpy buffer")
    if array is not own:
        if not isinstance(own, np.ndarray):
            fall_back("buffer", f"{_qualname(buffer)} holds {_qualname(own)}, not host (numpy) memory")
        if not _same_memory(array, own):
            fall_back("buffer", f"{_qualname(buffer)}.as_numpy_array() is a copy, not the buffer's own memory")
    if not isinstance(array, np.ndarray) or array.dtype != native.dtype:
        fall_back("buffer", f"buffer of type {type(array).__name__} / {getattr(array, 'dtype', '?')}")
    return array


def _same_memory(array: object, own: np.ndarray[Any, Any]) -> bool:
    """Whether ``array`` is a numpy view of exactly ``own``'s elements: same first byte,
    shape, strides, dtype and writability (a cheap test; not numpy's exact overlap solver)."""
    if not isinstance(array, np.ndarray):
        return False
    return (
        array.shape == own.shape
        and array.strides == own.strides
        and array.dtype == own.dtype
        and array.__array_interface__["data"] == own.__array_interface__["data"]
    )


def _qualname(value: object) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"
