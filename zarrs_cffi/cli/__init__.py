"""The ``zarrs-cffi`` command line tool (also ``python -m zarrs_cffi``).

``info`` describes an array and the route our pipeline takes for it (``info.py``), ``bench``
times zarr's own pipeline against ours and the installed peers (``bench.py``, over the list
in ``implementations.py`` that ``benchmarks/bench.py`` shares), and ``copy`` rechunks,
recompresses or converts an array (v2 to v3) with our pipeline, resumably (``copy.py``;
``destination.py`` decides what it may write into).

The package only drives zarr: the route is what ``ZarrsCodecPipeline`` decided when zarr
opened the array, never recomputed here. User errors (a bad path, a bad option) print one
line on stderr and exit with status 2; ``rich`` draws the tables and progress bars
(``render.py``), and matplotlib is imported only for ``bench --plot``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import zarr.errors

from .._version import __version__
from ..errors import ZarrsError
from . import bench, copy, info
from .arrays import codecs_text, describe_route, open_array
from .bench import synthetic_data
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CLIError, Interrupted
from .geometry import plan_block
from .options import Parser, parse_codecs

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CLIError", "build_parser", "codecs_text", "describe_route", "main", "open_array", "parse_codecs",
           "plan_block", "synthetic_data"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``zarrs-cffi``.

    Returns
    -------
    argparse.ArgumentParser
        The parser; each subcommand sets ``func``.
    """
    parser = Parser(prog="zarrs-cffi", description="Look at, benchmark and copy Zarr arrays with zarrs-cffi.")
    parser.add_argument("--version", action="version", version=f"zarrs-cffi {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the traceback of an unexpected error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (info, bench, copy):
        command.add_parser(commands)
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
    except Interrupted as exc:
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
