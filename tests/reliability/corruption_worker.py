"""Worker process of the differential corruption test (``tests/reliability/test_corruption.py``).

Every case stores one corrupted chunk (or shard) in an otherwise intact 32x32 array, then
reads it through several routes, one after another, in this process:

``zarr``
    zarr's own ``BatchedCodecPipeline`` on a ``LocalStore``: the oracle.
``local``
    zarr with ``ZarrsCodecPipeline`` on a ``LocalStore`` (native I/O).
``memory``
    zarr with ``ZarrsCodecPipeline`` on a ``MemoryStore`` (synchronous Python I/O, the
    caller-fetched-bytes C calls).
``wrapped``
    zarr with ``ZarrsCodecPipeline`` on a ``WrapperStore`` over the ``LocalStore`` (async
    Python I/O; partial shard reads fetch the index and byte ranges in Python).
``capi``
    the direct API, ``zarrs_cffi.Array`` (fixed-size types), or the variable-length C call
    ``zarrs_array_decode_variable_chunks`` (strings).

Cases are generated deterministically (``all_cases``): codec chain x data type x mutation x
read kind. This process prints one JSON line before (``"ev": "start"``) and one after
(``"ev": "end"``) each route of each case, so the parent knows which case killed it if it
dies by a signal; it is restarted from the next route with ``--resume CASE ROUTE``.

The verdict of a route of ours, compared with the oracle on the same bytes:

``ok``         the same data as zarr's pipeline
``raise``      a clear exception (a ``ZarrsError`` other than a caught panic, or the
               exception class zarr's pipeline raised, or a ``ValueError``/``OSError``)
``data-diff``  both returned data, and it differs
``silent``     zarr's pipeline raised, ours returned data
``unclear``    ours raised something else (``TypeError``, ``MemoryError`` ...)
``panic``      ``ZarrsPanicError``: a caught Rust panic
``memory``     the read raised the process' peak RSS by more than ``MEMORY_BUDGET``
               (a bound missing on a decode driven by stored bytes)
``fallback``   ours handed the read to zarr's pipeline (the case proves nothing)
``refused``    the same, for a chain the native side refuses at open by design (``WRAPS``)

A decompression bomb in a variable-length chunk (read with ``VARIABLE_CAP``) must raise a
``ZarrsCodecError`` naming the chunk key and the cap; another exception is ``unclear``.

The address space is limited (``ADDRESS_SPACE``) so a runaway allocation fails instead of
swapping the machine; a failed Rust allocation aborts the process, which the parent records.

Run it by hand to reproduce one case (``--only`` takes a glob over case ids)::

    .venv/bin/python tests/reliability/corruption_worker.py --dir /tmp/corrupt --only 'v3/zstd/uint16|zstd_fcs_2^46*'

and ``--dump PATH`` writes the corrupted chunk bytes of the first selected case to PATH.
"""

from __future__ import annotations

import argparse
import bz2
import fnmatch
import importlib.util
import json
import os
import random
import resource
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

