"""What every route needs about one natively opened array: a leaf record, so routes,
variable-length types and the pipeline share it without importing how it was opened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from zarr.abc.store import Store

    from .._bindings import ArrayHandle, Options
    from .shards import ShardReader

__all__ = ["ArrayRecord"]


@dataclass(frozen=True)
class ArrayRecord:
    """An array opened natively, and what reads and writes of it need.

    Attributes
    ----------
    array
        The native array.
    dtype, native_dtype
        zarr's in-memory data type, and the same in native byte order (what zarrs decodes to
        and encodes from; they differ for big-endian arrays and raw-bits types).
    store
        zarr's store.
    options
        The native options, read from zarr's config when the pipeline was created.
    python_io
        Why chunk bytes move through the store's Python API (the codecs still run natively);
        None when the native library reaches the store itself.
    shards
        Partial shard reads through Python (byte ranges), for the python_io arrays it
        applies to.
    sharded
        The chunks are shards: a write covering a shard's part inside the array still keeps
        the inner chunks beyond it (zarr does), so it merges with the old shard.
    variable
        ``"text"`` or ``"bytes"`` for variable-length data types (``variable.py``), else None.
    inner_chunks
        The inner chunk shape when the codecs are exactly one sharding codec, whose shards
        the native side reads in part (index, then only the inner chunks a box touches).
    """

    array: ArrayHandle
    dtype: np.dtype[Any]
    native_dtype: np.dtype[Any]
    store: Store
    options: Options
    python_io: str | None = None
    shards: ShardReader | None = None
    sharded: bool = False
    variable: str | None = None
    inner_chunks: tuple[int, ...] | None = None
