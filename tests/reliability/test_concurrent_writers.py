"""Processes writing disjoint shards (or chunks) of one array concurrently lose nothing
(README, Guarantees: the shard is the unit of concurrent writing)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

import zarrs_cffi

PIPELINE = {"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"}
WRITERS = 4
ROUNDS = 3
SHAPE = (64, 64, 32)
CHUNKS = (8, 8, 32)
SHARDS = (16, 16, 32)

# Writer `w` owns the units (shards, or chunks when unsharded) whose linear index is w modulo
# WRITERS. It writes each of them in a separate call, in an order of its own, so all four are
# writing into the array (and into its shared directories) at the same time.
WRITER = """
import sys, zarr
import numpy as np
from zarr.storage import LocalStore
zarr.config.set({pipeline!r})
path, writer, round_, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), {step!r}
arr = zarr.open_array(LocalStore(path))
grid = [range(0, n, s) for n, s in zip(arr.shape, step)]
units = [(i, j) for i in grid[0] for j in grid[1]]
mine = [u for n, u in enumerate(units) if n % {writers} == writer]
np.random.default_rng(writer + 10 * round_).shuffle(mine)
print("ready", flush=True)
sys.stdin.readline()  # start together
for i, j in mine:
    arr[i : i + step[0], j : j + step[1], :] = 1000 * round_ + 10 * writer + (i // step[0] + j // step[1]) % 7
import zarrs_cffi
s = zarrs_cffi.stats()
assert s.fallbacks == 0 and s.python_io_writes == 0 and s.native_writes == len(mine), s
"""


@pytest.mark.parametrize("sharded", [False, True])
def test_processes_writing_disjoint_shards_lose_nothing(tmp_path: Path, sharded: bool) -> None:
    path = tmp_path / "a.zarr"
    step = SHARDS if sharded else CHUNKS
    with zarr.config.set(PIPELINE):
        zarr.create_array(
            LocalStore(path), shape=SHAPE, chunks=CHUNKS, shards=SHARDS if sharded else None,
            dtype="uint16", compressors=zarr.codecs.ZstdCodec(level=1),
        )
    script = WRITER.format(pipeline=PIPELINE, step=step, writers=WRITERS)
    units = [(i, j) for i in range(0, SHAPE[0], step[0]) for j in range(0, SHAPE[1], step[1])]
    for round_ in range(1, ROUNDS + 1):
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(path), str(w), str(round_)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            for w in range(WRITERS)
        ]
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            assert writer.wait(timeout=120) == 0
        # Every unit holds what its owner wrote this round, whole.
        with zarr.config.set(PIPELINE):
            zarrs_cffi.reset_stats()
            data = zarr.open_array(LocalStore(path), mode="r")[...]
            s = zarrs_cffi.stats()
            assert s.fallbacks == 0 and s.native_reads > 0, s
        for n, (i, j) in enumerate(units):
            want = 1000 * round_ + 10 * (n % WRITERS) + (i // step[0] + j // step[1]) % 7
            block = data[i : i + step[0], j : j + step[1], :]
            assert np.all(block == want), (round_, (i, j), np.unique(block), want)
    assert not list(path.rglob("*.partial"))
