"""A lone small read of local files runs on zarr's event loop itself, and nothing else does.

The hop to a worker thread and back costs a small read two thread wake-ups and two GIL
hand-offs, most of our share of it. So ``StorageRoute.read`` runs a read on the loop thread
when no other call of the pipeline is in flight there and the read is estimated to decode
at most ``codec_pipeline.loop_read_bytes``. These tests observe which thread made the native
call: the loop's for a lone small read, never the loop's for reads in flight together or a
read over the budget, and never while a write is in flight; and the results equal zarr's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
import zarr.api.asynchronous as zasync
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi
from zarrs_cffi import _bindings
from zarrs_cffi._pipeline import completion
from zarrs_cffi._pipeline.routes import storage as routes

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SHAPE = (64, 64, 64)
FILL = 3


class Calls:
    """Each native read call (``read_chunks``, or a gather for a stepped selection): the
    thread that made it; ``delay`` slows each down."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.delay = 0.0


@pytest.fixture
def native_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    calls = Calls()

    def recording(function: Any) -> Any:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            calls.threads.append(threading.get_ident())
            if calls.delay:
                time.sleep(calls.delay)
            return function(*args, **kwargs)

        return recorded

    for name in ("read_chunks", "gather_orthogonal", "gather_points"):
        monkeypatch.setattr(_bindings.ArrayHandle, name, recording(getattr(_bindings.ArrayHandle, name)))
    yield calls


def _create(path: Path, **layout: Any) -> np.ndarray[Any, Any]:
    """A 64^3 uint16 array of 16^3 chunks (8 KiB each) with its last half never written."""
    data = np.random.default_rng(0).integers(0, 1000, size=SHAPE, dtype=np.uint16)
    layout = {"chunks": (16, 16, 16), "compressors": ZstdCodec(level=1), **layout}
    arr = zarr.create_array(LocalStore(path), shape=SHAPE, dtype="uint16", fill_value=FILL, **layout)
    arr[:32] = data[:32]
    expected = data.copy()
    expected[32:] = FILL
    return expected


async def _read(path: Path, *selections: Any) -> tuple[list[Any], int]:
    arr = await zasync.open_array(store=LocalStore(path), mode="r")
    got = await asyncio.gather(*(arr.getitem(s) for s in selections))
    return got, threading.get_ident()


BOXES = [
    (slice(0, 16), slice(0, 16), slice(0, 16)),  # one chunk
    (slice(5, 21), slice(30, 46), slice(7, 23)),  # eight chunks, 64 KiB
    (slice(24, 40), slice(0, 8), slice(60, 64)),  # half stored, half the fill value
    (slice(10, 11), 3, slice(None, None, 5)),  # an integer and a step
]


@pytest.mark.parametrize("box", BOXES)
def test_a_lone_small_read_runs_on_the_loop_and_reads_what_zarr_does(
    tmp_path: Path, zarrs_pipeline: None, native_reads: Calls, box: Any
) -> None:
    expected = _create(tmp_path)
    (got,), loop = asyncio.run(_read(tmp_path, box))
    np.testing.assert_array_equal(got, expected[box])
    assert native_reads.threads == [loop]
    s = zarrs_cffi.stats()
    assert s.native_reads >= 1 and s.fallbacks == 0, s


def test_through_the_sync_api_the_read_runs_on_zarrs_loop_thread(
    tmp_path: Path, zarrs_pipeline: None, native_reads: Calls
) -> None:
    expected = _create(tmp_path)
    arr = zarr.open_array(LocalStore(tmp_path), mode="r")
    workers_before = {t.ident for t in threading.enumerate() if t.name.startswith("zarrs-cffi-")}
    for box in BOXES:
        np.testing.assert_array_equal(arr[box], expected[box])
    names = {t.ident: t.name for t in threading.enumerate()}
    assert len(native_reads.threads) == len(BOXES)
    assert len(set(native_reads.threads)) == 1
    (thread,) = set(native_reads.threads)
    assert thread != threading.get_ident() and not names[thread].startswith("zarrs-cffi-"), names[thread]
    assert thread not in workers_before


def test_a_read_over_the_budget_runs_on_a_worker(tmp_path: Path, zarrs_pipeline: None, native_reads: Calls) -> None:
    # Eight 32^3 chunks of 64 KiB: 512 KiB, over the default budget, in fewer requests than
    # ASYNC_READ_MAX: the budget decides.
    expected = _create(tmp_path, chunks=(32, 32, 32))
    box = (slice(20, 40), slice(20, 40), slice(20, 40))
    (got,), loop = asyncio.run(_read(tmp_path, box))
    np.testing.assert_array_equal(got, expected[box])
    assert native_reads.threads and loop not in native_reads.threads


def test_the_budget_is_zarrs_config(tmp_path: Path, zarrs_pipeline: None, native_reads: Calls) -> None:
    expected = _create(tmp_path)
    one_chunk = (slice(0, 16),) * 3  # 8 KiB
    with zarr.config.set({"codec_pipeline.loop_read_bytes": 8 << 10}):
        (got,), loop = asyncio.run(_read(tmp_path, one_chunk))
    np.testing.assert_array_equal(got, expected[one_chunk])
    assert native_reads.threads == [loop]
    native_reads.threads.clear()
    two_chunks = (slice(0, 32), slice(0, 16), slice(0, 16))
    with zarr.config.set({"codec_pipeline.loop_read_bytes": 8 << 10}):
        (got,), loop = asyncio.run(_read(tmp_path, two_chunks))
    np.testing.assert_array_equal(got, expected[two_chunks])
    assert native_reads.threads and loop not in native_reads.threads
    native_reads.threads.clear()
    with zarr.config.set({"codec_pipeline.loop_read_bytes": 0}):  # never
        (got,), loop = asyncio.run(_read(tmp_path, one_chunk))
    assert native_reads.threads and loop not in native_reads.threads


