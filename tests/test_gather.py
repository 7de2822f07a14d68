"""Scattered reads on native storage go through the native gather, and match zarr's own
pipeline exactly.

``oindex`` (integer arrays sorted, unsorted and repeated, with integers, stepped slices and
masks mixed in), ``vindex`` coordinates (1-D and 2-D) and full masks, on every kind of
chunk the gather decodes differently (whole-chunk compressors, our shards, shards under a
compressor, uncompressed chunks read in part), with partial edge chunks, missing chunks
(fill value), big-endian data and Fortran-ordered arrays. Every read must be native and go
through ``gather_orthogonal`` / ``gather_points`` rather than scratch boxes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, ZARRS_PIPELINE, assert_same
from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec, ZstdCodec
from zarr.storage import LocalStore

import zarrs_cffi
from zarrs_cffi import _bindings

SHAPE = (37, 41, 23)
CHUNKS = (8, 10, 6)
FILL = 7
RNG = np.random.default_rng(11)
ROWS = np.sort(RNG.choice(SHAPE[0], 9, replace=False))
UNSORTED = np.array([30, 2, 2, 17, 36, 0, 9])
POINTS = tuple(RNG.integers(0, n, 400) for n in SHAPE)
MASK = RNG.random(SHAPE) < 0.03
AXIS_MASK = RNG.random(SHAPE[1]) < 0.4

# name -> (zarr read, numpy read, native call expected)
READS: dict[str, tuple[Any, Any, str]] = {
    "oindex-rows": (lambda a: a.oindex[ROWS, :, :], lambda d: d[ROWS], "orthogonal"),
    "oindex-unsorted-repeated": (lambda a: a.oindex[UNSORTED], lambda d: d[UNSORTED], "orthogonal"),
    "oindex-stepped": (lambda a: a.oindex[ROWS, 3::4, ::5], lambda d: d[ROWS][:, 3::4, ::5], "orthogonal"),
    "oindex-three-arrays": (
        lambda a: a.oindex[UNSORTED, [40, 0, 11], [22, 5, 5]],
        lambda d: d[np.ix_(UNSORTED, [40, 0, 11], [22, 5, 5])],
        "orthogonal",
    ),
    "oindex-int": (lambda a: a.oindex[UNSORTED, 13, 1:20:3], lambda d: d[UNSORTED, 13, 1:20:3], "orthogonal"),
    "oindex-mask-axis": (lambda a: a.oindex[:, AXIS_MASK, 4], lambda d: d[:, AXIS_MASK, 4], "orthogonal"),
    "stepped-slices": (lambda a: a[1::3, ::7, 2:21:4], lambda d: d[1::3, ::7, 2:21:4], "orthogonal"),
    "vindex": (lambda a: a.vindex[POINTS], lambda d: d[POINTS], "points"),
    "vindex-2d": (
        lambda a: a.vindex[tuple(p[:60].reshape(6, 10) for p in POINTS)],
        lambda d: d[tuple(p[:60].reshape(6, 10) for p in POINTS)],
        "points",
    ),
    "vindex-repeated": (
        lambda a: a.vindex[[36, 0, 36, 36], [40, 0, 40, 3], [22, 0, 22, 9]],
        lambda d: d[[36, 0, 36, 36], [40, 0, 40, 3], [22, 0, 22, 9]],
        "points",
    ),
    "mask": (lambda a: a.vindex[MASK], lambda d: d[MASK], "points"),
}

# name -> create_array keyword arguments
LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd": {"compressors": ZstdCodec(level=1)},
    "blosc": {"compressors": BloscCodec(cname="lz4", shuffle="shuffle")},
    "uncompressed": {"compressors": None},
    "sharded-zstd": {"shards": (16, 20, 12), "compressors": ZstdCodec(level=1)},
    "sharded-uncompressed": {"shards": (16, 20, 12), "compressors": None},
    "sharded-then-zstd": {
        "chunks": (16, 20, 12),
        "serializer": ShardingCodec(chunk_shape=CHUNKS, codecs=[BytesCodec()]),
        "compressors": ZstdCodec(level=1),
    },
}


class Spy:
    """Counts the native gather calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, int] = {"orthogonal": 0, "points": 0, "read_chunks": 0}
        for name, label in (("gather_orthogonal", "orthogonal"), ("gather_points", "points"), ("read_chunks", "read_chunks")):
            original = getattr(_bindings.NativeArray, name)

            def counted(*args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
                self.calls[_label] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(_bindings.NativeArray, name, counted)


def _write(path: Any, layout: dict[str, Any], dtype: str, order: str) -> np.ndarray[Any, Any]:
    """An array with partial edge chunks, and two chunks (or shards) left unwritten."""
    data = (np.arange(np.prod(SHAPE)) % 60_000).astype(dtype).reshape(SHAPE)
    kwargs = {"chunks": CHUNKS, **layout}
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        array = zarr.create_array(LocalStore(path), shape=SHAPE, dtype=dtype, fill_value=FILL, order=order, **kwargs)
        array[:] = data
    # Erase the chunk (shard) at the origin and one at the far edge: read as the fill value.
    expected = data.copy()
    outer = array.shards or array.chunks
    for corner in ((0, 0, 0), tuple((n - 1) // c for n, c in zip(SHAPE, outer, strict=True))):
        key = "c/" + "/".join(map(str, corner))
        (path / key).unlink()
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(corner, outer, strict=True))
        expected[region] = FILL
    return expected


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("dtype", "order"), [("uint16", "C"), (">i4", "C"), ("float64", "F")])
def test_scattered_reads_gather_natively(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, layout: str, dtype: str, order: str) -> None:
    expected = _write(tmp_path / "a", LAYOUTS[layout], dtype, order)
    spy = Spy(monkeypatch)
    for name, (read, numpy_read, call) in READS.items():
        with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
            reference = read(zarr.open_array(LocalStore(tmp_path / "a", read_only=True), mode="r"))
        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE, "codec_pipeline.strict": True}):
            zarrs_cffi.reset_stats()
            before = dict(spy.calls)
            got = read(zarr.open_array(LocalStore(tmp_path / "a", read_only=True), mode="r"))
            stats = zarrs_cffi.stats()
        assert_same(got, reference)
        assert_same(got, numpy_read(expected).astype(reference.dtype))
        assert stats.fallbacks == 0 and stats.native_reads > 0, (name, stats)
        assert spy.calls[call] > before[call], f"{name} did not go through the native gather"
        assert spy.calls["read_chunks"] == before["read_chunks"], f"{name} read scratch boxes"


def test_gather_writes_only_the_picks(tmp_path: Any) -> None:
    """The native gather leaves the output outside the picks untouched (zarr may hand a
    pipeline an output that other chunks fill)."""
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        array = zarr.create_array(LocalStore(tmp_path / "a"), shape=(20, 20), chunks=(5, 5), dtype="uint16", fill_value=3)
        array[:] = np.arange(400, dtype="uint16").reshape(20, 20)
    handle = _bindings.NativeArray.open(_bindings.Storage.filesystem(str(tmp_path / "a")))
    out = np.full((3, 2), 999, dtype="uint16")
    keys = b"c/1/2"  # rows 5..10, columns 10..15
    # Axis 0 picks rows 4, 0 of the chunk into output rows 2, 0; axis 1 column 3 into column 1.
    present = handle.gather_orthogonal(
        _bindings.Options(), keys, np.array([0, len(keys)], dtype=np.uint64), np.array([[5, 5]]),
        np.array([[[0, 2], [2, 1]]]), np.array([4, 0, 3]), np.array([2, 0, 1]), out,
    )
    assert present.tolist() == [True]
    assert out.tolist() == [[999, 5 * 20 + 13], [999, 999], [999, 9 * 20 + 13]]
