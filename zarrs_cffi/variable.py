"""Variable-length data types (``string``, ``bytes``): whole chunks between numpy arrays
and the element bytes plus offsets the native codec-only calls take and return.

Elements of these types cannot live in a strided native buffer, so zarrs decodes and encodes
whole chunks (in parallel, GIL released) and numpy does the selection, exactly as zarr does
with its decoded chunk arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["from_elements", "is_variable", "to_elements"]


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
