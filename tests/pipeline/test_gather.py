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
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
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
            original = getattr(_bindings.ArrayHandle, name)

            def counted(*args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
                self.calls[_label] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(_bindings.ArrayHandle, name, counted)


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
    handle = _bindings.ArrayHandle.open(_bindings.Storage.filesystem(str(tmp_path / "a")))
    out = np.full((3, 2), 999, dtype="uint16")
    keys = b"c/1/2"  # rows 5..10, columns 10..15
    # Axis 0 picks rows 4, 0 of the chunk into output rows 2, 0; axis 1 column 3 into column 1.
    present = handle.gather_orthogonal(
        _bindings.Options(), keys, np.array([0, len(keys)], dtype=np.uint64), np.array([[5, 5]]),
        np.array([[[0, 2], [2, 1]]]), np.array([4, 0, 3]), np.array([2, 0, 1]), out,
    )
    assert present.tolist() == [True]
    assert out.tolist() == [[999, 5 * 20 + 13], [999, 999], [999, 9 * 20 + 13]]


# Chunks of 1 MiB (float32, 1024 x 256), where a gather decodes only the part of a chunk its
# picks need: a zstd chunk's prefix up to the last pick (a frame has eight or more blocks),
# a blosc chunk's blocks holding picks. Rows past 4096 make a partial edge chunk.
BIG_SHAPE = (4096 + 300, 256)
BIG_CHUNKS = (1024, 256)
BIG_LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd": {"compressors": ZstdCodec(level=1)},
    "zstd-crc32c": {"compressors": (ZstdCodec(level=1), Crc32cCodec())},
    "zstd-checksum": {"compressors": ZstdCodec(level=1, checksum=True)},
    "blosc": {"compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")},
    "blosc-small-blocks": {"compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", blocksize=16384)},
    "sharded-zstd": {"shards": (2048, 256), "compressors": ZstdCodec(level=1)},
    "sharded-blosc": {"shards": (2048, 256), "compressors": BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", blocksize=16384)},
}
# Rows at chunk starts and ends (and the array's last), columns at a row's first and last
# element: the first and last byte of a chunk, and picks just either side of a boundary.
EDGE_ROWS = np.array([0, 1, 1023, 1024, 2047, 2048, 3071, 4095, 4096, 4395])
EDGE_POINTS = (
    np.array([0, 1023, 1023, 1024, 2047, 2048, 3000, 4095, 4096, 4395, 5, 1023]),
    np.array([0, 255, 0, 0, 255, 128, 17, 255, 0, 255, 5, 254]),
)
RNG_BIG_POINTS = (np.random.default_rng(5).integers(0, BIG_SHAPE[0], 40), np.random.default_rng(6).integers(0, 256, 40))
BIG_READS: dict[str, tuple[Any, Any, str]] = {
    "one-row-each": (lambda a: a.oindex[[5, 1500, 2600, 4300]], lambda d: d[[5, 1500, 2600, 4300]], "orthogonal"),
    "edge-rows": (lambda a: a.oindex[EDGE_ROWS], lambda d: d[EDGE_ROWS], "orthogonal"),
    "edge-rows-unsorted": (lambda a: a.oindex[EDGE_ROWS[::-1]], lambda d: d[EDGE_ROWS[::-1]], "orthogonal"),
    "last-byte": (lambda a: a.oindex[[1023, 4395], [255]], lambda d: d[np.ix_([1023, 4395], [255])], "orthogonal"),
    "first-columns": (lambda a: a.oindex[EDGE_ROWS, [0, 1]], lambda d: d[np.ix_(EDGE_ROWS, [0, 1])], "orthogonal"),
    "edge-points": (lambda a: a.vindex[EDGE_POINTS], lambda d: d[EDGE_POINTS], "points"),
    "random-points": (
        lambda a: a.vindex[RNG_BIG_POINTS],
        lambda d: d[RNG_BIG_POINTS],
        "points",
    ),
}


@pytest.mark.parametrize("layout", list(BIG_LAYOUTS))
@pytest.mark.parametrize("dtype", ["float32", ">f4"])
def test_gathers_from_big_chunks_equal_numpy(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, layout: str, dtype: str) -> None:
    """Picks at a chunk's first and last bytes, either side of chunk boundaries and in a
    missing chunk (fill value) read exactly what numpy reads, natively, whatever part of
    each chunk the gather decodes."""
    data = (np.arange(np.prod(BIG_SHAPE), dtype=np.float64) * 0.5 % 100_000).astype(dtype).reshape(BIG_SHAPE)
    path = tmp_path / "a"
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        array = zarr.create_array(LocalStore(path), shape=BIG_SHAPE, dtype=dtype, fill_value=FILL, chunks=BIG_CHUNKS, **BIG_LAYOUTS[layout])
        array[:] = data
    # Erase the chunk (shard) holding rows 2048.. (a shard: rows 2048..4095).
    (path / "c/2/0" if "sharded" not in layout else path / "c/1/0").unlink()
    expected = data.copy()
    expected[2048:3072 if "sharded" not in layout else 4096] = FILL
    spy = Spy(monkeypatch)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE, "codec_pipeline.strict": True}):
        array = zarr.open_array(LocalStore(path, read_only=True), mode="r")
        for name, (read, numpy_read, call) in BIG_READS.items():
            before = dict(spy.calls)
            zarrs_cffi.reset_stats()
            got = read(array)
            assert got.dtype.str[1:] == "f4" and np.array_equal(got, numpy_read(expected)), name
            assert zarrs_cffi.stats().fallbacks == 0, name
            assert spy.calls[call] > before[call], f"{name} did not go through the native gather"


