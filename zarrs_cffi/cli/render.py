"""What the commands print: rich tables, progress bars and JSON documents, and the numbers
in them.

Each command builds one JSON-able document; ``--json`` prints it as it is and the tables are
drawn from the same document, so the two never disagree. ``rich`` is imported only when a
table or a bar is drawn.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from .arrays import ROUTE_NAMES, route_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["console", "duration", "human", "print_bench", "print_info", "print_json", "progress", "rate"]


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False)


def progress(quiet: bool) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console(stderr=True), disable=quiet,
        transient=False,
    )


def print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2))


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def rate(mib_per_s: float) -> str:
    return f"{mib_per_s:.0f}" if mib_per_s >= 100 else f"{mib_per_s:.1f}" if mib_per_s >= 1 else f"{mib_per_s:.3g}"



def print_info(info: dict[str, Any]) -> None:
    """``info``'s table, from its JSON document."""
    from rich.table import Table
    from rich.text import Text

    shape, chunks = tuple(info["shape"]), tuple(info["chunks"])
    shards = tuple(info["shards"]) if info["shards"] else None
    table = Table(title=info["path"], show_header=False, title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("zarr format", str(info["zarr_format"]))
    table.add_row("shape", str(shape))
    table.add_row("dtype", info["dtype"])
    chunks_total = math.prod(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))
    table.add_row("chunks", f"{chunks}, {chunks_total:,} in all")
    if shards:
        inner = math.prod(u // c for u, c in zip(shards, chunks, strict=True))
        table.add_row("shards", f"{shards}, {info['total_objects']:,} in all ({inner:,} chunks each)")
    else:
        table.add_row("shards", "none")
    table.add_row("codecs", info["codecs_text"])
    table.add_row("fill value", json.dumps(info["fill_value"]))
    objects = "shards" if shards else "chunks"
    table.add_row("stored", f"{human(info['stored_bytes'])} in {info['stored_objects']:,} of "
                  f"{info['total_objects']:,} {objects}")
    nbytes, ratio = info["nbytes"], info["compression_ratio"]
    table.add_row("uncompressed", "variable-length" if nbytes is None else human(nbytes))
    table.add_row("ratio", "n/a" if ratio is None else f"{ratio:.2f}")
    kind = info["route"]["kind"]
    style = {"native": "green", "python-io": "yellow", "fallback": "red"}[kind]
    table.add_row("route", Text.assemble((ROUTE_NAMES[kind], style), f" ({info['route']['reason']})"))
    console().print(table)


def print_bench(document: dict[str, Any]) -> None:
    """``bench``'s summary line, table and notes, from its JSON document."""
    from rich.table import Table
    from rich.text import Text

    out = console()
    region = document["region"]
    whole = all(start == 0 and stop == n for (start, stop), n in zip(region, document["shape"], strict=True))
    what = "" if whole else f", region {tuple(f'{a}:{b}' for a, b in region)}"
    out.print(
        f"{document['source']}: {tuple(document['shape'])} {document['dtype']}{what}, {human(document['bytes'])}, "
        f"chunks {tuple(document['chunks'])}"
        + (f", shards {tuple(document['shards'])}" if document["shards"] else "")
        + f", {document['codecs']}"
    )
    out.print(f"our route: {route_text((document['route']['kind'], document['route']['reason']))}")
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
            row["operation"], row["implementation"], duration(row["best_s"]), rate(row["mib_per_s"]),
            "" if speedup is None else f"{speedup:.2f}x",
        )
    out.print(table)
    for row in document["results"]:
        chunks = row["chunks"] or {}
        if chunks.get("fallback"):
            total = sum(chunks.values())
            out.print(f"{row['implementation']} {row['operation']}: {chunks['fallback']:,} of {total:,} chunks "
                          "fell back to zarr's pipeline")
    for name, reason in document["unavailable"].items():
        out.print(f"{name}: skipped ({reason})")

