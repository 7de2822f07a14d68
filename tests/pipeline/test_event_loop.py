"""The pipeline never blocks zarr's event loop.

zarr runs every read and write of every array on one event-loop thread. Anything that takes
time there (a native call, a store's synchronous I/O, a numpy loop over chunks) stalls every
other coroutine: concurrent ``getitem`` calls run one after another, and a dask worker's
threads all wait behind one another's reads.

Each test makes the native calls (and MemoryStore's synchronous I/O) slow on purpose, runs
several small reads or writes concurrently next to a ticker coroutine, and checks that:
the slow calls ran off the loop thread, they overlapped, the ticker kept ticking, the
values are right, and everything went native.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
import zarr.api.asynchronous as zasync
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi
from zarrs_cffi import _bindings
from zarrs_cffi._pipeline.routes import storage as routes
from zarrs_cffi._pipeline import variable as variable_module

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

# How long each recorded call sleeps. A call run inline on the loop stalls the ticker at
# least this long; the ticker must never stall for more than TICK_LIMIT.
SLOW = 0.1
TICK_LIMIT = 0.08
CONCURRENT = 5


class PyLocalStore(LocalStore):
    """A LocalStore subclass: its bytes move through its async Python API (not native I/O)."""


@dataclass
class Recorder:
    """Every slow call: its name, thread, start and end."""

    calls: list[tuple[str, int, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, name: str, function: Callable[..., Any], *, sleep: bool = True) -> Callable[..., Any]:
        def slow(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            if sleep:
                time.sleep(SLOW)
            try:
                return function(*args, **kwargs)
            finally:
                with self.lock:
                    self.calls.append((name, threading.get_ident(), start, time.monotonic()))

        return slow

    def names(self) -> set[str]:
        return {name for name, *_ in self.calls}

    def on_thread(self, thread: int) -> list[str]:
        return [name for name, ident, *_ in self.calls if ident == thread]

    def overlapping(self, name: str) -> bool:
        """Whether some call of ``name`` started before an earlier one ended."""
        spans = sorted((start, end) for n, _, start, end in self.calls if n == name)
        return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """Native data calls, variable-length codec calls and MemoryStore's synchronous I/O,
    each slowed down by SLOW seconds and recorded."""
    rec = Recorder()
    # Small native reads are started on the loop and read on the library's own threads
    # (``_completion``), where no Python wrapper can slow them: here they take the worker
    # path, which the wrappers below can observe. test_async_read.py shows the native path
    # keeps the loop running with a read that is slow natively.
    monkeypatch.setattr(routes, "ASYNC_READ_MAX", 0)
    for name in ("read_chunks", "write_chunks", "decode_chunks", "encode_chunks", "gather_orthogonal"):
        monkeypatch.setattr(_bindings.ArrayHandle, name, rec.wrap(name, getattr(_bindings.ArrayHandle, name)))
    for name in ("supply", "finish"):
        monkeypatch.setattr(_bindings.ReadPlan, name, rec.wrap(f"read_plan_{name}", getattr(_bindings.ReadPlan, name)))
    for name in ("decode_variable_chunks", "encode_variable_chunks"):
        monkeypatch.setattr(variable_module, name, rec.wrap(name, getattr(variable_module, name)))
    for name in ("get_sync", "set_sync", "delete_sync"):
        if hasattr(MemoryStore, name):
            # Recorded, not slowed: a dictionary lookup is only slow for a real store.
            monkeypatch.setattr(MemoryStore, name, rec.wrap(name, getattr(MemoryStore, name), sleep=False))
    yield rec


async def _with_ticker(work: Awaitable[Any]) -> tuple[Any, float]:
    """Run ``work`` next to a coroutine ticking every few ms; return its result and the
    longest the ticker waited between two ticks."""
    ticks = [time.monotonic()]
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            await asyncio.sleep(0.002)
            ticks.append(time.monotonic())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let the ticker start first
    try:
        result = await work
    finally:
        done.set()
        await task
    return result, float(np.max(np.diff(ticks)))


def _open_kwargs(kind: str, tmp_path: Path) -> dict[str, Any]:
    if kind == "native":
        return {"store": LocalStore(tmp_path)}
    if kind == "python-io":
        return {"store": PyLocalStore(tmp_path)}
    return {"store": MemoryStore()}


ROUTES = {
    # store kind, dtype, shards, the calls a read and a write must make
    "local-native": ("native", "int32", None, "read_chunks", "write_chunks"),
    "memory-sync-io": ("memory", "int32", None, "decode_chunks", "encode_chunks"),
    "python-async-io": ("python-io", "int32", None, "decode_chunks", "encode_chunks"),
    # A part of a shard is read by the native read plan: its decoding call is finish().
    "python-io-partial-shards": ("python-io", "int32", (16, 16), "read_plan_finish", "encode_chunks"),
    "memory-variable-strings": ("memory", "str", None, "decode_variable_chunks", "encode_variable_chunks"),
}


def _data(dtype: str) -> np.ndarray[Any, Any]:
    values = np.arange(64 * 64).reshape(64, 64)
    return values.astype(str).astype(object) if dtype == "str" else values.astype(dtype)


def _check(got: Any, expected: np.ndarray[Any, Any]) -> None:
    np.testing.assert_array_equal(np.asarray(got).astype(expected.dtype), expected)


@pytest.mark.parametrize("route", list(ROUTES))
def test_concurrent_small_reads_overlap_off_the_loop(
    route: str, tmp_path: Path, recorder: Recorder, zarrs_pipeline: None
) -> None:
    kind, dtype, shards, read_call, _ = ROUTES[route]
    data = _data(dtype)

    async def main() -> tuple[list[Any], float, int]:
        arr = await zasync.create_array(
            **_open_kwargs(kind, tmp_path), shape=data.shape, chunks=(8, 8), shards=shards,
            dtype=str if dtype == "str" else dtype, fill_value="" if dtype == "str" else 0,
        )
        await arr.setitem(slice(None), data)
        recorder.calls.clear()
        zarrs_cffi.reset_stats()
        # Five small reads, each of one chunk (a partial shard read when sharded).
        reads = [arr.getitem((slice(8 * i, 8 * i + 8), slice(0, 8))) for i in range(CONCURRENT)]
        results, stall = await _with_ticker(asyncio.gather(*reads))
        return results, stall, threading.get_ident()

    results, stall, loop_thread = asyncio.run(main())
    for i, got in enumerate(results):
        _check(got, data[8 * i : 8 * i + 8, 0:8])
    assert read_call in recorder.names(), recorder.names()
    assert recorder.on_thread(loop_thread) == [], "blocking calls ran on the event-loop thread"
    assert recorder.overlapping(read_call), "concurrent reads ran one after another"
    assert stall < TICK_LIMIT, f"the event loop stalled for {stall * 1000:.0f} ms"
    s = zarrs_cffi.stats()
    assert s.native_reads >= CONCURRENT and s.fallbacks == 0, s


@pytest.mark.parametrize("route", list(ROUTES))
def test_concurrent_small_writes_overlap_off_the_loop(
    route: str, tmp_path: Path, recorder: Recorder, zarrs_pipeline: None
) -> None:
    kind, dtype, shards, _, write_call = ROUTES[route]
    data = _data(dtype)

    async def main() -> tuple[Any, float, int]:
        arr = await zasync.create_array(
            **_open_kwargs(kind, tmp_path), shape=data.shape, chunks=(8, 8), shards=shards,
            dtype=str if dtype == "str" else dtype, fill_value="" if dtype == "str" else 0,
        )
        recorder.calls.clear()
        zarrs_cffi.reset_stats()
        # Five small writes to different chunks (different shards when sharded); the
        # first is partial, so the old chunk is read and merged too.
        step = 16 if shards else 8
        places = [((step * i) % 64, step * ((step * i) // 64)) for i in range(CONCURRENT)]
        boxes = [(slice(r, r + 8), slice(c, c + (8 if i else 4))) for i, (r, c) in enumerate(places)]
        writes = [arr.setitem(box, data[box]) for box in boxes]
        _, stall = await _with_ticker(asyncio.gather(*writes))
        back = await arr.getitem(slice(None))
        return (back, boxes), stall, threading.get_ident()

    (back, boxes), stall, loop_thread = asyncio.run(main())
    expected = np.zeros_like(data) if dtype != "str" else np.full(data.shape, "", dtype=object)
    for box in boxes:
        expected[box] = data[box]
    _check(back, expected.astype(data.dtype) if dtype != "str" else expected)
    assert write_call in recorder.names(), recorder.names()
    assert recorder.on_thread(loop_thread) == [], "blocking calls ran on the event-loop thread"
    assert recorder.overlapping(write_call), "concurrent writes ran one after another"
    assert stall < TICK_LIMIT, f"the event loop stalled for {stall * 1000:.0f} ms"
    s = zarrs_cffi.stats()
    assert s.native_writes >= CONCURRENT and s.fallbacks == 0, s


def test_gathered_reads_run_off_the_loop(tmp_path: Path, recorder: Recorder, zarrs_pipeline: None) -> None:
    """Stepped and fancy selections (on a local store: gathered natively)."""
    data = _data("int32")

    async def main() -> tuple[list[Any], float, int]:
        arr = await zasync.create_array(LocalStore(tmp_path), shape=data.shape, chunks=(8, 8), dtype="int32")
        await arr.setitem(slice(None), data)
        recorder.calls.clear()
        zarrs_cffi.reset_stats()
        reads = [arr.getitem((slice(8 * i, 8 * i + 8, 3), slice(0, 8, 2))) for i in range(CONCURRENT)]
        results, stall = await _with_ticker(asyncio.gather(*reads))
        return results, stall, threading.get_ident()

    results, stall, loop_thread = asyncio.run(main())
    for i, got in enumerate(results):
        _check(got, data[8 * i : 8 * i + 8 : 3, 0:8:2])
    assert recorder.on_thread(loop_thread) == []
    assert recorder.overlapping("gather_orthogonal")
    assert stall < TICK_LIMIT, f"the event loop stalled for {stall * 1000:.0f} ms"
    s = zarrs_cffi.stats()
    assert s.native_reads >= CONCURRENT and s.fallbacks == 0, s


def test_threads_reading_through_the_sync_api_overlap(
    tmp_path: Path, recorder: Recorder, zarrs_pipeline: None
) -> None:
    """What dask's threaded scheduler does: several threads call ``z[...]`` at once, and
    zarr runs all of them on its one event-loop thread."""
    data = _data("int32")
    arr = zarr.create_array(LocalStore(tmp_path), shape=data.shape, chunks=(8, 8), dtype="int32")
    arr[:] = data
    recorder.calls.clear()
    zarrs_cffi.reset_stats()
    results: dict[int, Any] = {}

    def read(i: int) -> None:
        results[i] = arr[8 * i : 8 * i + 8, 0:8]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(CONCURRENT)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    for i in range(CONCURRENT):
        _check(results[i], data[8 * i : 8 * i + 8, 0:8])
    assert recorder.overlapping("read_chunks")
    # One after another would take CONCURRENT * SLOW.
    assert elapsed < (CONCURRENT - 1) * SLOW, elapsed
    s = zarrs_cffi.stats()
    assert s.native_reads >= CONCURRENT and s.fallbacks == 0, s


def test_errors_and_cancellation_reach_the_caller(tmp_path: Path, zarrs_pipeline: None) -> None:
    """A native error raised on a worker thread is raised by the awaiting coroutine, and a
    cancelled read leaves the loop and the workers usable."""

    async def main() -> None:
        arr = await zasync.create_array(LocalStore(tmp_path), shape=(16,), chunks=(8,), dtype="int32")
        await arr.setitem(slice(None), np.arange(16, dtype="int32"))
        (tmp_path / "c" / "0").write_bytes(b"not a zstd frame")
        with pytest.raises(zarrs_cffi.ZarrsError):
            await arr.getitem(slice(0, 8))
        task = asyncio.ensure_future(arr.getitem(slice(8, 16)))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        np.testing.assert_array_equal(await arr.getitem(slice(8, 16)), np.arange(8, 16, dtype="int32"))

    asyncio.run(main())