def _zstd_blocks(frame: bytes) -> list[tuple[int, int, int]]:
    """The blocks of the zstd frame at the start of `frame`: (header offset, type, size)."""
    descriptor = frame[4]
    single_segment = descriptor >> 5 & 1
    header = 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3] + (single_segment, 2, 4, 8)[descriptor >> 6]
    blocks = []
    while True:
        word = int.from_bytes(frame[header : header + 3], "little")
        last, kind, size = word & 1, word >> 1 & 3, word >> 3
        blocks.append((header, kind, size))
        header += 3 + (1 if kind == 1 else size)
        if last:
            return blocks


def _forge_last_zstd_block(frame: bytes) -> bytes:
    """`frame` with its last block, compressed, relabelled as a raw block of the same
    length: every earlier block decodes as before, the frame no longer does (it decodes to
    fewer bytes than it declares, so zstd fails at its end)."""
    blocks = _zstd_blocks(frame)
    assert len(blocks) >= 8, blocks
    at, kind, size = blocks[-1]
    assert kind == 2
    forged = bytearray(frame)
    forged[at : at + 3] = (1 | size << 3).to_bytes(3, "little")
    return bytes(forged)


def _forge_last_blosc_block(frame: bytes) -> bytes:
    """`frame` (blosc1) with its last block's first compressed length set to 1: the blocks
    before it decode as before, the last no longer does."""
    nbytes, blocksize = (int.from_bytes(frame[at : at + 4], "little") for at in (4, 8))
    blocks = -(-nbytes // blocksize)
    assert blocks >= 8, (nbytes, blocksize)
    start = int.from_bytes(frame[16 + 4 * (blocks - 1) : 20 + 4 * (blocks - 1)], "little")
    return frame[:start] + (1).to_bytes(4, "little") + frame[start + 4 :]


@pytest.mark.parametrize("layout", ["zstd", "blosc-small-blocks", "sharded-zstd", "sharded-blosc"])
def test_gather_decodes_only_the_part_holding_its_picks(tmp_path: Any, layout: str) -> None:
    """The proof that a gather decodes less: with the last block of a chunk (an inner chunk
    of a shard) forged so that the chunk no longer decodes, picks before that block still
    read (only the prefix, or the blocks holding them, were decoded), while a pick in it,
    and a read of the whole chunk, is a ZarrsCodecError naming the key. This is the known
    cost of decoding less: corruption in a part not decoded goes unseen."""
    data = (np.arange(np.prod(BIG_SHAPE), dtype=np.float64) % 99_991).astype("float32").reshape(BIG_SHAPE)
    path = tmp_path / "a"
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        array = zarr.create_array(LocalStore(path), shape=BIG_SHAPE, dtype="float32", chunks=BIG_CHUNKS, **BIG_LAYOUTS[layout])
        array[:] = data
    forge = _forge_last_zstd_block if "zstd" in layout else _forge_last_blosc_block
    stored = (path / "c/0/0").read_bytes()
    if "sharded" in layout:
        # Inner chunk 0 of shard c/0/0 (rows 0..1023): the index (offset, length per inner
        # chunk, then a crc32c) is at the end; the forgery keeps the chunk's length.
        offset, length = (int.from_bytes(stored[-(2 * 16 + 4) + at : -(2 * 16 + 4) + at + 8], "little") for at in (0, 8))
        chunk = forge(stored[offset : offset + length])
        forged = stored[:offset] + chunk + stored[offset + length :]
    else:
        forged = forge(stored)
    assert len(forged) == len(stored)
    (path / "c/0/0").write_bytes(forged)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE, "codec_pipeline.strict": True}):
        array = zarr.open_array(LocalStore(path, read_only=True), mode="r")
        assert np.array_equal(array.oindex[[0, 3, 1500]], data[[0, 3, 1500]])
        assert np.array_equal(array.vindex[[0, 7, 2000], [3, 255, 1]], data[[0, 7, 2000], [3, 255, 1]])
        for read in (lambda: array.oindex[[0, 1023]], lambda: array.vindex[[1023], [255]], lambda: array[:1024]):
            with pytest.raises(zarrs_cffi.ZarrsCodecError, match=r"^c/0/0 in "):
                read()
