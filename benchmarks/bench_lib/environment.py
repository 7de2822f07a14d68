"""The report's Environment section: versions, machine, store and the sizes of every
section run, so a table can be read (and its run repeated) without the command line."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from . import stores
from .anndata_rows import ANNDATA_TOUCH_COLUMN, ANNDATA_TOUCH_ROWS, anndata_size
from .impls import Impl, RustImpl
from .minibatch import MiniBatch
from .settings import BOX_SIDE, CHUNK, N_OINDEX, N_SMALL_READS, N_VINDEX, SHARD


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
    mib = side**3 * 2 / 2**20
    command = shlex.join([Path(sys.executable).name, "benchmarks/bench.py", *(args.argv or [])])
    lines = [
        f"- command: `{command}`",
        f"- python {platform.python_version()}, {_versions(impls)}",
        f"- {platform.platform()}, CPUs: {cpus} (usable: {usable})",
        (
            f"- store: {stores.STORE.describe()}, files under {workdir.parent} ({filesystem_type(workdir.resolve())})"
            if stores.STORE.name in ("local", "zip")
            else f"- store: {stores.STORE.describe()}"
        ),
        f"- data: {side}^3 uint16 ({mib:.0f} MiB), chunks {CHUNK[0]}^3, shards {SHARD[0]}^3",
        (
            f"- write_all/read_all: best of {args.repeat}; small_reads: {N_SMALL_READS} "
            f"reads of {BOX_SIDE}^3 boxes, total time, best of {args.small_repeat}; "
            f"oindex: {N_OINDEX} sorted random indices on axis 0; vindex: {N_VINDEX} random points"
        ),
    ]
    return lines + _section_lines(args, workdir, mb)


def _versions(impls: list[Impl]) -> str:
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
    return versions


def _section_lines(args: argparse.Namespace, workdir: Path, mb: MiniBatch) -> list[str]:
    """What the memory, mini-batch, open and anndata sections measured, for those run."""
    lines: list[str] = []
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
