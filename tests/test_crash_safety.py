"""A failed or killed write leaves every chunk old or new (README, Guarantees).

Native writes replace each chunk (or shard) whole: a temporary file beside it, then a rename.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

import zarrs_cffi

SHAPE = (64, 64, 64)
CHUNKS = (16, 16, 16)
PIPELINE = {"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}


def _each_chunk_is_one_of(path: Path, allowed: set[int], sharded: bool) -> dict[int, int]:
    """Read every chunk natively: each must decode and hold one of ``allowed`` throughout.
    Returns how many chunks hold each value."""
    seen: dict[int, int] = {}
    with zarr.config.set(PIPELINE):
        zarrs_cffi.reset_stats()
        arr = zarr.open_array(LocalStore(path), mode="r")
        step = arr.shards or arr.chunks
        for i in range(0, SHAPE[0], step[0]):
            for j in range(0, SHAPE[1], step[1]):
                for k in range(0, SHAPE[2], step[2]):
                    block = arr[i : i + step[0], j : j + step[1], k : k + step[2]]
                    values = set(np.unique(block).tolist())
                    assert len(values) == 1 and values <= allowed, (i, j, k, values)
                    value = values.pop()
                    seen[value] = seen.get(value, 0) + 1
        s = zarrs_cffi.stats()
        assert s.fallbacks == 0 and s.python_io_reads == 0 and s.native_reads > 0, s
    return seen


@pytest.mark.parametrize("sharded", [False, True])
def test_writer_killed_mid_batch_leaves_every_chunk_old_or_new(tmp_path: Path, sharded: bool) -> None:
    path = tmp_path / "a.zarr"
    with zarr.config.set(PIPELINE):
        arr = zarr.create_array(
            LocalStore(path), shape=SHAPE, chunks=CHUNKS, shards=(32, 32, 32) if sharded else None,
            dtype="uint16", compressors=zarr.codecs.ZstdCodec(level=1),
        )
        arr[...] = 1
    # A child rewrites the whole array over and over, alternating 2 and 3, until killed.
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, zarr
            from zarr.storage import LocalStore
            zarr.config.set({PIPELINE!r})
            arr = zarr.open_array(LocalStore({str(path)!r}))
            print("ready", flush=True)
            n = 0
            while True:
                arr[...] = 2 + n % 2
                n += 1
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(1.5)  # several whole-array writes, and the kill lands inside one
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    seen = _each_chunk_is_one_of(path, {1, 2, 3}, sharded)
    assert sum(seen.values()) == (2 if sharded else 4) ** 3
    # A temporary file the killed writer left (README: Guarantees) does not disturb a later write.
    with zarr.config.set(PIPELINE):
        arr = zarr.open_array(LocalStore(path))
        arr[...] = 4
        assert int(arr[...].min()) == int(arr[...].max()) == 4


def test_a_failed_batch_write_leaves_each_chunk_old_or_new(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    with zarr.config.set(PIPELINE):
        arr = zarr.create_array(LocalStore(path), shape=SHAPE, chunks=CHUNKS, dtype="uint16")
        arr[...] = 1
        # One chunk's file cannot be replaced (a directory now stands where it lives), so the
        # batch fails partway; root ignores permissions, a directory it cannot rename over.
        victim = path / "c" / "1" / "2" / "3"
        victim.unlink()
        victim.mkdir()
        (victim / "keep").write_bytes(b"x")
        with pytest.raises(zarrs_cffi.ZarrsStorageError, match="c/1/2/3"):
            arr[...] = 2
        (victim / "keep").unlink()
        victim.rmdir()
    seen = _each_chunk_is_one_of(path, {1, 2, 0}, sharded=False)
    # The victim chunk is missing (fill value 0); every other chunk is whole, old or new.
    assert seen.get(0) == 1
    assert sum(seen.values()) == 4**3
    assert not [p for p in path.rglob("*.partial")], "a failed write left a temporary file"
