"""Shuffled mini-batches of rows from a Zarr array with the direct API, several in flight.

The loader a training loop wants over a (samples, features) array: each epoch visits every
row once in a random order, in batches; ``in_flight`` batches are read at once from one
event loop (``Array.read_async``), so storage latency overlaps instead of adding up. Each
batch is one native gather: every chunk holding its rows is decoded once, the rows copied
straight into the batch.

Without torch::

    python examples/minibatch_loader.py data.zarr --batch 256 --in-flight 8

With torch installed, ``Rows`` is also a map-style ``Dataset`` (``__len__``,
``__getitem__``, and ``__getitems__``, which torch's ``DataLoader`` calls with a whole
batch of indices), and an ``Array`` pickles to its workers::

    loader = torch.utils.data.DataLoader(Rows("data.zarr"), batch_size=256, shuffle=True,
                                         num_workers=4, collate_fn=lambda batch: batch)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import numpy as np

from zarrs_cffi import Array

try:  # a torch Dataset when torch is there; a plain class otherwise
    from torch.utils.data import Dataset as _Base
except ImportError:
    _Base = object  # type: ignore[assignment,misc]


class Rows(_Base):  # type: ignore[misc,valid-type]
    """The rows of a 2-d (or n-d: rows along the first axis) Zarr array.

    Parameters
    ----------
    location, array_path, storage_options
        As ``zarrs_cffi.Array.open`` takes them (a directory, ``s3://``, ``http(s)://``).
    """

    def __init__(self, location: str, array_path: str = "/", storage_options: dict[str, Any] | None = None) -> None:
        self.array = Array.open(location, array_path, read_only=True, storage_options=storage_options)

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, index: int) -> np.ndarray[Any, Any]:
        return self.array[int(index)]

    def __getitems__(self, indices: Sequence[int]) -> np.ndarray[Any, Any]:
        """A whole batch in one native gather (torch's DataLoader calls this when present)."""
        return self.array.oindex[np.asarray(indices), ...]


def epoch_order(rows: int, batch: int, seed: int) -> Iterator[np.ndarray[Any, Any]]:
    """Every row once, shuffled, in batches (the last may be short)."""
    order = np.random.default_rng(seed).permutation(rows)
    for start in range(0, rows, batch):
        yield order[start : start + batch]


async def batches(rows: Rows, batch: int, in_flight: int, seed: int = 0) -> AsyncIterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """``(indices, values)`` per batch, in epoch order, with up to ``in_flight`` batches
    being read at once."""
    pending: list[tuple[np.ndarray[Any, Any], asyncio.Task[np.ndarray[Any, Any]]]] = []
    for indices in epoch_order(len(rows), batch, seed):
        pending.append((indices, asyncio.ensure_future(rows.array.read_async((indices, Ellipsis)))))
        if len(pending) >= in_flight:
            done, task = pending.pop(0)
            yield done, await task
    for done, task in pending:
        yield done, await task


async def _run(location: str, array_path: str, batch: int, in_flight: int, epochs: int) -> None:
    rows = Rows(location, array_path)
    for epoch in range(epochs):
        start, count, nbytes = time.perf_counter(), 0, 0
        async for _, values in batches(rows, batch, in_flight, seed=epoch):
            count += 1
            nbytes += values.nbytes
        seconds = time.perf_counter() - start
        print(f"epoch {epoch}: {count} batches of {batch} rows, {nbytes / seconds / 2**20:.0f} MiB/s, {seconds:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Shuffled mini-batches of rows from a Zarr array.")
    parser.add_argument("location", help="a directory, s3:// or http(s):// URL")
    parser.add_argument("--array-path", default="/")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    asyncio.run(_run(args.location, args.array_path, args.batch, args.in_flight, args.epochs))


if __name__ == "__main__":
    main()
