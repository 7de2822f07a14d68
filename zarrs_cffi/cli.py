"""The ``zarrs-cffi`` command line tool (also ``python -m zarrs_cffi``).

``info`` describes an array and the route our pipeline takes for it, ``bench`` times zarr's
own pipeline against ours (and zarrs-python or tensorstore when importable), and ``copy``
rechunks, recompresses or converts an array (v2 to v3) with our pipeline, one block of
whole destination shards (or chunks) at a time, resumably. ``copy`` never deletes or writes
into anything but a Zarr node it was asked to replace (``_open_destination``).

This module only drives zarr: the route is what ``ZarrsCodecPipeline`` decided when zarr
opened the array (``pipeline.py``, ``stores.py``), never recomputed here. User errors (a bad
path, a bad option) print one line on stderr and exit with status 2; ``rich`` draws the
tables and progress bars, and matplotlib is imported only for ``bench --plot``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import zarr
import zarr.errors
from zarr.core.sync import sync
from zarr.storage import MemoryStore, ZipStore

from ._version import __version__
from .errors import ZarrsError
from ._pipeline.codec_pipeline import ZarrsCodecPipeline
from .stats import PipelineStats, stats

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from rich.console import Console
    from rich.progress import Progress
    from zarr.abc.store import Store

__all__ = ["CLIError", "describe_route", "main"]

PIPELINE = "zarrs_cffi.ZarrsCodecPipeline"
ZARR_PIPELINE = "zarr.core.codec_pipeline.BatchedCodecPipeline"
ZARRS_PYTHON_PIPELINE = "zarrs.ZarrsCodecPipeline"

EXIT_OK = 0
EXIT_FAILED = 1  # a benchmark result differed, or an unexpected error
EXIT_USAGE = 2  # a bad path or a bad option
EXIT_INTERRUPTED = 130

_MIB = 1 << 20


class CLIError(Exception):
    """A user error (bad path, bad option): reported in one line, exit status 2."""


class _Interrupted(Exception):
    """Ctrl-C, with what to do next: reported in one line, exit status 130."""


# -- parsing ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with errors raised (one line, exit 2 in ``main``) instead of printed."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')")


def _parse_shape(text: str, *, what: str = "shape") -> tuple[int, ...]:
    if not re.fullmatch(r"\s*\d+(\s*[,x]\s*\d+)*\s*", text):
        raise CLIError(f"{what} {text!r}: expected integers like 64,64")
    shape = tuple(int(p) for p in re.split(r"[,x]", text))
    if any(n <= 0 for n in shape):
        raise CLIError(f"{what} {text!r}: expected positive integers like 64,64")
    return shape


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10**3, "kib": 1 << 10, "m": _MIB, "mb": 10**6, "mib": _MIB,
               "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise CLIError(f"size {text!r}: expected a positive size like 512MiB or 2GiB")
    return max(1, int(float(match.group(1)) * _SIZE_UNITS[unit]))


def _parse_storage_options(items: Sequence[str] | None) -> dict[str, Any] | None:
    if not items:
        return None
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"storage option {item!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def parse_codecs(specs: Sequence[str], *, zarr_format: int) -> list[Any]:
    """Compressors from ``--codec`` specs such as ``zstd:5``, ``gzip:6``, ``blosc:lz4:5:shuffle``,
    ``crc32c`` or ``none``.

    Parameters
    ----------
    specs
        One spec per ``--codec`` option, applied in order.
    zarr_format
        The destination's format: v3 codecs, or numcodecs compressors for Zarr v2.

    Returns
    -------
    list
        The compressors for ``zarr.create_array(compressors=...)``; empty for ``none``.
    """
    codecs: list[Any] = []
    for spec in specs:
        name, *params = spec.strip().lower().split(":")
        try:
            codecs.extend(_codec(name, params, zarr_format))
        except (TypeError, ValueError) as exc:
            raise CLIError(f"codec {spec!r}: {exc}") from None
    if zarr_format == 2 and len(codecs) > 1:
        raise CLIError("Zarr v2 arrays take a single compressor (one --codec)")
    return codecs


def _codec(name: str, params: list[str], zarr_format: int) -> list[Any]:
    numcodecs = importlib.import_module("numcodecs")  # untyped
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

    def level(default: int) -> int:
        if len(params) > 1:
            raise ValueError(f"{name} takes one parameter, the level")
        return int(params[0]) if params else default

    v3 = zarr_format == 3
    if name == "none" and not params:
        return []
    if name == "zstd":
        n = level(3)
        return [ZstdCodec(level=n) if v3 else numcodecs.Zstd(level=n)]
    if name == "gzip":
        n = level(5)
        return [GzipCodec(level=n) if v3 else numcodecs.GZip(level=n)]
    if name == "blosc":
        if len(params) > 3:
            raise ValueError("expected blosc[:CNAME[:CLEVEL[:SHUFFLE]]]")
        cname = params[0] if params else "zstd"
        clevel = int(params[1]) if len(params) > 1 else 5
        shuffle = params[2] if len(params) > 2 else "shuffle"
        shuffles = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
        if shuffle not in shuffles:
            raise ValueError(f"shuffle must be one of {', '.join(shuffles)}")
        if v3:
            return [BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle)]  # type: ignore[arg-type]
        return [numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=shuffles[shuffle])]
    if name == "crc32c" and not params:
        if not v3:
            raise ValueError("crc32c is a Zarr v3 codec")
        return [Crc32cCodec()]
    raise ValueError("unknown codec; expected zstd[:LEVEL], gzip[:LEVEL], blosc[:CNAME[:CLEVEL[:SHUFFLE]]], "
                     "crc32c or none")


# -- opening arrays ----------------------------------------------------------------------


def _is_url(location: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", location) is not None and not location.startswith("file://")


def _store_and_path(location: str, *, write: bool) -> tuple[Any, str]:
    """What zarr opens for ``location``: a URL as given, a local directory as a Path, and a
    path inside a ``.zip`` archive as a ZipStore and the path inside it."""
    if _is_url(location):
        return location, ""
    local = Path(location.removeprefix("file://"))
    for archive in (local, *local.parents):
        if archive.suffix.lower() == ".zip" and (archive.is_file() or (write and archive == local)):
            if write and archive.exists() and not zipfile.is_zipfile(archive):
                # zipfile would append an archive to the end of whatever file this is.
                raise CLIError(f"{archive} exists and is not a zip archive; nothing was written")
            inner = local.relative_to(archive).as_posix()
            store = ZipStore(archive, mode="a", read_only=False) if write else ZipStore(archive, mode="r", read_only=True)
            return store, "" if inner == "." else inner
    return local, ""


@contextmanager
def _pipeline(path: str) -> Iterator[None]:
    """zarr's config selecting the codec pipeline ``path`` (read when an array is opened)."""
    if path == ZARRS_PYTHON_PIPELINE:
        # zarrs-python registers itself through an entry point; make sure it is known.
        from zarr.registry import register_pipeline

        register_pipeline(importlib.import_module("zarrs").ZarrsCodecPipeline)
    with zarr.config.set({"codec_pipeline.path": path}):
        yield


