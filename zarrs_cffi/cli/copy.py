"""``zarrs-cffi copy``: rechunk, reshard, recompress or convert (v2 to v3) an array with our
pipeline, one block of whole destination shards (or chunks) at a time, resumably.

Every option is checked, and the destination planned in memory, before anything is
written; ``destination.py`` decides what may be written into. An interrupted copy leaves
whole storage units only (our stores rename each into place), which ``--resume`` skips.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zarr
from zarr.storage import MemoryStore, ZipStore

from . import geometry, render
from .arrays import codecs_text, describe_route, is_url, open_array, pipeline_config, route_text
from .destination import open_destination
from .errors import EXIT_OK, CLIError, Interrupted
from .implementations import OURS
from .options import add_common_options, parse_codecs, parse_shape, parse_size, parse_storage_options

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """``copy`` and its options, in ``commands`` (argparse's subparsers)."""
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
    add_common_options(copy)
    copy.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.resume and args.overwrite:
        raise CLIError("--resume and --overwrite exclude each other")
    budget = parse_size(args.memory)
    src = open_array(args.src, storage_options=parse_storage_options(args.storage_option))
    if not is_url(args.src) and not is_url(args.dst):
        if Path(args.src).resolve() == Path(args.dst).resolve():
            raise CLIError("SRC and DST are the same array")
    options = _destination_options(args, src)
    # The destination as it will be, built in memory first: bad options fail here,
    # before anything is written.
    try:
        with pipeline_config(OURS):
            planned = zarr.from_array(MemoryStore(), data=src, write_data=False, **options)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise CLIError(f"cannot create the destination: {' '.join(str(exc).split())}") from None
    unit = geometry.write_unit(planned)
    _check_copy_memory(src, planned, budget)
    dst, resumed = open_destination(args, src, options, planned)
    try:
        return _copy_blocks(args, src, dst, unit, budget, resumed)
    finally:
        if isinstance(dst.store, ZipStore):
            dst.store.close()


def _destination_options(args: argparse.Namespace, src: zarr.Array[Any]) -> dict[str, Any]:
    """``zarr.from_array``'s options for the destination: the source's unless given."""
    ndim = len(src.shape)
    options: dict[str, Any] = {"zarr_format": args.zarr_format}
    if args.chunks:
        options["chunks"] = parse_shape(args.chunks, what="--chunks")
    if args.shards:
        options["shards"] = None if args.shards.lower() == "none" else parse_shape(args.shards, what="--shards")
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
    return options


def _check_copy_memory(src: zarr.Array[Any], planned: zarr.Array[Any], budget: int) -> None:
    """Refuse, before anything is written, a copy whose smallest step cannot fit ``--memory``:
    a block holds at least one whole destination unit, and reading it decodes a source
    chunk whole (a [2^20, 2^20] chunk is 1 TiB of uint8)."""
    unit, need = geometry.write_unit(planned), geometry.unit_bytes(planned)
    chunk = geometry.source_chunk(src)
    chunk_bytes = 0 if chunk is None else geometry.itemsize(src) * math.prod(chunk)
    if max(need, chunk_bytes) > budget:
        source = "" if chunk is None else f", one source chunk of {chunk} is {render.human(chunk_bytes)}"
        raise CLIError(
            f"--memory {render.human(budget)} cannot hold the smallest step of the copy: one destination "
            f"{geometry.unit_kind(planned)} of {unit} is {render.human(need)}{source}; give a larger --memory, or smaller "
            "--chunks/--shards"
        )



def _copy_block(src: zarr.Array[Any], dst: zarr.Array[Any], block: geometry.Block, missing: list[tuple[int, ...]]) -> None:
    """Read ``block`` from ``src`` and write its ``missing`` units to ``dst``."""
    data: Any = src[block.region]
    if len(missing) == len(block.units):
        dst[block.region] = data
        return
    shape = tuple(dst.shape)
    unit = geometry.write_unit(dst)
    origin = [s.start for s in block.region]
    for coords in missing:
        region = geometry.unit_region(coords, unit, shape)
        local = tuple(slice(r.start - o, r.stop - o) for r, o in zip(region, origin, strict=True))
        dst[region] = data[local]



def _copy_blocks(
    args: argparse.Namespace, src: zarr.Array[Any], dst: zarr.Array[Any], unit: tuple[int, ...], budget: int,
    resumed: bool,
) -> int:
    shape = tuple(dst.shape)
    per_block = geometry.plan_block(shape, unit, geometry.itemsize(dst), budget)
    block_shape = [min(b * u, s) for b, u, s in zip(per_block, unit, shape, strict=True)]
    present = set(geometry.stored_objects(dst)) if resumed else set()
    total = math.prod(math.ceil(s / u) for s, u in zip(shape, unit, strict=True))
    objects = "shards" if dst.shards is not None else "chunks"
    if not args.quiet:
        err = render.console(stderr=True)
        err.print(f"reading {args.src} ({route_text(describe_route(src))})")
        err.print(f"writing {args.dst} ({route_text(describe_route(dst))})")
        err.print(f"{total:,} {objects} of {unit}, in blocks of {tuple(block_shape)}")
    start = time.perf_counter()
    written, skipped = _copy_missing(args, src, dst, unit, per_block, present, total, objects)
    summary = {
        "source": args.src, "destination": args.dst, "shape": list(shape), "chunks": list(dst.chunks),
        "shards": list(dst.shards) if dst.shards else None, "codecs": codecs_text(dst), "objects": objects,
        "total": total, "written": written, "skipped": skipped, "resumed": resumed,
        "seconds": time.perf_counter() - start, "block": block_shape,
    }
    if args.json:
        render.print_json(summary)
    else:
        note = f", {skipped:,} already present and skipped" if resumed else ""
        render.console().print(
            f"copied {args.src} -> {args.dst}: {written:,} of {total:,} {objects} written{note} in "
            f"{summary['seconds']:.1f} s"
        )
    return EXIT_OK


def _copy_missing(
    args: argparse.Namespace, src: zarr.Array[Any], dst: zarr.Array[Any], unit: tuple[int, ...],
    per_block: tuple[int, ...], present: set[str], total: int, objects: str,
) -> tuple[int, int]:
    """Copy every block's units whose keys are not ``present``; how many were written and
    how many skipped."""
    shape = tuple(dst.shape)
    written = skipped = 0
    try:
        with render.progress(args.quiet) as progress:
            task = progress.add_task(f"copy ({objects})", total=total)
            for block in geometry.blocks(shape, unit, per_block):
                missing = [c for c in block.units if geometry.unit_key(dst, c) not in present]
                if missing:
                    _copy_block(src, dst, block, missing)
                written += len(missing)
                skipped += len(block.units) - len(missing)
                progress.advance(task, len(block.units))
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after {written + skipped:,} of {total:,} {objects}; "
            "the same command with --resume finishes the copy"
        ) from None
    return written, skipped
