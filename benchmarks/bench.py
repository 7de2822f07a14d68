"""Side-by-side benchmark of zarr codec pipelines and tensorstore.

Compares, in one run and on the same data:

* zarr's ``BatchedCodecPipeline`` (zarr's default) and ``FusedCodecPipeline``,
* zarrs-python's ``zarrs.ZarrsCodecPipeline``,
* this project's ``zarrs_cffi.ZarrsCodecPipeline``,
* tensorstore through its own API,
* this project's direct API, ``zarrs_cffi.Array`` ("ours (direct)"),
* zarrs itself, called from Rust ("zarrs (Rust)"): the cargo example
  ``zarrs-ffi/examples/bench_zarrs.rs``, built here with ``cargo build --release
  --example bench_zarrs`` (or given with ``--zarrs-bin``), timed inside the binary
  and reporting JSON; its read results go through a file so they are checked here.
  (The first build compiles zarrs again with the crate's dev-dependency features,
  about 20 minutes on 2 busy cores; later runs find it up to date. It leaves
  ``target/release/libzarrs_ffi.so`` as it was.)

on four layouts of a 512^3 uint16 array (chunked zstd, sharded zstd, chunked
blosc-lz4, sharded uncompressed) for five operations: ``write_all``,
``read_all``, ``small_reads`` (200 random 16^3 boxes), ``oindex`` (64 random
sorted indices along the first axis, every element of the other two) and
``vindex`` (10,000 random points), on one store: ``--store local`` (default),
``memory``, ``zip`` or ``s3`` (an S3-compatible moto server on 127.0.0.1,
reached through s3fs). The direct API and the Rust binary reach local files only.

Further sections (``--section``, all by default):

* ``memory``: peak RSS of a write-then-read roundtrip of each layout's array above
  the RSS once the source array is loaded, in a fresh process per implementation
  and layout, as a multiple of the array's bytes;
* ``minibatch``: a training-style loader, batches of 256 sorted random rows of a
  (1,000,000, 256) float32 array (chunks of 1024 rows, zstd, chunked and sharded)
  read with ``oindex``, by one reader and by 4 reader threads (``--mb-*`` flags
  size it; ``--quick`` uses 100,000 rows);
* ``open``: opening 300 small arrays one after another;
* ``anndata``: an AnnData of 100,000 cells x 2,000 genes (sparse float32 X, a dense
  embedding, obs/var frames with categoricals and strings) written with
  ``write_zarr`` (under --dir, whatever --store says), read back with ``read_zarr``, and
  opened with anndata's lazy reader from a MemoryStore copy, then one obs column and
  one block of X rows read (``--ad-*`` flags size it). Zarr codec pipelines only; needs
  ``anndata`` (benchmarks/requirements.txt), else reported unavailable.

Every implementation is optional: one that cannot be imported, or that crashes
in a small smoke run, is reported as "unavailable: <reason>", and one that
raises during a measurement is reported as an error in that cell. Every result
is checked against the source data; a mismatch is reported instead of a time.

Usage (install the project first, e.g. ``pip install -e .``, plus
``pip install -r benchmarks/requirements.txt``)::

    python benchmarks/bench.py                 # full run, 512^3
    python benchmarks/bench.py --quick         # 256^3 smoke run
    python benchmarks/bench.py --impl batched ours --layout zstd --out result.md
    python benchmarks/bench.py --store memory --quick
    python benchmarks/bench.py --quick --section minibatch --mb-rows 20000 --mb-batches 8

Progress goes to stderr; the markdown report goes to stdout (and to --out).
The exit status is 1 if any result differed from the source data.

All arrays live in a fresh temporary directory (under --dir) that is removed
at the end. Reads hit the OS page cache, as every array was just written, but
writes pay for the filesystem: on a VM disk, writing the 4096 files of a
chunked layout can cost more than encoding them. ``--dir /dev/shm`` (tmpfs)
measures the codec pipelines without that; the report names the filesystem.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.metadata
import json
import logging
import math
import multiprocessing
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.registry import get_pipeline_class
from zarr.storage import LocalStore

log = logging.getLogger("bench")

FULL_SIDE = 512
QUICK_SIDE = 256
# Preflight size: one full shard of 64 chunks, enough to reach every code path.
SMOKE_SIDE = 128
SMOKE_TIMEOUT_S = 300
BUILD_TIMEOUT_S = 1800
RUST_TIMEOUT_S = 3600
MEMORY_TIMEOUT_S = 1800
CHUNK = (32, 32, 32)
SHARD = (128, 128, 128)
BOX_SIDE = 16
N_SMALL_READS = 200
N_OINDEX = 64
N_VINDEX = 10_000
SEED = 0

BATCHED_PATH = "zarr.core.codec_pipeline.BatchedCodecPipeline"
# threading.max_workers=None is zarr's default; set it explicitly so that an
# environment override (ZARR_THREADING__MAX_WORKERS) cannot skew one run.
REFERENCE_CONFIG = {"codec_pipeline.path": BATCHED_PATH, "threading.max_workers": None}

OPERATIONS = ("write_all", "read_all", "small_reads", "oindex", "vindex")
SECTIONS = ("layouts", "memory", "minibatch", "open", "anndata")
FULL_MB_ROWS = 1_000_000
FULL_AD_OBS = 100_000
QUICK_AD_OBS = 20_000
AD_DENSITY = 0.015
AD_EMBEDDING = 50
QUICK_MB_ROWS = 100_000
MB_CHUNKS_PER_SHARD = 16
# The operations of this run (set by main).
SELECTED_OPERATIONS: tuple[str, ...] = OPERATIONS


# --------------------------------------------------------------------------
# Layouts and data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    name: str
    shards: tuple[int, ...] | None
    compressors: tuple[Any, ...] | None  # None = uncompressed

    def create_kwargs(self) -> dict[str, Any]:
        return {"chunks": CHUNK, "shards": self.shards, "compressors": self.compressors}


LAYOUTS = {
    layout.name: layout
    for layout in (
        Layout("zstd", None, (ZstdCodec(level=1),)),
        Layout("zstd-sharded", SHARD, (ZstdCodec(level=1),)),
        Layout(
            "blosc-lz4", None, (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)
        ),
        Layout("raw-sharded", SHARD, None),
    )
}


def make_data(side: int) -> np.ndarray:
    """Deterministic, compressible volume: a repeating diagonal ramp plus 2 bits of seeded noise.

    The noise keeps compressors from degenerating into run-length encoding.
    """
    rng = np.random.default_rng(SEED)
    idx = np.arange(side, dtype=np.int64)
    plane = idx[:, None] * 3 + idx[None, :]
    data = np.empty((side, side, side), dtype=np.uint16)
    # Slab by slab, so no int64 temporary of the whole volume is ever allocated.
    for z in range(side):
        data[z] = (plane + 7 * z) % 4096 + rng.integers(0, 4, size=(side, side))
    return data


def random_boxes(side: int, count: int) -> list[tuple[slice, ...]]:
    rng = np.random.default_rng(SEED + 1)
    starts = rng.integers(0, side - BOX_SIDE + 1, size=(count, 3))
    return [tuple(slice(int(s), int(s) + BOX_SIDE) for s in row) for row in starts]


def same(result: Any, expected: np.ndarray) -> bool:
    return (
        isinstance(result, np.ndarray)
        and result.dtype == expected.dtype
        and np.array_equal(result, expected)
    )


def fancy_selections(side: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The oindex rows (sorted, distinct) and the vindex points."""
    rng = np.random.default_rng(SEED + 2)
    rows = np.sort(rng.choice(side, size=N_OINDEX, replace=False))
    points = tuple(rng.integers(0, side, size=N_VINDEX) for _ in range(3))
    return rows, points


