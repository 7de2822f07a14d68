"""Small native reads started on zarr's event loop and completed through a file descriptor
(``zarrs_cffi._pipeline.completion``, ``zarrs_array_read_chunks_start``).

A read takes this path when other reads are in flight on its loop; the ``submitted``
fixture makes every small read take it (``ASYNC_READ_ALONE``) and counts them. Results are
compared with the worker path (``_workers.run``), which ``ASYNC_READ_MAX = 0`` forces.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
import zarr.api.asynchronous as zasync
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.storage import LocalStore

import zarrs_cffi
from zarrs_cffi._pipeline import completion
from zarrs_cffi._pipeline.routes import storage as routes

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd": {"chunks": (16, 16, 16), "compressors": ZstdCodec(level=1)},
    "zstd-sharded": {"chunks": (8, 8, 8), "shards": (16, 16, 16), "compressors": ZstdCodec(level=1)},
    "blosc-lz4": {"chunks": (16, 16, 16), "compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")},
    "raw-sharded": {"chunks": (8, 8, 8), "shards": (16, 16, 16), "compressors": None},
}
SHAPE = (48, 48, 48)
FILL = 7


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts reads started natively (a list, appended to per read)."""
    monkeypatch.setattr(routes, "ASYNC_READ_ALONE", True)
    started: list[int] = []
    submit = completion.submit

    def counting(*args: Any) -> Any:
        future = submit(*args)
        if future is not None:
            started.append(1)
        return future

    monkeypatch.setattr(completion, "submit", counting)
    yield started


def _data() -> np.ndarray[Any, Any]:
    return np.random.default_rng(1).integers(0, 1000, size=SHAPE, dtype=np.uint16)


def _create(path: Path, layout: str) -> tuple[zarr.Array[Any], np.ndarray[Any, Any]]:
    """An array with some chunks (shards) never written: they read as the fill value."""
    data = _data()
    arr = zarr.create_array(LocalStore(path), shape=SHAPE, dtype="uint16", fill_value=FILL, **LAYOUTS[layout])
    arr[:32, :, :] = data[:32]
    expected = data.copy()
    expected[32:] = FILL
    return arr, expected


def _boxes(n: int) -> list[tuple[slice, ...]]:
    rng = np.random.default_rng(2)
    starts = rng.integers(0, 48 - 12, size=(n, 3))
    return [tuple(slice(int(s), int(s) + int(w)) for s, w in zip(start, rng.integers(1, 13, size=3), strict=True)) for start in starts]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_results_equal_the_worker_path_with_missing_chunks(
    layout: str, tmp_path: Path, zarrs_pipeline: None, submitted: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    arr, expected = _create(tmp_path, layout)
    boxes = _boxes(40) + [(slice(30, 40), slice(0, 48), slice(5, 9)), (slice(40, 48),) * 3]
    started = len(submitted)
    fast = [arr[box] for box in boxes]
    assert len(submitted) - started == len(boxes)  # every box is at most 8 chunks
    monkeypatch.setattr(routes, "ASYNC_READ_MAX", 0)
    started = len(submitted)
    slow = [arr[box] for box in boxes]
    assert len(submitted) == started
    for box, got, worker in zip(boxes, fast, slow, strict=True):
        np.testing.assert_array_equal(got, expected[box])
        np.testing.assert_array_equal(got, worker)
    s = zarrs_cffi.stats()
    assert s.fallbacks == 0 and s.native_reads > 0, s


def test_a_corrupt_chunk_raises_what_the_worker_path_raises(
    tmp_path: Path, zarrs_pipeline: None, submitted: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    arr, _ = _create(tmp_path, "zstd")
    (tmp_path / "c" / "0" / "1" / "0").write_bytes(b"not a zstd frame")
    box = (slice(0, 8), slice(12, 20), slice(0, 4))  # chunks c/0/0/0 and c/0/1/0
    with pytest.raises(zarrs_cffi.ZarrsError) as fast:
        arr[box]
    assert submitted
    monkeypatch.setattr(routes, "ASYNC_READ_MAX", 0)
    with pytest.raises(zarrs_cffi.ZarrsError) as slow:
        arr[box]
    assert type(fast.value) is type(slow.value) is zarrs_cffi.ZarrsCodecError
    assert str(fast.value).startswith("c/0/1/0 in "), str(fast.value)
    assert str(fast.value) == str(slow.value)
    # The array still reads after the error.
    np.testing.assert_array_equal(arr[0:4, 0:4, 0:4], _data()[0:4, 0:4, 0:4])


def _big(path: Path) -> tuple[zarr.Array[Any], np.ndarray[Any, Any]]:
    """16 chunks of 4 MiB: a batch that takes tens of milliseconds to decode natively, yet
    small enough (16 requests) for the asynchronous path. Random low bits: a ramp compressed
    so well that three reads could finish in under 50 ms."""
    data = np.random.default_rng(0).integers(0, 1 << 10, size=(512, 256, 256), dtype=np.uint16)
    arr = zarr.create_array(LocalStore(path), shape=data.shape, chunks=(128, 128, 128), dtype="uint16", compressors=ZstdCodec(level=1))
    arr[...] = data
    return arr, data


def test_a_cancelled_read_does_not_crash_or_corrupt_later_reads(
    tmp_path: Path, zarrs_pipeline: None, submitted: list[int]
) -> None:
    _, data = _big(tmp_path)

    async def main() -> None:
        arr = await zasync.open_array(store=LocalStore(tmp_path), mode="r")
        loop = asyncio.get_running_loop()
        for _ in range(3):
            task = asyncio.ensure_future(arr.getitem(slice(None)))
            while not submitted:
                await asyncio.sleep(0)
            submitted.clear()
            entry = completion._queues[loop]
            assert entry is not None and entry.pending, "the read is in flight"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gc.collect()  # zarr's output for the read is no longer referenced by zarr
            # The buffers stay referenced until the native read has finished.
            assert entry.pending
            while entry.pending:
                await asyncio.sleep(0.005)
            gc.collect()
        np.testing.assert_array_equal(await arr.getitem((slice(0, 300), slice(100, 200), slice(None))), data[0:300, 100:200])

    asyncio.run(main())


def test_many_concurrent_reads_from_one_loop(tmp_path: Path, zarrs_pipeline: None, submitted: list[int]) -> None:
    arr, expected = _create(tmp_path, "zstd-sharded")
    boxes = _boxes(200)

    async def main() -> list[Any]:
        a = await zasync.open_array(store=LocalStore(tmp_path), mode="r")
        return await asyncio.gather(*(a.getitem(box) for box in boxes))

    results = asyncio.run(main())
    assert len(submitted) == 200
    for box, got in zip(boxes, results, strict=True):
        np.testing.assert_array_equal(got, expected[box])


def _child_reads(path: str) -> tuple[bool, int, int]:
    with zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}):
        zarrs_cffi.reset_stats()
        arr = zarr.open_array(LocalStore(path), mode="r")
        expected = _data()
        expected[32:] = FILL
        ok = all(np.array_equal(arr[box], expected[box]) for box in _boxes(50))
        queues = [entry for entry in completion._queues.values() if entry is not None]
        return ok, len(queues), zarrs_cffi.stats().fallbacks


