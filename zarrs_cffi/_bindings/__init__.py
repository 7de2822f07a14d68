"""Thin, typed wrappers over the C functions: argument checks in, exceptions out.

Each native handle lives in a Python object that frees it when collected (``ffi.gc``).
Buffers are numpy arrays, checked for C order, dtype width and size before the call, so
the C side only ever sees pointers with correct lengths. Nothing above this module touches
cffi objects.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ZarrsError, ZarrsValueError
from .library import Result, check, ffi, lib

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

__all__ = [
    "ChunkBatch",
    "CompletionQueue",
    "ArrayHandle",
    "Options",
    "ReadPlan",
    "Storage",
    "keep_warm",
    "native_version",
]


def native_version() -> str:
    """The version string the native library reports."""
    return str(ffi.string(lib().zarrs_ffi_version()).decode())


def keep_warm(microseconds: int | None = None) -> int:
    """Set (if given) and return the process's keep-warm window, in microseconds.

    For that long after each call of the codec pipeline starts or ends, one native thread
    keeps a CPU awake (spinning at nice 19, doing no work), so the thread wake-ups of the next
    call do not wait for a halted CPU. ``Array``'s own region and chunk calls do not start it
    (they hand nothing to other threads, and a spinning thread beside them slowed them). On
    a virtual machine without guest halt-polling a small read through zarr wakes a sleeping
    thread four to six times, at 25-160 µs each when the CPU halted; benchmarks/RESULTS.md
    has what it saves and what it costs (the CPU time of the window, which other threads of
    the machine may want). Off (0) unless set; Linux only (elsewhere it cannot be
    turned on. At most 1,000,000 (one second); 0 turns it off at once. Also set
    by zarr's config ``codec_pipeline.keep_warm_us`` or the environment variable
    ``ZARRS_FFI_KEEP_WARM_US``.
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
        # pipeline passes the same options on every call.
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
        return cached


_OPTIONS_CACHE: dict[Options, Any] = {}


def _u64(values: Sequence[int] | npt.NDArray[Any], name: str) -> npt.NDArray[np.uint64]:
    array = np.ascontiguousarray(values, dtype=np.uint64)
    if array.ndim != 1:
        raise ZarrsValueError(f"{name} must be one-dimensional")
    return array


def _flat_u64(values: npt.NDArray[Any]) -> npt.NDArray[np.uint64]:
    """``values`` flattened into a C-contiguous ``uint64`` array (a view when it is one)."""
    return np.ascontiguousarray(values, dtype=np.uint64).reshape(-1)


def _u64_ptr(array: npt.NDArray[np.uint64]) -> Any:
    return ffi.from_buffer("uint64_t[]", array)


def _bytes_ptr(data: bytes) -> Any:
    return ffi.from_buffer("uint8_t[]", data)


def _in_buffer(array: npt.NDArray[Any], name: str) -> Any:
    if not array.flags.c_contiguous:
        raise ZarrsValueError(f"{name} must be C-contiguous")
    return ffi.from_buffer("uint8_t[]", array)


def _out_buffer(array: npt.NDArray[Any], name: str) -> Any:
    if not array.flags.c_contiguous:
        raise ZarrsValueError(f"{name} must be C-contiguous")
    if not array.flags.writeable:
        raise ZarrsValueError(f"{name} must be writeable")
    return ffi.from_buffer("uint8_t[]", array, require_writable=True)


def _str(text: str) -> tuple[bytes, int]:
    data = text.encode("utf-8")
    return data, len(data)


def _read_string(call: Any) -> str:
    """Run a C call following the (buf, buf_len, len_out) convention and decode its text."""
    length = ffi.new("size_t *")
    # The first call with an empty buffer reports the size; BUFFER_SIZE is expected.
    code = call(ffi.NULL, 0, length)
    if code not in (Result.SUCCESS, Result.BUFFER_SIZE):
        check(code)
    buf = ffi.new("char[]", max(length[0], 1))
    check(call(buf, length[0], length))
    return bytes(ffi.buffer(buf, length[0])).decode("utf-8")


class Storage:
    """An open native storage (``ZarrsStorage``)."""

    __slots__ = ("_handle", "description")

    def __init__(self, handle: Any, description: str) -> None:
        self._handle = ffi.gc(handle, lib().zarrs_storage_free)
        self.description = description

    @classmethod
    def filesystem(cls, path: str, *, direct_io: bool = False, read_only: bool = False) -> Storage:
        """Open a local directory; it is created on first write."""
        out = ffi.new("ZarrsStorage **")
        data, size = _str(path)
        check(lib().zarrs_storage_open_filesystem(data, size, int(bool(direct_io)), int(bool(read_only)), out))
        return cls(out[0], f"filesystem:{path}")

    @classmethod
    def s3(
        cls,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        anonymous: bool = False,
        path_style: bool = True,
        read_only: bool = False,
    ) -> Storage:
        """Open an S3-compatible bucket (credentials exactly as given, none from the
        environment)."""
        keep: list[Any] = []

        def text(value: str | None) -> tuple[Any, int]:
            if value is None:
                return ffi.NULL, 0
            data = ffi.new("char[]", value.encode("utf-8"))
            keep.append(data)
            return data, len(value.encode("utf-8"))

        config = ffi.new("ZarrsS3Config *")
        for name, value in (
            ("bucket", bucket), ("prefix", prefix), ("endpoint", endpoint), ("region", region),
            ("access_key_id", access_key_id), ("secret_access_key", secret_access_key),
            ("session_token", session_token),
        ):
            pointer, size = text(value)
            setattr(config, name, pointer)
            setattr(config, f"{name}_len", size)
        config.anonymous = int(bool(anonymous))
        config.path_style = int(bool(path_style))
        config.read_only = int(bool(read_only))
        out = ffi.new("ZarrsStorage **")
        check(lib().zarrs_storage_open_s3(config, out))
        where = f"{endpoint or 'aws'}/{bucket}/{prefix}".rstrip("/")
        return cls(out[0], f"s3:{where}")

    @classmethod
    def http(cls, url: str) -> Storage:
        """Open a read-only HTTP(S) location; keys are fetched from ``url/key``."""
        out = ffi.new("ZarrsStorage **")
        data, size = _str(url)
        check(lib().zarrs_storage_open_http(data, size, out))
        return cls(out[0], f"http:{url}")

    @classmethod
    def memory(cls) -> Storage:
        """Open an empty in-memory storage, for arrays that only encode and decode."""
        out = ffi.new("ZarrsStorage **")
        check(lib().zarrs_storage_open_memory(out))
        return cls(out[0], "memory")

    def __repr__(self) -> str:
        return f"Storage({self.description!r})"


@dataclass(frozen=True)
class ChunkBatch:
    """A batch of chunks in the layout the batch calls take.

    Attributes
    ----------
    keys
        The store keys, UTF-8, back to back.
    key_offsets
        ``len + 1`` byte offsets into ``keys``.
    geometry
        Per chunk, ``ndim`` values each of chunk shape, subset start, subset shape and
        buffer start: shape ``(len, 4, ndim)``.
    """

    keys: bytes
    key_offsets: npt.NDArray[np.uint64]
    geometry: npt.NDArray[np.uint64]

    def __len__(self) -> int:
        return int(self.geometry.shape[0])

    @classmethod
    def build(
        cls, keys: Sequence[str] | None, geometry: npt.NDArray[np.uint64]
    ) -> ChunkBatch:
        """Assemble a batch from keys (None for codec-only calls) and a geometry array."""
        encoded = [key.encode("utf-8") for key in keys] if keys is not None else []
        offsets = np.zeros(len(encoded) + 1, dtype=np.uint64)
        if encoded:
            np.cumsum([len(k) for k in encoded], out=offsets[1:])
        return cls(b"".join(encoded), offsets, np.ascontiguousarray(geometry, dtype=np.uint64))


def _pointers(chunks: Sequence[Any]) -> tuple[Any, Any, list[Any]]:
    """Per-chunk pointers (NULL: missing) and lengths for the codec-only calls, which read
    the bytes in place; the third item keeps the buffers alive for the call."""
    n = len(chunks)
    pointers = ffi.new("const uint8_t *[]", n)
    lengths = ffi.new("size_t[]", n)
    keep: list[Any] = []
    for i, chunk in enumerate(chunks):
        if chunk is None:
            continue
        size = len(chunk)
        if size:
            data = ffi.from_buffer("uint8_t[]", chunk)
            keep.append(data)
            pointers[i] = data
        else:
            # A present but empty value: any non-NULL pointer with length 0.
            pointers[i] = _EMPTY
        lengths[i] = size
    return pointers, lengths, keep


_EMPTY = ffi.new("uint8_t[1]")

# How the codec-only calls, which take no keys, name a chunk in their errors: by position.
_POSITION = re.compile(r"chunk-(\d+)(?= in )")


def _check_named(code: int, name: Callable[[int], str] | None) -> None:
    """``check`` for a codec-only call: an error naming the failing chunk by its position in
    the batch (``chunk-<i> in <array>: ...``) names it ``name(i)`` instead, the store key
    the caller fetched it from. Costs nothing unless the call failed."""
    try:
        check(code)
    except ZarrsError as exc:
        message = str(exc)
        match = _POSITION.match(message)
        if name is None or match is None:
            raise
        try:
            key = name(int(match.group(1)))
        except (IndexError, KeyError, UnicodeDecodeError):
            raise exc from None
        raise type(exc)(key + message[match.end() :], exc.code) from None


def _batch_key(batch: ChunkBatch) -> Callable[[int], str] | None:
    """The key of chunk ``i`` of a keyed batch (None for a batch without keys)."""
    offsets = batch.key_offsets
    if len(offsets) != len(batch) + 1:
        return None
    return lambda i: batch.keys[int(offsets[i]) : int(offsets[i + 1])].decode("utf-8")

class CompletionQueue:
    """Finished asynchronous reads (``ZarrsCompletionQueue``) and the file descriptor,
    owned by the library, that is readable while some wait to be drained.

    Raises ``ZarrsUnsupportedError`` where the platform has no such descriptor.
    """

    __slots__ = ("_codes", "_count", "_handle", "_tokens", "fd")

    #: The most tokens one ``drain`` returns.
    CAPACITY = 64

    def __init__(self) -> None:
        out = ffi.new("ZarrsCompletionQueue **")
        fd = ffi.new("int32_t *")
        check(lib().zarrs_completion_queue_new(out, fd))
        self._handle = ffi.gc(out[0], lib().zarrs_completion_queue_free)
        self.fd = int(fd[0])
        self._tokens = ffi.new("uint64_t[]", self.CAPACITY)
        self._codes = ffi.new("int32_t[]", self.CAPACITY)
        self._count = ffi.new("size_t *")

    def drain(self) -> list[tuple[int, int]]:
        """Up to ``CAPACITY`` finished ``(token, result code)`` pairs, oldest first."""
        check(lib().zarrs_completion_queue_drain(self._handle, self._tokens, self._codes, self.CAPACITY, self._count))
        n = int(self._count[0])
        return list(zip(ffi.unpack(self._tokens, n), ffi.unpack(self._codes, n), strict=True))

    def error(self, token: int) -> ZarrsError:
        """The exception a drained failed ``token`` raises: the type and message ``check``
        gives the synchronous call (the message names the chunk key)."""
        try:
            check(lib().zarrs_completion_queue_take_error(self._handle, token))
        except ZarrsError as exc:
            return exc
        raise AssertionError("take_error succeeded")  # it never returns success


# Sans-I/O reads, write planning and native encoded I/O (``plan.rs``, ``encoded_io.rs``).

#: A request's kind, as ``ZarrsByteRequestKind``: the whole value, a range or a suffix.
REQUEST_WHOLE, REQUEST_RANGE, REQUEST_SUFFIX = 0, 1, 2

# ``ZarrsByteRequest`` as numpy reads it (C layout: the enum is 4 bytes, padded to 8).
_REQUEST_DTYPE = np.dtype(
    {"names": ["job", "kind", "offset", "length"], "formats": ["<u8", "<i4", "<u8", "<u8"], "offsets": [0, 8, 16, 24], "itemsize": 32}
)


def _key_args(keys: Sequence[str]) -> tuple[bytes, npt.NDArray[np.uint64]]:
    encoded = [key.encode("utf-8") for key in keys]
    offsets = np.zeros(len(encoded) + 1, dtype=np.uint64)
    if encoded:
        np.cumsum([len(k) for k in encoded], out=offsets[1:])
    return b"".join(encoded), offsets


class ReadPlan:
    """A read whose bytes the caller fetches (``ZarrsReadPlan``).

    ``requests()`` says what to fetch: per request, the job (position in the batch), the
    kind (``REQUEST_WHOLE``, ``REQUEST_RANGE``, ``REQUEST_SUFFIX``), offset and length.
    ``supply()`` answers them in order (None: the value does not exist); repeat until
    ``requests()`` is empty, then ``finish(out)`` decodes into ``out``. The plan knows the
    byte layout (shard indexes); the caller only moves bytes.
    """

    __slots__ = ("_array", "_handle", "_jobs")

    def __init__(self, handle: Any, array: ArrayHandle, jobs: int) -> None:
        self._handle = ffi.gc(handle, lib().zarrs_read_plan_free)
        # The plan refers to its array: keep it alive as long as the plan.
        self._array = array
        self._jobs = jobs

    def requests(self) -> npt.NDArray[Any]:
        """The current round's requests: a structured array with fields ``job``, ``kind``,
        ``offset`` and ``length`` (a copy)."""
        pointer = ffi.new("const ZarrsByteRequest **")
        count = ffi.new("size_t *")
        check(lib().zarrs_read_plan_requests(self._handle, pointer, count))
        n = int(count[0])
        if n == 0:
            return np.zeros(0, dtype=_REQUEST_DTYPE)
        return np.frombuffer(ffi.buffer(pointer[0], n * _REQUEST_DTYPE.itemsize), dtype=_REQUEST_DTYPE).copy()

    def supply(self, responses: Sequence[Any]) -> None:
        """Answer the current round's requests, in order (None: the value is missing)."""
        pointers, lengths, _keep = _pointers(responses)
        check(lib().zarrs_read_plan_supply(self._handle, len(responses), pointers, lengths))

    def finish(self, out: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Decode every job into ``out``; returns which chunks exist."""
        self._array._check_elements(out, "out")
        if out.ndim != self._array.ndim:
            raise ZarrsValueError(f"out has {out.ndim} dimensions; the array has {self._array.ndim}")
        out_shape = _u64(out.shape, "out.shape")
        present = np.zeros(self._jobs, dtype=np.uint8)
        check(
            lib().zarrs_read_plan_finish(
                self._handle, _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
                ffi.from_buffer("uint8_t[]", present, require_writable=True), self._jobs,
            )
        )
        return present.view(np.bool_)


class ArrayHandle:
    """An open native array (``ZarrsArray``)."""

    __slots__ = ("_handle", "element_size", "ndim", "storage")

    def __init__(self, handle: Any, storage: Storage) -> None:
        self._handle = ffi.gc(handle, lib().zarrs_array_free)
        self.storage = storage
        ndim = ffi.new("size_t *")
        check(lib().zarrs_array_dimensionality(self._handle, ndim))
        self.ndim = int(ndim[0])
        size = ffi.new("size_t *")
        # 0 for variable-length data types, whose elements have no fixed size.
        code = lib().zarrs_array_element_size(self._handle, size)
        self.element_size = int(size[0]) if code == Result.SUCCESS else 0
        if code not in (Result.SUCCESS, Result.UNSUPPORTED):
            check(code)

    @classmethod
    def open(cls, storage: Storage, path: str = "/") -> ArrayHandle:
        """Open the array at ``path``, reading its metadata from the store."""
        out = ffi.new("ZarrsArray **")
        data, size = _str(path)
        check(lib().zarrs_array_open(storage._handle, data, size, out))
        return cls(out[0], storage)

    @classmethod
    def open_with_metadata(
        cls, storage: Storage, metadata: str | dict[str, Any], path: str = "/", *, create: bool = False
    ) -> ArrayHandle:
        """Open (or, with ``create``, create) the array at ``path`` from metadata JSON."""
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        out = ffi.new("ZarrsArray **")
        path_data, path_size = _str(path)
        meta_data, meta_size = _str(text)
        function = lib().zarrs_array_create if create else lib().zarrs_array_open_with_metadata
        check(function(storage._handle, path_data, path_size, meta_data, meta_size, out))
        return cls(out[0], storage)

    def _dims(self, function: Any) -> tuple[int, ...]:
        out = np.zeros(self.ndim, dtype=np.uint64)
        check(function(self._handle, _u64_ptr(out), self.ndim))
        return tuple(int(v) for v in out)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._dims(lib().zarrs_array_shape)

    @property
    def chunk_grid_shape(self) -> tuple[int, ...]:
        return self._dims(lib().zarrs_array_chunk_grid_shape)

    def _indices(self, chunk_indices: Sequence[int]) -> npt.NDArray[np.uint64]:
        indices = _u64(chunk_indices, "chunk_indices")
        if indices.size != self.ndim:
            raise ZarrsValueError(f"chunk indices {tuple(chunk_indices)} need {self.ndim} values")
        return indices

    def chunk_shape(self, chunk_indices: Sequence[int]) -> tuple[int, ...]:
        indices = self._indices(chunk_indices)
        out = np.zeros(self.ndim, dtype=np.uint64)
        check(lib().zarrs_array_chunk_shape(self._handle, _u64_ptr(indices), self.ndim, _u64_ptr(out)))
        return tuple(int(v) for v in out)

    @property
    def data_type(self) -> str:
        return _read_string(lambda b, n, o: lib().zarrs_array_data_type(self._handle, b, n, o))

    @property
    def metadata(self) -> dict[str, Any]:
        text = _read_string(lambda b, n, o: lib().zarrs_array_metadata(self._handle, b, n, o))
        result: dict[str, Any] = json.loads(text)
        return result

    def chunk_key(self, chunk_indices: Sequence[int]) -> str:
        indices = self._indices(chunk_indices)
        ptr = _u64_ptr(indices)
        return _read_string(
            lambda b, n, o: lib().zarrs_array_chunk_key(self._handle, ptr, self.ndim, b, n, o)
        )

    def _check_elements(self, array: npt.NDArray[Any], name: str) -> None:
        # The native side sees raw bytes. Object arrays hold PyObject pointers: decoding
        # into them (or encoding their addresses) would corrupt memory or leak addresses.
        if not isinstance(array, np.ndarray):
            raise ZarrsValueError(f"{name} must be a numpy array, not {type(array).__name__}")
        if array.dtype.hasobject:
            raise ZarrsValueError(f"{name} has dtype {array.dtype}, which holds Python objects; a numeric buffer is required")
        if array.dtype.itemsize != self.element_size:
            raise ZarrsValueError(
                f"{name} has {array.dtype.itemsize}-byte elements ({array.dtype}); "
                f"the array has {self.element_size}-byte elements"
            )

    def retrieve_subset(
        self, options: Options, start: Sequence[int], out: npt.NDArray[Any]
    ) -> None:
        """Read the region at ``start`` with ``out.shape`` into ``out``."""
        self._check_elements(out, "out")
        start_ = _u64(start, "start")
        shape_ = _u64(out.shape, "shape")
        check(
            lib().zarrs_array_retrieve_subset(
                self._handle, options._cdata(), _u64_ptr(start_), _u64_ptr(shape_), self.ndim,
                _out_buffer(out, "out"), out.nbytes,
            )
        )

    def store_subset(self, options: Options, start: Sequence[int], data: npt.NDArray[Any]) -> None:
        """Write ``data`` to the region at ``start`` with ``data.shape``."""
        self._check_elements(data, "data")
        start_ = _u64(start, "start")
        shape_ = _u64(data.shape, "shape")
        check(
            lib().zarrs_array_store_subset(
                self._handle, options._cdata(), _u64_ptr(start_), _u64_ptr(shape_), self.ndim,
                _in_buffer(data, "data"), data.nbytes,
            )
        )

    def retrieve_chunk(self, options: Options, chunk_indices: Sequence[int], out: npt.NDArray[Any]) -> bool:
        """Decode a whole chunk into ``out``; returns whether it was stored."""
        self._check_elements(out, "out")
        indices = self._indices(chunk_indices)
        present = ffi.new("uint8_t *")
        check(
            lib().zarrs_array_retrieve_chunk(
                self._handle, options._cdata(), _u64_ptr(indices), self.ndim,
                _out_buffer(out, "out"), out.nbytes, present,
            )
        )
        return bool(present[0])

    def store_chunk(self, options: Options, chunk_indices: Sequence[int], data: npt.NDArray[Any]) -> None:
        """Encode and store a whole chunk."""
        self._check_elements(data, "data")
        indices = self._indices(chunk_indices)
        check(
            lib().zarrs_array_store_chunk(
                self._handle, options._cdata(), _u64_ptr(indices), self.ndim,
                _in_buffer(data, "data"), data.nbytes,
            )
        )

    _SUBCHUNK_ORDERS = {"morton": 0, "lexicographic": 1, "colexicographic": 2, "unordered": 1}

    def set_subchunk_write_order(self, order: str) -> None:
        """How inner chunks are laid out in shards written from now on: ``"morton"``
        (default), ``"lexicographic"``, ``"colexicographic"`` or ``"unordered"``."""
        if order not in self._SUBCHUNK_ORDERS:
            raise ZarrsValueError(f"unknown subchunk write order {order!r}")
        check(lib().zarrs_array_set_subchunk_write_order(self._handle, self._SUBCHUNK_ORDERS[order]))

    def erase_chunk(self, options: Options, chunk_indices: Sequence[int]) -> None:
        """Erase a chunk; it then reads as the fill value (durably with ``options.fsync``)."""
        indices = self._indices(chunk_indices)
        check(lib().zarrs_array_erase_chunk(self._handle, options._cdata(), _u64_ptr(indices), self.ndim))

    def _geometry_args(self, batch: ChunkBatch) -> tuple[Any, int]:
        if batch.geometry.shape[1:] != (4, self.ndim):
            raise ZarrsValueError(
                f"geometry has shape {batch.geometry.shape}; expected (n, 4, {self.ndim})"
            )
        return _u64_ptr(batch.geometry.reshape(-1)), batch.geometry.size

    def read_chunks(self, options: Options, batch: ChunkBatch, out: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Read a batch into ``out`` (``out.ndim`` must equal the array's); returns presence."""
        self._check_elements(out, "out")
        if out.ndim != self.ndim:
            raise ZarrsValueError(f"out has {out.ndim} dimensions; the array has {self.ndim}")
        geometry, geometry_len = self._geometry_args(batch)
        out_shape = _u64(out.shape, "out.shape")
        present = np.zeros(len(batch), dtype=np.uint8)
        check(
            lib().zarrs_array_read_chunks(
                self._handle, options._cdata(), len(batch), batch.keys, len(batch.keys),
                _u64_ptr(batch.key_offsets), geometry, geometry_len,
                _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
                ffi.from_buffer("uint8_t[]", present, require_writable=True), len(batch),
            )
        )
        return present.view(np.bool_)

    def read_chunks_start(
        self,
        queue: CompletionQueue,
        token: int,
        options: Options,
        batch: ChunkBatch,
        out: npt.NDArray[Any],
        present: npt.NDArray[np.uint8],
    ) -> None:
        """Start reading a batch into ``out`` on the library's reading threads; its outcome
        arrives as ``token`` on ``queue``. Argument errors raise here, as ``read_chunks``
        raises them. ``self``, ``out`` and ``present`` (``len(batch)`` bytes, 1 where the
        chunk is stored) must stay referenced until the token is drained."""
        self._check_elements(out, "out")
        if out.ndim != self.ndim:
            raise ZarrsValueError(f"out has {out.ndim} dimensions; the array has {self.ndim}")
        geometry, geometry_len = self._geometry_args(batch)
        out_shape = _u64(out.shape, "out.shape")
        check(
            lib().zarrs_array_read_chunks_start(
                queue._handle, token, self._handle, options._cdata(), len(batch), batch.keys, len(batch.keys),
                _u64_ptr(batch.key_offsets), geometry, geometry_len,
                _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
                ffi.from_buffer("uint8_t[]", present, require_writable=True), len(present),
            )
        )

    def gather_orthogonal(
        self,
        options: Options,
        keys: bytes,
        key_offsets: npt.NDArray[np.uint64],
        chunk_shapes: npt.NDArray[Any],
        picks: npt.NDArray[Any],
        indices: npt.NDArray[Any],
        positions: npt.NDArray[Any],
        out: npt.NDArray[Any],
    ) -> npt.NDArray[np.bool_]:
        """Gather an orthogonal selection of chunks straight into ``out`` (the array's ndim).

        ``keys`` back to back with ``len + 1`` ``key_offsets``; ``chunk_shapes`` of shape
        ``(len, ndim)``; ``picks`` of shape ``(len, ndim, 2)``: per chunk and axis a
        ``(start, count)`` pair, the axis' picks being ``indices[start:start + count]`` of
        the chunk going to ``positions[start:start + count]`` of ``out``. Returns which
        chunks are stored (the others' picks get the fill value).
        """
        self._check_elements(out, "out")
        if out.ndim != self.ndim:
            raise ZarrsValueError(f"out has {out.ndim} dimensions; the array has {self.ndim}")
        n = len(key_offsets) - 1
        shapes, pairs = _flat_u64(chunk_shapes), _flat_u64(picks)
        indices, positions = _flat_u64(indices), _flat_u64(positions)
        if indices.size != positions.size:
            raise ZarrsValueError(f"{indices.size} indices but {positions.size} positions")
        out_shape = _u64(out.shape, "out.shape")
        present = np.zeros(n, dtype=np.uint8)
        check(
            lib().zarrs_array_gather_orthogonal(
                self._handle, options._cdata(), n, keys, len(keys), _u64_ptr(_flat_u64(key_offsets)),
                _u64_ptr(shapes), shapes.size, _u64_ptr(pairs), pairs.size,
                _u64_ptr(indices), _u64_ptr(positions), indices.size,
                _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
                ffi.from_buffer("uint8_t[]", present, require_writable=True), n,
            )
        )
        return present.view(np.bool_)

    def gather_points(
        self,
        options: Options,
        keys: bytes,
        key_offsets: npt.NDArray[np.uint64],
        chunk_shapes: npt.NDArray[Any],
        counts: npt.NDArray[Any],
        coords: npt.NDArray[Any],
        offsets: npt.NDArray[Any],
        out: npt.NDArray[Any],
    ) -> npt.NDArray[np.bool_]:
        """Gather points of chunks straight into ``out`` (any shape, C order, addressed by
        flat element offset).

        ``keys``, ``key_offsets`` and ``chunk_shapes`` as for ``gather_orthogonal``;
        ``counts[i]`` points of chunk ``i`` follow in order in ``coords`` (shape
        ``(points, ndim)``, in the chunk) and ``offsets`` (``points``, into ``out``).
        Returns which chunks are stored.
        """
        self._check_elements(out, "out")
        n = len(key_offsets) - 1
        shapes, counts, coords, offsets = _flat_u64(chunk_shapes), _flat_u64(counts), _flat_u64(coords), _flat_u64(offsets)
        if counts.size != n:
            raise ZarrsValueError(f"{counts.size} counts for {n} chunks")
        present = np.zeros(n, dtype=np.uint8)
        check(
            lib().zarrs_array_gather_points(
                self._handle, options._cdata(), n, keys, len(keys), _u64_ptr(_flat_u64(key_offsets)),
                _u64_ptr(shapes), shapes.size, _u64_ptr(counts), _u64_ptr(coords), coords.size,
                _u64_ptr(offsets), offsets.size, _out_buffer(out, "out"), out.nbytes,
                ffi.from_buffer("uint8_t[]", present, require_writable=True), n,
            )
        )
        return present.view(np.bool_)

    def write_chunks(self, options: Options, batch: ChunkBatch, value: npt.NDArray[Any]) -> None:
        """Write a batch from ``value`` (the array's ndim, or 0-d to broadcast)."""
        self._check_elements(value, "value")
        if value.ndim not in (0, self.ndim):
            raise ZarrsValueError(f"value has {value.ndim} dimensions; the array has {self.ndim}")
        geometry, geometry_len = self._geometry_args(batch)
        value_shape = _u64(value.shape, "value.shape")
        check(
            lib().zarrs_array_write_chunks(
                self._handle, options._cdata(), len(batch), batch.keys, len(batch.keys),
                _u64_ptr(batch.key_offsets), geometry, geometry_len,
                _in_buffer(value, "value"), value.nbytes, _u64_ptr(value_shape), value.ndim,
            )
        )

    def decode_chunks(
        self,
        options: Options,
        batch: ChunkBatch,
        encoded: Sequence[bytes | None],
        out: npt.NDArray[Any],
        names: Callable[[int], str] | None = None,
    ) -> None:
        """Decode caller-fetched chunk bytes (None: missing) into ``out``.

        Errors name the failing chunk by the batch's key, or for a batch without keys by
        ``names(i)`` (``i``: its position), else as ``chunk-<i>``.
        """
        self._check_elements(out, "out")
        if len(encoded) != len(batch):
            raise ZarrsValueError(f"{len(encoded)} encoded chunks for a batch of {len(batch)}")
        pointers, lengths, _keep = _pointers(encoded)
        geometry, geometry_len = self._geometry_args(batch)
        out_shape = _u64(out.shape, "out.shape")
        code = lib().zarrs_array_decode_chunks(
            self._handle, options._cdata(), len(batch), pointers, lengths,
            geometry, geometry_len, _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
        )
        if code != Result.SUCCESS:
            _check_named(code, _batch_key(batch) or names)

    def encode_chunks(
        self,
        options: Options,
        batch: ChunkBatch,
        value: npt.NDArray[Any],
        existing: Sequence[bytes | None] | None = None,
        names: Callable[[int], str] | None = None,
    ) -> list[bytes | None]:
        """Encode chunks from ``value``; None in the result means "delete this chunk".

        ``existing`` holds the current encoded bytes of chunks written only in part. Errors
        name chunks as ``decode_chunks``' do.
        """
        self._check_elements(value, "value")
        existing = existing if existing is not None else [None] * len(batch)
        if len(existing) != len(batch):
            raise ZarrsValueError(f"{len(existing)} existing chunks for a batch of {len(batch)}")
        pointers, lengths, _keep = _pointers(existing)
        geometry, geometry_len = self._geometry_args(batch)
        value_shape = _u64(value.shape, "value.shape")
        out = ffi.new("ZarrsEncodedChunks **")
        code = lib().zarrs_array_encode_chunks(
            self._handle, options._cdata(), len(batch), geometry, geometry_len,
            _in_buffer(value, "value"), value.nbytes, _u64_ptr(value_shape), value.ndim,
            pointers, lengths, out,
        )
        if code != Result.SUCCESS:
            _check_named(code, _batch_key(batch) or names)
        handle = ffi.gc(out[0], lib().zarrs_encoded_chunks_free)
        result: list[bytes | None] = []
        ptr = ffi.new("const uint8_t **")
        size = ffi.new("size_t *")
        for i in range(len(batch)):
            check(lib().zarrs_encoded_chunks_get(handle, i, ptr, size))
            result.append(None if ptr[0] == ffi.NULL else bytes(ffi.buffer(ptr[0], size[0])))
        return result

    def read_plan(
        self, options: Options, batch: ChunkBatch, max_gap_bytes: int = 1 << 20, max_coalesced_bytes: int = 16 << 20
    ) -> ReadPlan:
        """Plan reading ``batch`` (keys name chunks in errors; None keys: ``chunk-<i>``) with
        the caller's own I/O. Inner chunk ranges of a shard are coalesced when at most
        ``max_gap_bytes`` apart, into ranges of at most ``max_coalesced_bytes`` (0: no
        merging)."""
        for name, value in (("max_gap_bytes", max_gap_bytes), ("max_coalesced_bytes", max_coalesced_bytes)):
            if not 0 <= value < 2**64:
                raise ZarrsValueError(f"{name} must be between 0 and 2**64 - 1, got {value}")
        geometry, geometry_len = self._geometry_args(batch)
        keyed = len(batch.key_offsets) == len(batch) + 1
        out = ffi.new("ZarrsReadPlan **")
        check(
            lib().zarrs_array_read_plan_create(
                self._handle, options._cdata(), len(batch),
                batch.keys if keyed else ffi.NULL, len(batch.keys) if keyed else 0,
                _u64_ptr(batch.key_offsets) if keyed else ffi.NULL,
                geometry, geometry_len, max_gap_bytes, max_coalesced_bytes, out,
            )
        )
        return ReadPlan(out[0], self, len(batch))

    @property
    def sharded(self) -> bool:
        """Whether the array's chunks are shards (its array-to-bytes codec is sharding)."""
        flag = ffi.new("uint8_t *")
        check(lib().zarrs_array_is_sharded(self._handle, flag))
        return bool(flag[0])

    def needs_old(self, batch: ChunkBatch, complete: Sequence[bool] | npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Which chunks of a write must have their stored bytes fetched before
        ``encode_chunks``: written in part and not ``complete`` (zarr's per-chunk flag: the
        selection covers all of the chunk inside the array), or written in part and a shard."""
        flags = np.ascontiguousarray(complete, dtype=bool).astype(np.uint8)
        if flags.shape != (len(batch),):
            raise ZarrsValueError(f"{flags.size} complete flags for a batch of {len(batch)}")
        geometry, geometry_len = self._geometry_args(batch)
        needs = np.zeros(len(batch), dtype=np.uint8)
        check(
            lib().zarrs_array_needs_old(
                self._handle, len(batch), geometry, geometry_len,
                ffi.from_buffer("uint8_t[]", flags), len(batch),
                ffi.from_buffer("uint8_t[]", needs, require_writable=True), len(batch),
            )
        )
        return needs.view(np.bool_)

    def fetch_encoded(self, options: Options, keys: Sequence[str]) -> list[bytes | None]:
        """The stored bytes of each key (None: missing), fetched natively and concurrently,
        not decoded: for ``decode_chunks`` and as ``existing`` for ``encode_chunks``."""
        data, offsets = _key_args(keys)
        out = ffi.new("ZarrsEncodedChunks **")
        check(lib().zarrs_array_fetch_encoded(self._handle, options._cdata(), len(keys), data, len(data), _u64_ptr(offsets), out))
        handle = ffi.gc(out[0], lib().zarrs_encoded_chunks_free)
        ptr = ffi.new("const uint8_t **")
        size = ffi.new("size_t *")
        result: list[bytes | None] = []
        for i in range(len(keys)):
            check(lib().zarrs_encoded_chunks_get(handle, i, ptr, size))
            result.append(None if ptr[0] == ffi.NULL else bytes(ffi.buffer(ptr[0], size[0])))
        return result

    def store_encoded(self, options: Options, keys: Sequence[str], encoded: Sequence[Any]) -> None:
        """Store each key's encoded bytes natively (None: erase the key), concurrently; each
        value replaced atomically, as ``write_chunks`` does."""
        if len(encoded) != len(keys):
            raise ZarrsValueError(f"{len(encoded)} encoded chunks for {len(keys)} keys")
        data, offsets = _key_args(keys)
        pointers, lengths, _keep = _pointers(encoded)
        check(
            lib().zarrs_array_store_encoded(
                self._handle, options._cdata(), len(keys), data, len(data), _u64_ptr(offsets), pointers, lengths
            )
        )


def _shapes(shapes: Sequence[Sequence[int]], ndim: int) -> npt.NDArray[np.uint64]:
    array = np.array(shapes, dtype=np.uint64).reshape(len(shapes), ndim)
    return np.ascontiguousarray(array)


def decode_variable_chunks(
    array: ArrayHandle,
    options: Options,
    encoded: Sequence[Any],
    shapes: Sequence[Sequence[int]],
    names: Callable[[int], str] | None = None,
) -> list[tuple[bytes, npt.NDArray[np.uint64]]]:
    """Decode whole chunks of a variable-length type: per chunk, the element bytes and the
    ``elements + 1`` offsets into them. Errors name the failing chunk ``names(i)`` (``i``:
    its position), else ``chunk-<i>``."""
    if len(encoded) != len(shapes):
        raise ZarrsValueError(f"{len(encoded)} encoded chunks for {len(shapes)} shapes")
    pointers, lengths, _keep = _pointers(encoded)
    shape_array = _shapes(shapes, array.ndim)
    out = ffi.new("ZarrsVariableChunks **")
    code = lib().zarrs_array_decode_variable_chunks(
        array._handle, options._cdata(), len(encoded), pointers, lengths,
        _u64_ptr(shape_array.reshape(-1)), shape_array.size, out,
    )
    if code != Result.SUCCESS:
        _check_named(code, names)
    handle = ffi.gc(out[0], lib().zarrs_variable_chunks_free)
    data_ptr = ffi.new("const uint8_t **")
    data_len = ffi.new("size_t *")
    offsets_ptr = ffi.new("const uint64_t **")
    offsets_len = ffi.new("size_t *")
    result = []
    for i in range(len(encoded)):
        check(lib().zarrs_variable_chunks_get(handle, i, data_ptr, data_len, offsets_ptr, offsets_len))
        blob = bytes(ffi.buffer(data_ptr[0], data_len[0])) if data_len[0] else b""
        element_offsets = np.frombuffer(ffi.buffer(offsets_ptr[0], 8 * offsets_len[0]), dtype=np.uint64).copy()
        result.append((blob, element_offsets))
    return result


def encode_variable_chunks(
    array: ArrayHandle, options: Options, shapes: Sequence[Sequence[int]], data: bytes, offsets: npt.NDArray[np.uint64]
) -> list[bytes]:
    """Encode whole chunks of a variable-length type from their elements back to back
    (``data``) and the elements' byte offsets (total elements + 1)."""
    shape_array = _shapes(shapes, array.ndim)
    offsets = np.ascontiguousarray(offsets, dtype=np.uint64)
    out = ffi.new("ZarrsEncodedChunks **")
    check(
        lib().zarrs_array_encode_variable_chunks(
            array._handle, options._cdata(), len(shapes), _u64_ptr(shape_array.reshape(-1)), shape_array.size,
            _bytes_ptr(data), len(data), _u64_ptr(offsets), offsets.size, out,
        )
    )
    handle = ffi.gc(out[0], lib().zarrs_encoded_chunks_free)
    ptr = ffi.new("const uint8_t **")
    size = ffi.new("size_t *")
    result = []
    for i in range(len(shapes)):
        check(lib().zarrs_encoded_chunks_get(handle, i, ptr, size))
        result.append(bytes(ffi.buffer(ptr[0], size[0])))
    return result
