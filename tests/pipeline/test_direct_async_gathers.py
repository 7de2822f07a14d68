"""``Array.read_async`` and ``read_future`` of scattered selections (``oindex``/``vindex``
forms, masks, stepped slices): one native gather started on a completion queue (the loop's
descriptor, or the process's one completion thread), no Python thread per call, the same
values as zarr; cancellation leaving nothing behind. And ``write_future``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import make_data
from zarr.storage import LocalStore

import zarrs_cffi
from zarrs_cffi import Array, _direct_futures, _direct_reads
from zarrs_cffi._bindings import ArrayHandle
from zarrs_cffi._core import workers
from zarrs_cffi._pipeline import completion

pytestmark = pytest.mark.usefixtures("zarr_pipeline")

SHAPE = (96, 40)


@pytest.fixture
def arrays(tmp_path: Any) -> tuple[Array, Any]:
    """The direct array and zarr's view of the same store (shards, a missing shard row)."""
    data = make_data("int32", SHAPE, seed=17)
    z = zarr.create_array(LocalStore(tmp_path), shape=SHAPE, chunks=(8, 10), shards=(16, 20), dtype="int32", fill_value=-1)
    z[...] = data
    z[64:80, :] = -1  # shards of only the fill value: not stored
    return Array.open(tmp_path), z


ROWS = np.array([95, 0, 64, 7, 7, 33])
COLS = np.array([39, 0, 12, 5, 5, 21])
MASK_ROWS = np.arange(SHAPE[0]) % 7 == 3
# Keys of arr[key] that are no region: each is one native gather (zarr's own __getitem__
# reads the same key as vindex or oindex, or as a stepped slice).
KEYS: list[Any] = [
    (ROWS, slice(None)),  # oindex: integer array and slice
    (ROWS, 3),  # oindex: integer array and an integer
    (MASK_ROWS, slice(5, 30)),  # oindex: a mask per axis
    np.s_[::7, 3:39:4],  # stepped slices (zarr: basic; here oindex)
    (ROWS, COLS),  # vindex: coordinates
    ROWS,  # vindex of one axis
    make_data("int32", SHAPE, seed=3) % 5 == 0,  # vindex: a mask of the array's shape
    (np.array([], dtype=np.intp), slice(None)),  # picks nothing
]
# What zarr's explicit indexers say (the other forms compare with zarr's __getitem__).
ORTHOGONAL = [(ROWS, COLS), (MASK_ROWS, np.arange(SHAPE[1]) % 7 == 0), (ROWS[::-1], np.array([-1, 2]))]


