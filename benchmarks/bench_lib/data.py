"""The benchmark's arrays: their layouts, their data, and the selections read from them.

Everything here is deterministic (seeded), so every implementation reads and writes the
same bytes and every result can be checked against the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, ZstdCodec

from .settings import BOX_SIDE, CHUNK, N_OINDEX, N_VINDEX, SEED, SHARD


@dataclass(frozen=True)
class Layout:
    name: str
    shards: tuple[int, ...] | None
    compressors: tuple[Any, ...] | None  # None = uncompressed

    def create_kwargs(self) -> dict[str, Any]:
        return {"chunks": CHUNK, "shards": self.shards, "compressors": self.compressors}


LAYOUTS = {
    layout.name: layout
    for layout in (
        Layout("zstd", None, (ZstdCodec(level=1),)),
        Layout("zstd-sharded", SHARD, (ZstdCodec(level=1),)),
        Layout(
            "blosc-lz4", None, (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)
        ),
        Layout("raw-sharded", SHARD, None),
    )
}


def make_data(side: int) -> np.ndarray:
    """Deterministic, compressible volume: a repeating diagonal ramp plus 2 bits of seeded noise.

    The noise keeps compressors from degenerating into run-length encoding.
    """
    rng = np.random.default_rng(SEED)
    idx = np.arange(side, dtype=np.int64)
    plane = idx[:, None] * 3 + idx[None, :]
    data = np.empty((side, side, side), dtype=np.uint16)
    # Slab by slab, so no int64 temporary of the whole volume is ever allocated.
    for z in range(side):
        data[z] = (plane + 7 * z) % 4096 + rng.integers(0, 4, size=(side, side))
    return data


def random_boxes(side: int, count: int) -> list[tuple[slice, ...]]:
    rng = np.random.default_rng(SEED + 1)
    starts = rng.integers(0, side - BOX_SIDE + 1, size=(count, 3))
    return [tuple(slice(int(s), int(s) + BOX_SIDE) for s in row) for row in starts]


def same(result: Any, expected: np.ndarray) -> bool:
    return (
        isinstance(result, np.ndarray)
        and result.dtype == expected.dtype
        and np.array_equal(result, expected)
    )


def fancy_selections(side: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The oindex rows (sorted, distinct) and the vindex points."""
    rng = np.random.default_rng(SEED + 2)
    rows = np.sort(rng.choice(side, size=N_OINDEX, replace=False))
    points = tuple(rng.integers(0, side, size=N_VINDEX) for _ in range(3))
    return rows, points


def source_file(data: np.ndarray, workdir: Path) -> Path:
    """The source data as raw bytes in C order (written once per shape), for the Rust binary
    and the memory children."""
    path = workdir / f"source-{'x'.join(map(str, data.shape))}-{data.dtype}.bin"
    if not path.exists():
        data.tofile(path)
    return path

