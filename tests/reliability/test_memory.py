"""Sizes that fit the address space but not memory are a ``MemoryError``, never an abort.

A chunk of [2^18, 2^18] uint8 is 64 GiB: more than this machine's memory, so the allocator
refuses it (Linux's overcommit heuristic refuses a single allocation beyond memory and swap;
an address-space limit refuses it sooner). zarr's own pipeline raises ``MemoryError`` there;
Rust's default is to abort the process. Each case runs in a child, with and without a 4 GiB
address-space limit, through every route and the direct API, and the child must go on
working after the error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent(
    """
    import json, os, resource, struct, sys
    if sys.argv[1] == "limit":
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    import crc32c, numcodecs, numpy as np, zarr
    from zarr.codecs import ZstdCodec
    from zarr.core.buffer import cpu
    from zarr.core.sync import sync
    from zarr.storage import LocalStore, MemoryStore
    import zarrs_cffi

    zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"})
    fmt, layout, root = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    N = 1 << 18
    # 14 bytes: a zstd frame declaring 2^36 bytes of content (the chunk holds 2^36).
    frame = (0xFD2FB528).to_bytes(4, "little") + bytes([0xE0]) + (1 << 36).to_bytes(8, "little") + bytes([1])
    results = {}

    def run(name, call):
        try:
            call()
            results[name] = "returned"
        except MemoryError as exc:
            results[name] = ("MemoryError" if isinstance(exc, zarrs_cffi.ZarrsError) else "numpy MemoryError") + ": " + str(exc)
        except Exception as exc:
            results[name] = type(exc).__name__ + ": " + str(exc)

    for route in ("local", "memory"):
        store = LocalStore(os.path.join(root, route)) if route == "local" else MemoryStore()
        compressor = ZstdCodec() if fmt == 3 else numcodecs.Zstd()
        shards = {"shards": (N, N)} if layout == "sharded" else {}
        z = zarr.create_array(store, shape=(N, N), chunks=(N, N), dtype="uint8", zarr_format=fmt,
                              compressors=[compressor], **shards)
        run(route + " write one element", lambda: z.__setitem__((0, 0), 1))
        stored = frame
        if layout == "sharded":
            index = struct.pack("<QQ", 0, len(frame))
            stored = frame + index + struct.pack("<I", crc32c.crc32c(index))
        sync(store.set("c/0/0" if fmt == 3 else "0.0", cpu.Buffer.from_bytes(stored)))
        run(route + " read one element", lambda: z[0, 0])
        run(route + " oindex", lambda: z.oindex[[0, 5], [1, 2]])
        run(route + " vindex", lambda: z.vindex[[0, 5], [1, 2]])
        run(route + " write into the stored chunk", lambda: z.__setitem__((0, 0), 1))
        if route == "local":
            direct = zarrs_cffi.Array.open(os.path.join(root, route))
            run("direct read", lambda: direct[0:1, 0:1])
            run("direct write", lambda: direct.__setitem__((slice(0, 1), slice(0, 1)), 1))

    # The process is still usable: a small array round-trips natively.
    zarrs_cffi.reset_stats()
    small = zarr.create_array(LocalStore(os.path.join(root, "small")), shape=(100,), chunks=(10,), dtype="int32")
    small[:] = np.arange(100, dtype="int32")
    assert (small[:] == np.arange(100)).all()
    assert zarrs_cffi.stats().fallbacks == 0
    print(json.dumps(results))
    """
)


@pytest.mark.parametrize("limit", ["limit", "nolimit"], ids=["4GiB-address-space", "no-limit"])
@pytest.mark.parametrize(("fmt", "layout"), [(2, "chunked"), (3, "chunked"), (3, "sharded")])
def test_chunk_larger_than_memory_is_a_memory_error(tmp_path, limit, fmt, layout):
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, limit, str(fmt), layout, str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"the child died with {proc.returncode} (negative: a signal): {proc.stderr[-3000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    key = "c/0/0" if fmt == 3 else "0.0"
    assert len(results) == 12, results
    for case, outcome in results.items():
        assert outcome.startswith("MemoryError: "), (case, outcome)
        # The message names the chunk and the size that did not fit.
        assert key in outcome and "68719476736 bytes" in outcome and "out of memory" in outcome, (case, outcome)
