"""``Array.read_async``, ``read_future`` and ``write_async``: many direct reads in flight
from one event loop or one thread, regions completed natively (through a descriptor the
loop watches, or the process's completion queue: no thread per call), other selections on
a pool, the same values as ``arr[key]``; cancellation leaving nothing behind and never
touching a caller's buffer after it is raised."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import make_data
from zarr.storage import LocalStore

import zarrs_cffi
from zarrs_cffi import Array
from zarrs_cffi._core import workers

pytestmark = pytest.mark.usefixtures("zarr_pipeline")

SHAPE = (96, 40)


@pytest.fixture
def direct(tmp_path: Any) -> tuple[Array, np.ndarray[Any, Any]]:
    data = make_data("int32", SHAPE, seed=91)
    arr = zarr.create_array(LocalStore(tmp_path), shape=SHAPE, chunks=(8, 10), shards=(16, 20), dtype="int32", fill_value=-1)
    arr[...] = data
    arr[64:80, :] = -1  # shards of only the fill value: not stored
    data[64:80, :] = -1
    return Array.open(tmp_path), data


KEYS = [
    (slice(3, 90), slice(5, 33)),
    (5, slice(None)),
    (slice(60, 96), 7),
    (slice(64, 80), slice(None)),
    (slice(0, 0),),
    (),
]


def test_regions_in_flight_together_read_like_getitem_without_a_worker(direct, monkeypatch):
    arr, data = direct

    def no_worker(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a region read went through the worker pool")

    monkeypatch.setattr(workers, "run", no_worker)

    async def main() -> list[np.ndarray[Any, Any]]:
        return await asyncio.gather(*[arr.read_async(key) for key in KEYS * 20])

    for key, got in zip(KEYS * 20, asyncio.run(main()), strict=True):
        assert got.shape == data[key].shape
        np.testing.assert_array_equal(got, data[key])


def test_scattered_selections_and_out(direct):
    arr, data = direct
    rows = np.array([90, 2, 2, 40])

    async def main() -> tuple[Any, ...]:
        out = np.empty((87, 28), dtype="int32")
        region = await arr.read_async((slice(3, 90), slice(5, 33)), out=out)
        assert region is out
        return region, await arr.read_async((rows, slice(None))), await arr.read_async((slice(None, None, 7), 3))

    region, picked, stepped = asyncio.run(main())
    np.testing.assert_array_equal(region, data[3:90, 5:33])
    np.testing.assert_array_equal(picked, data[rows])
    np.testing.assert_array_equal(stepped, data[::7, 3])
    with pytest.raises(zarrs_cffi.ZarrsValueError):
        asyncio.run(arr.read_async((slice(0, 4),), out=np.empty((4, 40), dtype="int64")))


def test_cancelled_reads_leave_the_array_and_the_loop_usable(direct):
    arr, data = direct

    async def main() -> None:
        tasks = [asyncio.ensure_future(arr.read_async((slice(i % 90, i % 90 + 6), slice(None)))) for i in range(200)]
        await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for i, result in enumerate(results):
            if isinstance(result, asyncio.CancelledError):
                assert i % 2 == 0
                continue
            np.testing.assert_array_equal(result, data[i % 90 : i % 90 + 6])
        np.testing.assert_array_equal(await arr.read_async(), data)

    asyncio.run(main())
    np.testing.assert_array_equal(arr[:], data)


def test_read_futures_of_regions_complete_natively_without_a_thread_per_call(direct):
    arr, data = direct
    arr.read_future((slice(0, 1),)).result(timeout=30)  # the process's completion thread starts once
    before = threading.active_count()
    futures = [arr.read_future((slice(i % 90, i % 90 + 6), slice(None))) for i in range(300)]
    assert threading.active_count() == before
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(timeout=30), data[i % 90 : i % 90 + 6])
    out = np.zeros((8, 40), dtype="int32")
    future = arr.read_future((slice(8, 16),), out=out)
    # Running from the start: the native side writes into out until it completes.
    assert not future.cancel()
    assert future.result(timeout=30) is out
    np.testing.assert_array_equal(out, data[8:16])
    for key in KEYS:
        np.testing.assert_array_equal(arr.read_future(key).result(timeout=30), arr[key])


def test_read_futures_of_other_selections_and_their_errors(direct):
    arr, data = direct
    rows = np.array([95, 0, 64, 7])
    np.testing.assert_array_equal(arr.read_future((rows, slice(None))).result(timeout=30), data[rows])
    np.testing.assert_array_equal(arr.read_future(np.s_[::5, 3]).result(timeout=30), data[::5, 3])
    with pytest.raises(IndexError):
        arr.read_future((np.array([96]),)).result(timeout=30)
    with pytest.raises(zarrs_cffi.ZarrsValueError):
        arr.read_future((slice(0, 4),), out=np.empty((4, 40), dtype="int64"))


def test_write_async_writes_every_selection_kind(direct):
    arr, data = direct
    rows = np.array([95, 0, 64, 7])

    async def main() -> None:
        await asyncio.gather(
            arr.write_async((slice(10, 15), slice(None)), 1),  # disjoint from the others: all land
            arr.write_async((rows[1:], 39), [2, 3, 4]),
            arr.write_async(np.s_[90:96:2, 10:12], np.full((3, 2), 5)),
        )
        await arr.write_async((rows, rows % 40), 9)

    asyncio.run(main())
    data[10:15, :] = 1
    data[rows[1:], 39] = [2, 3, 4]
    data[90:96:2, 10:12] = 5
    data[rows, rows % 40] = 9
    np.testing.assert_array_equal(arr[...], data)


def test_a_cancelled_read_never_writes_into_out_after_the_cancellation(tmp_path):
    # A read large enough to still be running when it is cancelled: the cancellation is
    # raised only once the native side is done with ``out``, so the caller may reuse it.
    data = make_data("float64", (1024, 512), seed=5)
    zarr.create_array(LocalStore(tmp_path), shape=data.shape, chunks=(64, 512), dtype="float64")[...] = data
    arr = Array.open(tmp_path)

    async def main() -> int:
        cancelled = 0
        for _ in range(10):
            out = np.zeros(data.shape)
            task = asyncio.ensure_future(arr.read_async((), out=out))
            await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                cancelled += 1
            out[...] = -1.0  # the caller reuses its buffer
            await asyncio.sleep(0.05)
            await arr.read_async((slice(0, 1),))
            assert (out == -1.0).all()
        return cancelled

    assert asyncio.run(main()) > 0


def test_a_cancelled_write_is_whole_when_it_raises(tmp_path):
    data = make_data("int32", (512, 256), seed=6)
    arr = Array.create(tmp_path, {
        "zarr_format": 3, "node_type": "array", "shape": [512, 256], "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [32, 256]}},
        "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "zstd", "configuration": {"level": 3, "checksum": False}}],
    })

    async def main() -> None:
        for _ in range(5):
            value = data.copy()
            task = asyncio.ensure_future(arr.write_async((), value))
            await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            value[...] = -7  # reused: the write is done with it
        np.testing.assert_array_equal(arr[...], data)

    asyncio.run(main())


def _child_futures(arr: Array, queue: Any) -> None:
    queue.put(arr.read_future((slice(0, 4),)).result(timeout=60).tolist())


def test_read_futures_work_in_a_forked_child(direct):
    # The parent's completion thread does not survive the fork: the child starts its own.
    import multiprocessing

    arr, data = direct
    arr.read_future((slice(0, 1),)).result(timeout=30)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_futures, args=(arr, queue))
    child.start()
    try:
        assert queue.get(timeout=60) == data[0:4].tolist()
    finally:
        child.join(60)
    assert child.exitcode == 0
