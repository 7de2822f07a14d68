"""``ChunkBatch``, the layout the batch calls take, and the per-chunk pointers and keys the
codec-only and encoded-I/O calls take (the arguments of ``ffi/batch.rs``, ``ffi/codec.rs``
and ``ffi/encoded_io.rs``).

Argument building only: the calls themselves are methods of ``ArrayHandle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .library import ffi

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

__all__ = ["ChunkBatch"]


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
        data, offsets = _key_args(keys if keys is not None else [])
        return cls(data, offsets, np.ascontiguousarray(geometry, dtype=np.uint64))


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


def _batch_key(batch: ChunkBatch) -> Callable[[int], str] | None:
    """The key of chunk ``i`` of a keyed batch (None for a batch without keys)."""
    offsets = batch.key_offsets
    if len(offsets) != len(batch) + 1:
        return None
    return lambda i: batch.keys[int(offsets[i]) : int(offsets[i + 1])].decode("utf-8")


def _key_args(keys: Sequence[str]) -> tuple[bytes, npt.NDArray[np.uint64]]:
    """``keys`` in UTF-8 back to back, and their ``len + 1`` byte offsets."""
    encoded = [key.encode("utf-8") for key in keys]
    offsets = np.zeros(len(encoded) + 1, dtype=np.uint64)
    if encoded:
        np.cumsum([len(k) for k in encoded], out=offsets[1:])
    return b"".join(encoded), offsets
