"""``examples/minibatch_loader.py``: every row once per epoch, shuffled, each batch the rows it
names, with batches in flight together; and its command line runs."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from conftest import ZARR_PIPELINE, make_data
from zarr.storage import LocalStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "minibatch_loader.py"


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("minibatch_loader", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _array(path: Path) -> np.ndarray[Any, Any]:
    data = make_data("float32", (1000, 12), seed=4)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        zarr.create_array(LocalStore(path), shape=data.shape, chunks=(64, 12), shards=(256, 12), dtype="float32")[...] = data
    return data


def test_an_epoch_visits_every_row_once_in_shuffled_batches(tmp_path):
    loader = _example()
    data = _array(tmp_path)
    rows = loader.Rows(str(tmp_path))

    async def epoch(seed: int) -> list[np.ndarray[Any, Any]]:
        seen = []
        async for indices, values in loader.batches(rows, 96, 4, seed=seed):
            np.testing.assert_array_equal(values, data[indices])
            seen.append(indices)
        return seen

    first, second = asyncio.run(epoch(0)), asyncio.run(epoch(1))
    assert [len(b) for b in first] == [96] * 10 + [40]
    assert sorted(np.concatenate(first).tolist()) == list(range(1000))
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    np.testing.assert_array_equal(rows.__getitems__([5, 3, 999]), data[[5, 3, 999]])
    np.testing.assert_array_equal(rows[7], data[7])
    assert len(rows) == 1000


def test_the_command_line_reads_an_epoch(tmp_path):
    _array(tmp_path)
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path), "--batch", "100", "--in-flight", "3"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    assert out.startswith("epoch 0: 10 batches of 100 rows"), out
