"""Every codec zarrs implements runs natively, interoperates with zarr's pipeline both ways,
and (where the codec is deterministic) stores the same bytes.

For each codec chain, Zarr v2 and v3 where zarr and numcodecs support it: two copies of one
array go through the same writes, one with zarr's own pipeline and one with ours (a whole
write, then a partial rewrite that merges into stored chunks). Ours reads zarr's copy, zarr's
pipeline reads ours, and both give the values zarr's pipeline gives for its own copy (lossy
codecs included: bitround, fixedscaleoffset). Where both implementations produce the same
stream, every stored chunk is byte-identical. Every read and write of ours is native.
"""

from __future__ import annotations

import bz2
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import numcodecs as nc

import zarrs_cffi

from conftest import ZARR_PIPELINE, ZARRS_PIPELINE

SHAPE = (40, 50)
CHUNKS = (16, 16)
# The partial rewrite: parts of several chunks, so ours decodes, merges and re-encodes them.
REGION = (slice(5, 27), slice(10, 41))


@dataclass(frozen=True)
class Chain:
    """A codec chain: the ``create_array`` arguments, and whether both implementations
    store the same bytes for it."""

    id: str
    zarr_format: int
    kwargs: Callable[[], dict[str, Any]]
    dtype: str = "float32"
    identical: bool = True
    needs: tuple[str, ...] = field(default=())


CHAINS = [
    # Zarr v2: numcodecs compressors and filters, as zarr-python 2 and xarray write them.
    # zlib: zarrs' flate2 (miniz_oxide) and CPython's zlib produce different, equally valid
    # deflate streams, so only values are compared.
    Chain("v2-zlib", 2, lambda: {"compressors": numcodecs.Zlib(level=1)}, identical=False),
    Chain("v2-bz2", 2, lambda: {"compressors": numcodecs.BZ2(level=1)}),
    Chain("v2-shuffle+zlib", 2, lambda: {
        "filters": [numcodecs.Shuffle(elementsize=4)], "compressors": numcodecs.Zlib(level=5)}, identical=False),
    Chain("v2-shuffle+zstd", 2, lambda: {
        "filters": [numcodecs.Shuffle(elementsize=4)], "compressors": numcodecs.Zstd(level=3)}),
    Chain("v2-fixedscaleoffset+zlib", 2, lambda: {
        "filters": [numcodecs.FixedScaleOffset(offset=100, scale=10, dtype="<f8", astype="<i4")],
        "compressors": numcodecs.Zlib(level=1)}, dtype="float64", identical=False),
    Chain("v2-adler32", 2, lambda: {"compressors": numcodecs.Adler32()}),
    Chain("v2-fletcher32", 2, lambda: {"compressors": numcodecs.Fletcher32()}),
    # Zarr v3: the numcodecs.* codecs zarr-python registers.
    Chain("v3-zlib", 3, lambda: {"compressors": [nc.Zlib(level=1)]}, identical=False),
    Chain("v3-bz2", 3, lambda: {"compressors": [nc.BZ2(level=9)]}),
    Chain("v3-shuffle+zlib", 3, lambda: {"compressors": [nc.Shuffle(elementsize=4), nc.Zlib(level=5)]},
          identical=False),
    Chain("v3-adler32", 3, lambda: {"compressors": [nc.Adler32()]}),
    Chain("v3-fletcher32", 3, lambda: {"compressors": [nc.Fletcher32()]}),
    Chain("v3-bitround", 3, lambda: {"filters": [nc.BitRound(keepbits=5)], "compressors": None}),
    Chain("v3-bitround-float64", 3, lambda: {"filters": [nc.BitRound(keepbits=12)], "compressors": None},
          dtype="float64"),
    Chain("v3-fixedscaleoffset", 3, lambda: {
        "filters": [nc.FixedScaleOffset(offset=0, scale=100, dtype="<f4", astype="<i4")],
        "compressors": [nc.Zlib(level=1)]}, identical=False),
    Chain("v3-pcodec", 3, lambda: {"serializer": nc.PCodec(level=8), "compressors": None}, needs=("pcodec",)),
    Chain("v3-pcodec-int64", 3, lambda: {"serializer": nc.PCodec(level=3), "compressors": None},
          dtype="int64", needs=("pcodec",)),
    Chain("v3-pcodec-sharded", 3, lambda: {
        "serializer": nc.PCodec(level=8), "compressors": None, "shards": (32, 32)}, needs=("pcodec",)),
    Chain("v3-zlib-sharded", 3, lambda: {"compressors": [nc.Zlib(level=1)], "shards": (32, 32)}, identical=False),
    Chain("v3-bz2-sharded", 3, lambda: {"compressors": [nc.BZ2(level=1)], "shards": (32, 32)}),
]