class StoreKind:
    """Where arrays live: each benchmark path names one array in this kind of store."""

    name = "local"
    # tensorstore reaches only some stores; others report it unavailable.
    tensorstore = True

    def writer(self, path: Path) -> Any:
        """A fresh, empty store for a new array at `path`."""
        return LocalStore(path)

    def finish(self, store: Any) -> None:
        """Called after an array has been written (a zip file is closed)."""

    def reader(self, path: Path) -> Any:
        """The store to read the finished array at `path` from."""
        return LocalStore(path, read_only=True)

    def remove(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def metadata(self, path: Path) -> dict:
        async def read() -> Any:
            return await self.reader(path).get("zarr.json", zarr.core.buffer.default_buffer_prototype())

        return json.loads(zarr.core.sync.sync(read()).to_bytes())

    def describe(self) -> str:
        return "LocalStore"


class MemoryStoreKind(StoreKind):
    name = "memory"
    tensorstore = False

    def __init__(self) -> None:
        self.stores: dict[Path, Any] = {}

    def writer(self, path: Path) -> Any:
        self.stores[path] = zarr.storage.MemoryStore()
        return self.stores[path]

    def reader(self, path: Path) -> Any:
        return self.stores[path]

    def remove(self, path: Path) -> None:
        self.stores.pop(path, None)

    def describe(self) -> str:
        return "MemoryStore"


class ZipStoreKind(StoreKind):
    name = "zip"
    tensorstore = False

    def writer(self, path: Path) -> Any:
        self.remove(path)
        return zarr.storage.ZipStore(path.with_suffix(".zip"), mode="w")

    def finish(self, store: Any) -> None:
        store.close()

    def reader(self, path: Path) -> Any:
        return zarr.storage.ZipStore(path.with_suffix(".zip"), mode="r", read_only=True)

    def remove(self, path: Path) -> None:
        path.with_suffix(".zip").unlink(missing_ok=True)

    def describe(self) -> str:
        return "ZipStore (stored, uncompressed zip)"


class S3StoreKind(StoreKind):
    """An S3-compatible moto server in its own process, through s3fs (FsspecStore)."""

    name = "s3"
    tensorstore = False
    bucket = "bench"

    def __init__(self) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from servers import moto_s3

        self._context = moto_s3()
        self.server = self._context.__enter__()
        self.server.create_bucket(self.bucket)

    def _url(self, path: Path) -> str:
        return f"s3://{self.bucket}/{path.parent.name}/{path.name}"

    def writer(self, path: Path) -> Any:
        self.remove(path)
        return zarr.storage.FsspecStore.from_url(self._url(path), storage_options=self.server.s3fs_options())

    def reader(self, path: Path) -> Any:
        return zarr.storage.FsspecStore.from_url(self._url(path), storage_options=self.server.s3fs_options(), read_only=True)

    def remove(self, path: Path) -> None:
        store = zarr.storage.FsspecStore.from_url(self._url(path), storage_options=self.server.s3fs_options())
        zarr.core.sync.sync(store.delete_dir(""))

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def describe(self) -> str:
        return f"FsspecStore (s3fs) on a moto S3 server at {self.server.endpoint}"


STORE_KINDS: dict[str, type[StoreKind]] = {
    kind.name: kind for kind in (StoreKind, MemoryStoreKind, ZipStoreKind, S3StoreKind)
}
# The store of this run (set by main, and by the preflight child).
STORE: StoreKind = StoreKind()


def create_zarr_array(path: Path, layout: Layout, shape: tuple[int, ...]) -> zarr.Array:
    return zarr.create_array(
        STORE.writer(path),
        shape=shape,
        dtype=np.uint16,
        fill_value=0,
        **layout.create_kwargs(),
    )


def read_with_reference(path: Path) -> np.ndarray:
    """Read a whole array with zarr's default pipeline, the yardstick for correctness."""
    with zarr.config.set(REFERENCE_CONFIG):
        return zarr.open_array(STORE.reader(path), mode="r")[:]


# --------------------------------------------------------------------------
# Implementations
# --------------------------------------------------------------------------


class ZarrPipelineImpl:
    """A zarr-python codec pipeline, selected through ``codec_pipeline.path``."""

    def __init__(
        self,
        key: str,
        label: str,
        path: str,
        extra_config: dict[str, Any] | None = None,
    ):
        self.key, self.label, self.path = key, label, path
        self.config = {
            **REFERENCE_CONFIG,
            "codec_pipeline.path": path,
            **(extra_config or {}),
        }

    def load(self) -> None:
        module, _, name = self.path.rpartition(".")
        getattr(importlib.import_module(module), name)
        # zarr resolves codec_pipeline.path through its registry, filled from
        # the `zarr.codec_pipeline` entry points, not by importing the path.
        with zarr.config.set(self.config):
            get_pipeline_class()

    def session(self) -> contextlib.AbstractContextManager[Any]:
        # The pipeline is chosen when an array is opened, but keep the config in
        # force for every operation in case a pipeline reads it lazily.
        return zarr.config.set(self.config)

    def create(
        self, path: Path, layout: Layout, shape: tuple[int, ...], metadata: dict
    ) -> Any:
        return create_zarr_array(path, layout, shape)

    def open(self, path: Path) -> Any:
        return zarr.open_array(STORE.reader(path), mode="r")

    def write_all(self, array: Any, data: np.ndarray) -> None:
        array[:] = data
        STORE.finish(array.store)

    def read_all(self, array: Any) -> Any:
        return array[:]

    def read_box(self, array: Any, box: tuple[slice, ...]) -> Any:
        return array[box]

    def read_oindex(self, array: Any, rows: np.ndarray) -> Any:
        return array.oindex[(rows,) + (slice(None),) * (array.ndim - 1)]

    def read_vindex(self, array: Any, points: tuple[np.ndarray, ...]) -> Any:
        return array.vindex[points]


class TensorstoreImpl:
    """tensorstore's zarr3 driver on a local file kvstore, with its default context."""

    key = "tensorstore"
    label = "tensorstore"

    def __init__(self) -> None:
        self.ts: Any = None

    def load(self) -> None:
        if not STORE.tensorstore:
            raise NotImplementedError(f"not benchmarked on {STORE.describe()} (no equivalent tensorstore kvstore)")
        self.ts = importlib.import_module("tensorstore")

    def session(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    @staticmethod
    def _spec(path: Path) -> dict[str, Any]:
        return {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}

    def create(
        self, path: Path, layout: Layout, shape: tuple[int, ...], metadata: dict
    ) -> Any:
        # `metadata` is the zarr.json that zarr wrote for the reference array, so
        # tensorstore writes exactly the same codec chain.
        spec = {**self._spec(path), "metadata": metadata}
        return self.ts.open(spec, create=True, delete_existing=True).result()

    def open(self, path: Path) -> Any:
        return self.ts.open(self._spec(path), open=True, read=True).result()

    def write_all(self, array: Any, data: np.ndarray) -> None:
        array.write(data).result()

    def read_all(self, array: Any) -> Any:
        return array.read().result()

    def read_box(self, array: Any, box: tuple[slice, ...]) -> Any:
        return array[box].read().result()

    def read_oindex(self, array: Any, rows: np.ndarray) -> Any:
        return array.oindex[(rows,) + (slice(None),) * (array.rank - 1)].read().result()

    def read_vindex(self, array: Any, points: tuple[np.ndarray, ...]) -> Any:
        return array.vindex[points].read().result()


class DirectImpl:
    """This project's direct API, ``zarrs_cffi.Array``: one native call per region, no zarr.

    It reads regions (step-1 slices) only, so ``oindex`` is read as a zarrs user would
    with regions: per block of rows (the inner chunks' extent on axis 0), the slab from its
    first to its last selected row, then the selected rows. ``vindex`` has no region
    equivalent and is not run.
    """

    key = "ours-direct"
    label = "ours (direct)"

    def __init__(self) -> None:
        self.array_class: Any = None

    def load(self) -> None:
        if STORE.name != "local":
            raise NotImplementedError(f"not benchmarked on {STORE.describe()} (the direct API opens directories)")
        self.array_class = importlib.import_module("zarrs_cffi").Array

    def session(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def create(self, path: Path, layout: Layout, shape: tuple[int, ...], metadata: dict) -> Any:
        return self.array_class.create(path, metadata)

    def open(self, path: Path) -> Any:
        return self.array_class.open(path, read_only=True)

    def write_all(self, array: Any, data: np.ndarray) -> None:
        array[...] = data

    def read_all(self, array: Any) -> Any:
        return array[...]

    def read_box(self, array: Any, box: tuple[slice, ...]) -> Any:
        return array[box]

    def read_oindex(self, array: Any, rows: np.ndarray) -> Any:
        return read_rows_by_block(array.read, rows, row_block(array.metadata))

    def read_vindex(self, array: Any, points: tuple[np.ndarray, ...]) -> Any:
        raise NotApplicable("the direct API reads regions only (use zarr for vindex)")


def row_block(metadata: dict) -> int:
    """Rows per decodable unit on axis 0: the inner chunk of a sharded array, else the chunk."""
    chunk = metadata["chunk_grid"]["configuration"]["chunk_shape"][0]
    codecs = metadata.get("codecs") or []
    if codecs and codecs[0].get("name") == "sharding_indexed":
        return int(codecs[0]["configuration"]["chunk_shape"][0])
    return int(chunk)


def read_rows_by_block(read: Callable[[tuple[slice, ...]], np.ndarray], rows: np.ndarray, block: int) -> np.ndarray:
    """``array[rows]`` for sorted ``rows`` through region reads: per block of ``block`` rows,
    the slab from its first to its last selected row."""
    parts = []
    blocks = rows // block
    bounds = np.flatnonzero(np.diff(blocks)) + 1
    for group in np.split(rows, bounds):
        first = int(group[0])
        slab = read((slice(first, int(group[-1]) + 1),))
        parts.append(slab[group - first])
    return np.concatenate(parts)


class NotApplicable(Exception):
    """An operation an implementation has no way to express (reported as n/a, not an error)."""


REPO = Path(__file__).resolve().parent.parent
CRATE = REPO / "zarrs-ffi"


class RustImpl:
    """zarrs itself, called from Rust: ``zarrs-ffi/examples/bench_zarrs.rs``.

    Each layout is one run of the binary, which times every operation inside itself and
    writes each read's result to a file; this process then checks those results (and the
    written array, read back with zarr's pipeline) like every other implementation's.
    """

    key = "zarrs-rust"
    label = "zarrs (Rust)"
    # Set by --zarrs-bin; otherwise the binary cargo builds.
    binary_override: str | None = None

    def __init__(self) -> None:
        self.binary: Path | None = None
        self.build_error: str | None = None
        self.zarrs_version = "unknown"

    @staticmethod
    def default_binary() -> Path:
        return CRATE / "target" / "release" / "examples" / "bench_zarrs"

    def prepare(self) -> None:
        """Build the example (a no-op when up to date), in the main process, once."""
        if self.binary_override:
            return
        cargo = shutil.which("cargo")
        if cargo is None:
            if not self.default_binary().exists():
                self.build_error = "cargo not found and no built zarrs-ffi/target/release/examples/bench_zarrs"
            return
        log.info("building zarrs-ffi example bench_zarrs (cargo build --release --example bench_zarrs) ...")
        try:
            build = subprocess.run(
                [cargo, "build", "--release", "--example", "bench_zarrs"],
                cwd=CRATE,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.build_error = f"cargo build failed: {describe(exc)}"
            return
        if build.returncode != 0:
            errors = [line for line in build.stderr.splitlines() if line.startswith("error")]
            self.build_error = "cargo build failed: " + (errors[0] if errors else f"exit code {build.returncode}")

    def load(self) -> None:
        if STORE.name != "local":
            raise NotImplementedError(f"not benchmarked on {STORE.describe()} (the binary uses zarrs' FilesystemStore)")
        if self.build_error:
            raise RuntimeError(self.build_error)
        binary = Path(self.binary_override) if self.binary_override else self.default_binary()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"no executable {binary}")
        self.binary = binary

    def run(self, job: dict[str, Any], workdir: Path) -> dict[str, Any]:
        """Run the binary on `job`; its JSON report (raises if it failed as a whole)."""
        assert self.binary is not None
        job = {"threads": os.cpu_count() or 0, **job}
        job_path = workdir / "bench_zarrs_job.json"
        job_path.write_text(json.dumps(job))
        done = subprocess.run([str(self.binary), str(job_path)], capture_output=True, text=True, timeout=RUST_TIMEOUT_S)
        try:
            report = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            how = f"signal {signal.Signals(-done.returncode).name}" if done.returncode < 0 else f"exit code {done.returncode}"
            raise RuntimeError(f"bench_zarrs gave no report ({how}): {done.stderr.strip()[-300:]}") from None
        if "fatal" in report:
            raise RuntimeError(f"bench_zarrs: {report['fatal']}")
        self.zarrs_version = report.get("zarrs_version", self.zarrs_version)
        return report


# Implementations driven from this process, and all of them.
PyImpl = ZarrPipelineImpl | TensorstoreImpl | DirectImpl
Impl = PyImpl | RustImpl

# `codec_pipeline.strict` is zarrs-python's switch that turns its silent
# fallback to BatchedCodecPipeline into an error; without it an unsupported
# case would be timed as zarr's pipeline under the zarrs name. It changes no
# tuning. zarrs_cffi honours the same key for its own fallback.
_STRICT = {"codec_pipeline.strict": True}
IMPLS: dict[str, Impl] = {
    impl.key: impl
    for impl in (
        ZarrPipelineImpl("batched", "zarr Batched", BATCHED_PATH),
        ZarrPipelineImpl(
            "fused", "zarr Fused", "zarr.core.codec_pipeline.FusedCodecPipeline"
        ),
        ZarrPipelineImpl(
            "zarrs-python", "zarrs-python", "zarrs.ZarrsCodecPipeline", _STRICT
        ),
        ZarrPipelineImpl(
            "ours", "ours (zarrs_cffi)", "zarrs_cffi.ZarrsCodecPipeline", _STRICT
        ),
        TensorstoreImpl(),
        DirectImpl(),
        RustImpl(),
    )
}


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One (layout, operation, implementation) result: a time, or why there is none."""

    status: str  # "ok", "MISMATCH", "error", "unavailable" or "n/a"
    seconds: float | None = None  # for peak memory: the multiple of the array's bytes
    detail: str = ""


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]


def guarded(measure: Callable[[], Cell]) -> Cell:
    try:
        return measure()
    except NotApplicable as exc:
        return Cell("n/a", detail=str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure of an implementation becomes a cell
        return Cell("error", detail=describe(exc))


def source_file(data: np.ndarray, workdir: Path) -> Path:
    """The source data as raw bytes in C order (written once per shape), for the Rust binary
    and the memory children."""
    path = workdir / f"source-{'x'.join(map(str, data.shape))}-{data.dtype}.bin"
    if not path.exists():
        data.tofile(path)
    return path


def measure_rust_layout(
    impl: RustImpl,
    layout: Layout,
    ref_path: Path,
    own_path: Path,
    metadata: dict,
    data: np.ndarray,
    boxes: list[tuple[slice, ...]],
    repeat: int,
    small_repeat: int,
    workdir: Path,
) -> dict[str, Cell]:
    """Every selected operation of one layout in one run of the Rust binary, each result
    checked here against the source data."""
    rows, points = fancy_selections(data.shape[0])
    outputs = workdir / "zarrs-rust-out"
    outputs.mkdir(exist_ok=True)
    job = {
        "mode": "bench",
        "source": str(source_file(data, workdir)),
        "reference": str(ref_path),
        "target": str(own_path),
        "outputs": str(outputs),
        "metadata": metadata,
        "operations": list(SELECTED_OPERATIONS),
        "repeat": repeat,
        "small_repeat": small_repeat,
        "box_shape": [BOX_SIDE] * data.ndim,
        "boxes": [[s.start for s in box] for box in boxes],
        "rows": rows.tolist(),
        "row_block": row_block(metadata),
        "points": [axis.tolist() for axis in points],
    }
    try:
        report = impl.run(job, workdir)
    except Exception as exc:  # noqa: BLE001 - the whole layout's cells become errors
        return {op: Cell("error", detail=describe(exc)) for op in SELECTED_OPERATIONS}

    def check(operation: str) -> Cell:
        outcome = report["results"].get(operation, {"error": "not reported"})
        if "error" in outcome:
            return Cell("error", detail=str(outcome["error"])[:300])
        if operation == "write_all":
            ok = same(read_with_reference(own_path), data)
            STORE.remove(own_path)
            detail = "array read back with BatchedCodecPipeline differs from source"
        else:
            expected = {
                "read_all": lambda: data,
                "small_reads": lambda: np.concatenate([data[box].ravel() for box in boxes]),
                "oindex": lambda: data[rows],
                "vindex": lambda: data[points],
            }[operation]()
            out = outputs / f"{operation}.bin"
            result = np.fromfile(out, dtype=data.dtype)
            out.unlink()
            ok = result.size == expected.size and same(result.reshape(expected.shape), expected)
            detail = f"{operation} result differs from source"
        return Cell("ok", outcome["seconds"]) if ok else Cell("MISMATCH", detail=detail)

    return {operation: guarded(partial(check, operation)) for operation in SELECTED_OPERATIONS}


def log_cell(layout: str, operation: str, impl: Impl, cell: Cell) -> None:
    if cell.status == "ok":
        log.info("  %-12s %-11s %-17s %8.3f s", layout, operation, impl.label, cell.seconds)
    else:
        log.warning("  %-12s %-11s %-17s %s: %s", layout, operation, impl.label, cell.status, cell.detail)


def measure_write_all(
    impl: PyImpl,
    path: Path,
    layout: Layout,
    metadata: dict,
    data: np.ndarray,
    repeat: int,
) -> Cell:
    best = math.inf
    for _ in range(repeat):
        STORE.remove(path)
        array = impl.create(path, layout, data.shape, metadata)
        os.sync()  # don't bill the writeback of earlier steps to this write
        start = time.perf_counter()
        impl.write_all(array, data)
        best = min(best, time.perf_counter() - start)
        del array
    written = read_with_reference(path)
    ok = same(written, data)
    del written
    STORE.remove(path)
    if not ok:
        return Cell(
            "MISMATCH",
            detail="array read back with BatchedCodecPipeline differs from source",
        )
    return Cell("ok", best)


def measure_read_all(impl: PyImpl, path: Path, data: np.ndarray, repeat: int) -> Cell:
    array = impl.open(path)
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = impl.read_all(array)
        elapsed = time.perf_counter() - start
        ok = same(result, data)
        del result
        if not ok:
            return Cell("MISMATCH", detail="read_all result differs from source")
        best = min(best, elapsed)
    return Cell("ok", best)


def measure_small_reads(
    impl: PyImpl,
    path: Path,
    data: np.ndarray,
    boxes: list[tuple[slice, ...]],
    repeat: int,
) -> Cell:
    array = impl.open(path)
    # Untimed first read: one-off setup (thread pools, lazy initialisation) is
    # not part of the per-read cost being measured.
    impl.read_box(array, boxes[0])
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        results = [impl.read_box(array, box) for box in boxes]
        elapsed = time.perf_counter() - start
        bad = sum(
            not same(result, data[box])
            for result, box in zip(results, boxes, strict=True)
        )
        if bad:
            return Cell(
                "MISMATCH", detail=f"{bad} of {len(boxes)} boxes differ from source"
            )
        best = min(best, elapsed)
    return Cell("ok", best)


def measure_fancy(
    impl: PyImpl, path: Path, data: np.ndarray, kind: str, repeat: int
) -> Cell:
    """oindex or vindex reads: best of `repeat`, after one untimed read."""
    rows, points = fancy_selections(data.shape[0])
    with contextlib.ExitStack() as stack:
        if impl.key == "zarrs-python":
            # zarrs-python cannot run these natively; what its users get is its fallback
            # to zarr's pipeline, so that is what is timed (noted in the report).
            stack.enter_context(zarr.config.set({"codec_pipeline.strict": False}))
        return _measure_fancy(impl, path, data, kind, repeat, rows, points)


def _measure_fancy(
    impl: PyImpl, path: Path, data: np.ndarray, kind: str, repeat: int, rows: np.ndarray, points: tuple[np.ndarray, ...]
) -> Cell:
    array = impl.open(path)
    if kind == "oindex":
        read, expected = partial(impl.read_oindex, array, rows), data[rows]
    else:
        read, expected = partial(impl.read_vindex, array, points), data[points]
    read()
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = read()
        elapsed = time.perf_counter() - start
        if not same(result, expected):
            return Cell("MISMATCH", detail=f"{kind} result differs from source")
        best = min(best, elapsed)
    return Cell("ok", best)


# --------------------------------------------------------------------------
# Peak memory of a write-then-read roundtrip, one fresh process per measurement
# --------------------------------------------------------------------------


def proc_status_bytes(name: str) -> int | None:
    """``VmRSS`` or ``VmHWM`` of this process in bytes (None off Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return None


def _memory_child(impl_key: str, layout_name: str, store: str, source: str, shape: tuple[int, ...], path: str, metadata: dict, conn: Any) -> None:
    """Child body of measure_memory(): baseline once the source is loaded, then the roundtrip."""
    global STORE
    STORE = STORE_KINDS[store]()
    impl = IMPLS[impl_key]
    assert not isinstance(impl, RustImpl)  # measured by the binary itself
    try:
        impl.load()
        data = np.fromfile(source, dtype=np.uint16).reshape(shape)
        gc.collect()
        baseline = proc_status_bytes("VmRSS")
        try:
            # "5" resets the peak (VmHWM) to the current RSS (Linux 4.0+).
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # then the peak may include a higher one from before (imports)
        with impl.session():
            array = impl.create(Path(path), LAYOUTS[layout_name], shape, metadata)
            impl.write_all(array, data)
            del array
            result = impl.read_all(impl.open(Path(path)))
        peak = proc_status_bytes("VmHWM")
        if baseline is None or peak is None:
            raise NotImplementedError("needs /proc/self/status (Linux)")
        read_ok = same(result, data)
        del result
        # Checked here: a MemoryStore's array lives in this process only.
        written_ok = same(read_with_reference(Path(path)), data)
        STORE.remove(Path(path))
        conn.send((baseline, peak, read_ok, written_ok, None))
    except Exception as exc:  # noqa: BLE001 - reported as the cell
        conn.send((None, None, None, None, describe(exc)))


def measure_memory(impl: Impl, layout: Layout, data: np.ndarray, workdir: Path, metadata: dict) -> Cell:
    """Peak RSS of writing then reading the whole array, above the RSS once the source is
    loaded, as a multiple of the array's bytes; in a fresh process (the binary, for Rust).
    For a MemoryStore the peak includes the stored (encoded) array, which lives in that
    process."""
    if STORE.name == "s3":
        raise NotApplicable("not measured on S3 (each process would need its own server)")
    path = workdir / f"{layout.name}-{impl.key}-memory"
    source = source_file(data, workdir)
    if isinstance(impl, RustImpl):
        report = impl.run({"mode": "memory", "source": str(source), "target": str(path), "metadata": metadata}, workdir)
        baseline, peak, read_ok = report["baseline_bytes"], report["peak_bytes"], report["read_matches_source"]
        written_ok = same(read_with_reference(path), data)
        STORE.remove(path)
    else:
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=_memory_child,
            args=(impl.key, layout.name, STORE.name, str(source), data.shape, str(path), metadata, sender),
        )
        child.start()
        sender.close()
        try:
            if not receiver.poll(MEMORY_TIMEOUT_S):
                raise TimeoutError(f"no result within {MEMORY_TIMEOUT_S} s")
            baseline, peak, read_ok, written_ok, error = receiver.recv()
        except EOFError:
            raise RuntimeError(f"the measuring process died (exit code {child.exitcode})") from None
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()
        if error:
            raise RuntimeError(error)
    if not (read_ok and written_ok):
        what = "array read back with BatchedCodecPipeline" if not written_ok else "read of its own array"
        return Cell("MISMATCH", detail=f"{what} differs from source")
    return Cell("ok", (peak - baseline) / data.nbytes)


# --------------------------------------------------------------------------
# Mini-batch loader and opening many arrays
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class MiniBatch:
    """Sizes of the mini-batch rows (--mb-* flags)."""

    rows: int
    cols: int
    batch: int
    batches: int
    readers: int
    chunk_rows: int
    shard_rows: int


MINIBATCH_LAYOUTS: dict[str, Callable[[MiniBatch], dict[str, Any]]] = {
    "zstd": lambda mb: {"chunks": (mb.chunk_rows, mb.cols), "shards": None, "compressors": (ZstdCodec(level=1),)},
    "zstd-sharded": lambda mb: {
        "chunks": (mb.chunk_rows, mb.cols),
        "shards": (mb.shard_rows, mb.cols),
        "compressors": (ZstdCodec(level=1),),
    },
}


def make_minibatch_data(rows: int, cols: int) -> np.ndarray:
    """float32 features: a ramp plus 2 bits of seeded noise (compressible, not constant)."""
    rng = np.random.default_rng(SEED + 3)
    data = np.empty((rows, cols), dtype=np.float32)
    col = np.arange(cols, dtype=np.int64)
    step = 8192
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        ramp = (np.arange(start, stop, dtype=np.int64)[:, None] * 3 + col) % 4096
        data[start:stop] = ramp * 0.25 + rng.integers(0, 4, size=(stop - start, cols))
    return data


def minibatch_indices(mb: MiniBatch) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED + 4)
    return [np.sort(rng.choice(mb.rows, size=mb.batch, replace=False)) for _ in range(mb.batches)]


def measure_minibatch(impl: Impl, path: Path, data: np.ndarray, batches: list[np.ndarray], readers: int, block: int, workdir: Path) -> Cell:
    """Seconds per batch, reading every batch with `readers` threads (each takes the next
    batch); after one untimed batch. Every batch is checked against the source."""
    expected = [data[rows] for rows in batches]
    if isinstance(impl, RustImpl):
        outputs = workdir / "zarrs-rust-out"
        outputs.mkdir(exist_ok=True)
        report = impl.run(
            {
                "mode": "minibatch",
                "reference": str(path),
                "batches": [rows.tolist() for rows in batches],
                "row_block": block,
                "readers": readers,
                "outputs": str(outputs),
            },
            workdir,
        )
        flat = np.fromfile(outputs / "minibatch.bin", dtype=data.dtype)
        (outputs / "minibatch.bin").unlink()
        results = np.split(flat, len(batches)) if flat.size == len(batches) * expected[0].size else []
        results = [r.reshape(e.shape) for r, e in zip(results, expected)]
        seconds = report["seconds"]
    else:
        with contextlib.ExitStack() as stack:
            stack.enter_context(impl.session())
            if impl.key == "zarrs-python":  # as for oindex: its users get the fallback
                stack.enter_context(zarr.config.set({"codec_pipeline.strict": False}))
            array = impl.open(path)
            read = partial(impl.read_oindex, array)
            read(batches[0])
            start = time.perf_counter()
            if readers == 1:
                results = [read(rows) for rows in batches]
            else:
                with ThreadPoolExecutor(readers) as pool:
                    results = list(pool.map(read, batches))
            seconds = time.perf_counter() - start
    bad = len(batches) - sum(same(r, e) for r, e in zip(results, expected)) if len(results) == len(batches) else len(batches)
    if bad:
        return Cell("MISMATCH", detail=f"{bad} of {len(batches)} batches differ from source")
    return Cell("ok", seconds / len(batches))


def bench_minibatch(impls: list[Impl], mb: MiniBatch, workdir: Path) -> dict[tuple[str, str, str], Cell]:
    """Keys are (layout, "1 reader" / "N readers", impl key)."""
    log.info("mini-batch: generating (%d, %d) float32 ...", mb.rows, mb.cols)
    data = make_minibatch_data(mb.rows, mb.cols)
    batches = minibatch_indices(mb)
    results: dict[tuple[str, str, str], Cell] = {}
    for name, kwargs in MINIBATCH_LAYOUTS.items():
        path = workdir / f"minibatch-{name}"
        with zarr.config.set(REFERENCE_CONFIG):
            reference = zarr.create_array(STORE.writer(path), shape=data.shape, dtype=np.float32, fill_value=0, **kwargs(mb))
            reference[:] = data
            STORE.finish(reference.store)
            del reference
        block = row_block(STORE.metadata(path))
        for readers in sorted({1, mb.readers}):
            threads = f"{readers} reader" + ("s" if readers > 1 else "")
            for impl in impls:
                cell = guarded(partial(measure_minibatch, impl, path, data, batches, readers, block, workdir))
                results[name, threads, impl.key] = cell
                log_cell(f"mb-{name}", threads, impl, cell)
        STORE.remove(path)
    return results


def open_one(impl: Impl, path: Path) -> tuple[int, ...]:
    """Open the array at `path` (metadata only) and return its shape."""
    if isinstance(impl, ZarrPipelineImpl):
        return zarr.open_array(STORE.reader(path), mode="r").shape
    assert not isinstance(impl, RustImpl)  # opens in the binary
    return tuple(impl.open(path).shape)


def bench_open(impls: list[Impl], count: int, repeat: int, workdir: Path) -> dict[str, Cell]:
    """Seconds to open `count` small arrays, best of `repeat`; every shape checked."""
    root = workdir / "open-arrays"
    paths = [root / f"{i:04d}" for i in range(count)]
    shapes = [(64 + i % 7, 64) for i in range(count)]
    with zarr.config.set(REFERENCE_CONFIG):
        for path, shape in zip(paths, shapes):
            array = zarr.create_array(STORE.writer(path), shape=shape, chunks=(16, 16), dtype=np.float32, compressors=(ZstdCodec(level=1),))
            STORE.finish(array.store)
    results: dict[str, Cell] = {}
    for impl in impls:

        def measure(impl: Impl = impl) -> Cell:
            best, opened = math.inf, []
            if isinstance(impl, RustImpl):
                report = impl.run({"mode": "open", "open_paths": [str(p) for p in paths], "repeat": repeat}, workdir)
                best, opened = report["seconds"], [tuple(shape) for shape in report["shapes"]]
            else:
                with impl.session():
                    for _ in range(repeat):
                        start = time.perf_counter()
                        opened = [open_one(impl, path) for path in paths]
                        best = min(best, time.perf_counter() - start)
            bad = sum(tuple(got) != want for got, want in zip(opened, shapes)) + abs(len(opened) - len(shapes))
            if bad:
                return Cell("MISMATCH", detail=f"{bad} of {count} opened arrays have the wrong shape")
            return Cell("ok", best)

        results[impl.key] = guarded(measure)
        log_cell("open", f"{count} arrays", impl, results[impl.key])
    for path in paths:
        STORE.remove(path)
    return results


def bench_layout(
    layout: Layout,
    impls: list[Impl],
    data: np.ndarray,
    workdir: Path,
    *,
    repeat: int,
    small_repeat: int,
    n_small: int,
    memory: bool = False,
) -> dict[tuple[str, str], Cell]:
    """Run every operation of every implementation on one layout; keys are (operation, impl key)."""
    ref_path = workdir / f"{layout.name}-reference"
    with zarr.config.set(REFERENCE_CONFIG):
        reference = create_zarr_array(ref_path, layout, data.shape)
        reference[:] = data
        STORE.finish(reference.store)
        del reference
    metadata = STORE.metadata(ref_path)
    boxes = random_boxes(data.shape[0], n_small)

    results: dict[tuple[str, str], Cell] = {}
    for impl in impls:
        own_path = workdir / f"{layout.name}-{impl.key}"
        if isinstance(impl, RustImpl):
            cells = measure_rust_layout(
                impl, layout, ref_path, own_path, metadata, data, boxes, repeat, small_repeat, workdir
            )
            for operation, cell in cells.items():
                results[operation, impl.key] = cell
                log_cell(layout.name, operation, impl, cell)
            STORE.remove(own_path)
            continue
        with impl.session():
            steps = {
                "write_all": partial(
                    measure_write_all, impl, own_path, layout, metadata, data, repeat
                ),
                "read_all": partial(measure_read_all, impl, ref_path, data, repeat),
                "small_reads": partial(
                    measure_small_reads, impl, ref_path, data, boxes, small_repeat
                ),
                "oindex": partial(measure_fancy, impl, ref_path, data, "oindex", repeat),
                "vindex": partial(measure_fancy, impl, ref_path, data, "vindex", repeat),
            }
            for operation, step in steps.items():
                if operation not in SELECTED_OPERATIONS:
                    continue
                os.sync()
                cell = guarded(step)
                gc.collect()
                results[operation, impl.key] = cell
                log_cell(layout.name, operation, impl, cell)
        STORE.remove(own_path)
    if memory:
        for impl in impls:
            cell = guarded(partial(measure_memory, impl, layout, data, workdir, metadata))
            results["peak_memory", impl.key] = cell
            if cell.status == "ok":
                log.info("  %-12s %-11s %-17s %8.2fx the array", layout.name, "peak_memory", impl.label, cell.seconds)
            else:
                log_cell(layout.name, "peak_memory", impl, cell)
    STORE.remove(ref_path)
    return results


# --------------------------------------------------------------------------
# Preflight: keep a crashing implementation from taking the benchmark down
# --------------------------------------------------------------------------


def _smoke_run(impl_key: str, layout_names: list[str], store: str, conn: Any) -> None:
    """Child-process body of preflight(): import, then one small pass of the real benchmark."""
    global STORE
    STORE = STORE_KINDS[store]()
    impl = IMPLS[impl_key]
    try:
        impl.load()
    except Exception as exc:  # noqa: BLE001 - e.g. ImportError, or OSError from dlopen
        conn.send(describe(exc))
        return
    conn.send(None)
    log.disabled = True  # the main run reports any per-cell problem again
    data = make_data(SMOKE_SIDE)
    with tempfile.TemporaryDirectory() as tmp:
        for name in layout_names:
            # Python errors are ignored here: the main run reports them per cell.
            bench_layout(
                LAYOUTS[name],
                [impl],
                data,
                Path(tmp),
                repeat=1,
                small_repeat=1,
                n_small=2,
            )


def preflight(impl: Impl, layouts: list[Layout]) -> str | None:
    """Return why `impl` cannot be benchmarked, or None if it can.

    Runs in a child process because native code (a cdylib under development,
    loaded through cffi) can segfault, which no try/except would catch.
    """
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_smoke_run, args=(impl.key, [layout.name for layout in layouts], STORE.name, sender)
    )
    child.start()
    sender.close()
    child.join(SMOKE_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join()
        return f"smoke run on {SMOKE_SIDE}^3 did not finish within {SMOKE_TIMEOUT_S} s"
    try:
        import_error = receiver.recv()
    except EOFError:  # the child died before reporting on the import
        import_error = None
    if import_error:
        return import_error
    if child.exitcode != 0:
        code = child.exitcode
        how = (
            f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        )
        return f"smoke run on {SMOKE_SIDE}^3 crashed ({how})"
    return None


# --------------------------------------------------------------------------
# anndata: a single-cell dataset written, read and lazily opened through zarr
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnDataSize:
    """Sizes of the anndata rows (--ad-* flags)."""

    obs: int
    vars: int
    density: float
    embedding: int
    repeat: int

    def describe(self) -> str:
        nnz = round(self.obs * self.vars * self.density)
        return (
            f"AnnData of {self.obs:,} obs x {self.vars:,} vars: X float32 CSR ({self.density:.1%} dense, {nnz:,} "
            f"stored values), obsm['X_pca'] float32 ({self.obs:,}, {self.embedding}) dense, obs and var with float, "
            "int and bool columns, categoricals and unique strings (and string indexes)"
        )


def anndata_size(args: argparse.Namespace) -> AnnDataSize:
    obs = args.ad_obs or (QUICK_AD_OBS if args.quick else FULL_AD_OBS)
    return AnnDataSize(obs=obs, vars=args.ad_vars, density=AD_DENSITY, embedding=AD_EMBEDDING, repeat=args.ad_repeat)


# Rows of the anndata table, in order.
ANNDATA_OPERATIONS = ("write_zarr", "read_zarr", "read_lazy", "lazy touch")
# What `lazy touch` reads of the lazily opened dataset.
ANNDATA_TOUCH_COLUMN = "cell_type"
ANNDATA_TOUCH_ROWS = 1000


def anndata_unavailable() -> str | None:
    """Why the anndata section cannot run (anndata or its lazy API missing), or None."""
    try:
        importlib.import_module("anndata")
        importlib.import_module("scipy.sparse")
        getattr(importlib.import_module("anndata.experimental"), "read_lazy")
        # anndata swaps zarr's default pipeline for its own choice inside write_zarr and
        # read_zarr; the section turns that off (`anndata_pipeline_as_configured`).
        getattr(importlib.import_module("anndata._io.zarr"), "fast_zarr_context")
    except Exception as exc:  # noqa: BLE001 - any import problem makes the section unavailable
        return describe(exc)
    return None


@contextlib.contextmanager
def anndata_pipeline_as_configured() -> Iterator[None]:
    """Keep the codec pipeline the benchmark selected inside anndata's write_zarr and read_zarr.

    anndata (0.12+) replaces a pipeline whose path contains "Batched", zarr's default, with
    zarrs-python when it is installed, else zarr's Fused pipeline, for the duration of those
    calls; the zarr Batched column would time another pipeline. Its lazy reader does not.
    """
    module = importlib.import_module("anndata._io.zarr")
    original = module.fast_zarr_context
    module.fast_zarr_context = contextlib.nullcontext
    try:
        yield
    finally:
        module.fast_zarr_context = original


def make_anndata(size: AnnDataSize) -> Any:
    """A deterministic single-cell-like AnnData (strings already made categoricals where
    write_zarr would, so writing it leaves it unchanged)."""
    anndata = importlib.import_module("anndata")
    pd = importlib.import_module("pandas")
    sparse = importlib.import_module("scipy.sparse")
    rng = np.random.default_rng(SEED + 5)
    x = sparse.random(size.obs, size.vars, density=size.density, format="csr", dtype=np.float32, random_state=rng)
    # Counts-like values (small integers as float32), as a raw count matrix holds.
    x.data[:] = rng.integers(1, 64, size=x.nnz)
    obs = pd.DataFrame(
        {
            "n_counts": np.asarray(x.sum(axis=1)).ravel().astype(np.float32),
            "n_genes": np.diff(x.indptr).astype(np.int64),
            "percent_mito": rng.random(size.obs).astype(np.float32),
            "cell_type": pd.Categorical(rng.choice([f"type-{i}" for i in range(24)], size.obs)),
            "batch": pd.Categorical(rng.choice(["a", "b", "c", "d"], size.obs)),
            "barcode": [f"{i:08x}-1" for i in range(size.obs)],
        },
        index=[f"cell-{i}" for i in range(size.obs)],
    )
    var = pd.DataFrame(
        {
            "gene_ids": [f"ENSG{i:011d}" for i in range(size.vars)],
            "feature_types": pd.Categorical(rng.choice(["Gene Expression", "Antibody Capture"], size.vars)),
            "highly_variable": rng.random(size.vars) < 0.1,
            "mean": rng.random(size.vars),
        },
        index=[f"gene-{i}" for i in range(size.vars)],
    )
    adata = anndata.AnnData(X=x, obs=obs, var=var)
    adata.obsm["X_pca"] = rng.standard_normal((size.obs, size.embedding), dtype=np.float32)
    adata.strings_to_categoricals()
    return adata


def anndata_difference(got: Any, want: Any) -> str | None:
    """How an AnnData read back differs from the source, or None when it equals it."""
    pd = importlib.import_module("pandas")
    sparse = importlib.import_module("scipy.sparse")
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    if not sparse.issparse(got.X) or got.X.dtype != want.X.dtype or (got.X != want.X).nnz:
        return "X differs"
    if set(got.obsm) != set(want.obsm) or any(not same(np.asarray(got.obsm[k]), want.obsm[k]) for k in want.obsm):
        return "obsm differs"
    for name in ("obs", "var"):
        try:
            pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name), check_dtype=False, check_index_type=False)
        except AssertionError as exc:
            return f"{name} differs: {' '.join(str(exc).split())[:200]}"
    return None


