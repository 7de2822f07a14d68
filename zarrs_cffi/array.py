"""The direct API: a Zarr array read and written through the native library, no zarr.

For users who want the least overhead per call: one native call per read or write, into
or from numpy arrays, with no asyncio and no per-chunk Python. Reads take zarr's
selections: basic (integers, slices with steps), ``oindex`` (orthogonal: integer arrays
and masks per axis) and ``vindex`` (coordinate points, a mask of the array's shape), the
scattered ones gathered natively, each chunk decoded once. Writes take the same
selections: a region in one native call, a scattered selection as a read-modify-write of
each chunk's bounding box. A write holds the locks of the chunks (or shards) it touches for
the whole call (``keylocks.py``), so this process's writers, through zarr or this API,
never lose each other's updates. Every data type the pipeline handles natively is taken:
fixed-size ones (those zarrs lacks as raw bits of their size), and variable-length strings
and bytes as whole chunks decoded and encoded natively (``_direct_selections.py``).
"""

from __future__ import annotations

import os
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.core.indexing import is_pure_fancy_indexing

from ._bindings import ArrayHandle, Options, Storage
from ._core import keylocks, results, workers
from ._chunk_names import ChunkNames
from ._direct_futures import run_future, settled, start_region
from ._direct_open import node_path, open_at, open_url, open_zarr, typed_of
from ._direct_reads import Gathers, read_region_async, read_scattered_async
from ._direct_selections import Selections, block_region, kind_of
from ._selection.whole import basic_region
from .errors import ZarrsValueError

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    import numpy.typing as npt

    from ._direct_open import Typed

__all__ = ["Array"]

Region = tuple[slice, ...]