@pytest.mark.parametrize("value", [-1, 1.5, "lots"])
def test_a_budget_of_the_wrong_type_is_an_error_naming_the_key(tmp_path: Path, zarrs_pipeline: None, value: Any) -> None:
    _create(tmp_path)
    with zarr.config.set({"codec_pipeline.loop_read_bytes": value}):
        arr = zarr.open_array(LocalStore(tmp_path), mode="r")
        with pytest.raises(zarrs_cffi.ZarrsValueError, match=re.escape("codec_pipeline.loop_read_bytes must be")):
            arr[0:1, 0:1, 0:1]


def test_a_shard_read_in_part_counts_the_inner_chunks_it_touches(
    tmp_path: Path, zarrs_pipeline: None, native_reads: Calls
) -> None:
    # 64^3 shards (512 KiB decoded whole) of 16^3 inner chunks (8 KiB).
    expected = _create(tmp_path, shards=SHAPE)
    small = (slice(10, 20), slice(0, 16), slice(0, 16))  # two inner chunks
    (got,), loop = asyncio.run(_read(tmp_path, small))
    np.testing.assert_array_equal(got, expected[small])
    assert native_reads.threads == [loop]
    native_reads.threads.clear()
    whole = (slice(None),) * 3  # the whole shard
    (got,), loop = asyncio.run(_read(tmp_path, whole))
    np.testing.assert_array_equal(got, expected)
    assert native_reads.threads and loop not in native_reads.threads


def test_reads_in_flight_together_never_run_on_the_loop(
    tmp_path: Path, zarrs_pipeline: None, native_reads: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _create(tmp_path)
    started: list[int] = []
    submit = completion.submit

    def counting(*args: Any) -> Any:
        started.append(1)
        return submit(*args)

    monkeypatch.setattr(completion, "submit", counting)
    got, loop = asyncio.run(_read(tmp_path, *BOXES))
    for box, values in zip(BOXES, got, strict=True):
        np.testing.assert_array_equal(values, expected[box])
    assert loop not in native_reads.threads
    # Each box was started natively and completed through the loop's descriptor instead;
    # the stepped selection, gathered natively, went to a worker.
    assert len(started) == len(BOXES) - 1 and len(native_reads.threads) == 1
    # Forced to the worker path, the same: none on the loop.
    monkeypatch.setattr(routes, "ASYNC_READ_MAX", 0)
    native_reads.threads.clear()
    got, loop = asyncio.run(_read(tmp_path, *BOXES))
    assert len(native_reads.threads) == len(BOXES) and loop not in native_reads.threads


def test_a_read_while_a_write_is_in_flight_does_not_run_on_the_loop(
    tmp_path: Path, zarrs_pipeline: None, native_reads: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create(tmp_path)
    monkeypatch.setattr(routes, "ASYNC_READ_MAX", 0)  # the read's thread is then observable
    write_chunks = _bindings.ArrayHandle.write_chunks

    def slow_write(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return write_chunks(*args, **kwargs)

    monkeypatch.setattr(_bindings.ArrayHandle, "write_chunks", slow_write)

    async def main() -> int:
        arr = await zasync.open_array(store=LocalStore(tmp_path), mode="r+")
        write = asyncio.ensure_future(arr.setitem((slice(48, 64),) * 3, np.ones((16,) * 3, dtype="uint16")))
        await asyncio.sleep(0.01)  # the write is on a worker now
        await arr.getitem((slice(0, 16),) * 3)
        await write
        return threading.get_ident()

    loop = asyncio.run(main())
    assert len(native_reads.threads) == 1 and loop not in native_reads.threads


def test_a_read_over_the_budget_leaves_the_loop_responsive(
    tmp_path: Path, zarrs_pipeline: None, native_reads: Calls
) -> None:
    """The budget is what keeps the loop responsive: a read it turns away runs on a worker
    while another coroutine on the loop keeps ticking (each native call made slow here)."""
    expected = _create(tmp_path)
    native_reads.delay = 0.1

    async def main() -> tuple[Any, float, int]:
        arr = await zasync.open_array(store=LocalStore(tmp_path), mode="r")
        ticks = [time.monotonic()]
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                await asyncio.sleep(0.002)
                ticks.append(time.monotonic())

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        got = await arr.getitem(slice(None))
        done.set()
        await task
        return got, float(np.max(np.diff(ticks))), threading.get_ident()

    got, stall, loop = asyncio.run(main())
    np.testing.assert_array_equal(got, expected)
    assert native_reads.threads and loop not in native_reads.threads
    # A loaded machine may pause any thread for tens of milliseconds (test_event_loop's limit).
    assert stall < 0.08, f"the loop stalled {stall * 1000:.0f} ms"


def test_a_store_other_than_local_files_never_reads_on_the_loop(tmp_path: Path, zarrs_pipeline: None) -> None:
    """Only local files qualify: a remote store's latency is not bounded by the bytes."""
    _create(tmp_path)
    route = zarr.open_array(LocalStore(tmp_path), mode="r")._async_array.codec_pipeline._open()
    assert isinstance(route, routes.StorageRoute) and route.loop_read_bytes == 256 << 10
    assert route.fits_the_loop([])
    remote = dataclasses.replace(route.native, store=MemoryStore())
    other = routes.StorageRoute(remote, route.planner)
    assert other.loop_read_bytes == 0 and not other.fits_the_loop([])