def memory_copy(root: Path) -> dict[str, Any]:
    """Every file under `root` as MemoryStore contents (key -> Buffer)."""
    buffer = zarr.core.buffer.default_buffer_prototype().buffer
    return {
        file.relative_to(root).as_posix(): buffer.from_bytes(file.read_bytes())
        for file in sorted(root.rglob("*"))
        if file.is_file()
    }


def bench_anndata(impls: list[Impl], size: AnnDataSize, workdir: Path) -> dict[tuple[str, str], Cell]:
    """Keys are (operation, impl key). Implementations take turns within each repetition
    (the machine's load drifts); each cell is the best of `size.repeat`."""
    anndata = importlib.import_module("anndata")
    read_lazy = importlib.import_module("anndata.experimental").read_lazy
    log.info("anndata: generating %s obs x %s vars ...", f"{size.obs:,}", f"{size.vars:,}")
    source = make_anndata(size)
    results: dict[tuple[str, str], Cell] = {}
    pipelines = [impl for impl in impls if isinstance(impl, ZarrPipelineImpl)]
    for impl in impls:
        if impl not in pipelines:
            results.update({(op, impl.key): Cell("n/a", detail="not a zarr codec pipeline") for op in ANNDATA_OPERATIONS})

    def session(impl: ZarrPipelineImpl) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(impl.session())
        stack.enter_context(anndata_pipeline_as_configured())
        if impl.key == "zarrs-python":  # it has no variable-length strings: as anndata runs it
            stack.enter_context(zarr.config.set({"codec_pipeline.strict": False}))
        return stack

    reference = workdir / "anndata-reference.zarr"
    with zarr.config.set(REFERENCE_CONFIG), anndata_pipeline_as_configured():
        source.write_zarr(reference)
    contents = memory_copy(reference)
    rows = slice(size.obs // 2, size.obs // 2 + min(ANNDATA_TOUCH_ROWS, size.obs - size.obs // 2))
    want_rows = source.X[rows]
    want_column = np.asarray(source.obs[ANNDATA_TOUCH_COLUMN])

    def write(impl: ZarrPipelineImpl) -> tuple[float, Any]:
        path = workdir / f"anndata-{impl.key}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        with session(impl):
            start = time.perf_counter()
            source.write_zarr(path)
            return time.perf_counter() - start, path

    def read(impl: ZarrPipelineImpl) -> tuple[float, Any]:
        with session(impl):
            start = time.perf_counter()
            adata = anndata.read_zarr(reference)
            return time.perf_counter() - start, adata

    def lazy(impl: ZarrPipelineImpl) -> tuple[float, float, Any]:
        store = zarr.storage.MemoryStore(dict(contents), read_only=True)
        with session(impl), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. anndata's "experimental" notices
            start = time.perf_counter()
            adata = read_lazy(store)
            opened = time.perf_counter()
            column = np.asarray(adata.obs[ANNDATA_TOUCH_COLUMN])
            block = adata.X[rows].compute()
            return opened - start, time.perf_counter() - opened, (column, block)

    def check(operation: str, impl: ZarrPipelineImpl, outcome: Any) -> str | None:
        if operation == "write_zarr":
            with zarr.config.set(REFERENCE_CONFIG), anndata_pipeline_as_configured():
                return anndata_difference(anndata.read_zarr(outcome), source)
        if operation == "read_zarr":
            return anndata_difference(outcome, source)
        column, block = outcome
        if not np.array_equal(column, want_column):
            return f"obs[{ANNDATA_TOUCH_COLUMN!r}] differs"
        if block.shape != want_rows.shape or (block != want_rows).nnz:
            return f"X[{rows.start}:{rows.stop}] differs"
        return None

    best: dict[tuple[str, str], float] = {}
    failed: dict[tuple[str, str], Cell] = {}
    for _ in range(size.repeat):
        for impl in pipelines:
            for operation, run in (("write_zarr", write), ("read_zarr", read), ("read_lazy", lazy)):
                if (operation, impl.key) in failed:
                    continue
                try:
                    *seconds, outcome = run(impl)
                    problem = check(operation, impl, outcome)
                except Exception as exc:  # noqa: BLE001 - any failure becomes the cell
                    failed[operation, impl.key] = Cell("error", detail=describe(exc))
                    if operation == "read_lazy":
                        failed["lazy touch", impl.key] = failed[operation, impl.key]
                    continue
                if problem:
                    failed[operation, impl.key] = Cell("MISMATCH", detail=problem)
                    if operation == "read_lazy":
                        failed["lazy touch", impl.key] = failed[operation, impl.key]
                    continue
                names = ("read_lazy", "lazy touch") if operation == "read_lazy" else (operation,)
                for name, value in zip(names, seconds):
                    best[name, impl.key] = min(best.get((name, impl.key), math.inf), value)
                del outcome
        gc.collect()
    for impl in pipelines:
        shutil.rmtree(workdir / f"anndata-{impl.key}.zarr", ignore_errors=True)
        for operation in ANNDATA_OPERATIONS:
            cell = failed.get((operation, impl.key)) or Cell("ok", best[operation, impl.key])
            results[operation, impl.key] = cell
            log_cell("anndata", operation, impl, cell)
    shutil.rmtree(reference, ignore_errors=True)
    return results


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def package_version(dist: str, module: str | None = None) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    # Not installed as a distribution (e.g. used from a source tree): ask the
    # module, but only if it is already imported, since importing it here
    # could crash the benchmark.
    loaded = sys.modules.get(module or dist)
    return (
        getattr(loaded, "__version__", "unknown version") if loaded else "not installed"
    )


def filesystem_type(path: Path) -> str:
    """Type of the filesystem holding `path`, from /proc/mounts ("unknown" elsewhere)."""
    mount_point, fstype = Path("/"), "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind, *_ = line.split()
            candidate = Path(mount)
            if path.is_relative_to(candidate) and len(candidate.parts) >= len(
                mount_point.parts
            ):
                mount_point, fstype = candidate, kind
    return fstype


def rustc_version() -> str:
    try:
        return subprocess.run(["rustc", "--version"], capture_output=True, text=True, timeout=60).stdout.strip() or "rustc: unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "rustc: not found"


def environment_lines(side: int, args: argparse.Namespace, workdir: Path, impls: list[Impl], mb: MiniBatch) -> list[str]:
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    versions = ", ".join(
        f"{name} {package_version(dist, module)}"
        for name, dist, module in (
            ("numpy", "numpy", None),
            ("zarr", "zarr", None),
            ("zarrs", "zarrs", None),
            ("tensorstore", "tensorstore", None),
            ("zarrs_cffi", "zarrs-cffi", "zarrs_cffi"),
        )
    )
    rust = [impl for impl in impls if isinstance(impl, RustImpl)]
    if rust:
        versions += f", zarrs (Rust crate) {rust[0].zarrs_version} with {rustc_version()}"
    mib = side**3 * 2 / 2**20
    command = shlex.join([Path(sys.executable).name, "benchmarks/bench.py", *(args.argv or [])])
    lines = [
        f"- command: `{command}`",
        f"- python {platform.python_version()}, {versions}",
        f"- {platform.platform()}, CPUs: {cpus} (usable: {usable})",
        (
            f"- store: {STORE.describe()}, files under {workdir.parent} ({filesystem_type(workdir.resolve())})"
            if STORE.name in ("local", "zip")
            else f"- store: {STORE.describe()}"
        ),
        f"- data: {side}^3 uint16 ({mib:.0f} MiB), chunks {CHUNK[0]}^3, shards {SHARD[0]}^3",
        (
            f"- write_all/read_all: best of {args.repeat}; small_reads: {N_SMALL_READS} "
            f"reads of {BOX_SIDE}^3 boxes, total time, best of {args.small_repeat}; "
            f"oindex: {N_OINDEX} sorted random indices on axis 0; vindex: {N_VINDEX} random points"
        ),
    ]
    if "memory" in args.section:
        lines.append(
            "- peak memory: VmHWM above VmRSS once the source array is loaded (peak reset through "
            "/proc/self/clear_refs), of creating, writing and reading back the whole array, in a fresh process"
        )
    if "minibatch" in args.section:
        mib = mb.rows * mb.cols * 4 / 2**20
        lines.append(
            f"- mini-batch: ({mb.rows:,}, {mb.cols}) float32 ({mib:.0f} MiB), chunks of {mb.chunk_rows} rows, "
            f"shards of {mb.shard_rows} rows, zstd level 1; {mb.batches} batches of {mb.batch} sorted random rows "
            f"(`oindex[rows]`), after one untimed batch; 1 reader, then {mb.readers} threads each taking the next batch"
        )
    if "open" in args.section:
        lines.append(
            f"- open: {args.open_count} small 2-D float32 arrays (zarr.json only), opened one after another, "
            f"best of {args.repeat}"
        )
    if "anndata" in args.section and package_version("anndata") != "not installed":
        size = anndata_size(args)
        lines.append(
            f"- anndata {package_version('anndata')} (scipy {package_version('scipy')}): {size.describe()}; "
            f"`write_zarr` to {filesystem_type(workdir.resolve())}, `read_zarr` of the same files, "
            f"`read_lazy` of a MemoryStore copy, then `lazy touch`: obs[{ANNDATA_TOUCH_COLUMN!r}] and "
            f"{ANNDATA_TOUCH_ROWS} rows of X computed; implementations take turns, best of {size.repeat}, "
            "every result compared with the source (a write by reading it back with zarr Batched). "
            "anndata's own switch of zarr's default pipeline (to zarrs-python or Fused) is turned off"
        )
    return lines


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_report(
    env: list[str],
    impls: list[Impl],
    unavailable: dict[str, str],
    layouts: list[Layout],
    results: dict[tuple[str, str, str], Cell],
    minibatch: dict[tuple[str, str, str], Cell] | None = None,
    opened: dict[str, Cell] | None = None,
    open_count: int = 0,
    anndata: dict[tuple[str, str], Cell] | None = None,
) -> str:
    notes: list[str] = []

    def format_cell(cell: Cell, where: str, fmt: str = "{:.3f}", scale: float = 1.0) -> str:
        if cell.status == "ok":
            return fmt.format(cell.seconds * scale)
        if cell.status == "unavailable":
            return "unavailable"
        if cell.status == "n/a":
            return "n/a"
        notes.append(f"[{len(notes) + 1}] {where}: {cell.detail}")
        label = "**MISMATCH**" if cell.status == "MISMATCH" else cell.status
        return f"{label} [{len(notes)}]"

    def seconds_cell(layout: Layout, operation: str, impl: Impl) -> str:
        cell = results[layout.name, operation, impl.key]
        return format_cell(cell, f"{layout.name} / {operation} / {impl.label}")

    def ratio(layout: Layout, operation: str, numerator: str, denominator: str) -> str:
        num = results[layout.name, operation, numerator]
        den = results[layout.name, operation, denominator]
        if num.status == "ok" and den.status == "ok":
            return f"{num.seconds / den.seconds:.2f}x"
        return "-"

    rows = [(layout, operation) for layout in layouts for operation in SELECTED_OPERATIONS]
    out = [
        "# zarr codec pipeline benchmark",
        "",
        "## Environment",
        "",
        *env,
        "",
        "## Implementations",
        "",
    ]
    for impl in impls:
        if isinstance(impl, ZarrPipelineImpl):
            where = impl.path
        elif isinstance(impl, TensorstoreImpl):
            where = "tensorstore.open (zarr3 driver)"
        elif isinstance(impl, DirectImpl):
            where = "zarrs_cffi.Array (region reads; oindex by row blocks, no vindex)"
        else:
            where = (
                f"zarrs {impl.zarrs_version} from Rust, zarrs-ffi/examples/bench_zarrs.rs (timed inside the "
                "binary; oindex by row blocks and vindex by chunk, small reads and oindex through zarrs' "
                "shard index cache; its FilesystemStore fsyncs each chunk it writes)"
            )
        status = (
            f"unavailable: {unavailable[impl.key]}"
            if impl.key in unavailable
            else where
        )
        out.append(f"- {impl.label}: {status}")
    fancy = any(op in SELECTED_OPERATIONS for op in ("oindex", "vindex")) or bool(minibatch)
    if fancy and "zarrs-python" in {i.key for i in impls}:
        out.append(
            "- zarrs-python has no native oindex/vindex: those cells (and the mini-batch rows) time its "
            "fallback to zarr's pipeline (`codec_pipeline.strict` off for them only)"
        )

    if not rows:
        return "\n".join(out + extra_sections(impls, layouts, results, minibatch, opened, open_count, format_cell, notes, anndata)) + "\n"

    out += ["", "## Seconds (lower is better)", ""]
    out += markdown_table(
        ["layout", "operation", *(impl.label for impl in impls)],
        [
            [layout.name, op, *(seconds_cell(layout, op, impl) for impl in impls)]
            for layout, op in rows
        ],
    )

    out += [
        "",
        "## Speed-up over zarr BatchedCodecPipeline (time(Batched) / time(impl), higher is faster)",
        "",
    ]
    keys = [impl.key for impl in impls]
    others = [impl for impl in impls if impl.key != "batched"]
    pair = "zarrs-python" in keys and "ours" in keys
    # How close our zarr pipeline comes to zarrs called from Rust (time(Rust) / time(ours)).
    rust_pair = "zarrs-rust" in keys and "ours" in keys
    if "batched" in keys and (others or pair):
        out += markdown_table(
            ["layout", "operation", *(impl.label for impl in others)]
            + (["ours vs zarrs-python"] if pair else [])
            + (["ours vs zarrs (Rust)"] if rust_pair else []),
            [
                [
                    layout.name,
                    op,
                    *(ratio(layout, op, "batched", impl.key) for impl in others),
                ]
                + ([ratio(layout, op, "zarrs-python", "ours")] if pair else [])
                + ([ratio(layout, op, "zarrs-rust", "ours")] if rust_pair else [])
                for layout, op in rows
            ],
        )
    else:
        out.append("(needs `batched` and at least one other implementation in --impl)")

    out += extra_sections(impls, layouts, results, minibatch, opened, open_count, format_cell, notes, anndata)
    return "\n".join(out) + "\n"


def extra_sections(
    impls: list[Impl],
    layouts: list[Layout],
    results: dict[tuple[str, str, str], Cell],
    minibatch: dict[tuple[str, str, str], Cell] | None,
    opened: dict[str, Cell] | None,
    open_count: int,
    format_cell: Callable[..., str],
    notes: list[str],
    anndata: dict[tuple[str, str], Cell] | None = None,
) -> list[str]:
    """Peak memory, mini-batch, open and anndata tables, then the problem notes of the whole report."""
    out: list[str] = []
    labels = [impl.label for impl in impls]
    if any((layout.name, "peak_memory", impl.key) in results for layout in layouts for impl in impls):
        out += [
            "",
            "## Peak memory of a write-then-read roundtrip (multiple of the array's bytes, lower is better)",
            "",
            "Peak RSS above the RSS once the source array is loaded, in a fresh process per cell.",
            "",
        ]
        out += markdown_table(
            ["layout", *labels],
            [
                [
                    layout.name,
                    *(
                        format_cell(
                            results.get((layout.name, "peak_memory", impl.key), Cell("n/a")),
                            f"{layout.name} / peak memory / {impl.label}",
                            "{:.2f}x",
                        )
                        for impl in impls
                    ),
                ]
                for layout in layouts
            ],
        )
    if minibatch:
        keys = sorted({(name, readers) for name, readers, _ in minibatch}, key=lambda k: (k[0], int(k[1].split()[0])))
        out += ["", "## Mini-batch loader (ms per batch, lower is better)", ""]
        out += markdown_table(
            ["layout", "readers", *labels],
            [
                [
                    name,
                    readers,
                    *(
                        format_cell(
                            minibatch.get((name, readers, impl.key), Cell("n/a")),
                            f"mini-batch {name} / {readers} / {impl.label}",
                            "{:.2f}",
                            1e3,
                        )
                        for impl in impls
                    ),
                ]
                for name, readers in keys
            ],
        )
        names = sorted({name for name, _ in keys})
        counts = sorted({readers for _, readers in keys}, key=lambda r: int(r.split()[0]))
        if len(counts) == 2:
            one, many = counts
            out += ["", f"### Scaling: time with {one} / time with {many} (higher is better)", ""]

            def scaling(name: str, key: str) -> str:
                a, b = minibatch.get((name, one, key)), minibatch.get((name, many, key))
                return f"{a.seconds / b.seconds:.2f}x" if a and b and a.status == b.status == "ok" else "-"

            out += markdown_table(["layout", *labels], [[name, *(scaling(name, impl.key) for impl in impls)] for name in names])
    if opened:
        out += ["", f"## Open {open_count} small arrays (seconds, lower is better)", ""]
        out += markdown_table(
            labels,
            [[format_cell(opened.get(impl.key, Cell("n/a")), f"open / {impl.label}") for impl in impls]],
        )
    missing = anndata.get(("unavailable", "")) if anndata else None
    if missing:
        out += ["", "## anndata", "", f"unavailable: {missing.detail}"]
    elif anndata:
        out += ["", "## anndata (seconds, lower is better)", ""]
        if "zarrs-python" in {impl.key for impl in impls}:
            out += [
                "zarrs-python has no variable-length strings: its cells time it with its fallback to zarr's "
                "pipeline for those arrays (`codec_pipeline.strict` off), as anndata itself runs it.",
                "",
            ]
        out += markdown_table(
            ["operation", *labels],
            [
                [op, *(format_cell(anndata.get((op, impl.key), Cell("n/a")), f"anndata {op} / {impl.label}") for impl in impls)]
                for op in ANNDATA_OPERATIONS
            ],
        )
        keys = [impl.key for impl in impls]
        others = [impl for impl in impls if impl.key != "batched" and isinstance(impl, ZarrPipelineImpl)]
        if "batched" in keys and others:

            def speedup(op: str, key: str) -> str:
                num, den = anndata.get((op, "batched")), anndata.get((op, key))
                return f"{num.seconds / den.seconds:.2f}x" if num and den and num.status == den.status == "ok" else "-"

            out += ["", "### Speed-up over zarr Batched (time(Batched) / time(impl), higher is faster)", ""]
            out += markdown_table(
                ["operation", *(impl.label for impl in others)],
                [[op, *(speedup(op, impl.key) for impl in others)] for op in ANNDATA_OPERATIONS],
            )
    if notes:
        out += ["", "## Problems", "", *notes]
    return out


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"use {QUICK_SIDE}^3 instead of {FULL_SIDE}^3",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="best of N for write_all/read_all (default 3)",
    )
    parser.add_argument(
        "--small-repeat",
        type=int,
        default=1,
        help="best of N batches of small_reads (default 1)",
    )
    parser.add_argument(
        "--impl",
        nargs="+",
        choices=list(IMPLS),
        default=list(IMPLS),
        help="implementations to run",
    )
    parser.add_argument(
        "--layout",
        nargs="+",
        choices=list(LAYOUTS),
        default=list(LAYOUTS),
        help="layouts to run",
    )
    parser.add_argument(
        "--dir",
        help="parent of the temporary working directory (default: the system temp dir)",
    )
    parser.add_argument(
        "--op",
        nargs="+",
        choices=list(OPERATIONS),
        default=list(OPERATIONS),
        help="operations to run",
    )
    parser.add_argument(
        "--store",
        choices=list(STORE_KINDS),
        default="local",
        help="where the arrays live (default: local files)",
    )
    parser.add_argument(
        "--section",
        nargs="+",
        choices=list(SECTIONS),
        default=list(SECTIONS),
        help="parts to run: the layout operations, peak memory per layout, the mini-batch "
        "loader, opening many small arrays, anndata (default: all; anndata only when it imports)",
    )
    parser.add_argument("--mb-rows", type=int, help=f"mini-batch array rows (default {FULL_MB_ROWS:,}; {QUICK_MB_ROWS:,} with --quick)")
    parser.add_argument("--mb-cols", type=int, default=256, help="mini-batch array columns (default 256)")
    parser.add_argument("--mb-batch", type=int, default=256, help="rows per batch (default 256)")
    parser.add_argument("--mb-batches", type=int, default=32, help="batches per measurement (default 32)")
    parser.add_argument("--mb-readers", type=int, default=4, help="reader threads of the concurrent rows (default 4)")
    parser.add_argument("--mb-chunk-rows", type=int, default=1024, help=f"rows per chunk (default 1024; shards of {MB_CHUNKS_PER_SHARD} chunks)")
    parser.add_argument("--open-count", type=int, default=300, help="small arrays to open (default 300)")
    parser.add_argument("--ad-obs", type=int, help=f"anndata cells (default {FULL_AD_OBS:,}; {QUICK_AD_OBS:,} with --quick)")
    parser.add_argument("--ad-vars", type=int, default=2000, help="anndata genes (default 2000)")
    parser.add_argument("--ad-repeat", type=int, default=5, help="best of N for the anndata rows (default 5)")
    parser.add_argument(
        "--zarrs-bin",
        help="the bench_zarrs binary for the zarrs (Rust) row (default: build it with cargo)",
    )
    parser.add_argument("--out", help="also write the markdown report to this file")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.repeat < 1 or args.small_repeat < 1:
        parser.error("--repeat and --small-repeat must be at least 1")
    for name in ("mb_rows", "mb_cols", "mb_batch", "mb_batches", "mb_readers", "mb_chunk_rows", "open_count", "ad_obs", "ad_vars", "ad_repeat"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    rows = args.mb_rows or (QUICK_MB_ROWS if args.quick else FULL_MB_ROWS)
    if args.mb_batch > rows:
        parser.error(f"--mb-batch ({args.mb_batch}) cannot exceed the rows ({rows})")
    return args


@contextlib.contextmanager
def working_directory(parent: str | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zarrs-bench-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    global STORE, SELECTED_OPERATIONS
    args = parse_args(argv)
    SELECTED_OPERATIONS = tuple(args.op) if "layouts" in args.section else ()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    STORE = STORE_KINDS[args.store]()
    side = QUICK_SIDE if args.quick else FULL_SIDE
    impls = [IMPLS[key] for key in args.impl]
    layouts = [LAYOUTS[name] for name in args.layout]

    unavailable: dict[str, str] = {}
    RustImpl.binary_override = args.zarrs_bin
    for impl in impls:
        if isinstance(impl, RustImpl):
            # Its own process already: a crash of the binary is an error cell, not ours.
            impl.prepare()
            reason = None
        else:
            log.info("preflight %s ...", impl.label)
            reason = preflight(impl, layouts)
        if reason is None:
            try:
                impl.load()
            except Exception as exc:  # noqa: BLE001 - as in the preflight child
                reason = describe(exc)
        if reason is not None:
            unavailable[impl.key] = reason
            log.warning("%s unavailable: %s", impl.label, reason)
    runnable = [impl for impl in impls if impl.key not in unavailable]

    memory = "memory" in args.section
    results: dict[tuple[str, str, str], Cell] = {
        (layout.name, operation, key): Cell("unavailable", detail=reason)
        for layout in layouts
        for operation in SELECTED_OPERATIONS + (("peak_memory",) if memory else ())
        for key, reason in unavailable.items()
    }
    minibatch: dict[tuple[str, str, str], Cell] = {}
    opened: dict[str, Cell] = {}
    anndata: dict[tuple[str, str], Cell] = {}
    mb = MiniBatch(
        rows=args.mb_rows or (QUICK_MB_ROWS if args.quick else FULL_MB_ROWS),
        cols=args.mb_cols,
        batch=args.mb_batch,
        batches=args.mb_batches,
        readers=args.mb_readers,
        chunk_rows=args.mb_chunk_rows,
        shard_rows=args.mb_chunk_rows * MB_CHUNKS_PER_SHARD,
    )
    with working_directory(args.dir) as workdir:
        if "open" in args.section:
            log.info("open %d small arrays", args.open_count)
            opened = bench_open(runnable, args.open_count, args.repeat, workdir)
            opened.update({key: Cell("unavailable", detail=reason) for key, reason in unavailable.items()})
        if "minibatch" in args.section:
            minibatch = bench_minibatch(runnable, mb, workdir)
            for name, readers, _ in list(minibatch):
                minibatch.update({(name, readers, key): Cell("unavailable", detail=reason) for key, reason in unavailable.items()})
            gc.collect()
        do_layouts = bool(SELECTED_OPERATIONS) or memory
        if do_layouts:
            log.info("generating %d^3 data ...", side)
            data = make_data(side)
        for layout in layouts if do_layouts else []:
            log.info("layout %s", layout.name)
            cells = bench_layout(
                layout,
                runnable,
                data,
                workdir,
                repeat=args.repeat,
                small_repeat=args.small_repeat,
                n_small=N_SMALL_READS,
                memory=memory,
            )
            results.update(
                {(layout.name, op, key): cell for (op, key), cell in cells.items()}
            )
            gc.collect()
        # Last: it imports anndata, pandas, dask and xarray, which the other sections never load.
        if "anndata" in args.section:
            # An optional peer: without anndata the section is reported unavailable, with the reason.
            anndata_missing = anndata_unavailable()
            if anndata_missing:
                log.warning("anndata section unavailable: %s", anndata_missing)
                anndata = {("unavailable", ""): Cell("unavailable", detail=anndata_missing)}
            else:
                anndata = bench_anndata(runnable, anndata_size(args), workdir)
                anndata.update({(op, key): Cell("unavailable", detail=reason) for op in ANNDATA_OPERATIONS for key, reason in unavailable.items()})
            gc.collect()
        env = environment_lines(side, args, workdir, impls, mb)

    if isinstance(STORE, S3StoreKind):
        STORE.close()
    report = render_report(env, impls, unavailable, layouts, results, minibatch, opened, args.open_count, anndata)
    sys.stdout.write(report)
    if args.out:
        Path(args.out).write_text(report)
    every_cell = [*results.values(), *minibatch.values(), *opened.values(), *anndata.values()]
    return 1 if any(cell.status == "MISMATCH" for cell in every_cell) else 0


if __name__ == "__main__":
    sys.exit(main())