def open_array(
    location: str, *, storage_options: dict[str, Any] | None = None, pipeline: str = PIPELINE
) -> zarr.Array[Any]:
    """Open the existing array at ``location`` read-only, with the codec pipeline ``pipeline``.

    Parameters
    ----------
    location
        A local path (a directory, or a path inside a ``.zip`` archive) or an fsspec URL.
    storage_options
        fsspec options for a URL.
    pipeline
        The fully qualified name of the codec pipeline class.

    Returns
    -------
    zarr.Array
        The array.

    Raises
    ------
    CLIError
        Nothing is there, or it is a group.
    """
    store, path = _store_and_path(location, write=False)
    if storage_options and not _is_url(location):
        raise CLIError("--storage-option applies to URLs only")
    try:
        with _pipeline(pipeline):
            node = zarr.open(store=store, path=path, mode="r", storage_options=storage_options)
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, zarr.errors.ArrayNotFoundError,
            zarr.errors.GroupNotFoundError, KeyError):
        raise CLIError(f"no Zarr array at {location}") from None
    except OSError:
        raise  # unreachable or unreadable storage: reported as it is
    except Exception as exc:
        # Whatever zarr refuses in the metadata (a shape of "abc", JSON nested past the
        # recursion limit, an unknown data type) is the user's input, not our failure.
        raise CLIError(f"{location}: zarr cannot read its metadata: {_exception_text(exc)}") from None
    if isinstance(node, zarr.Group):
        names = sorted(name for name, _ in node.arrays())
        hint = f"; its arrays: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}" if names else ""
        raise CLIError(f"{location} is a group, not an array{hint}")
    return node


def describe_route(array: zarr.Array[Any]) -> tuple[str, str]:
    """The route our pipeline takes for ``array``, and why, from the pipeline zarr built.

    Parameters
    ----------
    array
        An array opened with ``codec_pipeline.path`` set to our pipeline.

    Returns
    -------
    tuple of str
        ``("native", ...)`` when the Rust library reaches the storage itself,
        ``("python-io", reason)`` when zarrs runs the codecs and the store's Python API moves
        the bytes, ``("fallback", reason)`` when zarr's own pipeline does everything.
    """
    pipeline = array._async_array.codec_pipeline
    if not isinstance(pipeline, ZarrsCodecPipeline):
        return "fallback", f"the array was opened with {type(pipeline).__name__}"
    if pipeline.native is None:
        return "fallback", pipeline.reason or "unknown"
    if pipeline.native.python_io is not None:
        return "python-io", pipeline.native.python_io
    return "native", f"the Rust library reaches the {type(array.store).__name__} itself"


_ROUTE_NAMES = {"native": "native storage", "python-io": "Python I/O", "fallback": "fallback to zarr's pipeline"}


def _route_text(route: tuple[str, str]) -> str:
    return f"{_ROUTE_NAMES[route[0]]} ({route[1]})"


# -- geometry ----------------------------------------------------------------------------


def _write_unit(array: zarr.Array[Any]) -> tuple[int, ...]:
    """The shape of the array's storage objects: its shards, else its chunks."""
    try:
        return tuple(array.shards or array.chunks)
    except (NotImplementedError, ValueError, TypeError):
        raise CLIError("arrays with irregular (rectilinear) chunk grids are not supported; pass --chunks") from None


def _is_variable(array: zarr.Array[Any]) -> bool:
    """Variable-length strings or bytes."""
    return not isinstance(array.dtype, np.dtype) or array.dtype.kind in "OT"


def _itemsize(array: zarr.Array[Any]) -> int:
    # Variable-length strings and bytes: a guess, used only to size the blocks.
    return 64 if _is_variable(array) else max(1, array.dtype.itemsize)


def _unit_kind(array: zarr.Array[Any]) -> str:
    return "shard" if array.shards is not None else "chunk"


def _unit_bytes(array: zarr.Array[Any]) -> int:
    """Bytes of one whole storage unit as implementations hold it (not cut at the array's
    edge: a chunk larger than the array is still decoded and encoded whole)."""
    return _itemsize(array) * math.prod(_write_unit(array))


def _source_chunk(array: zarr.Array[Any]) -> tuple[int, ...] | None:
    """The source's (inner) chunk shape, the most a read decodes at once; None when the
    grid is irregular."""
    try:
        return tuple(array.chunks)
    except (NotImplementedError, ValueError, TypeError):
        return None


