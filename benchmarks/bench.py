"""Side-by-side benchmark of zarr codec pipelines and tensorstore.

Compares, in one run and on the same data:

* zarr's ``BatchedCodecPipeline`` (zarr's default) and ``FusedCodecPipeline``,
* zarrs-python's ``zarrs.ZarrsCodecPipeline``,
* this project's ``zarrs_cffi.ZarrsCodecPipeline``,
* tensorstore through its own API,

on four layouts of a 512^3 uint16 array (chunked zstd, sharded zstd, chunked
blosc-lz4, sharded uncompressed) for five operations: ``write_all``,
``read_all``, ``small_reads`` (200 random 16^3 boxes), ``oindex`` (64 random
sorted indices along the first axis, every element of the other two) and
``vindex`` (10,000 random points), on one store: ``--store local`` (default),
``memory``, ``zip`` or ``s3`` (an S3-compatible moto server on 127.0.0.1,
reached through s3fs).

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
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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
        return array.oindex[rows, :, :]

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
        return array.oindex[rows, :, :].read().result()

    def read_vindex(self, array: Any, points: tuple[np.ndarray, ...]) -> Any:
        return array.vindex[points].read().result()


Impl = ZarrPipelineImpl | TensorstoreImpl

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
    )
}


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One (layout, operation, implementation) result: a time, or why there is none."""

    status: str  # "ok", "MISMATCH", "error" or "unavailable"
    seconds: float | None = None
    detail: str = ""


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]


def guarded(measure: Callable[[], Cell]) -> Cell:
    try:
        return measure()
    except Exception as exc:  # noqa: BLE001 - any failure of an implementation becomes a cell
        return Cell("error", detail=describe(exc))


def measure_write_all(
    impl: Impl,
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


def measure_read_all(impl: Impl, path: Path, data: np.ndarray, repeat: int) -> Cell:
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
    impl: Impl,
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
    impl: Impl, path: Path, data: np.ndarray, kind: str, repeat: int
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
    impl: Impl, path: Path, data: np.ndarray, kind: str, repeat: int, rows: np.ndarray, points: tuple[np.ndarray, ...]
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


def bench_layout(
    layout: Layout,
    impls: list[Impl],
    data: np.ndarray,
    workdir: Path,
    *,
    repeat: int,
    small_repeat: int,
    n_small: int,
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
                if cell.status == "ok":
                    log.info(
                        "  %-12s %-11s %-17s %8.3f s",
                        layout.name,
                        operation,
                        impl.label,
                        cell.seconds,
                    )
                else:
                    log.warning(
                        "  %-12s %-11s %-17s %s: %s",
                        layout.name,
                        operation,
                        impl.label,
                        cell.status,
                        cell.detail,
                    )
        STORE.remove(own_path)
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


def environment_lines(side: int, args: argparse.Namespace, workdir: Path) -> list[str]:
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
    mib = side**3 * 2 / 2**20
    return [
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
) -> str:
    notes: list[str] = []

    def seconds_cell(layout: Layout, operation: str, impl: Impl) -> str:
        cell = results[layout.name, operation, impl.key]
        if cell.status == "ok":
            return f"{cell.seconds:.3f}"
        if cell.status == "unavailable":
            return "unavailable"
        notes.append(
            f"[{len(notes) + 1}] {layout.name} / {operation} / {impl.label}: {cell.detail}"
        )
        label = "**MISMATCH**" if cell.status == "MISMATCH" else cell.status
        return f"{label} [{len(notes)}]"

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
        where = (
            impl.path
            if isinstance(impl, ZarrPipelineImpl)
            else "tensorstore.open (zarr3 driver)"
        )
        status = (
            f"unavailable: {unavailable[impl.key]}"
            if impl.key in unavailable
            else where
        )
        out.append(f"- {impl.label}: {status}")
    if any(op in SELECTED_OPERATIONS for op in ("oindex", "vindex")) and "zarrs-python" in {i.key for i in impls}:
        out.append(
            "- zarrs-python has no native oindex/vindex: those cells time its fallback to zarr's "
            "pipeline (`codec_pipeline.strict` off for them only)"
        )

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
    if "batched" in keys and (others or pair):
        out += markdown_table(
            ["layout", "operation", *(impl.label for impl in others)]
            + (["ours vs zarrs-python"] if pair else []),
            [
                [
                    layout.name,
                    op,
                    *(ratio(layout, op, "batched", impl.key) for impl in others),
                ]
                + ([ratio(layout, op, "zarrs-python", "ours")] if pair else [])
                for layout, op in rows
            ],
        )
    else:
        out.append("(needs `batched` and at least one other implementation in --impl)")

    if notes:
        out += ["", "## Problems", "", *notes]
    return "\n".join(out) + "\n"


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
    parser.add_argument("--out", help="also write the markdown report to this file")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.small_repeat < 1:
        parser.error("--repeat and --small-repeat must be at least 1")
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
    SELECTED_OPERATIONS = tuple(args.op)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    STORE = STORE_KINDS[args.store]()
    side = QUICK_SIDE if args.quick else FULL_SIDE
    impls = [IMPLS[key] for key in args.impl]
    layouts = [LAYOUTS[name] for name in args.layout]

    unavailable: dict[str, str] = {}
    for impl in impls:
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

    log.info("generating %d^3 data ...", side)
    data = make_data(side)
    results: dict[tuple[str, str, str], Cell] = {
        (layout.name, operation, key): Cell("unavailable", detail=reason)
        for layout in layouts
        for operation in SELECTED_OPERATIONS
        for key, reason in unavailable.items()
    }
    with working_directory(args.dir) as workdir:
        for layout in layouts:
            log.info("layout %s", layout.name)
            cells = bench_layout(
                layout,
                runnable,
                data,
                workdir,
                repeat=args.repeat,
                small_repeat=args.small_repeat,
                n_small=N_SMALL_READS,
            )
            results.update(
                {(layout.name, op, key): cell for (op, key), cell in cells.items()}
            )
            gc.collect()
        env = environment_lines(side, args, workdir)

    if isinstance(STORE, S3StoreKind):
        STORE.close()
    report = render_report(env, impls, unavailable, layouts, results)
    sys.stdout.write(report)
    if args.out:
        Path(args.out).write_text(report)
    return 1 if any(cell.status == "MISMATCH" for cell in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
