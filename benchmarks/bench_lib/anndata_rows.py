"""The anndata section: a single-cell dataset written with ``write_zarr``, read back with
``read_zarr`` and opened with anndata's lazy reader, through each zarr codec pipeline.

anndata is an optional peer (benchmarks/requirements.txt): without it the section is
reported unavailable, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import math
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .cells import Cell, describe, log_cell
from .data import same
from .impls import Impl, ZarrPipelineImpl
from .settings import AD_DENSITY, AD_EMBEDDING, FULL_AD_OBS, QUICK_AD_OBS, REFERENCE_CONFIG, SEED, log


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
    except Exception as exc:  # any import problem makes the section unavailable
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
    log.info("anndata: generating %s obs x %s vars ...", f"{size.obs:,}", f"{size.vars:,}")
    results: dict[tuple[str, str], Cell] = {}
    pipelines = [impl for impl in impls if isinstance(impl, ZarrPipelineImpl)]
    for impl in impls:
        if impl not in pipelines:
            results.update({(op, impl.key): Cell("n/a", detail="not a zarr codec pipeline") for op in ANNDATA_OPERATIONS})
    run = _AnnDataRun(make_anndata(size), size, workdir)
    best: dict[tuple[str, str], float] = {}
    failed: dict[tuple[str, str], Cell] = {}
    for _ in range(size.repeat):
        for impl in pipelines:
            run.measure(impl, best, failed)
        gc.collect()
    for impl in pipelines:
        shutil.rmtree(workdir / f"anndata-{impl.key}.zarr", ignore_errors=True)
        for operation in ANNDATA_OPERATIONS:
            cell = failed.get((operation, impl.key)) or Cell("ok", best[operation, impl.key])
            results[operation, impl.key] = cell
            log_cell("anndata", operation, impl, cell)
    shutil.rmtree(run.reference, ignore_errors=True)
    return results


class _AnnDataRun:
    """The source dataset, its reference copy (on disk and in memory), and one timed call of
    each operation; every outcome is checked against the source."""

    def __init__(self, source: Any, size: AnnDataSize, workdir: Path) -> None:
        self.anndata = importlib.import_module("anndata")
        self.read_lazy = importlib.import_module("anndata.experimental").read_lazy
        self.source, self.workdir = source, workdir
        self.reference = workdir / "anndata-reference.zarr"
        with zarr.config.set(REFERENCE_CONFIG), anndata_pipeline_as_configured():
            source.write_zarr(self.reference)
        self.contents = memory_copy(self.reference)
        half = size.obs // 2
        self.rows = slice(half, half + min(ANNDATA_TOUCH_ROWS, size.obs - half))
        self.want_rows = source.X[self.rows]
        self.want_column = np.asarray(source.obs[ANNDATA_TOUCH_COLUMN])

    def measure(
        self, impl: ZarrPipelineImpl, best: dict[tuple[str, str], float], failed: dict[tuple[str, str], Cell]
    ) -> None:
        """One timing of each operation not yet failed: the best time so far into ``best``,
        a failure (and, for ``read_lazy``, its ``lazy touch``) into ``failed``."""
        runs: tuple[tuple[str, Callable[[ZarrPipelineImpl], tuple[Any, ...]]], ...] = (
            ("write_zarr", self.write), ("read_zarr", self.read), ("read_lazy", self.lazy),
        )
        for operation, run in runs:
            if (operation, impl.key) in failed:
                continue
            try:
                *seconds, outcome = run(impl)
                problem = self.check(operation, outcome)
                cell = Cell("MISMATCH", detail=problem) if problem else None
            except Exception as exc:  # any failure becomes the cell
                cell = Cell("error", detail=describe(exc))
            names = ("read_lazy", "lazy touch") if operation == "read_lazy" else (operation,)
            if cell is not None:
                failed.update({(name, impl.key): cell for name in names})
                continue
            for name, value in zip(names, seconds):
                best[name, impl.key] = min(best.get((name, impl.key), math.inf), value)
            del outcome

    @staticmethod
    def session(impl: ZarrPipelineImpl) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(impl.session())
        stack.enter_context(anndata_pipeline_as_configured())
        if impl.key == "zarrs-python":  # it has no variable-length strings: as anndata runs it
            stack.enter_context(zarr.config.set({"codec_pipeline.strict": False}))
        return stack

    def write(self, impl: ZarrPipelineImpl) -> tuple[float, Any]:
        path = self.workdir / f"anndata-{impl.key}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        with self.session(impl):
            start = time.perf_counter()
            self.source.write_zarr(path)
            return time.perf_counter() - start, path

    def read(self, impl: ZarrPipelineImpl) -> tuple[float, Any]:
        with self.session(impl):
            start = time.perf_counter()
            adata = self.anndata.read_zarr(self.reference)
            return time.perf_counter() - start, adata

    def lazy(self, impl: ZarrPipelineImpl) -> tuple[float, float, Any]:
        store = zarr.storage.MemoryStore(dict(self.contents), read_only=True)
        with self.session(impl), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. anndata's "experimental" notices
            start = time.perf_counter()
            adata = self.read_lazy(store)
            opened = time.perf_counter()
            column = np.asarray(adata.obs[ANNDATA_TOUCH_COLUMN])
            block = adata.X[self.rows].compute()
            return opened - start, time.perf_counter() - opened, (column, block)

    def check(self, operation: str, outcome: Any) -> str | None:
        if operation == "write_zarr":
            with zarr.config.set(REFERENCE_CONFIG), anndata_pipeline_as_configured():
                return anndata_difference(self.anndata.read_zarr(outcome), self.source)
        if operation == "read_zarr":
            return anndata_difference(outcome, self.source)
        column, block = outcome
        if not np.array_equal(column, self.want_column):
            return f"obs[{ANNDATA_TOUCH_COLUMN!r}] differs"
        if block.shape != self.want_rows.shape or (block != self.want_rows).nnz:
            return f"X[{self.rows.start}:{self.rows.stop}] differs"
        return None
