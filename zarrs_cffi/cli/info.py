"""``zarrs-cffi info``: what an array is, how much of it is stored, and the route our
pipeline takes for it. It reads metadata and lists stored keys; it never reads a chunk."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from . import geometry, render
from .arrays import codecs_text, describe_route, metadata_document, open_array
from .errors import EXIT_OK
from .options import add_common_options, parse_storage_options

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """``info`` and its options, in ``commands`` (argparse's subparsers)."""
    info = commands.add_parser("info", help="describe an array and how our pipeline reads it",
                               description="Shape, data type, chunks, shards, codecs, stored size, "
                               "compression ratio, and the route our pipeline takes.")
    info.add_argument("path", metavar="PATH_OR_URL")
    add_common_options(info, quiet=False)
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    document = describe(args.path, parse_storage_options(args.storage_option))
    if args.json:
        render.print_json(document)
    else:
        render.print_info(document)
    return EXIT_OK


def describe(location: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """``info``'s JSON document for the array at ``location``."""
    array = open_array(location, storage_options=storage_options)
    shape = tuple(array.shape)
    unit = geometry.write_unit(array)
    route = describe_route(array)
    stored = geometry.stored_objects(array)
    stored_bytes = sum(stored.values())
    nbytes = None if geometry.is_variable(array) else int(array.nbytes)
    document = metadata_document(array)
    return {
        "path": location,
        "zarr_format": int(array.metadata.zarr_format),
        "shape": list(shape),
        "dtype": str(array.dtype),
        "chunks": list(array.chunks),
        "shards": list(unit) if array.shards is not None else None,
        "codecs": document.get("codecs") if document.get("zarr_format") == 3 else
        {"filters": document.get("filters"), "compressor": document.get("compressor")},
        "codecs_text": codecs_text(array),
        "fill_value": document.get("fill_value"),
        "stored_objects": len(stored),
        "total_objects": math.prod(math.ceil(s / u) for s, u in zip(shape, unit, strict=True)),
        "stored_bytes": stored_bytes,
        "nbytes": nbytes,
        "compression_ratio": nbytes / stored_bytes if nbytes is not None and stored_bytes else None,
        "route": {"kind": route[0], "reason": route[1]},
    }