def _kept(extent: list[int], dropped: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a region's values: its extent without the integer-indexed axes."""
    if not dropped:
        return tuple(extent)
    return tuple(e for axis, e in enumerate(extent) if axis not in dropped)


class Array:
    """A Zarr (v2 or v3) array in a directory store, read and written by the native library.

    Every read or write is one native call with the GIL released; there is no asyncio and
    no per-chunk Python. Data types are those the pipeline handles natively: bool,
    integers, floats, complex, datetime64/timedelta64, fixed-width bytes and unicode,
    structured types, and variable-length strings and bytes.

    Parameters
    ----------
    native : ArrayHandle
        The native handle; use :meth:`open` or :meth:`create` instead.
    options : Options, optional
        Threading and codec options for every call; ``Options()`` when omitted.
    typed : Typed, optional
        The data type as opened (``_direct_open.open_native``); read from the handle's
        metadata when omitted.
    store : zarr Store, optional
        zarr's store of the same bytes (variable-length writes ask it whether it deletes).

    Attributes
    ----------
    options : Options
        The options passed to every native call (may be replaced).
    dtype : numpy.dtype
        The array's data type as numpy's.

    Raises
    ------
    ZarrsUnsupportedError
        The array's data type is not one the direct API supports.

    See Also
    --------
    ZarrsCodecPipeline : The same native library behind zarr-python, any selection.

    Examples
    --------
    >>> arr = Array.open("data.zarr")  # doctest: +SKIP
    >>> arr[0:10, 5]  # doctest: +SKIP
    """

    def __init__(
        self, native: ArrayHandle, options: Options | None = None, *, typed: Typed | None = None, store: Any = None
    ) -> None:
        self._native = native
        self.options = options if options is not None else Options()
        self._typed = typed if typed is not None else typed_of(native)
        self.dtype: np.dtype[Any] = self._typed.dtype
        # What zarrs decodes into: dtype, or (raw bits stored big-endian) its stored order.
        self._native_dtype = self._typed.native_dtype
        # Decided once: a small read pays no dtype comparison.
        self._converts = self._native_dtype is not None and self._native_dtype != self.dtype
        self._store = store
        self._selected: Selections | None = None
        # Names its chunks for the write locks and the gathers: by the store's directory
        # when opened from one (``open``, ``create``), the zarr store's prefix
        # (``from_zarr``, a URL), else its native storage.
        self._chunks = ChunkNames(native, keylocks.object_prefix(native.storage))
        # How to open this array again in another process (``__reduce__``), given the
        # options: set by the constructors that know it.
        self._reopen: Callable[..., Array] | None = None

    @classmethod
    def _in_directory(cls, native: ArrayHandle, store_path: str, options: Options | None, kind: Typed | None = None) -> Array:
        from zarr.storage import LocalStore

        array = cls(native, options, typed=kind, store=LocalStore(store_path))
        array._chunks.lock_prefix = keylocks.file_prefix(store_path)
        return array

    @classmethod
    def open(
        cls,
        store_path: str | os.PathLike[str],
        array_path: str = "/",
        *,
        read_only: bool = False,
        direct_io: bool = False,
        storage_options: dict[str, Any] | None = None,
        options: Options | None = None,
    ) -> Array:
        """Open the array at ``array_path`` inside the store at ``store_path``.

        Parameters
        ----------
        store_path : str or os.PathLike
            A directory, or a URL: ``file://``, ``s3://bucket/prefix``,
            ``gs://bucket/prefix``, ``az://container/prefix`` (or ``abfs://``),
            ``http(s)://`` (read only). The native library reaches the bytes itself, as the
            pipeline does.
        array_path : str, default "/"
            The array's node path inside the store ("group/array" or "/group/array").
        read_only : bool, default False
            Refuse writes (``ZarrsReadOnlyError``).
        direct_io : bool, default False
            Read local files with ``O_DIRECT`` (Linux), bypassing the page cache.
        storage_options : dict, optional
            For a URL: fsspec's options for it (s3fs's ``key``, ``secret``, ``token``,
            ``anon``, ``endpoint_url``, ``client_kwargs={"region_name": ...}``; gcsfs's
            ``token``, ``endpoint_url``; adlfs's ``account_name``, ``account_key``,
            ``sas_token``, ``connection_string``, ``anon``), mapped to the native store as
            the pipeline maps an ``FsspecStore``.
        options : Options, optional
            Options for every call.

        Returns
        -------
        Array
            The opened array.

        Raises
        ------
        ZarrsMetadataError
            The metadata is missing or invalid.
        ZarrsUnsupportedError
            A codec or data type the native library cannot handle, or a URL it cannot
            reach itself (the message says why: credentials it cannot see, HTTP writes).
        ZarrsStorageError
            The store cannot be read.
        """
        root = os.fspath(store_path)
        if "://" not in root or root.startswith("file://"):
            root = root.removeprefix("file://")
            from zarr.storage import LocalStore

            storage = Storage.filesystem(root, direct_io=direct_io, read_only=read_only)
            native, kind = open_at(storage, array_path, LocalStore(root, read_only=True))
            array = cls._in_directory(native, root, options, kind)
        else:
            native, kind, store, prefix = open_url(root, array_path, read_only=read_only, storage_options=storage_options)
            array = cls(native, options, typed=kind, store=store)
            array._chunks.lock_prefix = prefix
        array._reopen = partial(
            Array.open, root, array_path, read_only=read_only, direct_io=direct_io, storage_options=storage_options
        )
        return array

    @classmethod
    def from_zarr(cls, array: Any, *, options: Options | None = None) -> Array:
        """The direct API over a zarr ``Array`` or ``AsyncArray``: the same store, opened
        natively (no metadata read again); writes through either share the write locks.

        Parameters
        ----------
        array : zarr.Array or zarr.AsyncArray
            An array on a store the native library reaches itself (``LocalStore``, an
            ``FsspecStore`` or ``ObjectStore`` over local files, S3 or HTTP).
        options : Options, optional
            Options for every call.

        Returns
        -------
        Array
            The direct array.

        Raises
        ------
        ZarrsUnsupportedError
            The store is one only its Python API reaches (a ``MemoryStore``, a wrapper
            store), or a codec or data type the native library cannot handle.
        """
        native, kind, store, prefix = open_zarr(array)
        direct = cls(native, options, typed=kind, store=store)
        direct._chunks.lock_prefix = prefix
        direct._reopen = partial(Array.from_zarr, array)
        return direct

    @classmethod
    def create(
        cls,
        store_path: str | os.PathLike[str],
        metadata: dict[str, Any] | str,
        array_path: str = "/",
        *,
        options: Options | None = None,
    ) -> Array:
        """Create an array from Zarr metadata, writing its metadata document.

        Parameters
        ----------
        store_path : str or os.PathLike
            The directory of the store (created if missing).
        metadata : dict or str
            A ``zarr.json`` (v3) or ``.zarray`` (v2) document, as a dict or JSON text.
        array_path : str, default "/"
            The array's node path inside the store.
        options : Options, optional
            Options for every call.

        Returns
        -------
        Array
            The created array; every chunk reads as the fill value.

        Raises
        ------
        ZarrsMetadataError
            The metadata is invalid.
        ZarrsUnsupportedError
            A codec or data type the native library cannot handle.
        ZarrsStorageError
            The store cannot be written.
        """
        root = os.fspath(store_path)
        storage = Storage.filesystem(root)
        native = ArrayHandle.open_with_metadata(storage, metadata, node_path(array_path), create=True)
        array = cls._in_directory(native, root, options)
        array._reopen = partial(Array.open, root, array_path)
        return array

    @property
    def shape(self) -> tuple[int, ...]:
        """tuple of int: The array's shape."""
        return self._native.shape

    @property
    def ndim(self) -> int:
        """int: The number of dimensions."""
        return self._native.ndim

    @property
    def chunks(self) -> tuple[int, ...]:
        """tuple of int: The shape of the first chunk (of every chunk, for a regular grid)."""
        return self._native.chunk_shape((0,) * self.ndim)

    @property
    def chunk_grid_shape(self) -> tuple[int, ...]:
        """tuple of int: How many chunks there are along each axis."""
        return self._native.chunk_grid_shape

    @property
    def metadata(self) -> dict[str, Any]:
        """dict: The array's metadata document, as zarrs reads it."""
        return self._native.metadata

    def chunk_key(self, chunk_indices: tuple[int, ...]) -> str:
        """The store key of a chunk.

        Parameters
        ----------
        chunk_indices : tuple of int
            The chunk's position in the chunk grid.

        Returns
        -------
        str
            Its key, relative to the store root (e.g. ``"c/0/1"``).
        """
        return self._native.chunk_key(chunk_indices)

    def _check_out(self, out: Any, shape: tuple[int, ...]) -> None:
        """``out`` must be a writeable C-contiguous numpy array of exactly this array's dtype
        and ``shape``: the native side writes raw element bytes into it."""
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array, not {type(out).__name__}")
        if out.dtype is not self.dtype and out.dtype != self.dtype:
            raise ZarrsValueError(f"out has dtype {out.dtype}; it must be the array's dtype {self.dtype}")
        if out.shape != shape:
            raise ZarrsValueError(f"out has shape {out.shape}; it must be {shape}")
        flags = out.flags
        if not flags.c_contiguous or not flags.writeable:
            raise ZarrsValueError("out must be C-contiguous and writeable")

    def _values(self, value: Any, name: str) -> npt.NDArray[Any]:
        """``value`` as this array's dtype, in the byte order zarrs encodes from. Python
        objects are converted element by element (or refused by numpy), never passed on as
        raw pointers."""
        try:
            data = np.asarray(value, dtype=self.dtype)
        except (TypeError, ValueError) as exc:
            raise ZarrsValueError(f"{name} cannot be converted to {self.dtype}: {exc}") from exc
        native = self._native_dtype
        return data if native is None or data.dtype == native else data.astype(native)

    def _selections(self) -> Selections:
        """The array's selections through zarr's indexers (built at first use)."""
        if self._selected is None:
            self._selected = Selections(
                self._native, self._typed, self._chunks.grid().key_of, self._chunks.lock_prefix, self._store
            )
        return self._selected

    def _into(self, out: npt.NDArray[Any] | None, shape: tuple[int, ...]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """What a region read returns (``out``, checked, or a new array) and the buffer zarrs
        decodes into: the same array, unless the array is stored in another byte order."""
        if out is None:
            out = results.empty(shape, self.dtype)
        else:
            self._check_out(out, shape)
        if not self._converts:
            return out, out
        return out, np.empty(shape, dtype=self._native_dtype)

    def read(self, region: Any = (), out: npt.NDArray[Any] | None = None) -> npt.NDArray[Any]:
        """Read a region into ``out`` or a new array.

        Parameters
        ----------
        region : slice, int or tuple of them, default ()
            Step-1 slices and integers, one per axis at most (missing axes are whole; an
            Ellipsis fills in); the default is the whole array.
        out : numpy.ndarray, optional
            A writeable C-contiguous array of this array's dtype and the region's shape
            (without the integer-indexed axes), decoded into directly.

        Returns
        -------
        numpy.ndarray
            ``out``, or a new array; integer-indexed axes are dropped.

        Raises
        ------
        ZarrsValueError
            A stepped slice, an unsupported index, or an ``out`` of the wrong dtype, shape
            or layout.
        IndexError
            An integer index out of bounds.
        ZarrsCodecError
            A stored chunk is corrupt (``ZarrsChecksumError`` when a checksum fails).
        """
        start, extent, dropped = basic_region(region, self._native._shape)
        shape = _kept(extent, dropped)
        if self._typed.variable:
            values = self._selections().read("basic", region, self.options)
            if out is None:
                return values
            self._check_out(out, shape)
            out[...] = values
            return out
        result, buffer = self._into(out, shape)
        self._native.retrieve_subset(self.options, start, buffer.reshape(extent) if dropped else buffer)
        if buffer is not result:
            result[...] = buffer
        return result

    async def read_async(self, key: Any = (), out: npt.NDArray[Any] | None = None) -> npt.NDArray[Any]:
        """``arr[key]`` (or :meth:`read` into ``out``), awaited: many reads in flight from one
        event loop, none of them blocking it.

        A region of step-1 slices and integers, and any other selection (``oindex``/``vindex``
        forms, stepped slices, masks), is started natively (a region read or a gather) and
        completed through a file descriptor the loop watches: no Python thread per read.
        Variable-length types run on the worker pool. A cancelled read leaves nothing
        behind: it raises ``CancelledError`` once the native side is done with its buffers.

        Parameters
        ----------
        key : selection, default ()
            As for ``arr[key]``.
        out : numpy.ndarray, optional
            For a region: as for :meth:`read`.

        Returns
        -------
        numpy.ndarray
            The values.
        """
        try:
            start, extent, dropped = basic_region(key, self.shape)
        except ZarrsValueError:
            if out is not None:
                raise
            return await self._scattered(key).read_async(key)
        if self._typed.variable:
            return await read_scattered_async(partial(self.read, out=out), key)
        shape = _kept(extent, dropped)
        result, buffer = self._into(out, shape)
        if buffer.size:
            await read_region_async(self._native, self.options, self._chunks.region_batch(start, extent), start, buffer.reshape(extent))
        if buffer is not result:
            result[...] = buffer
        return result

    def read_future(self, key: Any = (), out: npt.NDArray[Any] | None = None) -> Future[npt.NDArray[Any]]:
        """``arr[key]`` (or :meth:`read` into ``out``) started now: a
        ``concurrent.futures.Future`` of the values, for many reads in flight from one
        thread without an event loop.

        A region of step-1 slices and integers, and any other selection (``oindex``/``vindex``
        forms, stepped slices, masks: one native gather), is started natively and its future
        completed by the library's completion queue (one Python thread per process waits on
        it, none per call); its future is running from the start, so ``cancel()`` returns
        False: the native side writes into the result until the read completes. Errors of
        a selection that is no region (an index out of bounds) are the future's.
        Variable-length types run on a pool shared by the process (cancellable until they
        start).

        Parameters
        ----------
        key : selection, default ()
            As for ``arr[key]``.
        out : numpy.ndarray, optional
            For a region: as for :meth:`read`.

        Returns
        -------
        concurrent.futures.Future
            Of the values; its ``result()`` raises what the read raised.
        """
        try:
            start, extent, dropped = basic_region(key, self.shape)
        except ZarrsValueError:
            if out is not None:
                raise
            return self._scattered(key).read_future(key)
        if self._typed.variable:
            return run_future(self.read, key, out)
        shape = _kept(extent, dropped)
        result, buffer = self._into(out, shape)

        def finish() -> npt.NDArray[Any]:
            if buffer is not result:
                result[...] = buffer
            return result

        if not buffer.size:
            return run_future(finish)
        return start_region(self._native, self.options, self._chunks.region_batch(start, extent), buffer.reshape(extent), finish)

    async def write_async(self, key: Any, value: npt.ArrayLike) -> None:
        """``arr[key] = value``, awaited: the write runs on the worker pool, not blocking the
        loop. A cancelled write raises ``CancelledError`` once it has finished (it is then
        either whole or, on an error, each chunk old or new), so ``value`` may be reused.

        Parameters
        ----------
        key : selection
            As for ``arr[key] = value``.
        value : array_like
            As for ``arr[key] = value``.
        """
        await settled(workers.run(self.__setitem__, key, value))

    def write_future(self, key: Any, value: npt.ArrayLike) -> Future[None]:
        """``arr[key] = value`` started now: a ``concurrent.futures.Future`` that is done when
        the write is, for many writes in flight from one thread without an event loop.

        The write runs on the pool :meth:`read_future` shares (the native writes have no
        completion call); writes to the same chunks are serialised by the chunks' write
        locks, in no given order. ``cancel()`` succeeds only before the write starts (then
        nothing is written); once running, the write finishes (whole or, on an error, each
        chunk old or new). ``value`` is read while the write runs: leave it unchanged until
        the future is done.

        Parameters
        ----------
        key : selection
            As for ``arr[key] = value``.
        value : array_like
            As for ``arr[key] = value``.

        Returns
        -------
        concurrent.futures.Future
            Of None; its ``result()`` raises what the write raised.
        """
        future: Future[None] = run_future(self.__setitem__, key, value)
        return future

    def write(self, region: Any, value: npt.ArrayLike) -> None:
        """Write ``value`` to a region.

        Parameters
        ----------
        region : slice, int or tuple of them
            Step-1 slices and integers, as for :meth:`read`.
        value : array_like
            Values of (or convertible to) this array's dtype, broadcast to the region's
            shape.

        Raises
        ------
        ZarrsValueError
            A bad region, or a value that cannot be converted or broadcast.
        ZarrsReadOnlyError
            The array was opened read-only.
        """
        start, extent, _ = basic_region(region, self.shape)
        if self._typed.variable:
            self._selections().write("basic", region, value, self.options)
            return
        data = self._values(value, "value")
        if data.shape != tuple(extent):
            data = np.broadcast_to(data, tuple(extent))
        # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d).
        data = np.require(data, requirements="C")
        with self._chunks.holding(start, extent):
            self._native.store_subset(self.options, start, data)

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        """``arr[key]`` with zarr's meaning: a region of step-1 slices and integers is
        :meth:`read`; integer arrays or a mask alone are ``vindex``; integer arrays and
        masks per axis, and slices with steps, are ``oindex``.

        Parameters
        ----------
        key : int, slice, array_like or tuple of them
            The selection.

        Returns
        -------
        numpy.ndarray
            The values, shaped as zarr shapes them.
        """
        try:
            return self.read(key)
        except ZarrsValueError:
            return self._scattered(key)[key]

    def _scattered(self, key: Any) -> Gathers:
        """How ``arr[key]`` reads a key that is no region, as zarr decides: integer arrays or
        a mask alone are ``vindex``, anything else ``oindex``."""
        return self.vindex if is_pure_fancy_indexing(key, self.ndim) else self.oindex

    @property
    def blocks(self) -> Blocks:
        """Selections of whole chunks (zarr's ``blocks``): per axis a chunk index or a
        step-1 slice of chunk indices, read and written as the region they cover."""
        return Blocks(self)

    @property
    def oindex(self) -> Gathers:
        """Orthogonal selections (zarr's ``oindex``): per axis an integer, a slice (any
        positive step), an integer array (any order, repeats, negative from the end) or a
        boolean mask; gathered natively, written around each chunk's bounding box."""
        return Gathers(self._native, self.options, self._chunks.grid(), self.dtype, "orthogonal", self._selections())

    @property
    def vindex(self) -> Gathers:
        """Coordinate selections (zarr's ``vindex``): one integer array per axis, broadcast
        together, or a boolean mask of the array's shape; gathered natively, written around
        each chunk's bounding box."""
        return Gathers(self._native, self.options, self._chunks.grid(), self.dtype, "points", self._selections())

    def __setitem__(self, key: Any, value: npt.ArrayLike) -> None:
        """``arr[key] = value``: :meth:`write` of ``value`` to ``key``.

        Parameters
        ----------
        key : selection
            As for ``arr[key]``: a region of step-1 slices and integers is written in one
            native call; anything else (stepped slices, integer arrays, masks) as zarr's
            ``__setitem__`` reads it, around each chunk's bounding box.
        value : array_like
            Shaped as the selection (integer-indexed axes absent), or broadcastable to it.
        """
        try:
            start, extent, dropped = basic_region(key, self.shape)
        except ZarrsValueError:
            self._selections().write(kind_of(key, self.ndim), key, value, self.options)
            return
        if self._typed.variable:
            self._selections().write("basic", key, value, self.options)
            return
        data = self._values(value, "value")
        if data.ndim and dropped:
            data = np.expand_dims(data, dropped) if data.ndim == len(extent) - len(dropped) else data
        self.write(key, data)

    def read_chunk(self, chunk_indices: tuple[int, ...], out: npt.NDArray[Any] | None = None) -> npt.NDArray[Any]:
        """Decode one whole chunk into ``out`` or a new array.

        Parameters
        ----------
        chunk_indices : tuple of int
            The chunk's position in the chunk grid.
        out : numpy.ndarray, optional
            A writeable C-contiguous array of this array's dtype and the chunk's shape.

        Returns
        -------
        numpy.ndarray
            ``out`` or a new array; the fill value everywhere when the chunk is not stored.

        Raises
        ------
        ZarrsValueError
            Indices outside the grid, or an ``out`` of the wrong dtype, shape or layout.
        ZarrsCodecError
            The stored chunk is corrupt.
        """
        shape = self._native.chunk_shape(chunk_indices)
        if self._typed.variable:
            return self.read(block_region(tuple(chunk_indices), self._chunks.grid().edges), out)
        result, buffer = self._into(out, shape)
        self._native.retrieve_chunk(self.options, chunk_indices, buffer)
        if buffer is not result:
            result[...] = buffer
        return result

    def write_chunk(self, chunk_indices: tuple[int, ...], value: npt.ArrayLike) -> None:
        """Encode and store one whole chunk.

        Parameters
        ----------
        chunk_indices : tuple of int
            The chunk's position in the chunk grid.
        value : array_like
            The chunk's values: this array's dtype (or convertible) and the chunk's shape.

        Raises
        ------
        ZarrsValueError
            Indices outside the grid, or a value of the wrong shape.
        ZarrsReadOnlyError
            The array was opened read-only.
        """
        if self._typed.variable:
            shape = self._native.chunk_shape(chunk_indices)
            self.write(block_region(tuple(chunk_indices), self._chunks.grid().edges), np.broadcast_to(value, shape))
            return
        data = np.ascontiguousarray(self._values(value, "value"))
        with self._chunks.holding_chunk(chunk_indices):
            self._native.store_chunk(self.options, chunk_indices, data)

    def erase_chunk(self, chunk_indices: tuple[int, ...]) -> None:
        """Erase one chunk from the store; it then reads as the fill value. With
        ``Options(fsync=True)`` on a local directory, its directory is synced after the
        file is removed, so the erase survives a power loss.

        Parameters
        ----------
        chunk_indices : tuple of int
            The chunk's position in the chunk grid.

        Raises
        ------
        ZarrsReadOnlyError
            The array was opened read-only.
        """
        with self._chunks.holding_chunk(chunk_indices):
            self._native.erase_chunk(self.options, chunk_indices)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickling sends how the array was opened: a DataLoader or dask worker opens it
        again there (its own native handle; the options as they are now)."""
        if self._reopen is None:
            raise TypeError("an Array built from a native handle cannot be pickled; open it with Array.open")
        return partial(self._reopen, options=self.options), ()

    def __repr__(self) -> str:
        return f"<zarrs_cffi.Array shape={self.shape} dtype={self.dtype} chunks={self.chunks}>"


class Blocks:
    """``Array.blocks``: ``[selection]`` reads the chunks selected, ``[selection] = value``
    writes them (a chunk index or a step-1 slice of them per axis, as zarr's ``blocks``).

    Parameters
    ----------
    array : Array
        The array.
    """

    __slots__ = ("_array",)

    def __init__(self, array: Array) -> None:
        self._array = array

    def _region(self, selection: Any) -> tuple[slice, ...]:
        return block_region(selection, self._array._chunks.grid().edges)

    def __getitem__(self, selection: Any) -> npt.NDArray[Any]:
        return self._array.read(self._region(selection))

    def __setitem__(self, selection: Any, value: npt.ArrayLike) -> None:
        self._array.write(self._region(selection), value)