def plan_block(shape: Sequence[int], unit: Sequence[int], itemsize: int, budget: int) -> tuple[int, ...]:
    """How many whole storage units (shards or chunks) one block spans along each axis.

    Trailing axes are filled first: a block is a row of units along the first axis when
    that fits in ``budget`` bytes, never less than one unit.

    Parameters
    ----------
    shape, unit
        The array's shape and the shape of its storage units.
    itemsize
        Bytes per element.
    budget
        The most bytes a block should hold.

    Returns
    -------
    tuple of int
        Units per block along each axis.
    """
    grid = [math.ceil(s / u) for s, u in zip(shape, unit, strict=True)]
    per_block = [1] * len(shape)
    extent = [min(s, u) for s, u in zip(shape, unit, strict=True)]
    for axis in reversed(range(len(shape))):
        others = itemsize * math.prod(e for a, e in enumerate(extent) if a != axis)
        if others * shape[axis] <= budget:
            n = grid[axis]
        else:
            n = max(1, min(grid[axis], budget // max(1, others * unit[axis])))
        per_block[axis] = max(1, n)  # an empty axis has no units, and no blocks
        extent[axis] = min(n * unit[axis], shape[axis])
        if n < grid[axis]:
            break
    return tuple(per_block)


@dataclass(frozen=True)
class _Block:
    region: tuple[slice, ...]
    units: list[tuple[int, ...]]


def _blocks(shape: Sequence[int], unit: Sequence[int], per_block: Sequence[int]) -> Iterator[_Block]:
    """Every block of whole units, in C order, with the units it covers."""
    grid = [math.ceil(s / u) for s, u in zip(shape, unit, strict=True)]
    counts = [math.ceil(g / b) for g, b in zip(grid, per_block, strict=True)]
    for index in _grid_indices(counts):
        first = [i * b for i, b in zip(index, per_block, strict=True)]
        last = [min(f + b, g) for f, b, g in zip(first, per_block, grid, strict=True)]
        region = tuple(
            slice(f * u, min(e * u, s)) for f, e, u, s in zip(first, last, unit, shape, strict=True)
        )
        units = list(itertools.product(*(range(f, e) for f, e in zip(first, last, strict=True))))
        yield _Block(region, units)


def _grid_indices(counts: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every index of a grid of ``counts``, in C order, one at a time: an axis may have more
    blocks than memory could list (``itertools.product`` first makes a tuple of each axis)."""
    if 0 in counts:
        return
    index = [0] * len(counts)
    while True:
        yield tuple(index)
        for axis in reversed(range(len(counts))):
            index[axis] += 1
            if index[axis] < counts[axis]:
                break
            index[axis] = 0
        else:
            return


def _unit_region(coords: Sequence[int], unit: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(c * u, min((c + 1) * u, s)) for c, u, s in zip(coords, unit, shape, strict=True))


def _prefix(array: zarr.Array[Any]) -> str:
    path = array.store_path.path
    return f"{path}/" if path else ""


def _unit_key(array: zarr.Array[Any], coords: tuple[int, ...]) -> str:
    return _prefix(array) + array.metadata.encode_chunk_key(coords)


async def _list_sizes(store: Store, prefix: str) -> dict[str, int]:
    keys = [key async for key in store.list_prefix(prefix)]
    limit = asyncio.Semaphore(64)

    async def size(key: str) -> int:
        async with limit:
            return await store.getsize(key)

    return dict(zip(keys, await asyncio.gather(*(size(key) for key in keys)), strict=True))


# A chunk key of the default or v2 encodings (not metadata, nor a stray temporary file).
_CHUNK_KEY = re.compile(r"(c([./]\d+)*|\d+([./]\d+)*)")


def _stored_objects(array: zarr.Array[Any]) -> dict[str, int]:
    """The array's stored objects (chunks or shards) and their sizes in bytes."""
    prefix = _prefix(array)
    sizes = sync(_list_sizes(array.store, prefix))
    return {k: v for k, v in sizes.items() if _CHUNK_KEY.fullmatch(k[len(prefix):])}


# -- output ------------------------------------------------------------------------------


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False)


def _progress(quiet: bool) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=_console(stderr=True), disable=quiet,
        transient=False,
    )


def _exception_text(exc: BaseException) -> str:
    """``Type: message`` on one line, cut short (a message may quote a whole document)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}" if text else type(exc).__name__


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def _rate(mib_per_s: float) -> str:
    return f"{mib_per_s:.0f}" if mib_per_s >= 100 else f"{mib_per_s:.1f}" if mib_per_s >= 1 else f"{mib_per_s:.3g}"


def _codec_text(codec: Any) -> str:
    """One codec from zarr's metadata JSON, e.g. ``zstd(level=5, checksum=False)``."""
    if isinstance(codec, str):
        return codec
    if not isinstance(codec, dict):
        return str(codec)
    name = codec.get("name", codec.get("id", "?"))
    config = codec.get("configuration", {k: v for k, v in codec.items() if k not in ("id", "name")})
    if name == "sharding_indexed":
        inner = _chain_text(config.get("codecs", []))
        index = _chain_text(config.get("index_codecs", []))
        return f"sharding_indexed({inner}; index: {index}, at the {config.get('index_location', 'end')})"
    args = ", ".join(f"{k}={v}" for k, v in (config or {}).items())
    return f"{name}({args})" if args else str(name)


def _chain_text(codecs: Sequence[Any]) -> str:
    return " -> ".join(_codec_text(c) for c in codecs) or "none"


def codecs_text(array: zarr.Array[Any]) -> str:
    """The array's codec chain as one line (filters and compressor for Zarr v2).

    Parameters
    ----------
    array
        The array.

    Returns
    -------
    str
        E.g. ``bytes(endian=little) -> zstd(level=5, checksum=False)``.
    """
    document = _metadata_document(array)
    if document.get("zarr_format") == 3:
        return _chain_text(list(document.get("codecs") or []))
    chain = [*(document.get("filters") or []), *([document["compressor"]] if document.get("compressor") else [])]
    return _chain_text(chain)


# -- info --------------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    array = open_array(args.path, storage_options=_parse_storage_options(args.storage_option))
    shape = tuple(array.shape)
    unit = _write_unit(array)
    sharded = array.shards is not None
    route = describe_route(array)
    stored = _stored_objects(array)
    stored_bytes = sum(stored.values())
    grid = [math.ceil(s / u) for s, u in zip(shape, unit, strict=True)]
    units_total = math.prod(grid)
    inner_per_unit = math.prod(u // c for u, c in zip(unit, array.chunks, strict=True)) if sharded else 1
    nbytes = None if _is_variable(array) else int(array.nbytes)
    ratio = nbytes / stored_bytes if nbytes is not None and stored_bytes else None
    document = _metadata_document(array)
    info = {
        "path": args.path,
        "zarr_format": int(array.metadata.zarr_format),
        "shape": list(shape),
        "dtype": str(array.dtype),
        "chunks": list(array.chunks),
        "shards": list(unit) if sharded else None,
        "codecs": document.get("codecs") if document.get("zarr_format") == 3 else
        {"filters": document.get("filters"), "compressor": document.get("compressor")},
        "codecs_text": codecs_text(array),
        "fill_value": document.get("fill_value"),
        "stored_objects": len(stored),
        "total_objects": units_total,
        "stored_bytes": stored_bytes,
        "nbytes": nbytes,
        "compression_ratio": ratio,
        "route": {"kind": route[0], "reason": route[1]},
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK

    from rich.table import Table
    from rich.text import Text

    objects = "shards" if sharded else "chunks"
    table = Table(title=args.path, show_header=False, title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("zarr format", str(info["zarr_format"]))
    table.add_row("shape", str(shape))
    table.add_row("dtype", str(array.dtype))
    chunks_total = math.prod(math.ceil(s / c) for s, c in zip(shape, array.chunks, strict=True))
    table.add_row("chunks", f"{tuple(array.chunks)}, {chunks_total:,} in all")
    table.add_row("shards", f"{unit}, {units_total:,} in all ({inner_per_unit:,} chunks each)" if sharded else "none")
    table.add_row("codecs", info["codecs_text"])
    table.add_row("fill value", json.dumps(info["fill_value"]))
    table.add_row("stored", f"{_human(stored_bytes)} in {len(stored):,} of {units_total:,} {objects}")
    table.add_row("uncompressed", "variable-length" if nbytes is None else _human(nbytes))
    table.add_row("ratio", "n/a" if ratio is None else f"{ratio:.2f}")
    style = {"native": "green", "python-io": "yellow", "fallback": "red"}[route[0]]
    table.add_row("route", Text.assemble((_ROUTE_NAMES[route[0]], style), f" ({route[1]})"))
    _console().print(table)
    return EXIT_OK


# -- bench -------------------------------------------------------------------------------


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

    driver = "zarr3" if array.metadata.zarr_format == 3 else "zarr"
    path = str(Path(str(array.store.root)) / array.store_path.path)
    handle = ts.open({"driver": driver, "kvstore": {"driver": "file", "path": path}}).result()[region]

    def write(data: Any) -> None:
        handle.write(data).result()

    return _Target(read=lambda: handle.read().result(), write=write)


def _implementations() -> tuple[list[tuple[str, str | None]], dict[str, str]]:
    """(name, zarr pipeline path or None for tensorstore) to run, and those unavailable."""
    run: list[tuple[str, str | None]] = [("zarr", ZARR_PIPELINE), ("zarrs-cffi", PIPELINE)]
    unavailable: dict[str, str] = {}
    if importlib.util.find_spec("zarrs") is not None:
        run.append(("zarrs-python", ZARRS_PYTHON_PIPELINE))
    else:
        unavailable["zarrs-python"] = "not installed"
    if importlib.util.find_spec("tensorstore") is not None:
        run.append(("tensorstore", None))
    else:
        unavailable["tensorstore"] = "not installed"
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


def _bench(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        raise CLIError("--repeat must be at least 1")
    if args.plot is not None:
        if importlib.util.find_spec("matplotlib") is None:
            raise CLIError("--plot needs matplotlib: pip install matplotlib")
        if not Path(args.plot).parent.is_dir():
            raise CLIError(f"--plot: no directory {Path(args.plot).parent}")
    if (args.path is None) == (args.synthetic is None):
        raise CLIError("give either PATH_OR_URL or --synthetic SHAPE (see 'zarrs-cffi bench --help')")
    budget = _parse_size(args.max_size)
    implementations, unavailable = _implementations()
    with ExitStack() as stack:
        if args.synthetic is not None:
            setup = _synthetic_setup(args, budget, stack)
        else:
            if args.chunks or args.shards or args.codec or args.dtype != "uint16" or args.dir:
                raise CLIError("--chunks, --shards, --codec, --dtype and --dir apply to --synthetic only")
            setup = _array_setup(args, budget)
        results = _run_bench(setup, implementations, unavailable, args)
    document = {
        "source": setup.source,
        "shape": list(setup.shape),
        "region": [[s.start, s.stop] for s in setup.region],
        "dtype": setup.dtype,
        "chunks": list(setup.chunks),
        "shards": list(setup.shards) if setup.shards else None,
        "codecs": setup.codecs,
        "bytes": setup.nbytes,
        "repeat": args.repeat,
        "route": {"kind": setup.route[0], "reason": setup.route[1]},
        "results": [
            _result_json(r, results, setup.nbytes)
            for operation in setup.operations for r in results if r.operation == operation
        ],
        "unavailable": unavailable,
    }
    if args.plot is not None:
        _plot(results, setup, Path(args.plot))
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        _print_bench(document)
    if args.plot is not None and not args.quiet:
        _console(stderr=True).print(f"plot written to {args.plot}")
    return EXIT_FAILED if any(r.mismatch for r in results) else EXIT_OK


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
    need = _unit_bytes(array)
    if need > budget:
        kind = _unit_kind(array)
        raise CLIError(
            f"one {kind} of {_write_unit(array)} {array.dtype} is {_human(need)}, more than --max-size "
            f"{_human(budget)}: every implementation holds a whole {kind} to read or write it"
        )


def _leading_region(array: zarr.Array[Any], budget: int) -> tuple[slice, ...]:
    """The whole array, or its first block of whole storage units within ``budget`` bytes."""
    shape = tuple(array.shape)
    unit = _write_unit(array)
    if _itemsize(array) * math.prod(shape) <= budget:
        return tuple(slice(0, s) for s in shape)
    per_block = plan_block(shape, unit, _itemsize(array), budget)
    return next(_blocks(shape, unit, per_block)).region


def _array_setup(args: argparse.Namespace, budget: int) -> _BenchSetup:
    options = _parse_storage_options(args.storage_option)
    ours = open_array(args.path, storage_options=options)
    _check_bench_unit(ours, budget)
    region = _leading_region(ours, budget)
    nbytes = _itemsize(ours) * math.prod(s.stop - s.start for s in region)
    def open_target(name: str, pipeline: str | None) -> _Target | str:
        array = ours if pipeline == PIPELINE else open_array(
            args.path, storage_options=options, pipeline=pipeline or ZARR_PIPELINE
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
    shape = _parse_shape(args.synthetic, what="--synthetic")
    try:
        dtype = np.dtype(args.dtype)
    except TypeError:
        raise CLIError(f"--dtype {args.dtype!r} is not a numpy data type") from None
    if dtype.kind not in "biuf":
        raise CLIError(f"--dtype {dtype}: synthetic arrays are boolean, integer or floating point")
    nbytes = dtype.itemsize * math.prod(shape)
    if nbytes > budget:
        raise CLIError(f"--synthetic {args.synthetic} is {_human(nbytes)}, more than --max-size {_human(budget)}")
    chunks: Any = _parse_shape(args.chunks, what="--chunks") if args.chunks else "auto"
    shards = _parse_shape(args.shards, what="--shards") if args.shards else None
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
        with _pipeline(pipeline):
            try:
                return zarr.create_array(
                    root / f"{name}.zarr", shape=shape, dtype=dtype, chunks=chunks, shards=shards,
                    compressors=compressors, overwrite=True,
                )
            except (ValueError, TypeError) as exc:
                raise CLIError(f"cannot create the synthetic array: {exc}") from None

    probe = create("zarrs-cffi", PIPELINE)
    _check_bench_unit(probe, budget)

    def open_target(name: str, pipeline: str | None) -> _Target | str:
        array = probe if pipeline == PIPELINE else create(name, pipeline or ZARR_PIPELINE)
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
    setup: _BenchSetup, implementations: list[tuple[str, str | None]], unavailable: dict[str, str],
    args: argparse.Namespace,
) -> list[_Result]:
    results: list[_Result] = []
    total = len(implementations) * len(setup.operations) * args.repeat
    with _progress(args.quiet) as progress:
        task = progress.add_task("bench", total=total)
        for name, pipeline in implementations:
            progress.update(task, description=f"{name}")
            try:
                target = setup.open(name, pipeline)
            except CLIError:
                raise
            except Exception as exc:  # an optional implementation that cannot open this array
                target = f"{type(exc).__name__}: {exc}"
            if isinstance(target, str):
                unavailable[name] = target
                progress.advance(task, len(setup.operations) * args.repeat)
                continue
            for operation in setup.operations:
                result = _Result(operation, name)
                results.append(result)
                before = stats()
                for _ in range(args.repeat):
                    progress.update(task, description=f"{name} {operation}")
                    try:
                        result.times.append(_time_once(setup, target, operation))
                    except _Mismatch:
                        result.mismatch = True
                    except Exception as exc:  # reported in the table, the others still run
                        result.error = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                    progress.advance(task)
                    if result.error or result.mismatch:
                        progress.advance(task, args.repeat - len(result.times) - 1)
                        break
                if pipeline == PIPELINE:
                    result.chunks = _chunk_counts(before, stats(), operation)
    return results


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
        "mib_per_s": nbytes / _MIB / best if best else None,
        "speedup_vs_zarr": baseline / best if best and baseline else None,
        "error": result.error or ("result differs from the reference" if result.mismatch else None),
        "chunks": result.chunks,
    }


def _print_bench(document: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    console = _console()
    region = document["region"]
    whole = all(start == 0 and stop == n for (start, stop), n in zip(region, document["shape"], strict=True))
    what = "" if whole else f", region {tuple(f'{a}:{b}' for a, b in region)}"
    console.print(
        f"{document['source']}: {tuple(document['shape'])} {document['dtype']}{what}, {_human(document['bytes'])}, "
        f"chunks {tuple(document['chunks'])}"
        + (f", shards {tuple(document['shards'])}" if document["shards"] else "")
        + f", {document['codecs']}"
    )
    console.print(f"our route: {_route_text((document['route']['kind'], document['route']['reason']))}")
    table = Table(title=f"best of {document['repeat']}", title_justify="left")
    for name, justify in (("operation", "left"), ("implementation", "left"), ("time", "right"),
                          ("MiB/s", "right"), ("vs zarr", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in document["results"]:
        if row["error"]:
            table.add_row(row["operation"], row["implementation"], Text(row["error"], style="red"), "", "")
            continue
        speedup = row["speedup_vs_zarr"]
        table.add_row(
            row["operation"], row["implementation"], _duration(row["best_s"]), _rate(row["mib_per_s"]),
            "" if speedup is None else f"{speedup:.2f}x",
        )
    console.print(table)
    for row in document["results"]:
        chunks = row["chunks"] or {}
        if chunks.get("fallback"):
            total = sum(chunks.values())
            console.print(f"{row['implementation']} {row['operation']}: {chunks['fallback']:,} of {total:,} chunks "
                          "fell back to zarr's pipeline")
    for name, reason in document["unavailable"].items():
        console.print(f"{name}: skipped ({reason})")


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
            values.append(setup.nbytes / _MIB / best if best else 0.0)
        positions = [j + (i - (len(names) - 1) / 2) * width for j in range(len(operations))]
        axes.bar(positions, values, width, label=name)
    axes.set_xticks(range(len(operations)), operations)
    axes.set_ylabel("MiB/s (best, higher is better)")
    axes.set_title(f"{setup.source}: {_human(setup.nbytes)}", fontsize=9)
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise CLIError(f"--plot: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


# -- copy --------------------------------------------------------------------------------


def _copy_block(src: zarr.Array[Any], dst: zarr.Array[Any], block: _Block, missing: list[tuple[int, ...]]) -> None:
    """Read ``block`` from ``src`` and write its ``missing`` units to ``dst``."""
    data: Any = src[block.region]
    if len(missing) == len(block.units):
        dst[block.region] = data
        return
    shape = tuple(dst.shape)
    unit = _write_unit(dst)
    origin = [s.start for s in block.region]
    for coords in missing:
        region = _unit_region(coords, unit, shape)
        local = tuple(slice(r.start - o, r.stop - o) for r, o in zip(region, origin, strict=True))
        dst[region] = data[local]


def _metadata_document(array: zarr.Array[Any]) -> dict[str, Any]:
    """The array's stored metadata document, without attributes."""
    from zarr.core.buffer import default_buffer_prototype

    documents = array.metadata.to_buffer_dict(default_buffer_prototype())
    document = documents.get("zarr.json") or documents[".zarray"]
    parsed: dict[str, Any] = json.loads(document.to_bytes())
    parsed.pop("attributes", None)
    return parsed


def _copy(args: argparse.Namespace) -> int:
    if args.resume and args.overwrite:
        raise CLIError("--resume and --overwrite exclude each other")
    budget = _parse_size(args.memory)
    src = open_array(args.src, storage_options=_parse_storage_options(args.storage_option))
    if not _is_url(args.src) and not _is_url(args.dst):
        if Path(args.src).resolve() == Path(args.dst).resolve():
            raise CLIError("SRC and DST are the same array")
    ndim = len(src.shape)
    options: dict[str, Any] = {"zarr_format": args.zarr_format}
    if args.chunks:
        options["chunks"] = _parse_shape(args.chunks, what="--chunks")
    if args.shards:
        options["shards"] = None if args.shards.lower() == "none" else _parse_shape(args.shards, what="--shards")
    elif args.chunks or args.zarr_format == 2:
        options["shards"] = None  # new chunks: unsharded unless --shards says otherwise
    for name in ("chunks", "shards"):
        value = options.get(name)
        if value is not None and len(value) != ndim:
            raise CLIError(f"--{name} has {len(value)} dimensions, the array {ndim}")
    if args.codec:
        options["compressors"] = parse_codecs(args.codec, zarr_format=args.zarr_format)
    elif args.zarr_format != src.metadata.zarr_format:
        options["compressors"] = "auto"
    # The destination as it will be, built in memory first: bad options fail here,
    # before anything is written.
    try:
        with _pipeline(PIPELINE):
            planned = zarr.from_array(MemoryStore(), data=src, write_data=False, **options)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise CLIError(f"cannot create the destination: {' '.join(str(exc).split())}") from None
    unit = _write_unit(planned)
    _check_copy_memory(src, planned, budget)
    dst, resumed = _open_destination(args, src, options, planned)
    try:
        return _copy_blocks(args, src, dst, unit, budget, resumed)
    finally:
        if isinstance(dst.store, ZipStore):
            dst.store.close()


def _check_copy_memory(src: zarr.Array[Any], planned: zarr.Array[Any], budget: int) -> None:
    """Refuse, before anything is written, a copy whose smallest step cannot fit ``--memory``:
    a block holds at least one whole destination unit, and reading it decodes a source
    chunk whole (a [2^20, 2^20] chunk is 1 TiB of uint8)."""
    unit, need = _write_unit(planned), _unit_bytes(planned)
    chunk = _source_chunk(src)
    chunk_bytes = 0 if chunk is None else _itemsize(src) * math.prod(chunk)
    if max(need, chunk_bytes) > budget:
        source = "" if chunk is None else f", one source chunk of {chunk} is {_human(chunk_bytes)}"
        raise CLIError(
            f"--memory {_human(budget)} cannot hold the smallest step of the copy: one destination "
            f"{_unit_kind(planned)} of {unit} is {_human(need)}{source}; give a larger --memory, or smaller "
            "--chunks/--shards"
        )


def _open_destination(
    args: argparse.Namespace, src: zarr.Array[Any], options: dict[str, Any], planned: zarr.Array[Any]
) -> tuple[zarr.Array[Any], bool]:
    """The destination array (created, or the existing one when resuming) and whether it existed.

    Nothing is deleted or written into that is not a Zarr node we were asked to replace: a
    location holding anything but a Zarr array is refused, and ``--overwrite`` replaces an
    array whose every file is its own (metadata and chunks) or a group holding nothing but
    its metadata.
    """
    store, path = _store_and_path(args.dst, write=True)
    storage_options = _parse_storage_options(args.storage_option) if _is_url(args.dst) else None
    entries = _destination_entries(args.dst, store, path, storage_options)
    existing: zarr.Array[Any] | zarr.Group | None
    try:
        with _pipeline(PIPELINE):
            existing = zarr.open(store=store, path=path, mode="r+", storage_options=storage_options)
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, zarr.errors.ArrayNotFoundError,
            zarr.errors.GroupNotFoundError, KeyError):
        existing = None
    except OSError:
        raise
    except Exception as exc:  # metadata zarr refuses: not a node we can knowingly replace
        raise CLIError(f"{args.dst} holds metadata zarr cannot read ({_exception_text(exc)}); nothing was written") from None
    if existing is None:
        if entries:
            raise CLIError(
                f"{args.dst} is not empty and is not a Zarr array (it holds {_some(entries)}); nothing was written: "
                "give a new or empty location"
            )
    elif isinstance(existing, zarr.Group):
        members = [e for e in entries or () if e not in _METADATA_NAMES]
        if not args.overwrite:
            raise CLIError(f"{args.dst} is a group; give a new path for the copy")
        if members:
            raise CLIError(
                f"{args.dst} is a group holding {_some(members)}; --overwrite replaces an array or an empty group only, "
                "nothing was written"
            )
    elif args.overwrite:
        foreign = [e for e in entries or () if not _is_array_entry(e)]
        if foreign:
            raise CLIError(
                f"{args.dst} holds files that are not its array's ({_some(foreign)}); --overwrite would delete them, "
                "nothing was written"
            )
    if existing is not None and args.overwrite and isinstance(store, ZipStore):
        raise CLIError(f"--overwrite cannot replace {args.dst}: a zip archive cannot delete its entries")
    if isinstance(existing, zarr.Array) and not args.overwrite:
        if not args.resume:
            raise CLIError(f"{args.dst} already exists: --resume finishes an interrupted copy, --overwrite replaces it")
        if isinstance(store, ZipStore):
            raise CLIError("--resume cannot continue a copy into a zip archive")
        have, want = _metadata_document(existing), _metadata_document(planned)
        if have != want:
            differ = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
            raise CLIError(f"{args.dst} exists with other metadata ({', '.join(differ)} differ); cannot resume")
        return existing, True
    try:
        with _pipeline(PIPELINE):
            dst = zarr.from_array(
                store, name=path or None, data=src, write_data=False, overwrite=args.overwrite,
                storage_options=storage_options, **options,
            )
    except Exception as exc:  # a read-only or unreachable destination, or options zarr refuses
        raise CLIError(f"cannot create {args.dst}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    return dst, False


# What a Zarr node's own files are called, relative to the node: its metadata documents,
# and chunk keys (default or v2 encoding, either separator).
_METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})
# A write's temporary file beside its key, left by a killed writer: ours
# (``.<name>.<pid>-<namespace>-<random>-<n>.partial``) or zarr's LocalStore's
# (``<key with its suffix replaced by .<uuid hex>>.partial``).
_OUR_TEMPORARY = re.compile(r"\.(?P<name>[^/]+)\.\d+-[0-9a-f]{8}-[0-9a-f]{8}-\d+\.partial")
_ZARR_TEMPORARY = re.compile(r"[^/]*\.[0-9a-f]{32}\.partial")


def _is_array_entry(entry: str) -> bool:
    """Whether ``entry`` (relative to an array) is one of the array's own files."""
    if entry in _METADATA_NAMES or _CHUNK_KEY.fullmatch(entry):
        return True
    parent, _, name = entry.rpartition("/")
    ours = _OUR_TEMPORARY.fullmatch(name)
    if ours:
        key = f"{parent}/{ours.group('name')}" if parent else ours.group("name")
        return key in _METADATA_NAMES or _CHUNK_KEY.fullmatch(key) is not None
    return _ZARR_TEMPORARY.fullmatch(name) is not None and (not parent or _CHUNK_KEY.fullmatch(parent) is not None)


def _some(entries: Sequence[str]) -> str:
    shown = ", ".join(repr(e) for e in sorted(entries)[:3])
    return shown if len(entries) <= 3 else f"{shown}, ... ({len(entries):,} in all)"


def _destination_entries(
    location: str, store: Any, path: str, storage_options: dict[str, Any] | None
) -> list[str] | None:
    """What is already at the destination, relative to it: files (and, for a directory, empty
    subdirectories and links); None when the storage cannot list (HTTP)."""
    if isinstance(store, Path):
        if not store.exists() and not store.is_symlink():
            return []
        if not store.is_dir() or store.is_symlink():
            raise CLIError(f"{location} exists and is not a directory; nothing was written")
        found: list[str] = []
        for top, dirs, files in os.walk(store):
            relative = Path(top).relative_to(store)
            for name in dirs:
                entry = Path(top) / name
                if entry.is_symlink() or not any(entry.iterdir()):
                    found.append((relative / name).as_posix())
            found.extend((relative / name).as_posix() for name in files)
        return found
    prefix = f"{path}/" if path else ""
    listed: Any
    try:
        if isinstance(store, ZipStore):
            if store.path is None or not Path(store.path).exists():
                return []
            listed = store
        else:
            from zarr.storage import FsspecStore

            listed = FsspecStore.from_url(location, storage_options=storage_options, read_only=True)
            prefix = ""

        async def keys() -> list[str]:
            return [key async for key in listed.list_prefix(prefix)]

        return [key[len(prefix):] for key in sync(keys())]
    except (NotImplementedError, OSError, ValueError):
        return None


def _copy_blocks(
    args: argparse.Namespace, src: zarr.Array[Any], dst: zarr.Array[Any], unit: tuple[int, ...], budget: int,
    resumed: bool,
) -> int:
    shape = tuple(dst.shape)
    per_block = plan_block(shape, unit, _itemsize(dst), budget)
    present = set(_stored_objects(dst)) if resumed else set()
    total = math.prod(math.ceil(s / u) for s, u in zip(shape, unit, strict=True))
    objects = "shards" if dst.shards is not None else "chunks"
    err = _console(stderr=True)
    if not args.quiet:
        block_shape = tuple(min(b * u, s) for b, u, s in zip(per_block, unit, shape, strict=True))
        err.print(f"reading {args.src} ({_route_text(describe_route(src))})")
        err.print(f"writing {args.dst} ({_route_text(describe_route(dst))})")
        err.print(f"{total:,} {objects} of {unit}, in blocks of {block_shape}")
    written = skipped = 0
    start = time.perf_counter()
    try:
        with _progress(args.quiet) as progress:
            task = progress.add_task(f"copy ({objects})", total=total)
            for block in _blocks(shape, unit, per_block):
                missing = [c for c in block.units if _unit_key(dst, c) not in present]
                if missing:
                    _copy_block(src, dst, block, missing)
                written += len(missing)
                skipped += len(block.units) - len(missing)
                progress.advance(task, len(block.units))
    except KeyboardInterrupt:
        raise _Interrupted(
            f"interrupted after {written + skipped:,} of {total:,} {objects}; "
            "the same command with --resume finishes the copy"
        ) from None
    elapsed = time.perf_counter() - start
    summary = {
        "source": args.src, "destination": args.dst, "shape": list(shape), "chunks": list(dst.chunks),
        "shards": list(dst.shards) if dst.shards else None, "codecs": codecs_text(dst), "objects": objects,
        "total": total, "written": written, "skipped": skipped, "resumed": resumed, "seconds": elapsed,
        "block": [min(b * u, s) for b, u, s in zip(per_block, unit, shape, strict=True)],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        note = f", {skipped:,} already present and skipped" if resumed else ""
        _console().print(
            f"copied {args.src} -> {args.dst}: {written:,} of {total:,} {objects} written{note} in {elapsed:.1f} s"
        )
    return EXIT_OK


# -- main --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``zarrs-cffi``.

    Returns
    -------
    argparse.ArgumentParser
        The parser; each subcommand sets ``func``.
    """
    parser = _Parser(prog="zarrs-cffi", description="Look at, benchmark and copy Zarr arrays with zarrs-cffi.")
    parser.add_argument("--version", action="version", version=f"zarrs-cffi {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the traceback of an unexpected error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, *, quiet: bool = True) -> None:
        sub.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
        sub.add_argument("-o", "--storage-option", action="append", metavar="KEY=VALUE",
                         help="an fsspec option for a URL (repeatable), e.g. anon=true")
        if quiet:
            sub.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        sub.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)

    info = commands.add_parser("info", help="describe an array and how our pipeline reads it",
                               description="Shape, data type, chunks, shards, codecs, stored size, "
                               "compression ratio, and the route our pipeline takes.")
    info.add_argument("path", metavar="PATH_OR_URL")
    common(info, quiet=False)
    info.set_defaults(func=_info)

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
    common(bench)
    bench.set_defaults(func=_bench)

    copy = commands.add_parser(
        "copy", help="copy an array: rechunk, reshard, recompress, convert v2 to v3",
        description="Copy SRC to a new array DST with our pipeline, a block of whole DST shards (or chunks) at a "
        "time: a row of them when it fits in --memory. Unless given, chunks, shards and codecs are the source's.",
    )
    copy.add_argument("src", metavar="SRC")
    copy.add_argument("dst", metavar="DST")
    copy.add_argument("--chunks", metavar="SHAPE", help="chunk shape (inner chunks when sharded), e.g. 64,64,64")
    copy.add_argument("--shards", metavar="SHAPE", help="shard shape, or none")
    copy.add_argument("--codec", action="append", metavar="SPEC",
                      help="compressor: zstd[:LEVEL], gzip[:LEVEL], blosc[:CNAME[:CLEVEL[:SHUFFLE]]], crc32c, none "
                      "(repeatable, applied in order)")
    copy.add_argument("--zarr-format", type=int, choices=(2, 3), default=3, help="format of DST (default 3)")
    copy.add_argument("--memory", default="512MiB", metavar="SIZE",
                      help="the most uncompressed data held at once (default 512MiB; at least one shard)")
    copy.add_argument("--resume", action="store_true", help="finish an interrupted copy: skip objects DST already has")
    copy.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    common(copy)
    copy.set_defaults(func=_copy)
    return parser


def _fail(message: str) -> None:
    line = " ".join(message.split())
    print(f"zarrs-cffi: error: {line[:1000]}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``zarrs-cffi`` with ``argv`` (default: the process's arguments).

    Parameters
    ----------
    argv
        The arguments, without the program name.

    Returns
    -------
    int
        The exit status: 0 success, 1 a benchmark result differed or an unexpected error,
        2 a bad path or option, 130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise CLIError("a command is required: info, bench or copy (see 'zarrs-cffi --help')")
        return int(args.func(args))
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except CLIError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except _Interrupted as exc:
        _fail(str(exc))
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except (OSError, ValueError, ZarrsError, zarr.errors.BaseZarrError) as exc:
        if "--traceback" in argv:
            raise
        _fail(str(exc) or type(exc).__name__)
        return EXIT_USAGE
    except Exception as exc:
        if "--traceback" in argv:
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (rerun with --traceback for details)")
        return EXIT_FAILED
