"""The benchmark's command line (``benchmarks/bench.py``): its options, and the run that
checks every implementation, measures the selected sections and writes the report."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import settings, stores
from .anndata_rows import ANNDATA_OPERATIONS, anndata_size, anndata_unavailable, bench_anndata
from .cells import Cell, describe
from .data import LAYOUTS, Layout, make_data
from .environment import environment_lines
from .impls import IMPLS, Impl, RustImpl
from .layouts import bench_layout
from .minibatch import MiniBatch, bench_minibatch
from .opening import bench_open
from .preflight import preflight
from .report import render_report
from .settings import (
    FULL_AD_OBS, FULL_MB_ROWS, FULL_SIDE, MB_CHUNKS_PER_SHARD, N_SMALL_READS, OPERATIONS, QUICK_AD_OBS,
    QUICK_MB_ROWS, QUICK_SIDE, SECTIONS, log,
)

DESCRIPTION = "Side-by-side benchmark of zarr codec pipelines and tensorstore."

# Every numeric option that must be at least 1 (argparse's dest names).
_POSITIVE = ("mb_rows", "mb_cols", "mb_batch", "mb_batches", "mb_readers", "mb_chunk_rows", "open_count", "ad_obs",
             "ad_vars", "ad_repeat")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    _add_run_options(parser)
    _add_section_options(parser)
    parser.add_argument(
        "--zarrs-bin",
        help="the bench_zarrs binary for the zarrs (Rust) row (default: build it with cargo)",
    )
    parser.add_argument("--out", help="also write the markdown report to this file")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.repeat < 1 or args.small_repeat < 1:
        parser.error("--repeat and --small-repeat must be at least 1")
    for name in _POSITIVE:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    rows = args.mb_rows or (QUICK_MB_ROWS if args.quick else FULL_MB_ROWS)
    if args.mb_batch > rows:
        parser.error(f"--mb-batch ({args.mb_batch}) cannot exceed the rows ({rows})")
    return args


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """What the layouts section runs: sizes, repeats, implementations, layouts, operations, store."""
    parser.add_argument("--quick", action="store_true", help=f"use {QUICK_SIDE}^3 instead of {FULL_SIDE}^3")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for write_all/read_all (default 3)")
    parser.add_argument("--small-repeat", type=int, default=1, help="best of N batches of small_reads (default 1)")
    parser.add_argument("--impl", nargs="+", choices=list(IMPLS), default=list(IMPLS), help="implementations to run")
    parser.add_argument("--layout", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS), help="layouts to run")
    parser.add_argument("--dir", help="parent of the temporary working directory (default: the system temp dir)")
    parser.add_argument("--op", nargs="+", choices=list(OPERATIONS), default=list(OPERATIONS),
                        help="operations to run")
    parser.add_argument("--store", choices=list(stores.STORE_KINDS), default="local",
                        help="where the arrays live (default: local files)")


def _add_section_options(parser: argparse.ArgumentParser) -> None:
    """Which sections run, and the sizes of the mini-batch, open and anndata sections."""
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


@contextlib.contextmanager
def working_directory(parent: str | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zarrs-bench-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings.SELECTED_OPERATIONS = tuple(args.op) if "layouts" in args.section else ()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    stores.STORE = stores.STORE_KINDS[args.store]()
    side = QUICK_SIDE if args.quick else FULL_SIDE
    impls = [IMPLS[key] for key in args.impl]
    layouts = [LAYOUTS[name] for name in args.layout]
    RustImpl.binary_override = args.zarrs_bin
    unavailable = load_implementations(impls, layouts)
    runnable = [impl for impl in impls if impl.key not in unavailable]
    mb = minibatch_size(args)
    with working_directory(args.dir) as workdir:
        run = _Run(args, runnable, unavailable, workdir)
        opened = run.open() if "open" in args.section else {}
        minibatch = run.minibatch(mb) if "minibatch" in args.section else {}
        results = run.layouts(layouts, side)
        # Last: it imports anndata, pandas, dask and xarray, which the other sections never load.
        anndata = run.anndata() if "anndata" in args.section else {}
        env = environment_lines(side, args, workdir, impls, mb)
    if isinstance(stores.STORE, stores.S3StoreKind):
        stores.STORE.close()
    report = render_report(env, impls, unavailable, layouts, results, minibatch, opened, args.open_count, anndata)
    sys.stdout.write(report)
    if args.out:
        Path(args.out).write_text(report)
    every_cell = [*results.values(), *minibatch.values(), *opened.values(), *anndata.values()]
    return 1 if any(cell.status == "MISMATCH" for cell in every_cell) else 0


def load_implementations(impls: list[Impl], layouts: list[Layout]) -> dict[str, str]:
    """Preflight and load every implementation; why each one that cannot run is unavailable."""
    unavailable: dict[str, str] = {}
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
            except Exception as exc:  # as in the preflight child
                reason = describe(exc)
        if reason is not None:
            unavailable[impl.key] = reason
            log.warning("%s unavailable: %s", impl.label, reason)
    return unavailable


def minibatch_size(args: argparse.Namespace) -> MiniBatch:
    return MiniBatch(
        rows=args.mb_rows or (QUICK_MB_ROWS if args.quick else FULL_MB_ROWS),
        cols=args.mb_cols,
        batch=args.mb_batch,
        batches=args.mb_batches,
        readers=args.mb_readers,
        chunk_rows=args.mb_chunk_rows,
        shard_rows=args.mb_chunk_rows * MB_CHUNKS_PER_SHARD,
    )


class _Run:
    """The sections of one run; each returns its cells, the unavailable implementations'
    cells included (so every table has a column for every implementation asked for)."""

    def __init__(self, args: argparse.Namespace, runnable: list[Impl], unavailable: dict[str, str],
                 workdir: Path) -> None:
        self.args, self.runnable, self.unavailable, self.workdir = args, runnable, unavailable, workdir

    def _missing(self) -> dict[str, Cell]:
        return {key: Cell("unavailable", detail=reason) for key, reason in self.unavailable.items()}

    def open(self) -> dict[str, Cell]:
        log.info("open %d small arrays", self.args.open_count)
        opened = bench_open(self.runnable, self.args.open_count, self.args.repeat, self.workdir)
        return {**opened, **self._missing()}

    def minibatch(self, mb: MiniBatch) -> dict[tuple[str, str, str], Cell]:
        cells = bench_minibatch(self.runnable, mb, self.workdir)
        for name, readers, _ in list(cells):
            cells.update({(name, readers, key): cell for key, cell in self._missing().items()})
        gc.collect()
        return cells

    def layouts(self, layouts: list[Layout], side: int) -> dict[tuple[str, str, str], Cell]:
        memory = "memory" in self.args.section
        operations = settings.SELECTED_OPERATIONS + (("peak_memory",) if memory else ())
        results = {
            (layout.name, operation, key): cell
            for layout in layouts for operation in operations for key, cell in self._missing().items()
        }
        if not (settings.SELECTED_OPERATIONS or memory):
            return results
        log.info("generating %d^3 data ...", side)
        data = make_data(side)
        for layout in layouts:
            log.info("layout %s", layout.name)
            cells = bench_layout(
                layout, self.runnable, data, self.workdir, repeat=self.args.repeat,
                small_repeat=self.args.small_repeat, n_small=N_SMALL_READS, memory=memory,
            )
            results.update({(layout.name, op, key): cell for (op, key), cell in cells.items()})
            gc.collect()
        return results

    def anndata(self) -> dict[tuple[str, str], Cell]:
        # An optional peer: without anndata the section is reported unavailable, with the reason.
        missing = anndata_unavailable()
        if missing:
            log.warning("anndata section unavailable: %s", missing)
            return {("unavailable", ""): Cell("unavailable", detail=missing)}
        cells = bench_anndata(self.runnable, anndata_size(self.args), self.workdir)
        cells.update({(op, key): cell for op in ANNDATA_OPERATIONS for key, cell in self._missing().items()})
        gc.collect()
        return cells