def _no_blocking(monkeypatch: Any) -> None:
    """Fail any read that goes through a Python pool or the blocking gathers."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a scattered read did not complete through the completion queue")

    monkeypatch.setattr(workers, "run", refuse)
    monkeypatch.setattr(_direct_futures, "run_future", refuse)
    monkeypatch.setattr(_direct_reads, "run_future", refuse)
    monkeypatch.setattr(ArrayHandle, "gather_orthogonal", refuse)
    monkeypatch.setattr(ArrayHandle, "gather_points", refuse)


def _pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("zarrs-cffi-") and t.name != "zarrs-cffi-completions"]


def test_read_async_of_scattered_selections_in_flight_together_equals_zarr(arrays, monkeypatch):
    arr, z = arrays
    _no_blocking(monkeypatch)
    before = threading.active_count()

    async def main() -> tuple[list[Any], list[Any], int]:
        tasks = [asyncio.ensure_future(arr.read_async(key)) for key in KEYS * 25]
        ortho = [asyncio.ensure_future(arr.oindex.read_async(key)) for key in ORTHOGONAL * 25]
        await asyncio.sleep(0)
        during = threading.active_count()
        return await asyncio.gather(*tasks), await asyncio.gather(*ortho), during

    got, got_ortho, during = asyncio.run(main())
    assert during == before, "a Python thread per read"
    for key, values in zip(KEYS * 25, got, strict=True):
        expected = z[key]
        assert values.shape == expected.shape and values.dtype == expected.dtype
        np.testing.assert_array_equal(values, expected)
    for key, values in zip(ORTHOGONAL * 25, got_ortho, strict=True):
        np.testing.assert_array_equal(values, z.oindex[key])


def test_read_futures_of_scattered_selections_complete_without_a_thread_per_call(arrays, monkeypatch):
    arr, z = arrays
    arr.read_future((ROWS, COLS)).result(timeout=30)  # the process's completion thread starts once
    _no_blocking(monkeypatch)
    before, pool = threading.active_count(), _pool_threads()
    futures = [arr.read_future(key) for key in KEYS * 40]
    assert threading.active_count() == before
    assert _pool_threads() == pool
    for key, future in zip(KEYS * 40, futures, strict=True):
        np.testing.assert_array_equal(future.result(timeout=30), z[key])
    # Running from the start: the native side writes into the result until it completes.
    future = arr.read_future((ROWS, slice(None)))
    assert not future.cancel()
    np.testing.assert_array_equal(future.result(timeout=30), z.oindex[ROWS, :])
    np.testing.assert_array_equal(arr.vindex.read_future((ROWS, COLS)).result(timeout=30), z.vindex[ROWS, COLS])


def test_errors_of_started_gathers(tmp_path):
    data = make_data("int32", (32, 32), seed=4)
    z = zarr.create_array(LocalStore(tmp_path), shape=data.shape, chunks=(8, 8), dtype="int32", compressors=zarr.codecs.ZstdCodec())
    z[...] = data
    arr = Array.open(tmp_path)
    # Bad selections are the future's (as zarr raises them), or the awaiting call's.
    with pytest.raises(IndexError):
        arr.read_future((np.array([32]), slice(None))).result(timeout=30)
    with pytest.raises(IndexError):
        asyncio.run(arr.read_async((np.array([0, 1]), np.array([0, 99]))))
    # Storage and codec errors arrive through the queue, naming the chunk.
    (tmp_path / "c" / "1" / "2").write_bytes(b"not zstd")
    key = (np.array([9, 3]), np.array([17, 1]))
    with pytest.raises(zarrs_cffi.ZarrsCodecError, match="c/1/2"):
        arr.read_future(key).result(timeout=30)
    with pytest.raises(zarrs_cffi.ZarrsCodecError, match="c/1/2"):
        asyncio.run(arr.read_async(key))
    # The chunks around it still read.
    np.testing.assert_array_equal(arr.read_future(np.s_[0:8:3, ::9]).result(timeout=30), data[0:8:3, ::9])


def test_cancelled_scattered_reads_leave_nothing_behind(arrays):
    arr, z = arrays
    keys = [(np.arange(i % 90, i % 90 + 6)[::-1], slice(None, None, 3)) for i in range(200)]

    async def main() -> None:
        tasks = [asyncio.ensure_future(arr.read_async(key)) for key in keys]
        await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for i, result in enumerate(results):
            if isinstance(result, asyncio.CancelledError):
                assert i % 2 == 0
                continue
            np.testing.assert_array_equal(result, z.oindex[keys[i]])
        # Every started gather has been drained: nothing is left holding buffers.
        entry = completion._queues[asyncio.get_running_loop()]
        assert entry is not None and not entry.pending
        np.testing.assert_array_equal(await arr.read_async(keys[3]), z.oindex[keys[3]])

    asyncio.run(main())
    futures = [arr.read_future(key) for key in keys]
    for key, future in zip(keys, futures, strict=True):
        np.testing.assert_array_equal(future.result(timeout=30), z.oindex[key])
    completer = _direct_futures._completer
    assert completer is not None
    with completer._lock:
        assert not completer._pending


def test_without_a_completion_descriptor_gathers_run_on_the_pools(arrays, monkeypatch):
    # A platform or loop with no descriptor to watch: the same values, from the pools.
    arr, z = arrays
    monkeypatch.setattr(_direct_futures, "_completer_here", lambda: None)
    monkeypatch.setattr(completion, "submit_start", lambda *args: None)
    for key in KEYS:
        np.testing.assert_array_equal(arr.read_future(key).result(timeout=30), z[key])
        np.testing.assert_array_equal(asyncio.run(arr.read_async(key)), z[key])


def test_variable_length_scattered_reads_use_the_pool(tmp_path):
    values = np.array([f"s{i}" * (i % 4) for i in range(20)], dtype=object)
    z = zarr.create_array(LocalStore(tmp_path), shape=(20,), chunks=(6,), dtype=str)
    z[...] = values
    arr = Array.open(tmp_path)
    picks = np.array([19, 0, 7, 7])
    assert arr.read_future(picks).result(timeout=30).tolist() == values[picks].tolist()
    assert asyncio.run(arr.read_async(np.s_[::3])).tolist() == values[::3].tolist()


def test_write_futures_write_every_selection_kind(arrays):
    arr, z = arrays
    data = z[...]
    rows = np.array([95, 0, 64, 7])
    futures = [
        arr.write_future((slice(10, 15), slice(None)), 1),  # disjoint from the others: all land
        arr.write_future((rows[1:], 39), [2, 3, 4]),
        arr.write_future(np.s_[90:96:2, 10:12], np.full((3, 2), 5)),
    ]
    assert [future.result(timeout=30) for future in futures] == [None] * 3
    arr.write_future((rows, rows % 40), 9).result(timeout=30)
    data[10:15, :] = 1
    data[rows[1:], 39] = [2, 3, 4]
    data[90:96:2, 10:12] = 5
    data[rows, rows % 40] = 9
    np.testing.assert_array_equal(arr[...], data)
    np.testing.assert_array_equal(z[...], data)
    # Errors are the future's.
    with pytest.raises(ValueError, match="broadcast"):
        arr.write_future((slice(0, 4),), np.zeros((3, 40))).result(timeout=30)


def test_a_cancelled_write_future_writes_nothing_and_the_others_land(arrays):
    arr, z = arrays
    before = z[...]
    # More writes than the pool has threads: the last ones are still queued when cancelled.
    n = workers.MAX_WORKERS + 40
    futures = [arr.write_future((slice(i % 96, i % 96 + 1), slice(None)), i) for i in range(n)]
    cancelled = {i for i in range(n - 20, n) if futures[i].cancel()}
    for i, future in enumerate(futures):
        if i not in cancelled:
            future.result(timeout=30)
    assert cancelled, "no write was still queued"
    for i in range(n):
        row = arr[i % 96]
        if i in cancelled:
            np.testing.assert_array_equal(row, before[i % 96])
        else:
            np.testing.assert_array_equal(row, i)