def test_a_forked_child_reads_with_its_own_queue(tmp_path: Path, zarrs_pipeline: None, submitted: list[int]) -> None:
    arr, expected = _create(tmp_path, "zstd")
    np.testing.assert_array_equal(arr[0:10, 0:10, 0:10], expected[0:10, 0:10, 0:10])
    assert submitted, "the parent's queue exists before the fork"
    parent = [entry.queue.fd for entry in completion._queues.values() if entry is not None]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        ok, queues, fallbacks = pool.apply_async(_child_reads, (str(tmp_path),)).get(timeout=60)
    assert ok and queues >= 1 and fallbacks == 0
    # The parent's queue still works after the fork.
    assert [entry.queue.fd for entry in completion._queues.values() if entry is not None][: len(parent)] == parent
    np.testing.assert_array_equal(arr[20:30, 0:10, 5:9], expected[20:30, 0:10, 5:9])


def test_the_event_loop_keeps_running_while_reads_decode(tmp_path: Path, zarrs_pipeline: None, submitted: list[int]) -> None:
    _, data = _big(tmp_path)

    async def main() -> tuple[float, float, bool]:
        arr = await zasync.open_array(store=LocalStore(tmp_path), mode="r")
        ticks = [time.monotonic()]
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                await asyncio.sleep(0.001)
                ticks.append(time.monotonic())

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        start = time.monotonic()
        results = await asyncio.gather(*(arr.getitem(slice(None)) for _ in range(3)))
        took = time.monotonic() - start
        done.set()
        await task
        return took, float(np.max(np.diff(ticks))), all(np.array_equal(r, data) for r in results)

    took, stall, correct = asyncio.run(main())
    assert correct and len(submitted) == 3
    assert took > 0.05, f"the reads took {took * 1000:.0f} ms: too short to show anything"
    # Read on the loop, each read would stall it for about a third of the time; a loaded
    # machine may pause any thread for tens of milliseconds (test_event_loop's TICK_LIMIT).
    assert stall < min(0.08, took / 5), f"the loop stalled {stall * 1000:.1f} ms of {took * 1000:.0f} ms"


def test_two_loops_in_two_threads_each_get_their_own_queue(tmp_path: Path, zarrs_pipeline: None, submitted: list[int]) -> None:
    arr, expected = _create(tmp_path, "blosc-lz4")
    boxes = _boxes(60)
    seen: dict[int, Any] = {}
    failures: list[BaseException] = []

    def thread(i: int) -> None:
        async def main() -> None:
            a = await zasync.open_array(store=LocalStore(tmp_path), mode="r")
            for box in boxes:
                np.testing.assert_array_equal(await a.getitem(box), expected[box])
            seen[i] = completion._queues[asyncio.get_running_loop()]

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert len(submitted) == 2 * len(boxes)
    assert seen[0] is not None and seen[1] is not None and seen[0].queue is not seen[1].queue


def test_by_default_only_reads_in_flight_together_start_natively(
    tmp_path: Path, zarrs_pipeline: None, submitted: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "ASYNC_READ_ALONE", False)
    arr, expected = _create(tmp_path, "zstd")
    boxes = _boxes(50)
    for box in boxes:  # one after another: the worker path
        np.testing.assert_array_equal(arr[box], expected[box])
    assert not submitted

    async def main() -> list[Any]:
        a = await zasync.open_array(store=LocalStore(tmp_path), mode="r")
        return await asyncio.gather(*(a.getitem(box) for box in boxes))

    for box, got in zip(boxes, asyncio.run(main()), strict=True):
        np.testing.assert_array_equal(got, expected[box])
    # The first read of the gather finds none in flight; the others start natively.
    assert len(submitted) >= len(boxes) - 5, len(submitted)