SHAPE = (32, 32)
CHUNK = (16, 16)
INNER = (4, 4)  # inner chunks of a sharded array, whose shards are CHUNK
N_INNER = (CHUNK[0] // INNER[0]) * (CHUNK[1] // INNER[1])
INDEX_BYTES = 16 * N_INNER + 4  # bytes + crc32c index codecs (zarr's default)
MISSING = 2**64 - 1

# The corrupted chunk is chunk (0, 0); "span" also reads three intact chunks in the same batch.
READS: dict[str, tuple[slice, slice]] = {
    "chunk": (slice(0, 16), slice(0, 16)),
    "part": (slice(1, 6), slice(2, 7)),
    "span": (slice(8, 24), slice(8, 24)),
}
ROUTES = ("zarr", "local", "memory", "wrapped", "capi")
FLIP_SEEDS = 10
GARBAGE_SEEDS = 2
BOMB_BYTES = 64 << 20  # what a decompression bomb expands to (the chunk holds 512 bytes)
MEMORY_BUDGET = 16 << 20  # peak RSS growth allowed while reading one 16x16 chunk (normal reads: < 2 MiB)
ADDRESS_SPACE = 4 << 30
# The cap on a decoded variable-length chunk (codec_pipeline.max_variable_chunk_bytes) the
# string chains are read with: a bomb past it must raise a ZarrsCodecError naming the chunk
# key and the cap. (The default, 1 GiB, is tested in test_corruption.py.)
VARIABLE_CAP = 1 << 20

ZARR_PIPELINE = "zarr.core.codec_pipeline.BatchedCodecPipeline"
ZARRS_PIPELINE = "zarrs_cffi.ZarrsCodecPipeline"


# --------------------------------------------------------------------------------------
# Codec chains


@dataclass(frozen=True)
class Config:
    """One codec chain and data type."""

    zarr_format: int
    dtype: str  # "uint16" or "string"
    layers: tuple[str, ...]  # bytes-to-bytes codecs of each chunk (inner chunk if sharded), encode order
    shard: str | None = None  # index location of a sharded array, else None
    serializer: str | None = None  # "pcodec", else the default (bytes, or vlen for strings)
    # A sharded chain that is not exactly one sharding codec (``WRAPS``), else None.
    wrap: str | None = None

    @property
    def name(self) -> str:
        chain = "+".join(((self.serializer,) if self.serializer else ()) + self.layers) or "raw"
        if self.shard:
            chain = f"shard-{self.shard}[{chain}]"
        if self.wrap:
            chain = WRAPS[self.wrap].format(chain)
        return f"v{self.zarr_format}/{chain}/{self.dtype}"

    @property
    def key(self) -> str:
        return "c/0/0" if self.zarr_format == 3 else "0.0"


# Sharded chains that are not exactly one sharding codec: an array-to-array codec before
# sharding, a bytes-to-bytes codec after it (zarr.create_array(serializer=ShardingCodec(...))
# adds its default zstd there), sharding nested in sharding (one outer inner chunk: the
# whole shard is the inner shard). The second is decoded natively (the outer codec within
# bounds, then our shard reader), and so is the third: our shard reader reads the inner
# shard too, its index checked against the inner shard's length and its inner chunks
# bounded, as the outer one's. The first would decode its inner chunks with zarrs' own
# sharding codec, unbounded: the native side refuses it at open, so zarr's pipeline reads
# it (verdict ``refused``).
WRAPS = {"transpose": "transpose+{}", "crc32c": "{}+crc32c", "nested": "shard[{}]"}
REFUSED = ("transpose",)

CONFIGS: tuple[Config, ...] = (
    Config(3, "uint16", ()),
    Config(3, "uint16", ("zstd",)),
    Config(3, "uint16", ("blosc",)),
    Config(3, "uint16", ("gzip",)),
    Config(3, "uint16", ("crc32c",)),
    Config(3, "uint16", (), "end"),
    Config(3, "uint16", (), "start"),
    Config(3, "uint16", ("zstd",), "end"),
    Config(3, "uint16", ("zstd",), "start"),
    Config(2, "uint16", ()),
    Config(2, "uint16", ("zstd",)),
    Config(2, "uint16", ("blosc",)),
    Config(2, "uint16", ("gzip",)),
    Config(3, "string", ()),
    Config(3, "string", ("zstd",)),
    Config(3, "string", ("gzip",)),
    Config(3, "string", ("crc32c",)),
    Config(3, "string", ("zstd",), "end"),
    Config(2, "string", ()),
    Config(2, "string", ("zstd",)),
    Config(2, "string", ("gzip",)),
    # The codecs added with zarrs' zlib, bz2, pcodec, shuffle, adler32 and fletcher32.
    Config(3, "uint16", ("zlib",)),
    Config(3, "uint16", ("bz2",)),
    Config(3, "uint16", ("shuffle", "zlib")),
    Config(3, "uint16", ("adler32",)),
    Config(3, "uint16", ("fletcher32",)),
    Config(3, "uint16", ("bz2",), "end"),
    Config(2, "uint16", ("zlib",)),
    Config(2, "uint16", ("shuffle", "bz2")),
    Config(3, "string", ("zlib",)),
    Config(3, "uint16", ("zstd",), "end", wrap="transpose"),
    Config(3, "uint16", ("zstd",), "end", wrap="crc32c"),
    Config(3, "string", ("zstd",), "end", wrap="crc32c"),
    Config(3, "uint16", ("zstd",), "end", wrap="nested"),
    Config(3, "string", ("zstd",), "end", wrap="nested"),
) + ((Config(3, "uint16", (), serializer="pcodec"),) if importlib.util.find_spec("pcodec") else ())


def _crc32c(data: bytes) -> int:
    from crc32c import crc32c

    return int(crc32c(data))


def _numcodec(layer: str) -> Any:
    import numcodecs

    return {
        "zstd": lambda: numcodecs.Zstd(level=1),
        "blosc": lambda: numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
        "gzip": lambda: numcodecs.GZip(level=1),
        "zlib": lambda: numcodecs.Zlib(level=1),
        "bz2": lambda: numcodecs.BZ2(level=1),
        "shuffle": lambda: numcodecs.Shuffle(elementsize=2),
        "adler32": lambda: numcodecs.Adler32(),
        "fletcher32": lambda: numcodecs.Fletcher32(),
    }[layer]()


def encode_layers(layers: tuple[str, ...], payload: bytes) -> bytes:
    for layer in layers:
        if layer == "crc32c":
            payload = payload + struct.pack("<I", _crc32c(payload))
        elif layer == "fletcher32" and not payload:
            payload = bytes(4)  # numcodecs cannot encode nothing; both sums start at 0
        else:
            payload = bytes(_numcodec(layer).encode(payload))
    return payload


def decode_layers(layers: tuple[str, ...], data: bytes) -> bytes:
    for layer in reversed(layers):
        if layer == "crc32c":
            data = data[:-4]
        else:
            data = bytes(_numcodec(layer).decode(data))
    return data


def create_array(cfg: Config, path: Path) -> np.ndarray[Any, Any]:
    """Write the intact array with zarr's own pipeline; returns the values written."""
    import numcodecs
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec
    from zarr.codecs import numcodecs as nc

    rng = np.random.default_rng(1234)
    if cfg.dtype == "uint16":
        values: np.ndarray[Any, Any] = rng.integers(1, 65535, SHAPE, dtype=np.uint16)
        kwargs: dict[str, Any] = {"dtype": "uint16", "fill_value": 0}
    else:
        alphabet = list("abcxyz é漢€")
        words = ["".join(rng.choice(alphabet, size=int(rng.integers(1, 9)))) for _ in range(SHAPE[0] * SHAPE[1])]
        values = np.array(words, dtype=str).reshape(SHAPE)
        kwargs = {"dtype": str, "fill_value": ""}
    if cfg.zarr_format == 2:
        # Filters, then the compressor (the last layer).
        compressors: Any = _numcodec(cfg.layers[-1]) if cfg.layers else None
        if cfg.layers[:-1]:
            kwargs["filters"] = [_numcodec(layer) for layer in cfg.layers[:-1]]
    else:
        v3 = {
            "zstd": lambda: ZstdCodec(level=1),
            "blosc": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
            "gzip": lambda: GzipCodec(level=1),
            "crc32c": lambda: Crc32cCodec(),
            "zlib": lambda: nc.Zlib(level=1),
            "bz2": lambda: nc.BZ2(level=1),
            "shuffle": lambda: nc.Shuffle(elementsize=2),
            "adler32": lambda: nc.Adler32(),
            "fletcher32": lambda: nc.Fletcher32(),
        }
        compressors = [v3[layer]() for layer in cfg.layers] or None
        if cfg.serializer == "pcodec":
            kwargs["serializer"] = nc.PCodec(level=8)
    if cfg.wrap:
        from zarr.codecs import BytesCodec, ShardingCodec, TransposeCodec, VLenUTF8Codec

        serializer = VLenUTF8Codec() if cfg.dtype == "string" else BytesCodec()
        inner = ShardingCodec(chunk_shape=INNER, codecs=[serializer, *(compressors or [])], index_location=cfg.shard)
        compressors = None
        kwargs["chunks"] = CHUNK
        if cfg.wrap == "transpose":
            kwargs["filters"] = [TransposeCodec(order=(1, 0))]
            kwargs["serializer"] = inner
        elif cfg.wrap == "crc32c":
            kwargs["serializer"], compressors = inner, [Crc32cCodec()]
        else:
            kwargs["serializer"] = ShardingCodec(chunk_shape=CHUNK, codecs=[inner], index_location="end")
    elif cfg.shard:
        kwargs["chunks"] = INNER
        kwargs["shards"] = {"shape": CHUNK, "index_location": cfg.shard}
    else:
        kwargs["chunks"] = CHUNK
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        z = zarr.create_array(
            zarr.storage.LocalStore(path), shape=SHAPE, zarr_format=cfg.zarr_format, compressors=compressors,
            **kwargs,
        )
        z[...] = values
    return values


# --------------------------------------------------------------------------------------
# Byte formats the mutations forge (the test's own parsers, independent of the library)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def zstd_rewrite(frame: bytes, content_size: int | None, single_segment: bool | None = None) -> bytes:
    """``frame`` with its header's content size replaced (None: no content size, as a
    streaming compressor writes it), keeping the blocks."""
    if frame[:4] != ZSTD_MAGIC:
        raise ValueError("not a zstd frame")
    fhd = frame[4]
    fcs_flag, ss, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    pos = 5
    window = None
    if not ss:
        window = frame[pos]
        pos += 1
    dict_size = (0, 1, 2, 4)[dict_flag]
    dict_id = frame[pos : pos + dict_size]
    pos += dict_size
    old_size = (1 if ss else 0, 2, 4, 8)[fcs_flag]
    if fcs_flag == 0 and ss:
        old_value = frame[pos]
    elif fcs_flag == 1:
        old_value = struct.unpack_from("<H", frame, pos)[0] + 256
    elif fcs_flag == 2:
        old_value = struct.unpack_from("<I", frame, pos)[0]
    elif fcs_flag == 3:
        old_value = struct.unpack_from("<Q", frame, pos)[0]
    else:
        old_value = None
    pos += old_size
    blocks = frame[pos:]
    new_ss = bool(ss) if single_segment is None else single_segment
    if content_size is None:
        new_ss = False
    if not new_ss and window is None:
        # A window large enough for the frame's content (2^(10 + exponent) bytes).
        need = max(old_value or 0, 1 << 10)
        window = (max(need - 1, 1).bit_length() - 10) << 3
    header = bytes([(0 if content_size is None else 3) << 6 | int(new_ss) << 5 | checksum << 2 | dict_flag])
    if not new_ss:
        header += bytes([window])  # type: ignore[list-item]
    header += dict_id
    if content_size is not None:
        header += struct.pack("<Q", content_size)
    return ZSTD_MAGIC + header + blocks


def zstd_content_size(frame: bytes) -> int:
    fhd = frame[4]
    fcs_flag, ss, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    pos = 5 + (0 if ss else 1) + (0, 1, 2, 4)[dict_flag]
    if fcs_flag == 0:
        return frame[pos] if ss else -1
    if fcs_flag == 1:
        return struct.unpack_from("<H", frame, pos)[0] + 256
    return struct.unpack_from("<I" if fcs_flag == 2 else "<Q", frame, pos)[0]


def blosc_set(frame: bytes, field: str, value: int) -> bytes:
    """Blosc1 header: version, versionlz, flags, typesize, then u32 nbytes, blocksize, cbytes."""
    out = bytearray(frame)
    if field in ("flags", "typesize"):
        out[2 if field == "flags" else 3] = value
    else:
        struct.pack_into("<I", out, {"nbytes": 4, "blocksize": 8, "cbytes": 12}[field], value & 0xFFFFFFFF)
    return bytes(out)


def blosc_get(frame: bytes, field: str) -> int:
    return int(struct.unpack_from("<I", frame, {"nbytes": 4, "blocksize": 8, "cbytes": 12}[field])[0])


def gzip_bomb(size: int) -> bytes:
    """A valid gzip member that decompresses to ``size`` zero bytes, built from one
    independently compressed MiB repeated (a full flush resets the compressor), so it costs
    a few milliseconds whatever the size."""
    mib = 1 << 20
    assert size % mib == 0
    zeros = bytes(mib)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    unit = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    assert unit == again, "deflate output after a full flush is not repeatable"
    tail = comp.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(size // mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + first + unit * (size // mib - 1) + tail + struct.pack("<II", crc, size & 0xFFFFFFFF)


_BOMBS: dict[str, bytes] = {}


def bomb(kind: str) -> bytes:
    """A small valid frame expanding to BOMB_BYTES zeros (cached on disk for restarts)."""
    if kind in _BOMBS:
        return _BOMBS[kind]
    cache = Path(os.environ.get("ZARRS_CORRUPTION_DIR", "/tmp")) / f"bomb-{kind}-{BOMB_BYTES}.bin"
    if cache.exists():
        data = cache.read_bytes()
    else:
        if kind == "gzip":
            data = gzip_bomb(BOMB_BYTES)
        elif kind == "zlib":
            data = zlib.compress(bytes(BOMB_BYTES), 9)
        elif kind == "bz2":
            data = bz2.compress(bytes(BOMB_BYTES), 9)
        elif kind == "pcodec":
            import pcodec

            data = pcodec.standalone.simple_compress(np.zeros(BOMB_BYTES // 2, dtype=np.uint16), pcodec.ChunkConfig())
        else:
            zeros = np.zeros(BOMB_BYTES, dtype=np.uint8)
            codec = {"zstd": lambda: _numcodec("zstd"), "blosc": lambda: _numcodec("blosc")}[kind]()
            data = bytes(codec.encode(zeros))
            del zeros
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cache)
    _BOMBS[kind] = data
    return data


def split_shard(cfg: Config, shard: bytes) -> tuple[bytes, list[int]]:
    """The shard's data region and its index entries (offset, length pairs, flattened)."""
    if cfg.shard == "end":
        body, index = shard[:-INDEX_BYTES], shard[-INDEX_BYTES:]
    else:
        index, body = shard[:INDEX_BYTES], shard[INDEX_BYTES:]
    return body, list(struct.unpack_from(f"<{2 * N_INNER}Q", index))


def join_shard(cfg: Config, body: bytes, entries: list[int], crc_ok: bool = True) -> bytes:
    raw = struct.pack(f"<{2 * N_INNER}Q", *entries)
    crc = _crc32c(raw) ^ (0 if crc_ok else 1)
    index = raw + struct.pack("<I", crc)
    return body + index if cfg.shard == "end" else index + body


def body_base(cfg: Config) -> int:
    """Offset of the data region in the shard (offsets in the index are from the shard start)."""
    return 0 if cfg.shard == "end" else INDEX_BYTES


def with_inner(cfg: Config, shard: bytes, change: Callable[[bytes], bytes], entry: int = 0) -> bytes:
    """The shard with inner chunk ``entry`` replaced by ``change(inner bytes)``, appended
    to the data region and pointed at by a valid index."""
    body, entries = split_shard(cfg, shard)
    offset, length = entries[2 * entry], entries[2 * entry + 1]
    inner = shard[offset : offset + length]
    new = change(inner)
    entries[2 * entry], entries[2 * entry + 1] = body_base(cfg) + len(body), len(new)
    return join_shard(cfg, body + new, entries)


# --------------------------------------------------------------------------------------
# Mutations. Each takes (cfg, stored bytes, rng) and returns the corrupted bytes.

Mutation = Callable[[Config, bytes, random.Random], bytes]


def _flip(bits: int) -> Mutation:
    def mutate(cfg: Config, data: bytes, rng: random.Random) -> bytes:
        out = bytearray(data)
        for position in rng.sample(range(len(out) * 8), bits):
            out[position // 8] ^= 1 << (position % 8)
        return bytes(out)

    return mutate


def unwrap(cfg: Config, stored: bytes) -> bytes:
    """The shard inside a wrapped chain's stored chunk (``WRAPS``): what the shard
    mutations change."""
    if cfg.wrap == "crc32c":
        return stored[:-4]
    if cfg.wrap == "nested":
        offset, length = struct.unpack_from("<QQ", stored, len(stored) - 20)
        return stored[offset : offset + length]
    return stored


def rewrap(cfg: Config, shard: bytes) -> bytes:
    """``shard`` stored as a wrapped chain stores it, validly (checksum and outer index)."""
    if cfg.wrap == "crc32c":
        return shard + struct.pack("<I", _crc32c(shard))
    if cfg.wrap == "nested":
        index = struct.pack("<QQ", 0, len(shard))
        return shard + index + struct.pack("<I", _crc32c(index))
    return shard


def _wrapped(mutate: Mutation) -> Mutation:
    """``mutate`` applied to the shard inside a wrapped chain, which stays valid around it."""

    def wrapped(cfg: Config, data: bytes, rng: random.Random) -> bytes:
        if not cfg.wrap:
            return mutate(cfg, data, rng)
        return rewrap(cfg, mutate(cfg, unwrap(cfg, data), rng))

    return wrapped


def _at_frame(change: Callable[[bytes], bytes]) -> Mutation:
    """Apply ``change`` to the chunk's outermost codec frame (inner chunk 0 of a shard)."""

    def mutate(cfg: Config, data: bytes, rng: random.Random) -> bytes:
        return with_inner(cfg, data, change) if cfg.shard else change(data)

    return _wrapped(mutate)


def _at_payload(change: Callable[[bytes], bytes]) -> Mutation:
    """Apply ``change`` to the chunk's payload under its bytes-to-bytes codecs and encode
    it again validly (inner chunk 0 of a shard)."""

    def frame(cfg: Config) -> Callable[[bytes], bytes]:
        return lambda data: encode_layers(cfg.layers, change(decode_layers(cfg.layers, data)))

    def mutate(cfg: Config, data: bytes, rng: random.Random) -> bytes:
        return with_inner(cfg, data, frame(cfg)) if cfg.shard else frame(cfg)(data)

    return _wrapped(mutate)


def _index(change: Callable[[Config, bytes, list[int]], tuple[bytes, list[int]] | list[int]], crc_ok: bool = True) -> Mutation:
    def mutate(cfg: Config, data: bytes, rng: random.Random) -> bytes:
        body, entries = split_shard(cfg, data)
        result = change(cfg, data, entries)
        if isinstance(result, tuple):
            body, entries = result
        else:
            entries = result
        return join_shard(cfg, body, entries, crc_ok)

    return _wrapped(mutate)


def _set_entry(entry: int, offset: Callable[[Config, bytes, list[int]], int] | None,
               length: Callable[[Config, bytes, list[int]], int] | None) -> Mutation:
    def change(cfg: Config, data: bytes, entries: list[int]) -> list[int]:
        new = list(entries)
        if offset is not None:
            new[2 * entry] = offset(cfg, data, entries) % 2**64
        if length is not None:
            new[2 * entry + 1] = length(cfg, data, entries) % 2**64
        return new

    return _index(change)


def _vlen(change: Callable[[bytes], bytes]) -> Mutation:
    return _at_payload(change)


def _u32(data: bytes, at: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, at, value & 0xFFFFFFFF)
    return bytes(out)


def _first_item_utf8(payload: bytes) -> bytes:
    out = bytearray(payload)
    out[8] = 0xFF  # first byte of the first element (header: count, then length)
    return bytes(out)


def _randomize_index(cfg: Config, data: bytes, entries: list[int]) -> list[int]:
    rng = random.Random(f"index:{cfg.name}")
    size = len(data)
    choices = [0, 1, size - 1, size, size + 1, 2**32, 2**45, 2**63, MISSING, MISSING - 1]
    return [rng.choice(choices) if rng.random() < 0.5 else rng.randrange(0, size + 16) for _ in entries]


def mutations(cfg: Config) -> dict[str, Mutation]:
    """Every mutation that applies to ``cfg``, by name (deterministic order)."""
    out: dict[str, Mutation] = {
        "trunc0": lambda c, d, r: b"",
        "trunc1": lambda c, d, r: d[:1],
        "trunc_half": lambda c, d, r: d[: len(d) // 2],
        "trunc_m1": lambda c, d, r: d[:-1],
        "ext_zero1": lambda c, d, r: d + b"\0",
        "ext_zero64": lambda c, d, r: d + bytes(64),
        "ext_rand16": lambda c, d, r: d + r.randbytes(16),
    }
    for seed in range(GARBAGE_SEEDS):
        out[f"garbage#{seed}"] = lambda c, d, r: r.randbytes(len(d))
    for seed in range(FLIP_SEEDS):
        out[f"flip1#{seed}"] = _flip(1)
        out[f"flip8#{seed}"] = _flip(8)
    # A valid encoding of a payload of the wrong length (a bytes-only chunk of the wrong
    # length when there are no compressors).
    out["payload_short"] = _at_payload(lambda p: p[:-2])
    out["payload_long"] = _at_payload(lambda p: p + b"\x01\x02")
    out["payload_empty"] = _at_payload(lambda p: b"")
    outer = cfg.layers[-1] if cfg.layers else None
    if outer == "zstd":
        out["zstd_fcs_2^46"] = _at_frame(lambda f: zstd_rewrite(f, 2**46))
        out["zstd_fcs_2^46_window"] = _at_frame(lambda f: zstd_rewrite(f, 2**46, single_segment=False))
        out["zstd_fcs_plus1"] = _at_frame(lambda f: zstd_rewrite(f, zstd_content_size(f) + 1))
        out["zstd_fcs_minus1"] = _at_frame(lambda f: zstd_rewrite(f, zstd_content_size(f) - 1))
        out["zstd_fcs_0"] = _at_frame(lambda f: zstd_rewrite(f, 0))
        out["zstd_no_fcs"] = _at_frame(lambda f: zstd_rewrite(f, None))
        out["zstd_two_frames"] = _at_frame(lambda f: f + f)
        out["zstd_bomb"] = _at_frame(lambda f: bomb("zstd"))
        out["zstd_bomb_no_fcs"] = _at_frame(lambda f: zstd_rewrite(bomb("zstd"), None))
    if outer == "blosc":
        for name, field, value in (
            ("nbytes_max", "nbytes", 0xFFFFFFFF),
            ("nbytes_2^31", "nbytes", 2**31),
            ("nbytes_plus1", "nbytes", None),
            ("nbytes_minus1", "nbytes", None),
            ("nbytes_0", "nbytes", 0),
            ("blocksize_0", "blocksize", 0),
            ("blocksize_1", "blocksize", 1),
            ("blocksize_max", "blocksize", 0xFFFFFFFF),
            ("cbytes_max", "cbytes", 0xFFFFFFFF),
            ("cbytes_16", "cbytes", 16),
            ("cbytes_plus1", "cbytes", None),
            ("typesize_0", "typesize", 0),
            ("typesize_255", "typesize", 255),
            ("flags_memcpyed", "flags", None),
        ):
            def forge(f: bytes, field: str = field, value: int | None = value, name: str = name) -> bytes:
                if value is None:
                    if field == "flags":
                        return blosc_set(f, "flags", f[2] ^ 0x02)
                    delta = 1 if name.endswith("plus1") else -1
                    return blosc_set(f, field, blosc_get(f, field) + delta)
                return blosc_set(f, field, value)

            out[f"blosc_{name}"] = _at_frame(forge)
        out["blosc_bomb"] = _at_frame(lambda f: bomb("blosc"))
    if outer == "gzip":
        out["gzip_bomb"] = _at_frame(lambda f: bomb("gzip"))
        out["gzip_crc_bad"] = _at_frame(lambda f: f[:-8] + bytes([f[-8] ^ 1]) + f[-7:])
        out["gzip_isize_bad"] = _at_frame(lambda f: _u32(f, len(f) - 4, struct.unpack_from("<I", f, len(f) - 4)[0] + 1))
        out["gzip_two_members"] = _at_frame(lambda f: f + f)
        out["gzip_fextra_flag"] = _at_frame(lambda f: f[:3] + bytes([f[3] | 4]) + f[4:])
    if outer == "crc32c":
        out["crc32c_bad"] = _at_frame(lambda f: f[:-1] + bytes([f[-1] ^ 0x80]))
    if outer == "zlib":
        out["zlib_bomb"] = _at_frame(lambda f: bomb("zlib"))
        out["zlib_adler_bad"] = _at_frame(lambda f: f[:-1] + bytes([f[-1] ^ 1]))
        out["zlib_two_streams"] = _at_frame(lambda f: f + f)
        out["zlib_raw_deflate"] = _at_frame(lambda f: f[2:-4])
    if outer == "bz2":
        out["bz2_bomb"] = _at_frame(lambda f: bomb("bz2"))
        out["bz2_two_streams"] = _at_frame(lambda f: f + f)
        out["bz2_block_size_9"] = _at_frame(lambda f: f[:3] + b"9" + f[4:])
        out["bz2_stream_crc_bad"] = _at_frame(lambda f: f[:-1] + bytes([f[-1] ^ 1]))
    if outer in ("adler32", "fletcher32"):
        # numcodecs' adler32 checksum leads the chunk, fletcher32's trails it.
        out["checksum_bad"] = _at_frame(
            lambda f: bytes([f[0] ^ 1]) + f[1:] if outer == "adler32" else f[:-1] + bytes([f[-1] ^ 1])
        )
    if cfg.serializer == "pcodec" and not cfg.layers:
        import pcodec

        numbers = lambda n: _at_frame(  # noqa: E731
            lambda f: pcodec.standalone.simple_compress(np.arange(n, dtype=np.uint16), pcodec.ChunkConfig())
        )
        out["pcodec_bomb"] = _at_frame(lambda f: bomb("pcodec"))
        out["pcodec_one_more"] = numbers(CHUNK[0] * CHUNK[1] + 1)
        out["pcodec_one_less"] = numbers(CHUNK[0] * CHUNK[1] - 1)
        out["pcodec_two_files"] = _at_frame(lambda f: f + f)
        out["pcodec_int32_numbers"] = _at_frame(
            lambda f: pcodec.standalone.simple_compress(np.arange(256, dtype=np.int32), pcodec.ChunkConfig())
        )
    if cfg.dtype == "string":
        out["vlen_count_max"] = _vlen(lambda p: _u32(p, 0, 0xFFFFFFFF))
        out["vlen_count_2^20"] = _vlen(lambda p: _u32(p, 0, 2**20))
        out["vlen_count_plus1"] = _vlen(lambda p: _u32(p, 0, struct.unpack_from("<I", p)[0] + 1))
        out["vlen_count_minus1"] = _vlen(lambda p: _u32(p, 0, struct.unpack_from("<I", p)[0] - 1))
        out["vlen_len_max"] = _vlen(lambda p: _u32(p, 4, 0xFFFFFFFF))
        out["vlen_len_past_end"] = _vlen(lambda p: _u32(p, 4, len(p)))
        out["vlen_header_only"] = _vlen(lambda p: p[:4])
        out["vlen_bad_utf8"] = _vlen(_first_item_utf8)
    if cfg.shard:
        size = lambda c, d, e: len(d)  # noqa: E731
        for entry in (0, N_INNER - 1):
            at = f"@{entry}"
            out[f"idx_offset_past_end{at}"] = _set_entry(entry, lambda c, d, e: len(d) + 100, None)
            out[f"idx_offset_at_end{at}"] = _set_entry(entry, size, None)
            out[f"idx_length_past_end{at}"] = _set_entry(entry, None, lambda c, d, e, i=entry: len(d) - e[2 * i] + 1)
            out[f"idx_length_2^45{at}"] = _set_entry(entry, lambda c, d, e: 0, lambda c, d, e: 2**45)
            out[f"idx_offset_2^63{at}"] = _set_entry(entry, lambda c, d, e: 2**63, None)
            out[f"idx_offset_wraps{at}"] = _set_entry(entry, lambda c, d, e: MISSING - 1, lambda c, d, e: 4)
            out[f"idx_missing_offset_only{at}"] = _set_entry(entry, lambda c, d, e: MISSING, None)
            out[f"idx_missing_length_only{at}"] = _set_entry(entry, None, lambda c, d, e: MISSING)
            out[f"idx_length_0{at}"] = _set_entry(entry, None, lambda c, d, e: 0)
            out[f"idx_length_minus2{at}"] = _set_entry(entry, None, lambda c, d, e, i=entry: e[2 * i + 1] - 2)
            out[f"idx_length_plus2{at}"] = _set_entry(entry, None, lambda c, d, e, i=entry: e[2 * i + 1] + 2)
            out[f"idx_points_at_index{at}"] = _set_entry(
                entry, lambda c, d, e: len(d) - INDEX_BYTES if c.shard == "end" else 0, None
            )
        out["idx_overlap_same"] = _index(lambda c, d, e: e[:2] + e[:2] + e[4:])
        out["idx_overlap_shifted"] = _index(lambda c, d, e: e[:2] + [e[0] + 1, e[1]] + e[4:])
        out["idx_missing_all"] = _index(lambda c, d, e: [MISSING] * len(e))
        out["idx_missing_odd"] = _index(lambda c, d, e: [MISSING if i % 4 in (2, 3) else v for i, v in enumerate(e)])
        out["idx_zeros"] = _index(lambda c, d, e: [0] * len(e))
        out["idx_random"] = _index(_randomize_index)
        out["idx_crc_bad"] = _index(lambda c, d, e: e, crc_ok=False)
        out["idx_crc_bad_length_2^45"] = _index(lambda c, d, e: [0, 2**45] + e[2:], crc_ok=False)
        out["shard_only_index"] = _index(lambda c, d, e: (b"", e))
    return out


@dataclass(frozen=True)
class Case:
    index: int
    cfg: Config
    mutation: str
    read: str

    @property
    def id(self) -> str:
        return f"{self.cfg.name}|{self.mutation}|{self.read}"


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for cfg in CONFIGS:
        for mutation in mutations(cfg):
            for read in READS:
                cases.append(Case(len(cases), cfg, mutation, read))
    return cases


def mutated_bytes(case: Case, original: bytes) -> bytes:
    rng = random.Random(f"{case.cfg.name}|{case.mutation}")
    return mutations(case.cfg)[case.mutation](case.cfg, original, rng)


# --------------------------------------------------------------------------------------
# Reading


def _peak_reset() -> int | None:
    """Reset the peak RSS to the current RSS and return the current RSS in bytes, or None
    where the kernel does not let a process reset its peak (then no memory verdicts)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status("VmRSS")


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Fixture:
    """The arrays of one Config, opened through every route."""

    def __init__(self, cfg: Config, root: Path) -> None:
        import zarr
        from zarr.core.buffer import cpu
        from zarr.storage import LocalStore, MemoryStore, WrapperStore

        self.cfg = cfg
        self.path = root / cfg.name.replace("/", "_").replace("[", "(").replace("]", ")")
        ready = self.path / "ready.npy"
        if not ready.exists():
            values = create_array(cfg, self.path / "data")
            (self.path / "original.bin").write_bytes((self.path / "data" / cfg.key).read_bytes())
            np.save(self.path / "values.npy", values.astype(object) if cfg.dtype == "string" else values,
                    allow_pickle=True)
            ready.write_bytes(b"")
        self.values = np.load(self.path / "values.npy", allow_pickle=True)
        self.original = (self.path / "original.bin").read_bytes()
        self.chunk_file = self.path / "data" / cfg.key
        self.chunk_file.write_bytes(self.original)  # a crashed worker may have left it corrupted
        self.memory: dict[str, Any] = {}
        data = self.path / "data"
        for file in data.rglob("*"):
            if file.is_file():
                self.memory[file.relative_to(data).as_posix()] = cpu.Buffer.from_bytes(file.read_bytes())
        self.routes: dict[str, Any] = {}
        with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
            self.routes["zarr"] = zarr.open_array(LocalStore(data, read_only=True), mode="r")
        settings = {f"codec_pipeline.{name}": value for name, value in self.variable_options().items()}
        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE, **settings}):
            self.routes["local"] = zarr.open_array(LocalStore(data, read_only=True), mode="r")
            self.routes["memory"] = zarr.open_array(MemoryStore(self.memory, read_only=True), mode="r")
            self.routes["wrapped"] = zarr.open_array(WrapperStore(LocalStore(data, read_only=True)), mode="r")
        import zarrs_cffi

        try:
            if cfg.dtype == "uint16":
                self.routes["capi"] = zarrs_cffi.Array.open(data, read_only=True)
            else:
                from zarrs_cffi._bindings import ArrayHandle, Options, Storage

                storage = Storage.filesystem(str(data), read_only=True)
                self.routes["capi"] = (ArrayHandle.open(storage, "/"), Options(**self.variable_options()))
        except zarrs_cffi.ZarrsUnsupportedError as exc:
            self.routes["capi"] = exc  # refused at open: every read raises it

    def variable_options(self) -> dict[str, int]:
        """The native options of our routes beyond the defaults: the small cap on
        variable-length chunks."""
        return {"max_variable_chunk_bytes": VARIABLE_CAP} if self.cfg.dtype == "string" else {}

    def set_chunk(self, data: bytes) -> None:
        from zarr.core.buffer import cpu

        self.chunk_file.write_bytes(data)
        self.memory[self.cfg.key] = cpu.Buffer.from_bytes(data)

    def read(self, route: str, read: str) -> np.ndarray[Any, Any]:
        selection = READS[read]
        sabotage = os.environ.get("ZARRS_CORRUPTION_SELFTEST")  # the harness's own test
        if sabotage and route == "local":
            if read == "part" and sabotage == "crash-and-hang":
                os.kill(os.getpid(), 11)
            if read == "span" and sabotage == "crash-and-hang":
                time.sleep(3600)
        target = self.routes[route]
        if isinstance(target, Exception):
            raise target
        if route != "capi":
            return np.asarray(target[selection])
        if self.cfg.dtype == "uint16":
            if read == "chunk":
                return target.read_chunk((0, 0))  # type: ignore[no-any-return]
            return target.read(selection)  # type: ignore[no-any-return]
        return self._read_variable(target, selection)

    def _read_variable(self, target: tuple[Any, Any], selection: tuple[slice, slice]) -> np.ndarray[Any, Any]:
        from zarrs_cffi._bindings import decode_variable_chunks

        native, options = target
        rows = range(selection[0].start // CHUNK[0], (selection[0].stop - 1) // CHUNK[0] + 1)
        cols = range(selection[1].start // CHUNK[1], (selection[1].stop - 1) // CHUNK[1] + 1)
        indices = [(i, j) for i in rows for j in cols]
        encoded = [(self.path / "data" / native.chunk_key(ij)).read_bytes() for ij in indices]
        decoded = decode_variable_chunks(
            native, options, encoded, [CHUNK] * len(indices), names=lambda j: native.chunk_key(indices[j])
        )
        whole = np.empty(SHAPE, dtype=object)
        for (i, j), (blob, offsets) in zip(indices, decoded, strict=True):
            bounds = offsets.tolist()
            if len(bounds) != CHUNK[0] * CHUNK[1] + 1:
                raise AssertionError(f"decode_variable_chunks returned {len(bounds) - 1} elements")
            items = [blob[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            block = np.empty(len(items), dtype=object)
            block[:] = items
            whole[i * CHUNK[0] : (i + 1) * CHUNK[0], j * CHUNK[1] : (j + 1) * CHUNK[1]] = block.reshape(CHUNK)
        return whole[selection]


def _same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "OTU" or b.dtype.kind in "OTU":
        return bool(a.tolist() == b.tolist())
    return bool(np.array_equal(a, b))


def _describe(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {text[:300]}"


def judge(oracle: tuple[str, Any] | None, result: tuple[str, Any]) -> str:
    import zarrs_cffi

    kind, value = result
    if kind == "error":
        if isinstance(value, zarrs_cffi.ZarrsPanicError):
            return "panic"
        if isinstance(value, zarrs_cffi.ZarrsError):
            return "raise"
        if oracle is not None and oracle[0] == "error" and isinstance(value, type(oracle[1])):
            return "raise"
        if isinstance(value, (ValueError, OSError)):
            return "raise"
        return "unclear"
    if oracle is None:
        return "ok"
    if oracle[0] == "error":
        return "silent"
    return "ok" if _same(oracle[1], value) else "data-diff"


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def run(root: Path, cases: list[Case], resume_route: int, oracle_known: bool) -> None:
    import zarrs_cffi

    fixtures: dict[Config, Fixture] = {}
    for n, case in enumerate(cases):
        fixture = fixtures.get(case.cfg)
        if fixture is None:
            fixture = fixtures[case.cfg] = Fixture(case.cfg, root)
        data = mutated_bytes(case, fixture.original)
        fixture.set_chunk(data)
        first = resume_route if n == 0 else 0
        oracle: tuple[str, Any] | None = None
        if first > 0 and oracle_known:
            # Resuming after a crash in one of our routes: recompute the oracle quietly.
            oracle = _attempt(fixture, "zarr", case.read)
        growth = 0
        for r in range(first, len(ROUTES)):
            route = ROUTES[r]
            emit(ev="start", case=case.index, route=r, id=case.id)
            stats_before = zarrs_cffi.stats().fallback_reads
            result = None
            _settle(collect=growth > MEMORY_BUDGET // 4)
            rss = _peak_reset()
            started = time.perf_counter()
            result = _attempt(fixture, route, case.read)
            elapsed = time.perf_counter() - started
            growth = _status("VmHWM") - rss if rss is not None else 0
            fell_back = zarrs_cffi.stats().fallback_reads != stats_before
            detail = _describe(result[1]) if result[0] == "error" else "data"
            if route == "zarr":
                oracle = result
                verdict = "oracle-" + result[0]
            elif fell_back:
                # Chains the native side refuses at open are read by zarr's pipeline.
                verdict = "refused" if case.cfg.wrap in REFUSED else "fallback"
            else:
                verdict = judge(oracle, result)
                if result[0] == "data" and oracle is not None and oracle[0] == "error":
                    detail = f"zarr raised {_describe(oracle[1])}"
                if verdict == "raise" and not _names_the_cap(case, result[1]):
                    verdict = "unclear"  # a bomb past the cap must say so, naming the key
                if growth > MEMORY_BUDGET:
                    # Reported even when the read raised in the end: the allocation happened.
                    verdict = "memory" if verdict in ("ok", "raise") else verdict
                    detail = f"peak RSS +{growth >> 20} MiB; {detail}"
            emit(ev="end", case=case.index, route=r, verdict=verdict, detail=detail,
                 seconds=round(elapsed, 4), growth=growth)
        fixture.set_chunk(fixture.original)


def _names_the_cap(case: Case, exc: BaseException) -> bool:
    """Whether an error raised by one of our routes on a decompression bomb in a
    variable-length chunk is the cap's: a ``ZarrsCodecError`` naming the chunk key and
    ``VARIABLE_CAP`` (other cases: always true)."""
    import zarrs_cffi

    if case.cfg.dtype != "string" or case.cfg.wrap in REFUSED or not case.mutation.endswith(("_bomb", "_bomb_no_fcs")):
        return True
    text = str(exc)
    return (
        isinstance(exc, zarrs_cffi.ZarrsCodecError)
        and case.cfg.key in text
        and f"max_variable_chunk_bytes = {VARIABLE_CAP}" in text
    )


def _attempt(fixture: Fixture, route: str, read: str) -> tuple[str, Any]:
    try:
        return ("data", fixture.read(route, read))
    except Exception as exc:  # noqa: BLE001 - every exception is an outcome to judge
        _drop_tracebacks(exc)
        return ("error", exc)


def _drop_tracebacks(exc: BaseException) -> None:
    """Tracebacks keep the failed read's frames (and buffers) alive; only the exception's
    type and message are judged."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        item.__traceback__ = None
        stack += [item.__context__, item.__cause__, *getattr(item, "exceptions", ())]


def _settle(collect: bool) -> None:
    """Let the previous read's memory go before measuring the next one's peak: zarr's event
    loop thread finishes tearing down the last call (a no-op call queues behind it), and
    after a large read the cycles are collected."""
    import asyncio

    from zarr.core.sync import sync

    sync(asyncio.sleep(0))
    if collect:
        import gc

        gc.collect()


def _segment(root: Path, only: str | None, resume: tuple[int, int], oracle_unknown: bool) -> None:
    """Run the selected cases from ``resume`` (case index, route index) on."""
    os.environ["ZARRS_CORRUPTION_DIR"] = str(root)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    except (ValueError, OSError):  # platforms without an address-space limit (macOS)
        pass
    cases = all_cases()
    if only:
        cases = [c for c in cases if c.id == only or fnmatch.fnmatchcase(c.id, only)]
    start_case, start_route = resume
    cases = [c for c in cases if c.index >= start_case]
    emit(ev="hello", pid=os.getpid(), cases=len(cases), peak_reset=_peak_reset() is not None)
    run(root, cases, start_route if cases and cases[0].index == start_case else 0, not oracle_unknown)
    emit(ev="done")


def zygote(root: Path) -> None:
    """Import everything once, then fork one worker per request read from stdin (a JSON
    line: ``resume``, ``oracle_unknown``, ``only``, ``stderr``) and report how it ended.

    A crash costs a fork instead of a fresh interpreter importing zarr (over a second).
    Nothing here starts a thread or loads the native library before forking.
    """
    import numcodecs  # noqa: F401
    import zarr  # noqa: F401
    import zarr.storage  # noqa: F401
    from zarr.core.buffer import cpu  # noqa: F401

    import zarrs_cffi  # noqa: F401
    import zarrs_cffi._bindings  # noqa: F401

    emit(ev="zygote", pid=os.getpid())
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                fd = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 2)
                os.close(fd)
                _segment(root, request.get("only"), tuple(request["resume"]), request.get("oracle_unknown", False))
            except BaseException:  # noqa: BLE001 - reported through the exit code and stderr
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        emit(
            ev="exit", pid=pid,
            signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, type=Path, help="scratch directory (kept between restarts)")
    parser.add_argument("--resume", nargs=2, type=int, metavar=("CASE", "ROUTE"), default=(0, 0))
    parser.add_argument("--oracle-unknown", action="store_true", help="the oracle crashed on the resumed case")
    parser.add_argument("--only", help="a case id (chain|mutation|read), or a glob over them ('[' is '[[]')")
    parser.add_argument("--dump", type=Path, help="write the corrupted bytes of the first selected case here")
    parser.add_argument("--list", action="store_true", help="print the case ids and exit")
    parser.add_argument("--zygote", action="store_true", help="serve forked workers (used by the test)")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    os.environ["ZARRS_CORRUPTION_DIR"] = str(args.dir)
    if args.zygote:
        zygote(args.dir)
        return
    cases = all_cases()
    if args.only:
        cases = [c for c in cases if c.id == args.only or fnmatch.fnmatchcase(c.id, args.only)]
    if args.list:
        for case in cases:
            print(case.index, case.id)
        return
    if args.dump:
        case = cases[0]
        original = Fixture(case.cfg, args.dir).original
        args.dump.write_bytes(mutated_bytes(case, original))
        print(f"{case.id}: {len(original)} bytes -> {args.dump.stat().st_size} bytes")
        return
    _segment(args.dir, args.only, tuple(args.resume), args.oracle_unknown)


if __name__ == "__main__":
    main()
