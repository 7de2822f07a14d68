"""Variable-length data types (``string``, ``bytes``): whole chunks between numpy arrays
and the element bytes plus offsets the native codec-only calls take and return.

Elements of these types cannot live in a strided native buffer, so zarrs decodes and encodes
whole chunks (in parallel, GIL released) and numpy does the selection, exactly as zarr does
with its decoded chunk arrays. ``read_chunks`` and ``encode_chunks`` run on worker threads;
the routes (``_routes.py``) fetch and store the bytes around them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._bindings import decode_variable_chunks, encode_variable_chunks

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._native import Native
    from .selection import ChunkRequest

__all__ = ["encode_chunks", "from_elements", "is_variable", "read_chunks", "to_elements"]


def is_variable(metadata_dtype: Any) -> bool:
    """Whether zarr's data type is one of the variable-length ones zarrs implements."""
    return type(metadata_dtype).__name__ in ("VariableLengthUTF8", "VariableLengthBytes")


def to_elements(chunks: list[np.ndarray[Any, Any]], text: bool) -> tuple[bytes, np.ndarray[Any, Any]]:
    """The elements of ``chunks`` (C order, chunk after chunk) as bytes back to back, and
    their byte offsets (one more than the elements)."""
    items: list[bytes] = []
    for chunk in chunks:
        flat = chunk.reshape(-1).tolist()
        if text:
            items.extend(str(item).encode("utf-8") for item in flat)
        else:
            items.extend(bytes(item) for item in flat)
    offsets = np.zeros(len(items) + 1, dtype=np.uint64)
    if items:
        np.cumsum([len(item) for item in items], out=offsets[1:])
    return b"".join(items), offsets


def from_elements(
    blob: bytes, offsets: np.ndarray[Any, Any], shape: tuple[int, ...], dtype: np.dtype[Any], text: bool
) -> np.ndarray[Any, Any]:
    """A chunk array of ``dtype`` from decoded element bytes and offsets."""
    bounds = offsets.tolist()
    if text:
        items: list[Any] = [blob[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    else:
        items = [blob[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if dtype.kind == "O":
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(shape)
    return np.array(items, dtype=dtype).reshape(shape)


def _decode(native: Native, batch: Sequence[ChunkRequest], encoded: dict[int, Any]) -> dict[int, tuple[bytes, Any]]:
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
    native: Native, batch: Sequence[ChunkRequest], out: np.ndarray[Any, Any], drop_axes: tuple[int, ...], encoded: list[Any]
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


def encode_chunks(
    native: Native, batch: Sequence[ChunkRequest], value: np.ndarray[Any, Any], drop_axes: tuple[int, ...],
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
        fill = np.full(spec.shape, spec.fill_value, dtype=value.dtype)
        chunk = from_elements(*decoded[i], spec.shape, value.dtype, text) if i in decoded else fill.copy()
        if value.ndim == 0:
            chunk[request.chunk_selection] = value
        else:
            values = value[request.out_selection]
            chunk[request.chunk_selection] = values[expand] if drop_axes else values
        keep = spec.config.write_empty_chunks or not native.store.supports_deletes
        arrays.append(chunk if keep or not np.array_equal(chunk, fill) else None)
    kept = [(i, chunk) for i, chunk in enumerate(arrays) if chunk is not None]
    encoded: list[bytes | None] = [None] * len(batch)
    if kept:
        data, offsets = to_elements([chunk for _, chunk in kept], text)
        shapes = [batch[i].spec.shape for i, _ in kept]
        for (i, _), chunk_bytes in zip(kept, encode_variable_chunks(native.array, native.options, shapes, data, offsets), strict=True):
            encoded[i] = chunk_bytes
    return encoded
