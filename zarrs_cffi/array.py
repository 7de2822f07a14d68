"""The direct API: a Zarr array read and written through the native library, no zarr.

For users who want the least overhead per call: one native call per read or write, into
or from numpy arrays, with no asyncio and no per-chunk Python. Reads take zarr's
selections: basic (integers, slices with steps), ``oindex`` (orthogonal: integer arrays
and masks per axis) and ``vindex`` (coordinate points, a mask of the array's shape), the
scattered ones gathered natively, each chunk decoded once. Writes take regions of step-1
slices and integers. A write holds the locks
of the chunks (or shards) it touches for the whole call (``keylocks.py``), so this
process's writers, through zarr or this API, never lose each other's updates.
"""

from __future__ import annotations

import os
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.core.indexing import is_pure_fancy_indexing

from ._bindings import ArrayHandle, Options, Storage
from ._core import keylocks
from ._chunk_names import ChunkNames
from ._direct_open import node_path, open_url, open_zarr
from ._direct_reads import Gathers, read_region_async, read_scattered_async
from ._selection.whole import basic_region
from .errors import ZarrsUnsupportedError, ZarrsValueError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

__all__ = ["Array"]

_NUMPY_DTYPES = {
    "bool": "bool",
    **{name: name for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")},
    **{name: name for name in ("float16", "float32", "float64", "complex64", "complex128")},
}

Region = tuple[slice, ...]


class Array:
    """A Zarr (v2 or v3) array in a directory store, read and written by the native library.

    Every read or write is one native call with the GIL released; there is no asyncio and
    no per-chunk Python. Data types are bool, the signed and unsigned integers, float16/32/64
    and complex64/128.

    Parameters
    ----------
    native : ArrayHandle
        The native handle; use :meth:`open` or :meth:`create` instead.
    options : Options, optional
        Threading and codec options for every call; ``Options()`` when omitted.

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

    def __init__(self, native: ArrayHandle, options: Options | None = None) -> None:
        self._native = native
        self.options = options if options is not None else Options()
        name = native.data_type
        if name not in _NUMPY_DTYPES:
            raise ZarrsUnsupportedError(f"data type {name} is not supported by the direct API yet")
        self.dtype: np.dtype[Any] = np.dtype(_NUMPY_DTYPES[name])
        # Names its chunks for the write locks and the gathers: by the store's directory
        # when opened from one (``open``, ``create``), the zarr store's prefix
        # (``from_zarr``, a URL), else its native storage.
        self._chunks = ChunkNames(native, keylocks.object_prefix(native.storage))
        # How to open this array again in another process (``__reduce__``), given the
        # options: set by the constructors that know it.
        self._reopen: Callable[..., Array] | None = None

    @classmethod
    def _in_directory(cls, native: ArrayHandle, store_path: str, options: Options | None) -> Array:
        array = cls(native, options)
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
            storage = Storage.filesystem(root, direct_io=direct_io, read_only=read_only)
            array = cls._in_directory(ArrayHandle.open(storage, node_path(array_path)), root, options)
        else:
            native, prefix = open_url(root, array_path, read_only=read_only, storage_options=storage_options)
            array = cls(native, options)
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
        native, prefix = open_zarr(array)
        direct = cls(native, options)
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
        if out.dtype != self.dtype:
            raise ZarrsValueError(f"out has dtype {out.dtype}; it must be the array's dtype {self.dtype}")
        if out.shape != shape:
            raise ZarrsValueError(f"out has shape {out.shape}; it must be {shape}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ZarrsValueError("out must be C-contiguous and writeable")

    def _values(self, value: Any, name: str) -> npt.NDArray[Any]:
        """``value`` as this array's dtype. Python objects are converted element by element
        (or refused by numpy), never passed on as raw pointers."""
        try:
            return np.asarray(value, dtype=self.dtype)
        except (TypeError, ValueError) as exc:
            raise ZarrsValueError(f"{name} cannot be converted to {self.dtype}: {exc}") from exc

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
        start, extent, dropped = basic_region(region, self.shape)
        if out is None:
            buffer = np.empty(extent, dtype=self.dtype)
            self._native.retrieve_subset(self.options, start, buffer)
            return buffer.squeeze(axis=dropped) if dropped else buffer
        self._check_out(out, tuple(e for axis, e in enumerate(extent) if axis not in dropped))
        self._native.retrieve_subset(self.options, start, out.reshape(extent))
        return out

    async def read_async(self, key: Any = (), out: npt.NDArray[Any] | None = None) -> npt.NDArray[Any]:
        """``arr[key]`` (or :meth:`read` into ``out``), awaited: many reads in flight from one
        event loop, none of them blocking it.

        A region of step-1 slices and integers is started natively and completed through a
        file descriptor the loop watches: no Python thread per read. Other selections
        (``oindex``/``vindex`` forms, stepped slices) run on the worker pool. A cancelled
        read leaves nothing behind: its buffers stay referenced until the native side is
        done with them.

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
            return await read_scattered_async(self.__getitem__, key)
        shape = tuple(e for axis, e in enumerate(extent) if axis not in dropped)
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        else:
            self._check_out(out, shape)
        if out.size:
            await read_region_async(self._native, self.options, self._chunks.region_batch(start, extent), start, out.reshape(extent))
        return out

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
            if is_pure_fancy_indexing(key, self.ndim):
                return self.vindex[key]
            return self.oindex[key]

    @property
    def oindex(self) -> Gathers:
        """Orthogonal selections (zarr's ``oindex``): per axis an integer, a slice (any
        positive step), an integer array (any order, repeats, negative from the end) or a
        boolean mask; gathered natively. Reads only."""
        return Gathers(self._native, self.options, self._chunks.grid(), self.dtype, "orthogonal")

    @property
    def vindex(self) -> Gathers:
        """Coordinate selections (zarr's ``vindex``): one integer array per axis, broadcast
        together, or a boolean mask of the array's shape; gathered natively. Reads only."""
        return Gathers(self._native, self.options, self._chunks.grid(), self.dtype, "points")

    def __setitem__(self, key: Any, value: npt.ArrayLike) -> None:
        """``arr[key] = value``: :meth:`write` of ``value`` to ``key``.

        Parameters
        ----------
        key : slice, int or tuple of them
            Step-1 slices and integers, as for :meth:`read`.
        value : array_like
            Shaped as the selection (integer-indexed axes absent), or broadcastable to it.
        """
        start, extent, dropped = basic_region(key, self.shape)
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
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        else:
            self._check_out(out, shape)
        self._native.retrieve_chunk(self.options, chunk_indices, out)
        return out

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
