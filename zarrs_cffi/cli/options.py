"""Reading the command line's own values: shapes, sizes, storage options and codec specs.

Every malformed value becomes a one-line ``CLIError`` here, before a command touches storage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import CLIError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MIB", "Parser", "add_common_options", "parse_codecs", "parse_shape", "parse_size",
           "parse_storage_options"]

MIB = 1 << 20


class Parser(argparse.ArgumentParser):
    """argparse, with errors raised (one line, exit 2 in ``main``) instead of printed."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')")


def add_common_options(sub: argparse.ArgumentParser, *, quiet: bool = True) -> None:
    """The options every command takes: ``--json``, ``-o``, ``-q`` (not for ``info``, which
    has no progress bar) and ``--traceback`` (also accepted after the command)."""
    sub.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    sub.add_argument("-o", "--storage-option", action="append", metavar="KEY=VALUE",
                     help="an fsspec option for a URL (repeatable), e.g. anon=true")
    if quiet:
        sub.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)


def parse_shape(text: str, *, what: str = "shape") -> tuple[int, ...]:
    if not re.fullmatch(r"\s*\d+(\s*[,x]\s*\d+)*\s*", text):
        raise CLIError(f"{what} {text!r}: expected integers like 64,64")
    shape = tuple(int(p) for p in re.split(r"[,x]", text))
    if any(n <= 0 for n in shape):
        raise CLIError(f"{what} {text!r}: expected positive integers like 64,64")
    return shape


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10**3, "kib": 1 << 10, "m": MIB, "mb": 10**6, "mib": MIB,
               "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise CLIError(f"size {text!r}: expected a positive size like 512MiB or 2GiB")
    return max(1, int(float(match.group(1)) * _SIZE_UNITS[unit]))


def parse_storage_options(items: Sequence[str] | None) -> dict[str, Any] | None:
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