# Chains zarrs cannot open, so zarr's own pipeline runs them (counted, with this reason).
FALLBACKS = [
    # zarrs registers bitround for Zarr v3 only.
    Chain("v2-bitround", 2, lambda: {"filters": [numcodecs.BitRound(keepbits=7)], "compressors": None}),
    # numcodecs' packbits is a bytes-to-bytes filter with a padding header; zarrs' `packbits`
    # is a different (array-to-bytes) codec of the same name.
    Chain("v3-numcodecs.packbits", 3, lambda: {"filters": [nc.PackBits()], "compressors": None}, dtype="bool"),
    Chain("v2-packbits", 2, lambda: {"filters": [numcodecs.PackBits()], "compressors": None}, dtype="bool"),
    Chain("v3-numcodecs.crc32", 3, lambda: {"compressors": [nc.CRC32()]}),
    Chain("v3-numcodecs.lz4", 3, lambda: {"compressors": [nc.LZ4()]}),
    Chain("v2-delta", 2, lambda: {"filters": [numcodecs.Delta(dtype="<f4")], "compressors": None}),
]


def _values(dtype: str, seed: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(SHAPE) > 0.5
    if dtype.startswith("float"):
        # Smooth with noise: compressible, and rounding (bitround, fixedscaleoffset) matters.
        grid = np.add.outer(np.arange(SHAPE[0]), np.arange(SHAPE[1])) / 7.0
        return (np.sin(grid) * 50 + rng.normal(0, 1, SHAPE)).astype(dtype)
    return rng.integers(-(10**9), 10**9, SHAPE).astype(dtype)


def _create(chain: Chain, path: Path) -> zarr.Array[Any]:
    kwargs = chain.kwargs()
    return zarr.create_array(
        zarr.storage.LocalStore(path), shape=SHAPE, chunks=CHUNKS, dtype=chain.dtype,
        zarr_format=chain.zarr_format, fill_value=0, **kwargs,
    )


def _open(path: Path, pipeline: str) -> zarr.Array[Any]:
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        return zarr.open_array(zarr.storage.LocalStore(path))


def _chunk_files(path: Path) -> dict[str, bytes]:
    skip = {"zarr.json", ".zarray", ".zattrs", ".zgroup"}
    return {
        f.relative_to(path).as_posix(): f.read_bytes()
        for f in sorted(path.rglob("*")) if f.is_file() and f.name not in skip
    }


@pytest.mark.parametrize("chain", CHAINS, ids=[c.id for c in CHAINS])
def test_codec_interoperates_natively(tmp_path: Path, chain: Chain) -> None:
    for module in chain.needs:
        pytest.importorskip(module)
    theirs_path, ours_path = tmp_path / "zarr", tmp_path / "ours"
    whole, part = _values(chain.dtype, 1), _values(chain.dtype, 2)[REGION]

    # zarr's pipeline writes its copy: the reference for every value and byte below.
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        theirs = _create(chain, theirs_path)
        theirs[...] = whole
        first = theirs[...]
        theirs[REGION] = part
        expected = theirs[...]
    assert not np.array_equal(first, expected)

    zarrs_cffi.reset_stats()
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        # Ours reads zarr's bytes (whole and in part) ...
        reader = _open(theirs_path, ZARRS_PIPELINE)
        np.testing.assert_array_equal(reader[...], expected)
        np.testing.assert_array_equal(reader[3:20, 7:33], expected[3:20, 7:33])
        # ... and writes its own copy, merging the partial rewrite into stored chunks.
        ours = _create(chain, ours_path)
        ours[...] = whole
        np.testing.assert_array_equal(ours[...], first)
        ours[REGION] = part
        np.testing.assert_array_equal(ours[...], expected)
    s = zarrs_cffi.stats()
    assert s.fallbacks == 0, s.fallback_reasons
    assert s.native_reads > 0 and s.native_writes > 0, s

    # zarr's pipeline reads our bytes back with the same values.
    np.testing.assert_array_equal(_open(ours_path, ZARR_PIPELINE)[...], expected)

    theirs_files, ours_files = _chunk_files(theirs_path), _chunk_files(ours_path)
    assert theirs_files.keys() == ours_files.keys()
    if chain.identical:
        different = [key for key in theirs_files if theirs_files[key] != ours_files[key]]
        assert not different, f"chunks stored with different bytes: {different}"


@pytest.mark.parametrize("chain", FALLBACKS, ids=[c.id for c in FALLBACKS])
def test_codec_zarrs_lacks_falls_back(tmp_path: Path, chain: Chain) -> None:
    """The codecs zarrs lacks (README's codec table) run in zarr's pipeline, correctly,
    counted with a reason that names the codec. When zarrs gains one, this fails: move it to
    CHAINS and the README table."""
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        _create(chain, tmp_path)[...] = _values(chain.dtype, 1)
    zarrs_cffi.reset_stats()
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        z = _open(tmp_path, ZARRS_PIPELINE)
        z[REGION] = _values(chain.dtype, 2)[REGION]
        got = z[...]
    s = zarrs_cffi.stats()
    assert s.native_reads == s.native_writes == 0, s
    assert s.fallbacks > 0 and all("is not supported" in reason for reason in s.fallback_reasons), s
    np.testing.assert_array_equal(got, _open(tmp_path, ZARR_PIPELINE)[...])


def test_zlib_streams_differ_but_decode_alike(tmp_path: Path) -> None:
    """Why zlib chains compare values only: the stored streams are valid zlib both ways
    (CPython's zlib decodes ours), but not the same bytes."""
    chain = next(c for c in CHAINS if c.id == "v3-zlib")
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        ours = _create(chain, tmp_path)
        ours[...] = _values(chain.dtype, 1)
    for data in _chunk_files(tmp_path).values():
        assert len(zlib.decompress(data)) == CHUNKS[0] * CHUNKS[1] * 4


def test_bz2_chunk_is_a_standard_stream(tmp_path: Path) -> None:
    """A bz2 chunk written natively is what Python's bz2 (numcodecs) reads."""
    chain = next(c for c in CHAINS if c.id == "v2-bz2")
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        ours = _create(chain, tmp_path)
        values = _values(chain.dtype, 1)
        ours[...] = values
    chunk = np.frombuffer(bz2.decompress((tmp_path / "0.0").read_bytes()), dtype="float32")
    np.testing.assert_array_equal(chunk.reshape(CHUNKS), values[:16, :16])


@pytest.mark.parametrize(
    ("make", "bomb"),
    [
        pytest.param(lambda: [nc.Zlib(level=1)], lambda n: zlib.compress(bytes(n), 9), id="zlib"),
        pytest.param(lambda: [nc.BZ2(level=1)], lambda n: bz2.compress(bytes(n), 9), id="bz2"),
    ],
)
@pytest.mark.parametrize("size", [16 * 16 * 4 + 1, 64 << 20], ids=["one-byte-over", "64MiB"])
def test_stream_longer_than_the_chunk_is_a_codec_error(tmp_path: Path, make: Any, bomb: Any, size: int) -> None:
    """A zlib or bz2 stream that decodes past the chunk's size is a ZarrsCodecError naming
    the chunk key, decided without decoding it all (a 64 MiB bomb for a 1 KiB chunk)."""
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        z = zarr.create_array(zarr.storage.LocalStore(tmp_path), shape=(32, 32), chunks=(16, 16),
                              dtype="float32", compressors=make())
        z[...] = 1.0
    (tmp_path / "c" / "0" / "1").write_bytes(bomb(size))
    zarrs_cffi.reset_stats()
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        z = zarr.open_array(zarr.storage.LocalStore(tmp_path))
        np.testing.assert_array_equal(z[:16, :16], 1.0)
        with pytest.raises(zarrs_cffi.ZarrsCodecError, match=r"c/0/1.*more than the chunk's 1024 bytes"):
            z[...]
    assert zarrs_cffi.stats().fallbacks == 0


def test_pcodec_stream_of_more_numbers_is_a_codec_error(tmp_path: Path) -> None:
    """A pcodec chunk holding more numbers than the chunk is refused before they are
    decoded; one holding fewer is refused too."""
    pcodec = pytest.importorskip("pcodec")
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        z = zarr.create_array(zarr.storage.LocalStore(tmp_path), shape=(32, 32), chunks=(16, 16),
                              dtype="float32", serializer=nc.PCodec(level=8), compressors=None)
        z[...] = 2.0
    key = tmp_path / "c" / "0" / "1"
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        z = zarr.open_array(zarr.storage.LocalStore(tmp_path))
        for n, message in [(1 << 22, "more than the chunk's 256 numbers"), (255, "holds 255 numbers")]:
            key.write_bytes(pcodec.standalone.simple_compress(np.zeros(n, dtype="float32"), pcodec.ChunkConfig()))
            with pytest.raises(zarrs_cffi.ZarrsCodecError, match=rf"c/0/1.*{message}"):
                z[...]
        # The wrong number type (int32 numbers in a float32 array) is refused, not reinterpreted.
        key.write_bytes(pcodec.standalone.simple_compress(np.zeros(256, dtype="int32"), pcodec.ChunkConfig()))
        with pytest.raises(zarrs_cffi.ZarrsCodecError, match=r"c/0/1.*pcodec"):
            z[...]


def _zarrs_only_metadata(codecs: list[dict[str, Any]], chunks: tuple[int, int], dtype: str = "float32") -> dict[str, Any]:
    return {
        "zarr_format": 3, "node_type": "array", "shape": [300, 260], "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0, "codecs": codecs,
    }


@pytest.mark.parametrize("chunks", [(200, 130), (10, 20)], ids=["pages", "one-page"])
def test_gdeflate_round_trips_through_the_direct_api(tmp_path: Path, chunks: tuple[int, int]) -> None:
    """zarrs' gdeflate codec (no zarr-python implementation, so the direct API): chunks of
    two 64 KiB pages (200x130 float32, 104,000 bytes; zarrs' own decoder panics on them)
    and of one page write, read back whole and in part."""
    metadata = _zarrs_only_metadata([{"name": "bytes", "configuration": {"endian": "little"}},
                                     {"name": "zarrs.gdeflate", "configuration": {"level": 5}}], chunks)
    a = zarrs_cffi.Array.create(tmp_path, metadata)
    values = _values("float32", 3)
    values = np.tile(values, (8, 6))[:300, :260]
    a[...] = values
    np.testing.assert_array_equal(zarrs_cffi.Array.open(tmp_path)[...], values)
    np.testing.assert_array_equal(zarrs_cffi.Array.open(tmp_path)[17:211, 3:250], values[17:211, 3:250])
    # A header declaring more than the chunk holds is a codec error naming the chunk.
    key = tmp_path / "c" / "0" / "0"
    stored = bytearray(key.read_bytes())
    stored[:8] = (1 << 40).to_bytes(8, "little")
    key.write_bytes(bytes(stored))
    with pytest.raises(zarrs_cffi.ZarrsCodecError, match=r"c/0/0.*gdeflate header declares 1099511627776 bytes"):
        zarrs_cffi.Array.open(tmp_path)[...]
