"""The direct API's pool of result buffers: a buffer is handed out again only once nothing
outside the pool can reach its memory, and the pool stays within its budget."""

from __future__ import annotations

import gc
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from zarrs_cffi import Array
from zarrs_cffi._core import results

F32 = np.dtype("float32")
SHAPE = (512, 256)  # 512 KiB of float32: above results.SMALL


@pytest.fixture(autouse=True)
def fresh_pool() -> Iterator[None]:
    budget = results.budget()
    results.set_budget(0)
    results.set_budget(budget)
    yield
    results.set_budget(0)
    results.set_budget(budget)


def _owner(array: np.ndarray) -> int:
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return id(base)


def test_a_dropped_result_is_handed_out_again() -> None:
    first = results.empty(SHAPE, F32)
    owner = _owner(first)
    del first
    assert _owner(results.empty(SHAPE, F32)) == owner


@pytest.mark.parametrize(
    "keep",
    [
        lambda a: a,
        lambda a: a[10:20],
        lambda a: a.T,
        lambda a: a.view(np.uint32),
        lambda a: a.reshape(-1),
        lambda a: memoryview(a),
        lambda a: np.frombuffer(a, dtype=np.uint8),
        lambda a: np.asarray(a)[::2],
    ],
    ids=["itself", "slice", "transpose", "view", "reshape", "memoryview", "frombuffer", "asarray-step"],
)
def test_nothing_that_reaches_a_result_sees_it_reused(keep) -> None:
    first = results.empty(SHAPE, F32)
    first[...] = 7
    owner = _owner(first)
    kept = keep(first)
    expected = np.array(kept, copy=True)
    del first
    gc.collect()
    for _ in range(3):
        other = results.empty(SHAPE, F32)
        assert _owner(other) != owner
        other[...] = -1
    assert np.array_equal(np.asarray(kept), expected)
    del kept, other
    gc.collect()
    assert _owner(results.empty(SHAPE, F32)) == owner


def test_small_results_and_a_zero_budget_bypass_the_pool() -> None:
    small = results.empty((4, 4), F32)
    assert small.base is None and small.flags.owndata
    results.set_budget(0)
    big = results.empty(SHAPE, F32)
    assert big.flags.owndata
    with pytest.raises(ValueError, match="budget"):
        results.set_budget(-1)


def test_the_pool_stays_within_its_budget() -> None:
    nbytes = int(np.prod(SHAPE)) * F32.itemsize
    results.set_budget(3 * nbytes)
    live = [results.empty(SHAPE, F32) for _ in range(6)]
    pooled = sum(1 for a in live if not a.flags.owndata)
    assert pooled == 3
    assert results._held <= results.budget()
    del live
    # Idle buffers of another size make room for a new size, within the budget.
    other = [results.empty((256, 256), F32) for _ in range(4)]
    assert results._held <= results.budget()
    assert sum(1 for a in other if not a.flags.owndata) == 4


def test_direct_reads_keep_every_earlier_result(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    data = np.random.default_rng(0).random((4096, 256), dtype="float32")
    with zarr.config.set({"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
        z = zarr.create_array(path, shape=data.shape, chunks=(512, 256), dtype="float32")
        z[:] = data
    array = Array.open(path)
    kept = [array[i * 512 : (i + 1) * 512][::3] for i in range(4)]
    for _ in range(3):
        for i in range(8):
            assert np.array_equal(array[i * 512 : (i + 1) * 512], data[i * 512 : (i + 1) * 512])
    for i, part in enumerate(kept):
        assert np.array_equal(part, data[i * 512 : (i + 1) * 512][::3])
    # A pooled result pickles as its values.
    result = array[512:1024]
    assert np.array_equal(pickle.loads(pickle.dumps(result)), data[512:1024])
