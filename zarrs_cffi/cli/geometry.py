"""The geometry of a stored array: its storage units (shards, else chunks), blocks of whole
units sized to a memory budget, and the units already stored.

``bench`` reads the first block of a large array, ``copy`` writes block after block, and
``info`` counts the stored units; none of them reads a chunk's bytes to do so.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.core.sync import sync

from .errors import CLIError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from zarr.abc.store import Store

__all__ = ["CHUNK_KEY", "Block", "blocks", "is_variable", "itemsize", "plan_block", "source_chunk",
           "stored_objects", "unit_bytes", "unit_key", "unit_kind", "unit_region", "write_unit"]


def write_unit(array: zarr.Array[Any]) -> tuple[int, ...]:
    """The shape of the array's storage objects: its shards, else its chunks."""
    try:
        return tuple(array.shards or array.chunks)
    except (NotImplementedError, ValueError, TypeError):
        raise CLIError("arrays with irregular (rectilinear) chunk grids are not supported; pass --chunks") from None


def is_variable(array: zarr.Array[Any]) -> bool:
    """Variable-length strings or bytes."""
    return not isinstance(array.dtype, np.dtype) or array.dtype.kind in "OT"


def itemsize(array: zarr.Array[Any]) -> int:
    # Variable-length strings and bytes: a guess, used only to size the blocks.
    return 64 if is_variable(array) else max(1, array.dtype.itemsize)


def unit_kind(array: zarr.Array[Any]) -> str:
    return "shard" if array.shards is not None else "chunk"


def unit_bytes(array: zarr.Array[Any]) -> int:
    """Bytes of one whole storage unit as implementations hold it (not cut at the array's
    edge: a chunk larger than the array is still decoded and encoded whole)."""
    return itemsize(array) * math.prod(write_unit(array))


def source_chunk(array: zarr.Array[Any]) -> tuple[int, ...] | None:
    """The source's (inner) chunk shape, the most a read decodes at once; None when the
    grid is irregular."""
    try:
        return tuple(array.chunks)
    except (NotImplementedError, ValueError, TypeError):
        return None


def plan_block(shape: Sequence[int], unit: Sequence[int], itemsize: int, budget: int) -> tuple[int, ...]:
    """How many whole storage units (shards or chunks) one block spans along each axis.

    Trailing axes are filled first: a block is a row of units along the first axis when
    that fits in ``budget`` bytes, never less than one unit.

    Parameters
    ----------
    shape, unit
        The array's shape and the shape of its storage units.
    itemsize
        Bytes per element.
    budget
        The most bytes a block should hold.

    Returns
    -------
    tuple of int
        Units per block along each axis.
    """
    grid = [math.ceil(s / u) for s, u in zip(shape, unit, strict=True)]
    per_block = [1] * len(shape)
    extent = [min(s, u) for s, u in zip(shape, unit, strict=True)]
    for axis in reversed(range(len(shape))):
        others = itemsize * math.prod(e for a, e in enumerate(extent) if a != axis)
        if others * shape[axis] <= budget:
            n = grid[axis]
        else:
            n = max(1, min(grid[axis], budget // max(1, others * unit[axis])))
        per_block[axis] = max(1, n)  # an empty axis has no units, and no blocks
        extent[axis] = min(n * unit[axis], shape[axis])
        if n < grid[axis]:
            break
    return tuple(per_block)


@dataclass(frozen=True)
class Block:
    region: tuple[slice, ...]
    units: list[tuple[int, ...]]


def blocks(shape: Sequence[int], unit: Sequence[int], per_block: Sequence[int]) -> Iterator[Block]:
    """Every block of whole units, in C order, with the units it covers."""
    grid = [math.ceil(s / u) for s, u in zip(shape, unit, strict=True)]
    counts = [math.ceil(g / b) for g, b in zip(grid, per_block, strict=True)]
    for index in _grid_indices(counts):
        first = [i * b for i, b in zip(index, per_block, strict=True)]
        last = [min(f + b, g) for f, b, g in zip(first, per_block, grid, strict=True)]
        region = tuple(
            slice(f * u, min(e * u, s)) for f, e, u, s in zip(first, last, unit, shape, strict=True)
        )
        units = list(itertools.product(*(range(f, e) for f, e in zip(first, last, strict=True))))
        yield Block(region, units)


def _grid_indices(counts: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every index of a grid of ``counts``, in C order, one at a time: an axis may have more
    blocks than memory could list (``itertools.product`` first makes a tuple of each axis)."""
    if 0 in counts:
        return
    index = [0] * len(counts)
    while True:
        yield tuple(index)
        for axis in reversed(range(len(counts))):
            index[axis] += 1
            if index[axis] < counts[axis]:
                break
            index[axis] = 0
        else:
            return


def unit_region(coords: Sequence[int], unit: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(c * u, min((c + 1) * u, s)) for c, u, s in zip(coords, unit, shape, strict=True))


def _prefix(array: zarr.Array[Any]) -> str:
    path = array.store_path.path
    return f"{path}/" if path else ""


def unit_key(array: zarr.Array[Any], coords: tuple[int, ...]) -> str:
    return _prefix(array) + array.metadata.encode_chunk_key(coords)


async def _list_sizes(store: Store, prefix: str) -> dict[str, int]:
    keys = [key async for key in store.list_prefix(prefix)]
    limit = asyncio.Semaphore(64)

    async def size(key: str) -> int:
        async with limit:
            return await store.getsize(key)

    return dict(zip(keys, await asyncio.gather(*(size(key) for key in keys)), strict=True))


# A chunk key of the default or v2 encodings (not metadata, nor a stray temporary file).
CHUNK_KEY = re.compile(r"(c([./]\d+)*|\d+([./]\d+)*)")


def stored_objects(array: zarr.Array[Any]) -> dict[str, int]:
    """The array's stored objects (chunks or shards) and their sizes in bytes."""
    prefix = _prefix(array)
    sizes = sync(_list_sizes(array.store, prefix))
    return {k: v for k, v in sizes.items() if CHUNK_KEY.fullmatch(k[len(prefix):])}
