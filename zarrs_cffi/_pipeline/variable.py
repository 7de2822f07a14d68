"""Variable-length data types (``string``, ``bytes``): whole chunks between numpy arrays
and the element bytes plus offsets the native codec-only calls take and return.

Elements of these types cannot live in a strided native buffer, so zarrs decodes and encodes
whole chunks (in parallel, GIL released) and numpy does the selection, exactly as zarr does
with its decoded chunk arrays. ``read_chunks`` and ``encode_chunks`` run on worker threads;
the routes (``routes/variable.py``) fetch and store the bytes around them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import numpy as np

from .._bindings import decode_variable_chunks, encode_variable_chunks
from .._core import config

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._selection import ChunkRequest
    from .record import ArrayRecord

__all__ = ["encode_chunks", "from_elements", "is_variable", "read_chunks", "to_elements"]


def is_variable(metadata_dtype: Any) -> bool:
    """Whether zarr's data type is one of the variable-length ones zarrs implements."""
    return type(metadata_dtype).__name__ in ("VariableLengthUTF8", "VariableLengthBytes")


def to_elements(chunks: list[np.ndarray[Any, Any]], text: bool) -> tuple[bytes, np.ndarray[Any, Any]]:
    """The elements of ``chunks`` (C order, chunk after chunk) as bytes back to back, and
    their byte offsets (one more than the elements).

    No Python-level step per element. ASCII text in numpy's ``StringDType`` (zarr's type for
    ``string``) is cast to NUL-padded fixed-width bytes and the padding dropped; other
    elements are joined and encoded as one string (an element that is not a ``str`` is
    converted with ``str`` first) and their byte lengths counted by ``map``; only text that
    is not ASCII is encoded element by element, to know each one's length in bytes.
    """
    if text and chunks and all(chunk.dtype.kind == "T" for chunk in chunks):
        packed = _pack_ascii(chunks)
        if packed is not None:
            return packed
    items: list[Any] = []
    for chunk in chunks:
        items.extend(chunk.reshape(-1).tolist())
    if text:
        try:
            joined = "".join(items)
        except TypeError:  # an element that is not a str
            items = list(map(str, items))
            joined = "".join(items)
        data = joined.encode("utf-8")
        if len(data) != len(joined):  # not ASCII: lengths in bytes differ from lengths in characters
            items = list(map(str.encode, items))
    else:
        items = list(map(bytes, items))
        data = b"".join(items)
    offsets = np.zeros(len(items) + 1, dtype=np.uint64)
    if items:
        np.cumsum(np.fromiter(map(len, items), dtype=np.uint64, count=len(items)), out=offsets[1:])
    return data, offsets


# numcodecs (a dependency of zarr) builds the element objects in C from its vlen layout.
_numcodecs_vlen = importlib.import_module("numcodecs.vlen")  # untyped
_VLEN: dict[bool, Any] = {True: _numcodecs_vlen.VLenUTF8(), False: _numcodecs_vlen.VLenBytes()}
# A fixed-width copy of ASCII text may be this much larger than the text (plus _PAD_SLACK).
_PAD_FACTOR = 2
_PAD_SLACK = 1 << 20


def _pack_ascii(chunks: list[np.ndarray[Any, Any]]) -> tuple[bytes, np.ndarray[Any, Any]] | None:
    """``to_elements`` of ``StringDType`` chunks through a fixed-width cast; None when an
    element is not ASCII or the padded copy would be much larger than the text."""
    flat = chunks[0].reshape(-1) if len(chunks) == 1 else np.concatenate([chunk.reshape(-1) for chunk in chunks])
    lengths = np.strings.str_len(flat)
    count = len(flat)
    width = int(lengths.max()) if count else 0
    total = int(lengths.sum())
    if width == 0 or count * width > _PAD_FACTOR * total + _PAD_SLACK:
        return None
    try:
        fixed = flat.astype(f"S{width}")
    except UnicodeEncodeError:
        return None
    padded = fixed.view(np.uint8).reshape(count, width)
    # The padding is NUL bytes after each element; a NUL inside an element is kept, as
    # its length (in characters, here bytes) counts it.
    blob = padded.tobytes() if total == count * width else padded[np.arange(width) < lengths[:, None]].tobytes()
    offsets = np.zeros(count + 1, dtype=np.uint64)
    np.cumsum(lengths, out=offsets[1:])
    return blob, offsets


