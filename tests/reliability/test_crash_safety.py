"""A failed or killed write leaves every chunk old or new, and durable writes fsync
(README, Guarantees).

Native writes replace each chunk (or shard) whole: an unnamed file in its directory, linked
to a hidden temporary name and renamed over it. A writer killed between those two calls
leaves the temporary; the next process to write into that directory removes it.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
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


def _keys(path: Path) -> list[str]:
    async def collect() -> list[str]:
        return [key async for key in LocalStore(path).list()]

    return asyncio.run(collect())


def _temporaries(path: Path) -> list[str]:
    return [key for key in _keys(path) if key.endswith(".partial")]


def _run_writer(path: Path, script: str, **kwargs: object) -> subprocess.Popen[str]:
    preamble = f"""
        import sys, zarr
        import numpy as np
        from zarr.storage import LocalStore
        zarr.config.set({PIPELINE!r})
        arr = zarr.open_array(LocalStore({str(path)!r}))
    """
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(preamble) + textwrap.dedent(script)],
        stdout=subprocess.PIPE, text=True, **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.parametrize("sharded", [False, True])
def test_writers_killed_mid_batch_leave_every_chunk_old_or_new(tmp_path: Path, sharded: bool) -> None:
    path = tmp_path / "a.zarr"
    with zarr.config.set(PIPELINE):
        arr = zarr.create_array(
            LocalStore(path), shape=SHAPE, chunks=CHUNKS, shards=(32, 32, 32) if sharded else None,
            dtype="uint16", compressors=zarr.codecs.ZstdCodec(level=1),
        )
        arr[...] = 1
    rng = random.Random(10)
    left_behind = 0
    for _ in range(12):
        # A child rewrites the whole array over and over, alternating 2 and 3, until killed
        # at a random moment, inside one of its writes.
        child = _run_writer(path, """
            print("ready", flush=True)
            n = 0
            while True:
                arr[...] = 2 + n % 2
                n += 1
        """)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.2, 0.6))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        seen = _each_chunk_is_one_of(path, {1, 2, 3}, sharded)
        assert sum(seen.values()) == (2 if sharded else 4) ** 3
        # Only a kill between linking and renaming a file leaves its temporary: hidden, and
        # never a name a later write uses.
        temporaries = _temporaries(path)
        assert all(key.rsplit("/", 1)[-1].startswith(".") for key in temporaries), temporaries
        left_behind += len(temporaries)
    # The next process to write removes what the killed ones left, and its writes succeed.
    writer = _run_writer(path, "arr[...] = 4")
    assert writer.wait(timeout=60) == 0
    assert _temporaries(path) == [], f"{left_behind} temporaries were left by 12 kills"
    assert not [p for p in path.rglob("*.partial")]
    with zarr.config.set(PIPELINE):
        assert int(zarr.open_array(LocalStore(path))[...].min()) == 4
    assert _each_chunk_is_one_of(path, {4}, sharded)


def _namespace() -> int:
    """The writer namespace the native side puts in temporary names (local.rs: namespace)."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    text = boot + os.readlink("/proc/self/ns/pid")
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return max(h, 1)


