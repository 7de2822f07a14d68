"""Bad input gives a clear Python exception, never a crash or silently wrong data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, ZARRS_PIPELINE, assert_no_fallback, assert_same, chunk_keys, make_data, native_only
from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec
from zarr.storage import LocalStore

import zarrs_cffi
from zarrs_cffi import Array, ZarrsChecksumError, ZarrsCodecError, ZarrsStorageError, ZarrsValueError

SHAPE = (40,)
CHUNKS = (10,)

CODECS: dict[str, dict[str, Any]] = {
    "bytes": {"compressors": None},
    "blosc": {"compressors": [BloscCodec(cname="lz4")]},
    "gzip": {"compressors": [GzipCodec(level=1)]},
    "zstd": {"compressors": [ZstdCodec(level=1)]},
    "crc32c": {"compressors": [Crc32cCodec()]},
    "sharding": {"shards": (20,), "compressors": [ZstdCodec(level=1)]},
}


def _create(path: Path, codec: str = "bytes", **kwargs: Any) -> tuple[zarr.Array, np.ndarray[Any, Any]]:
    kwargs = {**CODECS[codec], **kwargs}
    arr = zarr.create_array(LocalStore(path), shape=SHAPE, chunks=CHUNKS, dtype="int32", fill_value=0, **kwargs)
    data = np.arange(SHAPE[0], dtype="int32") * 3 + 1
    arr[:] = data
    return arr, data


# --- corrupt and truncated chunks ----------------------------------------------------------


@pytest.mark.parametrize("codec", ["bytes", "blosc", "gzip", "zstd", "crc32c", "sharding"])
def test_corrupt_chunk_raises_codec_error(tmp_path, zarrs_pipeline, codec):
    arr, data = _create(tmp_path, codec)
    # The first chunk (or shard).
    (tmp_path / "c" / "0").write_bytes(b"not a chunk, just garbage " * 7)
    with pytest.raises(ZarrsCodecError) as info:
        arr[:]
    assert isinstance(info.value, ValueError)
    assert str(info.value)
    # A partial write has to decode the chunk first: the same error.
    with pytest.raises(ZarrsCodecError):
        arr[2:5] = 7
    # The rest of the array is intact and still read natively.
    with native_only(reads=True):
        assert_same(arr[20:], data[20:])


@pytest.mark.parametrize(
    ("codec", "length"),
    [(codec, length) for codec in ("bytes", "blosc", "gzip", "zstd", "crc32c", "sharding") for length in ("half", "empty")],
)
def test_truncated_chunk_raises_codec_error(tmp_path, zarrs_pipeline, codec, length):
    arr, data = _create(tmp_path, codec)
    path = tmp_path / "c" / "1"
    stored = path.read_bytes()
    path.write_bytes(stored[: len(stored) // 2] if length == "half" else b"")
    with pytest.raises(ZarrsCodecError) as info:
        arr[:]
    assert isinstance(info.value, ValueError)
    with native_only(reads=True):
        assert_same(arr[:10], data[:10])


@pytest.mark.parametrize("layout", ["chunks", "shards"])
def test_string_chunk_with_lengths_past_its_end_raises_codec_error(tmp_path, zarrs_pipeline, layout):
    # vlen-utf8 chunks whose element lengths run past the chunk: zarrs sliced by them and
    # panicked (ZarrsPanicError); in shards too, through zarrs' sharding codec.
    import struct

    shards = {"shards": (8,)} if layout == "shards" else {}
    arr = zarr.create_array(
        LocalStore(tmp_path), shape=(8,), chunks=(4,), dtype=str, fill_value="", compressors=None, **shards
    )
    arr[:] = np.array(list("abcdefgh"))
    bogus = struct.pack("<II", 4, 0xFFFFFFF0) + b"abcd"
    if layout == "shards":
        # One inner chunk, then the index (offset, length per inner chunk; no checksum
        # codec is assumed: rewrite the index with the same codecs zarr used).
        meta = arr.metadata.codecs[0]
        index_codecs = [c.to_dict()["name"] for c in meta.index_codecs]
        index = struct.pack("<QQQQ", 0, len(bogus), 2**64 - 1, 2**64 - 1)
        if "crc32c" in index_codecs:
            import crc32c

            index += struct.pack("<I", crc32c.crc32c(index))
        (tmp_path / "c" / "0").write_bytes(bogus + index)
    else:
        (tmp_path / "c" / "0").write_bytes(bogus)
    with pytest.raises(ZarrsCodecError, match="declares 4294967280 bytes"):
        arr[:]


def test_gzip_bytes_after_the_member_raise_codec_error(tmp_path, zarrs_pipeline):
    # zarr's gzip raises on them (BadGzipFile); they used to be ignored.
    arr, data = _create(tmp_path, "gzip")
    path = tmp_path / "c" / "0"
    path.write_bytes(path.read_bytes() + b"trailing garbage")
    with pytest.raises(ZarrsCodecError, match="after its last member"):
        arr[:]
    with native_only(reads=True):
        assert_same(arr[10:], data[10:])


def test_full_overwrite_of_corrupt_chunk_needs_no_decode(tmp_path, zarrs_pipeline):
    arr, data = _create(tmp_path, "zstd")
    (tmp_path / "c" / "0").write_bytes(b"garbage")
    with native_only(writes=True, reads=True):
        arr[0:10] = 5
        data[0:10] = 5
        assert_same(arr[:], data)


def test_chunk_that_is_a_directory_raises_storage_error(tmp_path, zarrs_pipeline):
    arr, _ = _create(tmp_path)
    chunk = tmp_path / "c" / "2"
    chunk.unlink()
    chunk.mkdir()
    with pytest.raises(ZarrsStorageError) as info:
        arr[:]
    assert isinstance(info.value, OSError)
    with pytest.raises(ZarrsStorageError):
        arr[20:30] = 1


def test_error_in_a_large_batch(tmp_path, zarrs_pipeline):
    # Enough chunks to take the threaded path; one of them is corrupt.
    arr = zarr.create_array(LocalStore(tmp_path), shape=(400, 400), chunks=(20, 20), dtype="float64", compressors=[BloscCodec()])
    data = make_data("float64", (400, 400), seed=50)
    arr[:] = data
    (tmp_path / "c" / "13" / "7").write_bytes(b"\x00" * 100)
    with pytest.raises(ZarrsCodecError):
        arr[:]
    with native_only(reads=True):
        assert_same(arr[:260], data[:260])


# --- checksums -----------------------------------------------------------------------------


def _flip_a_data_byte(path: Path) -> None:
    stored = bytearray(path.read_bytes())
    stored[0] ^= 0xFF  # the first element's low byte (the crc32c is at the end)
    path.write_bytes(bytes(stored))


def test_checksum_mismatch_raises_checksum_error(tmp_path, zarrs_pipeline):
    arr, data = _create(tmp_path, "crc32c")
    _flip_a_data_byte(tmp_path / "c" / "1")
    with pytest.raises(ZarrsChecksumError) as info:
        arr[10:20]
    assert isinstance(info.value, ZarrsCodecError)
    assert isinstance(info.value, ValueError)
    # A partial write decodes the stored chunk first: the same error, nothing written.
    stored = (tmp_path / "c" / "1").read_bytes()
    with pytest.raises(ZarrsChecksumError):
        arr[12:14] = 0
    assert (tmp_path / "c" / "1").read_bytes() == stored
    with native_only(reads=True):
        assert_same(arr[:10], data[:10])
        assert_same(arr[20:], data[20:])


@pytest.mark.parametrize("index", [10, slice(10, 12), slice(12, 14)], ids=["int", "flipped-slice", "other-slice"])
def test_checksum_mismatch_raises_on_partial_reads(tmp_path, zarrs_pipeline, index):
    arr, _ = _create(tmp_path, "crc32c")
    _flip_a_data_byte(tmp_path / "c" / "1")
    with pytest.raises(ZarrsChecksumError):
        arr[index]


def test_zarr_pipeline_also_rejects_the_checksum(tmp_path):
    # The reference behaviour: zarr's own pipeline refuses the same chunk.
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        arr, _ = _create(tmp_path, "crc32c")
        _flip_a_data_byte(tmp_path / "c" / "1")
        with pytest.raises(ValueError, match="checksum"):
            arr[10:20]


def test_direct_api_checksum_mismatch(tmp_path):
    _create(tmp_path, "crc32c")
    _flip_a_data_byte(tmp_path / "c" / "1")
    arr = Array.open(tmp_path)
    with pytest.raises(ZarrsChecksumError):
        arr[10:20]
    with pytest.raises(ZarrsChecksumError):
        arr.read_chunk((1,))


def test_direct_api_checksum_mismatch_on_partial_reads(tmp_path):
    _create(tmp_path, "crc32c")
    _flip_a_data_byte(tmp_path / "c" / "1")
    with pytest.raises(ZarrsChecksumError):
        Array.open(tmp_path)[10:12]


@pytest.mark.parametrize("index", [slice(0, 10), slice(0, 3), 0], ids=["inner-chunk", "part", "int"])
def test_checksum_mismatch_inside_a_shard_raises_on_partial_reads(tmp_path, zarrs_pipeline, index):
    # Shards of two inner chunks, each bytes + crc32c; the first inner chunk is corrupted.
    arr, _ = _create(tmp_path, "sharding", compressors=[Crc32cCodec()])
    _flip_a_data_byte(tmp_path / "c" / "0")
    with pytest.raises(ZarrsChecksumError):
        arr[index]


def test_checksum_mismatch_inside_a_shard_raises_on_whole_shard_reads(tmp_path, zarrs_pipeline):
    arr, data = _create(tmp_path, "sharding", compressors=[Crc32cCodec()])
    _flip_a_data_byte(tmp_path / "c" / "0")
    with pytest.raises(ZarrsChecksumError):
        arr[0:20]
    with native_only(reads=True):
        assert_same(arr[20:], data[20:])


def test_validate_checksums_false_skips_the_check(tmp_path, zarrs_pipeline):
    with zarr.config.set({"codec_pipeline.validate_checksums": False}):
        arr, data = _create(tmp_path, "crc32c")
    _flip_a_data_byte(tmp_path / "c" / "1")
    expected = data.copy()
    expected.view(np.uint8)[10 * 4] ^= 0xFF
    with native_only(reads=True):
        assert_same(arr[:], expected)


# --- read-only stores ----------------------------------------------------------------------


def _read_only_write_error(path: Path, pipeline: str, write: Any) -> BaseException:
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        arr = zarr.open_array(LocalStore(path, read_only=True), mode="r")
        with pytest.raises(Exception) as info:
            write(arr)
    return info.value


@pytest.mark.parametrize(
    "write",
    [
        lambda a: a.__setitem__(slice(None), 5),
        lambda a: a.__setitem__(slice(3, 17), np.arange(14, dtype="int32")),
        lambda a: a.__setitem__(7, 1),
    ],
    ids=["full", "partial", "scalar"],
)
def test_read_only_store_write_raises_zarrs_own_error(tmp_path, zarrs_pipeline, write):
    _, data = _create(tmp_path, "zstd")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    zarrs_cffi.reset_stats()
    ours = _read_only_write_error(tmp_path, ZARRS_PIPELINE, write)
    assert_no_fallback()
    theirs = _read_only_write_error(tmp_path, ZARR_PIPELINE, write)
    assert type(ours) is type(theirs)
    assert str(ours) == str(theirs)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    # Reading through the read-only store is native.
    arr = zarr.open_array(LocalStore(tmp_path, read_only=True), mode="r")
    with native_only(reads=True):
        assert_same(arr[:], data)


def test_read_only_direct_api_write_raises(tmp_path):
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        _, data = _create(tmp_path)
    arr = Array.open(tmp_path, read_only=True)
    with pytest.raises(zarrs_cffi.ZarrsReadOnlyError):
        arr[0:5] = 1
    with pytest.raises(zarrs_cffi.ZarrsReadOnlyError):
        arr.erase_chunk((0,))
    assert_same(arr[:], data)


# --- direct API misuse ---------------------------------------------------------------------


@pytest.fixture
def direct(tmp_path) -> Array:
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        arr = zarr.create_array(LocalStore(tmp_path), shape=(10, 12), chunks=(4, 5), dtype="float32", fill_value=0)
        arr[:] = np.arange(120, dtype="float32").reshape(10, 12)
    return Array.open(tmp_path)


def test_out_with_wrong_dtype(direct):
    with pytest.raises(ZarrsValueError, match="dtype"):
        direct.read((slice(0, 4),), out=np.empty((4, 12), dtype="float64"))
    # Same width, different type: still refused.
    with pytest.raises(ZarrsValueError):
        direct.read((slice(0, 4),), out=np.empty((4, 12), dtype="int32"))


def test_out_with_wrong_shape(direct):
    with pytest.raises(ZarrsValueError, match="shape"):
        direct.read((slice(0, 4),), out=np.empty((4, 11), dtype="float32"))
    with pytest.raises(ZarrsValueError, match="shape"):
        direct.read((3,), out=np.empty((1, 12), dtype="float32"))


def test_out_not_contiguous(direct):
    out = np.zeros((4, 24), dtype="float32")[:, ::2]
    with pytest.raises(ZarrsValueError, match="contiguous"):
        direct.read((slice(0, 4),), out=out)
    assert not out.any()
    fortran = np.zeros((10, 12), dtype="float32", order="F")
    with pytest.raises(ZarrsValueError, match="contiguous"):
        direct.read((), out=fortran)


def test_out_read_only(direct):
    out = np.zeros((10, 12), dtype="float32")
    out.flags.writeable = False
    with pytest.raises(ZarrsValueError, match="writeable"):
        direct.read((), out=out)


def test_read_chunk_out_mismatch(direct):
    with pytest.raises(ZarrsValueError):
        direct.read_chunk((0, 0), out=np.empty((4, 5), dtype="float64"))
    with pytest.raises(ZarrsValueError):
        direct.read_chunk((0, 0), out=np.empty((4, 4), dtype="float32"))
    with pytest.raises(ZarrsValueError):
        direct.read_chunk((0, 0), out=np.empty((4, 10), dtype="float32")[:, ::2])


@pytest.mark.parametrize(
    "key",
    [(10,), (-11,), (0, 12), (slice(None), -13)],
    ids=["row", "negative-row", "column", "negative-column"],
)
def test_out_of_bounds_index(direct, key):
    with pytest.raises(IndexError):
        direct[key]
    with pytest.raises(IndexError):
        direct[key] = 1.0


def test_chunk_indices_of_the_wrong_length(direct):
    with pytest.raises(ZarrsValueError):
        direct.read_chunk((0,))
    with pytest.raises(ZarrsValueError):
        direct.write_chunk((0, 0, 0), np.zeros((4, 5), dtype="float32"))
    with pytest.raises(ZarrsValueError):
        direct.chunk_key((0, 0, 0))
    with pytest.raises(ZarrsValueError):
        direct.erase_chunk(())


@pytest.mark.parametrize("indices", [(3, 0), (0, 3), (99, 99)])
def test_read_chunk_outside_the_grid(direct, indices):
    assert direct.chunk_grid_shape == (3, 3)
    with pytest.raises(ZarrsValueError):
        direct.read_chunk(indices)


@pytest.mark.parametrize("indices", [(3, 0), (0, 3)])
def test_write_chunk_outside_the_grid(direct, tmp_path, indices):
    before = chunk_keys(tmp_path)
    with pytest.raises(ZarrsValueError):
        direct.write_chunk(indices, np.ones((4, 5), dtype="float32"))
    assert chunk_keys(tmp_path) == before


def test_write_chunk_with_wrong_shape(direct):
    with pytest.raises(ZarrsValueError):
        direct.write_chunk((0, 0), np.zeros((4, 4), dtype="float32"))
    # The chunk is unchanged.
    assert_same(direct.read_chunk((0, 0)), np.arange(120, dtype="float32").reshape(10, 12)[:4, :5])


def test_write_value_that_does_not_broadcast(direct):
    with pytest.raises(ValueError):
        direct[0:4, 0:5] = np.zeros((3, 5), dtype="float32")


@pytest.mark.parametrize("key", [(slice(None, None, 2),), (slice(0, 4), slice(1, 9, 3))], ids=["step-2", "step-3"])
def test_stepped_slices_read_and_write_as_zarr_does(direct, key):
    expected = np.arange(120, dtype="float32").reshape(10, 12)
    assert_same(direct[key], expected[key])
    direct[key] = 1.0
    expected[key] = 1.0
    assert_same(direct[:], expected)


def test_a_reversed_slice_is_an_index_error_as_in_zarr(direct):
    with pytest.raises(IndexError, match="step"):
        direct[::-1]


@pytest.mark.parametrize("key", [(None,), ("a",), (1.5,), (True,)], ids=str)
def test_indices_zarr_refuses_are_index_errors(direct, key):
    with pytest.raises(IndexError):
        direct[key]
    with pytest.raises(IndexError):
        direct[key] = 1.0


def test_too_many_indices(direct):
    with pytest.raises(IndexError, match="too many"):
        direct[0, 0, 0]
    with pytest.raises(IndexError, match="too many"):
        direct[0, 0, 0] = 1.0


def test_array_still_usable_after_errors(direct):
    for bad in ((10,), (slice(None, None, -1),)):
        with pytest.raises((IndexError, ZarrsValueError)):
            direct[bad]
    assert_same(direct[:], np.arange(120, dtype="float32").reshape(10, 12))


def test_open_errors(tmp_path):
    with pytest.raises(zarrs_cffi.ZarrsError):
        Array.open(tmp_path / "nothing-here")
    os.makedirs(tmp_path / "bad")
    (tmp_path / "bad" / "zarr.json").write_text("{not json")
    with pytest.raises(zarrs_cffi.ZarrsMetadataError) as info:
        Array.open(tmp_path / "bad")
    assert isinstance(info.value, ValueError)


# --- hostile bytes: never a signal, always a clear error naming the chunk -------------------

_CHILD = """
import resource, sys
# A runaway allocation fails fast instead of swapping the machine.
try:
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
except (ValueError, OSError):
    pass
