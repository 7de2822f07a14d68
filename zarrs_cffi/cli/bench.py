"""``zarrs-cffi bench``: zarr's own pipeline, ours and the installed peers
(``implementations.for_cli``) read one region of an array, or write and read a synthetic
one, each result checked against the first implementation's (or the synthetic data).

This is a quick look at a user's own array, best of ``--repeat``; the project's benchmark
(``benchmarks/bench.py``) is the measurement of record.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from ..stats import PipelineStats, stats
from . import geometry, implementations, render
from .arrays import codecs_text, describe_route, open_array, pipeline_config
from .errors import EXIT_FAILED, EXIT_OK, CLIError
from .implementations import BATCHED, OURS
from .options import MIB, add_common_options, parse_codecs, parse_shape, parse_size, parse_storage_options

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

__all__ = ["add_parser", "run", "synthetic_data"]


def add_parser(commands: Any) -> None:
    """``bench`` and its options, in ``commands`` (argparse's subparsers)."""
    bench = commands.add_parser(
        "bench", help="time zarr's pipeline against ours",
        description="Read an array (or write and read a synthetic one) through zarr's own pipeline, ours, "
        "and zarrs-python and tensorstore when installed; best of --repeat runs.",
    )
    bench.add_argument("path", metavar="PATH_OR_URL", nargs="?")
    bench.add_argument("--synthetic", metavar="SHAPE", help="write and read a new array of this shape, e.g. 256,256,256")
    bench.add_argument("--dtype", default="uint16", help="synthetic data type (default uint16)")
    bench.add_argument("--chunks", metavar="SHAPE", help="synthetic chunk shape (default: zarr's choice)")
    bench.add_argument("--shards", metavar="SHAPE", help="synthetic shard shape (default: not sharded)")
    bench.add_argument("--codec", action="append", metavar="SPEC", help="synthetic compressor, e.g. zstd:5 (repeatable)")
    bench.add_argument("--dir", help="where the synthetic arrays go (default: the temporary directory)")
    bench.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per measurement, best kept (default 3)")
    bench.add_argument("--max-size", default="1GiB", metavar="SIZE",
                       help="read at most this much of a large array (its leading shards); default 1GiB")
    bench.add_argument("--plot", metavar="PNG", help="draw the results as bars (needs matplotlib)")
    add_common_options(bench)
    bench.set_defaults(func=run)


@dataclass
class _Result:
    operation: str
    implementation: str
    times: list[float] = field(default_factory=list)
    error: str | None = None
    mismatch: bool = False
    # chunks our pipeline handled natively, through Python I/O, or fell back on (ours only)
    chunks: dict[str, int] | None = None

    @property
    def best(self) -> float | None:
        return min(self.times) if self.times and self.error is None and not self.mismatch else None


@dataclass(frozen=True)
class _Target:
    """One implementation's handle on the benchmarked array."""

    read: Callable[[], Any]
    write: Callable[[Any], None] | None


def _zarr_target(array: zarr.Array[Any], region: tuple[slice, ...]) -> _Target:
    def write(data: Any) -> None:
        array[region] = data

    return _Target(read=lambda: array[region], write=write)


def _tensorstore_target(array: zarr.Array[Any], region: tuple[slice, ...]) -> _Target | str:
    from zarr.storage import LocalStore

    if type(array.store) is not LocalStore:
        return "local directories only"
    ts = importlib.import_module("tensorstore")  # optional, untyped

    path = str(Path(str(array.store.root)) / array.store_path.path)
    spec = implementations.tensorstore_spec(path, int(array.metadata.zarr_format))
    handle = ts.open(spec).result()[region]

    def write(data: Any) -> None:
        handle.write(data).result()

    return _Target(read=lambda: handle.read().result(), write=write)


def _implementations() -> tuple[list[tuple[str, str | None]], dict[str, str]]:
    """(name, zarr pipeline path or None for tensorstore) to run, and those unavailable."""
    run: list[tuple[str, str | None]] = []
    unavailable: dict[str, str] = {}
    for impl in implementations.for_cli():
        assert impl.cli_name is not None
        if implementations.installed(impl):
            run.append((impl.cli_name, impl.pipeline))
        else:
            unavailable[impl.cli_name] = "not installed"
    return run, unavailable


def synthetic_data(shape: Sequence[int], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """Deterministic, moderately compressible data: a smooth ramp plus a little noise.

    Parameters
    ----------
    shape
        The array shape.
    dtype
        A boolean, integer or floating-point data type.

    Returns
    -------
    numpy.ndarray
        The data.
    """
    n = math.prod(shape)
    rng = np.random.default_rng(0)
    if dtype.kind == "b":
        return (rng.random(n) < 0.1).reshape(shape)
    base = np.arange(n, dtype=np.float64) % 4096 / 16 + rng.integers(0, 8, n)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(base, info.min, info.max).astype(dtype).reshape(shape)
    return base.astype(dtype).reshape(shape)


def _check_equal(got: Any, expected: np.ndarray[Any, Any]) -> bool:
    got = np.asarray(got)
    if got.shape != expected.shape:
        return False
    try:
        return bool(np.array_equal(got, expected, equal_nan=expected.dtype.kind in "fc"))
    except TypeError:
        return bool(np.array_equal(got, expected))

def run(args: argparse.Namespace) -> int:
    budget = _check_options(args)
    chosen, unavailable = _implementations()
    with ExitStack() as stack:
        if args.synthetic is not None:
            setup = _synthetic_setup(args, budget, stack)
        else:
            setup = _array_setup(args, budget)
        results = _run_bench(setup, chosen, unavailable, args)
    document = _document(setup, results, unavailable, args.repeat)
    if args.plot is not None:
        _plot(results, setup, Path(args.plot))
    if args.json:
        render.print_json(document)
    else:
        render.print_bench(document)
    if args.plot is not None and not args.quiet:
        render.console(stderr=True).print(f"plot written to {args.plot}")
    return EXIT_FAILED if any(r.mismatch for r in results) else EXIT_OK


def _check_options(args: argparse.Namespace) -> int:
    """Refuse options that cannot work together before any array is opened or created;
    the ``--max-size`` budget."""
    if args.repeat < 1:
        raise CLIError("--repeat must be at least 1")
    if args.plot is not None:
        if importlib.util.find_spec("matplotlib") is None:
            raise CLIError("--plot needs matplotlib: pip install matplotlib")
        if not Path(args.plot).parent.is_dir():
            raise CLIError(f"--plot: no directory {Path(args.plot).parent}")
    if (args.path is None) == (args.synthetic is None):
        raise CLIError("give either PATH_OR_URL or --synthetic SHAPE (see 'zarrs-cffi bench --help')")
    budget = parse_size(args.max_size)
    if args.synthetic is None and (args.chunks or args.shards or args.codec or args.dtype != "uint16" or args.dir):
        raise CLIError("--chunks, --shards, --codec, --dtype and --dir apply to --synthetic only")
    return budget


def _document(setup: _BenchSetup, results: list[_Result], unavailable: dict[str, str], repeat: int) -> dict[str, Any]:
    """``bench``'s JSON document: the array, the region read, and one row per measurement."""
    return {
        "source": setup.source,
        "shape": list(setup.shape),
        "region": [[s.start, s.stop] for s in setup.region],
        "dtype": setup.dtype,
        "chunks": list(setup.chunks),
        "shards": list(setup.shards) if setup.shards else None,
        "codecs": setup.codecs,
        "bytes": setup.nbytes,
        "repeat": repeat,
        "route": {"kind": setup.route[0], "reason": setup.route[1]},
        "results": [
            _result_json(r, results, setup.nbytes)
            for operation in setup.operations for r in results if r.operation == operation
        ],
        "unavailable": unavailable,
    }


@dataclass
class _BenchSetup:
    source: str
    shape: tuple[int, ...]
    region: tuple[slice, ...]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    codecs: str
    nbytes: int
    route: tuple[str, str]
    operations: tuple[str, ...]
    # (name, pipeline) -> that implementation's target, or why it cannot run
    open: Callable[[str, str | None], _Target | str]
    # what to write (synthetic arrays)
    data: np.ndarray[Any, Any] | None = None
    # what every read must return: the synthetic data, or the first implementation's read
    expected: np.ndarray[Any, Any] | None = None


def _check_bench_unit(array: zarr.Array[Any], budget: int) -> None:
    """Refuse, before any implementation runs, a storage unit larger than ``--max-size``:
    the region read is whole units, and every implementation holds a whole one to decode or
    encode it (a [2^20, 2^20] chunk is 1 TiB of uint8: tensorstore aborts, zarr raises)."""
    need = geometry.unit_bytes(array)
    if need > budget:
        kind = geometry.unit_kind(array)
        raise CLIError(
            f"one {kind} of {geometry.write_unit(array)} {array.dtype} is {render.human(need)}, more than --max-size "
            f"{render.human(budget)}: every implementation holds a whole {kind} to read or write it"
        )


def _leading_region(array: zarr.Array[Any], budget: int) -> tuple[slice, ...]:
    """The whole array, or its first block of whole storage units within ``budget`` bytes."""
    shape = tuple(array.shape)
    unit = geometry.write_unit(array)
    if geometry.itemsize(array) * math.prod(shape) <= budget:
        return tuple(slice(0, s) for s in shape)
    per_block = geometry.plan_block(shape, unit, geometry.itemsize(array), budget)
    return next(geometry.blocks(shape, unit, per_block)).region


def _array_setup(args: argparse.Namespace, budget: int) -> _BenchSetup:
    options = parse_storage_options(args.storage_option)
    ours = open_array(args.path, storage_options=options)
    _check_bench_unit(ours, budget)
    region = _leading_region(ours, budget)
    nbytes = geometry.itemsize(ours) * math.prod(s.stop - s.start for s in region)
    def open_target(name: str, pipeline: str | None) -> _Target | str:
        array = ours if pipeline == OURS else open_array(
            args.path, storage_options=options, pipeline=pipeline or BATCHED
        )
        if pipeline is None:
            return _tensorstore_target(array, region)
        return _zarr_target(array, region)

    return _BenchSetup(
        source=args.path, shape=tuple(ours.shape), region=region, dtype=str(ours.dtype), chunks=tuple(ours.chunks),
        shards=tuple(ours.shards) if ours.shards else None, codecs=codecs_text(ours), nbytes=nbytes,
        route=describe_route(ours), operations=("read",), open=open_target,
    )


def _synthetic_setup(args: argparse.Namespace, budget: int, stack: ExitStack) -> _BenchSetup:
    shape = parse_shape(args.synthetic, what="--synthetic")
    try:
        dtype = np.dtype(args.dtype)
    except TypeError:
        raise CLIError(f"--dtype {args.dtype!r} is not a numpy data type") from None
    if dtype.kind not in "biuf":
        raise CLIError(f"--dtype {dtype}: synthetic arrays are boolean, integer or floating point")
    nbytes = dtype.itemsize * math.prod(shape)
    if nbytes > budget:
        raise CLIError(f"--synthetic {args.synthetic} is {render.human(nbytes)}, more than --max-size {render.human(budget)}")
    chunks: Any = parse_shape(args.chunks, what="--chunks") if args.chunks else "auto"
    shards = parse_shape(args.shards, what="--shards") if args.shards else None
    for name, value in (("--chunks", chunks), ("--shards", shards)):
        if isinstance(value, tuple) and len(value) != len(shape):
            raise CLIError(f"{name} has {len(value)} dimensions, the shape {len(shape)}")
    compressors: Any = parse_codecs(args.codec, zarr_format=3) if args.codec else "auto"
    if args.dir is not None and not Path(args.dir).is_dir():
        raise CLIError(f"--dir: no directory {args.dir}")
    root = Path(tempfile.mkdtemp(prefix="zarrs-cffi-bench-", dir=args.dir))
    stack.callback(shutil.rmtree, root, ignore_errors=True)
    data = synthetic_data(shape, dtype)
    region = tuple(slice(0, s) for s in shape)

    def create(name: str, pipeline: str) -> zarr.Array[Any]:
        with pipeline_config(pipeline):
            try:
                return zarr.create_array(
                    root / f"{name}.zarr", shape=shape, dtype=dtype, chunks=chunks, shards=shards,
                    compressors=compressors, overwrite=True,
                )
            except (ValueError, TypeError) as exc:
                raise CLIError(f"cannot create the synthetic array: {exc}") from None

    probe = create("zarrs-cffi", OURS)
    _check_bench_unit(probe, budget)

    def open_target(name: str, pipeline: str | None) -> _Target | str:
        array = probe if pipeline == OURS else create(name, pipeline or BATCHED)
        if pipeline is None:
            return _tensorstore_target(array, region)
        return _zarr_target(array, region)

    return _BenchSetup(
        source=f"synthetic {'x'.join(map(str, shape))} {dtype}", shape=shape, region=region, dtype=str(dtype),
        chunks=tuple(probe.chunks), shards=tuple(probe.shards) if probe.shards else None, codecs=codecs_text(probe),
        nbytes=nbytes, route=describe_route(probe), operations=("write", "read"), open=open_target,
        data=data, expected=data,
    )


def _run_bench(
    setup: _BenchSetup, chosen: list[tuple[str, str | None]], unavailable: dict[str, str],
    args: argparse.Namespace,
) -> list[_Result]:
    results: list[_Result] = []
    total = len(chosen) * len(setup.operations) * args.repeat
    with render.progress(args.quiet) as progress:
        task = progress.add_task("bench", total=total)

        def advance(description: str, steps: int = 1) -> None:
            progress.update(task, description=description)
            progress.advance(task, steps)

        for name, pipeline in chosen:
            progress.update(task, description=f"{name}")
            target = _open_target(setup, name, pipeline)
            if isinstance(target, str):
                unavailable[name] = target
                advance(name, len(setup.operations) * args.repeat)
                continue
            for operation in setup.operations:
                result = _Result(operation, name)
                results.append(result)
                before = stats()
                _measure(setup, target, result, args.repeat, advance)
                if pipeline == OURS:
                    result.chunks = _chunk_counts(before, stats(), operation)
    return results


def _open_target(setup: _BenchSetup, name: str, pipeline: str | None) -> _Target | str:
    """The implementation's handle on the array, or why it cannot open it."""
    try:
        return setup.open(name, pipeline)
    except CLIError:
        raise
    except Exception as exc:  # an optional implementation that cannot open this array
        return f"{type(exc).__name__}: {exc}"


def _measure(
    setup: _BenchSetup, target: _Target, result: _Result, repeat: int, advance: Callable[[str, int], None]
) -> None:
    """``repeat`` timings of one operation into ``result``; the first error or mismatch ends
    them (and the bar skips the runs left)."""
    description = f"{result.implementation} {result.operation}"
    for _ in range(repeat):
        advance(description, 0)
        try:
            result.times.append(_time_once(setup, target, result.operation))
        except _Mismatch:
            result.mismatch = True
        except Exception as exc:  # reported in the table, the others still run
            result.error = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        if result.error or result.mismatch:
            advance(description, repeat - len(result.times))
            return
        advance(description, 1)


class _Mismatch(Exception):
    pass


def _chunk_counts(before: PipelineStats, after: PipelineStats, operation: str) -> dict[str, int]:
    """What our pipeline did with the chunks (shards, for sharded arrays) of one measurement."""
    kind = "reads" if operation == "read" else "writes"

    def delta(counter: str) -> int:
        return int(getattr(after, f"{counter}_{kind}") - getattr(before, f"{counter}_{kind}"))

    # The native counters include the chunks whose bytes moved through Python.
    return {
        "native_storage": delta("native") - delta("python_io"), "python_io": delta("python_io"),
        "fallback": delta("fallback"),
    }


def _time_once(setup: _BenchSetup, target: _Target, operation: str) -> float:
    if operation == "write":
        assert target.write is not None and setup.data is not None
        start = time.perf_counter()
        target.write(setup.data)
        return time.perf_counter() - start
    start = time.perf_counter()
    got = target.read()
    elapsed = time.perf_counter() - start
    if setup.expected is None:  # the first implementation's read is the reference for the others
        setup.expected = np.asarray(got)
    elif not _check_equal(got, setup.expected):
        raise _Mismatch
    return elapsed


def _result_json(result: _Result, results: list[_Result], nbytes: int) -> dict[str, Any]:
    baseline = next((r.best for r in results if r.operation == result.operation and r.implementation == "zarr"), None)
    best = result.best
    return {
        "operation": result.operation,
        "implementation": result.implementation,
        "best_s": best,
        "times_s": result.times,
        "mib_per_s": nbytes / MIB / best if best else None,
        "speedup_vs_zarr": baseline / best if best and baseline else None,
        "error": result.error or ("result differs from the reference" if result.mismatch else None),
        "chunks": result.chunks,
    }



def _plot(results: list[_Result], setup: _BenchSetup, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install matplotlib") from None
    operations = list(dict.fromkeys(r.operation for r in results))
    names = list(dict.fromkeys(r.implementation for r in results))
    width = 0.8 / max(1, len(names))
    figure, axes = plt.subplots(figsize=(2 + 1.5 * len(operations) * max(1, len(names)) / 2, 4))
    for i, name in enumerate(names):
        values = []
        for operation in operations:
            best = next((r.best for r in results if r.implementation == name and r.operation == operation), None)
            values.append(setup.nbytes / MIB / best if best else 0.0)
        positions = [j + (i - (len(names) - 1) / 2) * width for j in range(len(operations))]
        axes.bar(positions, values, width, label=name)
    axes.set_xticks(range(len(operations)), operations)
    axes.set_ylabel("MiB/s (best, higher is better)")
    axes.set_title(f"{setup.source}: {render.human(setup.nbytes)}", fontsize=9)
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise CLIError(f"--plot: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