def from_elements(
    blob: bytes, offsets: np.ndarray[Any, Any], shape: tuple[int, ...], dtype: np.dtype[Any], text: bool
) -> np.ndarray[Any, Any]:
    """A chunk array of ``dtype`` from decoded element bytes and offsets (invalid UTF-8 is a
    ``UnicodeDecodeError``).

    No Python-level step per element. ASCII text bound for numpy's ``StringDType`` (zarr's
    type for ``string``) is cast from a NUL-padded fixed-width copy; anything else is laid
    out as numcodecs' vlen buffer and decoded by numcodecs into objects (as zarr's own
    ``vlen-utf8`` and ``vlen-bytes`` codecs do), then cast to ``dtype``.
    """
    bounds = offsets.astype(np.intp, copy=False)
    lengths = np.diff(bounds)
    if len(lengths) and int(lengths.min()) < 0:
        raise ValueError("variable-length element offsets decrease")
    if len(bounds) and (bounds[0] != 0 or bounds[-1] != len(blob)):
        blob = blob[int(bounds[0]) : int(bounds[-1])]
    if text and dtype.kind == "T":
        fixed = _fixed_width(blob, lengths)
        if fixed is not None:
            return fixed.astype(dtype).reshape(shape)
    objects = _VLEN[text].decode(_vlen_buffer(blob, lengths))
    if dtype.kind != "O":
        objects = objects.astype(dtype)
    return objects.reshape(shape)  # type: ignore[no-any-return]