import numpy as np
import zarrs_cffi
from zarrs_cffi import Array
try:
{body}
except zarrs_cffi.ZarrsError as exc:
    print(type(exc).__name__ + ": " + str(exc))
    sys.exit(0)
print("returned")
"""


def _in_child(path: Path, body: str) -> str:
    """Run ``body`` (Python reading the array at ``path``) in a child process with a bounded
    address space; return what it printed. A signal (SIGABRT from a failed allocation) fails
    the test instead of killing pytest."""
    import subprocess
    import sys
    import textwrap

    script = _CHILD.format(body=textwrap.indent(textwrap.dedent(body), "    "))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env={**os.environ, "ARRAY": str(path)}
    )
    assert proc.returncode == 0, f"the child died with {proc.returncode} (negative: a signal): {proc.stderr[-2000:]}"
    return proc.stdout.strip()


def _zstd_frame_header(content_size: int | None) -> bytes:
    magic = (0xFD2FB528).to_bytes(4, "little")
    if content_size is None:
        # No content size, no single segment: a window descriptor (128 KiB window) follows.
        return magic + bytes([0x00, (17 - 10) << 3])
    # Single segment, 8-byte frame content size.
    return magic + bytes([0xE0]) + content_size.to_bytes(8, "little")


def test_zstd_frame_declaring_2_46_bytes_is_a_codec_error(tmp_path):
    zarr.create_array(LocalStore(tmp_path), shape=(65536,), chunks=(65536,), dtype="uint32", compressors=[ZstdCodec()])
    # 20 bytes: a frame that declares 2^46 bytes of content, then one last raw block of 4.
    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "0").write_bytes(_zstd_frame_header(1 << 46) + (4 << 3 | 1).to_bytes(3, "little") + b"\x00" * 4)
    out = _in_child(tmp_path, "Array.open(__import__('os').environ['ARRAY'])[0:10]")
    assert out.startswith("ZarrsCodecError: "), out
    assert "c/0" in out and "70368744177664" in out and "262144" in out, out


def test_streaming_zstd_bomb_is_capped(tmp_path):
    zarr.create_array(LocalStore(tmp_path), shape=(1024,), chunks=(1024,), dtype="uint8", compressors=[ZstdCodec()])
    # A frame without a content size: 2^19 RLE blocks of 128 KiB each, 64 GiB in 2 MiB.
    block = ((128 << 10) << 3 | 1 << 1).to_bytes(3, "little") + b"\x07"
    last = ((128 << 10) << 3 | 1 << 1 | 1).to_bytes(3, "little") + b"\x07"
    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "0").write_bytes(_zstd_frame_header(None) + block * ((1 << 19) - 1) + last)
    out = _in_child(tmp_path, "Array.open(__import__('os').environ['ARRAY'])[:]")
    assert out.startswith("ZarrsCodecError: "), out
    assert "c/0" in out, out


def test_gzip_bomb_is_capped(tmp_path):
    import zlib

    zarr.create_array(LocalStore(tmp_path), shape=(1024,), chunks=(1024,), dtype="uint8", compressors=[GzipCodec()])
    # 16 GiB of zeros: one fully flushed (byte-aligned, self-contained) 1 MiB deflate segment
    # repeated. The decoder runs out of room long before the (missing) trailer.
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "0").write_bytes(header + segment * (16 << 10))
    out = _in_child(tmp_path, "Array.open(__import__('os').environ['ARRAY'])[:]")
    assert out.startswith("ZarrsCodecError: "), out
    assert "c/0" in out, out


def test_shard_index_entry_beyond_the_shard_is_a_codec_error(tmp_path):
    import crc32c

    arr = zarr.create_array(
        LocalStore(tmp_path), shape=(64,), chunks=(8,), shards=(64,), dtype="uint16", compressors=[ZstdCodec()]
    )
    arr[:] = np.arange(64, dtype="uint16")
    shard = (tmp_path / "c" / "0").read_bytes()
    index = bytearray(shard[-(8 * 16 + 4) : -4])
    # Inner chunk 0 at offset 0 with length 2^45; the index checksum stays valid.
    index[0:16] = (0).to_bytes(8, "little") + (1 << 45).to_bytes(8, "little")
    forged = shard[: -(8 * 16 + 4)] + bytes(index) + crc32c.crc32c(bytes(index)).to_bytes(4, "little")
    (tmp_path / "c" / "0").write_bytes(forged)
    for read in ("[0:4]", "[:]", ".read_chunk((0,))"):
        out = _in_child(tmp_path, f"Array.open(__import__('os').environ['ARRAY']){read}")
        assert out.startswith("ZarrsCodecError: "), (read, out)
        assert "c/0" in out, (read, out)


@pytest.mark.parametrize("read", ["direct", "pipeline"])
def test_truncated_uncompressed_chunk_raises_on_partial_reads(tmp_path, read, zarrs_pipeline):
    arr = zarr.create_array(LocalStore(tmp_path), shape=(64,), chunks=(64,), dtype="uint16", compressors=None)
    arr[:] = np.arange(64, dtype="uint16")
    chunk = tmp_path / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[:64])
    with pytest.raises(ZarrsCodecError, match="c/0"):
        if read == "direct":
            Array.open(tmp_path)[0:8]
        else:
            arr[0:8]


def _write_metadata(path: Path, shape: list[int], chunks: list[int], codecs: list[Any]) -> None:
    import json

    path.mkdir(parents=True, exist_ok=True)
    (path / "zarr.json").write_text(json.dumps({
        "zarr_format": 3, "node_type": "array", "shape": shape, "data_type": "uint64",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "default"}, "fill_value": 0, "codecs": codecs,
    }))


BYTES_CODEC = {"name": "bytes", "configuration": {"endian": "little"}}


@pytest.mark.parametrize(
    ("chunks", "codecs", "what"),
    [
        ([1 << 62, 1 << 62], [BYTES_CODEC], "overflow"),
        ([1 << 30, 1 << 30], [BYTES_CODEC], "memory"),
        (
            [1 << 40, 1],
            [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [1, 1], "codecs": [BYTES_CODEC],
                "index_codecs": [BYTES_CODEC, {"name": "crc32c"}], "index_location": "end"}}],
            "inner chunk",
        ),
    ],
    ids=["elements-overflow", "beyond-memory", "absurd-inner-grid"],
)
def test_absurd_chunk_metadata_is_refused_at_open(tmp_path, chunks, codecs, what):
    _write_metadata(tmp_path, [1 << 62, 1 << 62], chunks, codecs)
    out = _in_child(tmp_path, """
        arr = Array.open(__import__('os').environ['ARRAY'])
        arr[0:2, 0:1]
        arr[0:2, 0:1] = 1
    """)
    assert out.startswith("ZarrsMetadataError: "), out
    assert what in out, out