@pytest.mark.skipif(not Path("/proc/self/ns/pid").exists(), reason="needs /proc")
def test_a_write_removes_only_temporaries_of_dead_writers(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    with zarr.config.set(PIPELINE):
        arr = zarr.create_array(LocalStore(path), shape=(8,), chunks=(4,), dtype="uint8")
    directory = path / "c"
    directory.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    ns = _namespace()
    stale = f".0.{dead_pid}-{ns:08x}-00000001-7.partial"
    # A live writer's file in flight (this process), one from another host or container
    # (another namespace), and names that only look alike stay.
    kept = [
        f".0.{os.getpid()}-{ns:08x}-00000001-7.partial",
        f".0.{dead_pid}-{(ns + 1) % 2**32 or 1:08x}-00000001-7.partial",
        f"0.{dead_pid}-{ns:08x}-00000001-7.partial",
        f".0.{dead_pid}-{ns:08x}-00000001-7.partial.bak",
    ]
    for name in [stale, *kept]:
        (directory / name).write_bytes(b"x")
    # A fresh process: this one's native storage for the store may have swept already.
    writer = _run_writer(path, "arr[...] = 5")
    assert writer.wait(timeout=60) == 0
    remaining = sorted(p.name for p in directory.iterdir() if not p.name.isdigit())
    assert remaining == sorted(kept)
    with zarr.config.set(PIPELINE):
        assert zarr.open_array(LocalStore(path))[...].tolist() == [5] * 8


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


def _fsyncs(path: Path, script: str) -> int:
    """How many fsync or fdatasync calls ``script`` (after opening ``arr`` at ``path``)
    makes, counted by strace across every thread."""
    lines = _trace(path, script, "fsync,fdatasync")
    return sum(1 for line in lines if "fsync(" in line or "fdatasync(" in line)


def _trace(path: Path, script: str, calls: str) -> list[str]:
    """The system calls ``calls`` that ``script`` (after opening ``arr`` at ``path``) makes,
    in order across every thread, as strace prints them with file descriptors' paths."""
    log = path.parent / "strace.log"
    preamble = f"""
        import zarr, zarrs_cffi
        from zarr.storage import LocalStore
        zarr.config.set({PIPELINE!r})
        arr = zarr.open_array(LocalStore({str(path)!r}))
        arr[...] = 7  # warm: the pipeline and its thread pool exist before the count matters
    """
    subprocess.run(
        ["strace", "-f", "-qq", "-y", "-e", f"trace={calls}", "-o", str(log),
         sys.executable, "-c", textwrap.dedent(preamble) + textwrap.dedent(script)],
        check=True, timeout=300,
    )
    return log.read_text().splitlines()


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (scripts/test installs it)")
def test_fsync_is_off_by_default_and_syncs_file_and_directory_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    with zarr.config.set(PIPELINE):
        zarr.create_array(LocalStore(path), shape=SHAPE, chunks=CHUNKS, dtype="uint16")
    n_chunks = 4**3
    # The warm-up write in every run is the default: without the option nothing is synced.
    assert _fsyncs(path, "arr[...] = 1") == 0
    # codec_pipeline.fsync: each chunk file before its rename, its directory after.
    synced = _fsyncs(path, """
        with zarr.config.set({"codec_pipeline.fsync": True}):
            arr = zarr.open_array(LocalStore(arr.store.root))
            arr[...] = 2
    """)
    assert synced == 2 * n_chunks
    # Erasing (all fill value: chunks are removed) syncs each directory.
    erased = _fsyncs(path, """
        with zarr.config.set({"codec_pipeline.fsync": True}):
            arr = zarr.open_array(LocalStore(arr.store.root))
            arr[...] = 0
    """)
    assert erased == n_chunks
    # The direct API and its Options.
    direct = _fsyncs(path, f"""
        direct = zarrs_cffi.Array.open({str(path)!r}, options=zarrs_cffi.Options(fsync=True))
        direct[...] = 3
    """)
    assert direct == 2 * n_chunks
    with zarr.config.set(PIPELINE):
        assert int(zarr.open_array(LocalStore(path))[...].min()) == 3


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (scripts/test installs it)")
def test_erase_chunk_with_fsync_syncs_the_directory_after_the_unlink(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    with zarr.config.set(PIPELINE):
        zarr.create_array(LocalStore(path), shape=SHAPE, chunks=CHUNKS, dtype="uint16")
    chunk, directory = path / "c" / "1" / "2" / "3", path / "c" / "1" / "2"
    erase = """
        direct = zarrs_cffi.Array.open({path!r}, options=zarrs_cffi.Options(fsync={fsync}))
        direct.erase_chunk((1, 2, 3))
        assert direct.read_chunk((1, 2, 3)).max() == 0
    """

    def unlink_then_syncs(fsync: bool) -> list[str]:
        """The fsync calls after the chunk file's unlink, which must be there."""
        lines = _trace(path, erase.format(path=str(path), fsync=fsync), "fsync,fdatasync,unlink,unlinkat")
        unlinks = [i for i, line in enumerate(lines) if "unlink" in line and f'"{chunk}"' in line]
        assert len(unlinks) == 1, lines
        assert not chunk.exists()
        return [line for line in lines[unlinks[0] + 1:] if "fsync(" in line or "fdatasync(" in line]

    # Without the option an erase syncs nothing.
    assert unlink_then_syncs(False) == []
    # With it, the chunk's directory once, after the unlink (the warm-up write recreates
    # the chunk each run).
    synced = unlink_then_syncs(True)
    assert len(synced) == 1 and f"<{directory}>" in synced[0], synced
