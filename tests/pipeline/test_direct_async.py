"""``Array.read_async``: many direct reads in flight from one event loop, regions completed
natively through a descriptor the loop watches (no worker thread), other selections on the
worker pool, the same values as ``arr[key]``, and cancellation leaving nothing behind."""

from __future__ import annotations

import asyncio
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