def _fixed_width(blob: bytes, lengths: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """The elements as NUL-padded fixed-width bytes, or None when that would not be exact
    (non-ASCII text; a NUL byte, which the padding would swallow at an element's end) or
    would take much more memory than the elements (one long element among short ones)."""
    count = len(lengths)
    width = int(lengths.max()) if count else 0
    if width == 0 or count * width > _PAD_FACTOR * len(blob) + _PAD_SLACK or not blob.isascii() or 0 in blob:
        return None
    padded = np.zeros((count, width), dtype=np.uint8)
    padded[np.arange(width) < lengths[:, None]] = np.frombuffer(blob, dtype=np.uint8)
    return padded.view(f"S{width}").reshape(count)


def _vlen_buffer(blob: bytes, lengths: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """numcodecs' vlen layout of the elements: their count, then each one's length and bytes
    (lengths little-endian ``uint32``, as the ``vlen-utf8``/``vlen-bytes`` codecs store them)."""
    count = len(lengths)
    if count >= 1 << 32 or (count and int(lengths.max()) >= 1 << 32):
        raise ValueError("a variable-length chunk of 2**32 elements or more, or an element of 4 GiB or more")
    buffer = np.empty(4 + 4 * count + len(blob), dtype=np.uint8)
    buffer[:4] = np.array([count], dtype="<u4").view(np.uint8)
    # Element i's length goes before its bytes, after the i lengths and the bytes before it.
    heads = ((np.cumsum(lengths) - lengths + 4 * np.arange(1, count + 1))[:, None] + np.arange(4)).reshape(-1)
    buffer[heads] = lengths.astype("<u4").view(np.uint8)
    data = np.ones(len(buffer), dtype=bool)
    data[:4] = False
    data[heads] = False
    buffer[data] = np.frombuffer(blob, dtype=np.uint8)
    return buffer


def _decode(native: ArrayRecord, batch: Sequence[ChunkRequest], encoded: dict[int, Any]) -> dict[int, tuple[bytes, Any]]:
    """The stored chunks of ``encoded`` (by position in the batch) decoded natively."""
    stored = [(i, chunk) for i, chunk in encoded.items() if chunk is not None]
    if not stored:
        return {}
    shapes = [batch[i].spec.shape for i, _ in stored]
    decoded = decode_variable_chunks(
        native.array, native.options, [chunk for _, chunk in stored], shapes,
        names=lambda j: str(batch[stored[j][0]].byte_getter.path),
    )
    return {i: elements for (i, _), elements in zip(stored, decoded, strict=True)}


def read_chunks(
    native: ArrayRecord, batch: Sequence[ChunkRequest], out: np.ndarray[Any, Any], drop_axes: tuple[int, ...], encoded: list[Any]
) -> list[bool]:
    """Decode whole chunks (``encoded``: their bytes, None when missing) natively and copy
    zarr's selections into ``out``; returns which chunks exist."""
    chunks = _decode(native, batch, dict(enumerate(encoded)))
    text = native.variable == "text"
    for i, request in enumerate(batch):
        if i not in chunks:
            out[request.out_selection] = request.spec.fill_value
            continue
        values = from_elements(*chunks[i], request.spec.shape, out.dtype, text)[request.chunk_selection]
        if drop_axes:
            values = values.squeeze(axis=drop_axes)
        out[request.out_selection] = values
    return [chunk is not None for chunk in encoded]


def _whole(request: ChunkRequest, value: np.ndarray[Any, Any], expand: tuple[Any, ...] | None) -> np.ndarray[Any, Any] | None:
    """The part of ``value`` that is the whole chunk, when the selection is every element
    in order (a chunk written whole needs no fill-value array to copy it into); else None."""
    shape = request.spec.shape
    if value.ndim == 0 or not request.is_complete or len(request.chunk_selection) != len(shape):
        return None
    for selected, size in zip(request.chunk_selection, shape, strict=True):
        if not isinstance(selected, slice) or selected.indices(size) != (0, size, 1):
            return None
    values = value[request.out_selection]
    if expand is not None:
        values = values[expand]
    return values if values.shape == tuple(shape) else None


def encode_chunks(
    native: ArrayRecord, batch: Sequence[ChunkRequest], value: np.ndarray[Any, Any], drop_axes: tuple[int, ...],
    old: dict[int, Any],
) -> list[bytes | None]:
    """Merge zarr's selections of ``value`` into whole chunk arrays with numpy (decoding the
    old chunks, ``old`` by position in the batch, natively where written in part) and
    encode them natively; None means "delete this chunk"."""
    text = native.variable == "text"
    expand = tuple(None if d in drop_axes else slice(None) for d in range(native.array.ndim))
    decoded = _decode(native, batch, old)
    arrays: list[np.ndarray[Any, Any] | None] = []
    for i, request in enumerate(batch):
        spec = request.spec
        chunk = _whole(request, value, expand if drop_axes else None) if i not in decoded else None
        if chunk is None:
            if i in decoded:
                chunk = from_elements(*decoded[i], spec.shape, value.dtype, text)
            else:
                chunk = np.full(spec.shape, spec.fill_value, dtype=value.dtype)
            if value.ndim == 0:
                chunk[request.chunk_selection] = value
            else:
                values = value[request.out_selection]
                chunk[request.chunk_selection] = values[expand] if drop_axes else values
        keep = config.write_empty_chunks(spec) or not native.store.supports_deletes
        arrays.append(chunk if keep or not bool(np.all(chunk == spec.fill_value)) else None)
    kept = [(i, chunk) for i, chunk in enumerate(arrays) if chunk is not None]
    encoded: list[bytes | None] = [None] * len(batch)
    if kept:
        data, offsets = to_elements([chunk for _, chunk in kept], text)
        shapes = [batch[i].spec.shape for i, _ in kept]
        for (i, _), chunk_bytes in zip(kept, encode_variable_chunks(native.array, native.options, shapes, data, offsets), strict=True):
            encoded[i] = chunk_bytes
    return encoded
