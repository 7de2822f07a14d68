"""The markdown report: the implementations, the seconds and speed-up tables of the layouts
section, the other sections' tables, and one numbered note per cell that is not a number.

It only formats cells; every figure in it was measured and checked elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import settings
from .anndata_rows import ANNDATA_OPERATIONS
from .cells import Cell
from .impls import DirectImpl, Impl, TensorstoreImpl, ZarrPipelineImpl

if TYPE_CHECKING:
    from .data import Layout


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


class Notes:
    """The report's problem notes: a cell without a number points to the note saying why."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def cell(self, cell: Cell, where: str, fmt: str = "{:.3f}", scale: float = 1.0) -> str:
        if cell.status == "ok":
            return fmt.format(cell.seconds * scale)
        if cell.status in ("unavailable", "n/a"):
            return cell.status
        self.lines.append(f"[{len(self.lines) + 1}] {where}: {cell.detail}")
        label = "**MISMATCH**" if cell.status == "MISMATCH" else cell.status
        return f"{label} [{len(self.lines)}]"


def _ratio(num: Cell | None, den: Cell | None) -> str:
    if num and den and num.status == den.status == "ok":
        return f"{num.seconds / den.seconds:.2f}x"
    return "-"


def render_report(
    env: list[str],
    impls: list[Impl],
    unavailable: dict[str, str],
    layouts: list[Layout],
    results: dict[tuple[str, str, str], Cell],
    minibatch: dict[tuple[str, str, str], Cell] | None = None,
    opened: dict[str, Cell] | None = None,
    open_count: int = 0,
    anndata: dict[tuple[str, str], Cell] | None = None,
) -> str:
    notes = Notes()
    rows = [(layout, operation) for layout in layouts for operation in settings.SELECTED_OPERATIONS]
    out = [
        "# zarr codec pipeline benchmark",
        "",
        "## Environment",
        "",
        *env,
        "",
        "## Implementations",
        "",
        *_implementation_lines(impls, unavailable, bool(minibatch)),
    ]
    if rows:
        out += _seconds_table(rows, impls, results, notes)
        out += _speedup_table(rows, impls, results)
    out += extra_sections(impls, layouts, results, minibatch, opened, open_count, notes, anndata)
    return "\n".join(out) + "\n"


def _implementation_lines(impls: list[Impl], unavailable: dict[str, str], minibatch: bool) -> list[str]:
    """One line per implementation: what was run, or why it could not be."""
    out = []
    for impl in impls:
        if isinstance(impl, ZarrPipelineImpl):
            where = impl.path
        elif isinstance(impl, TensorstoreImpl):
            where = "tensorstore.open (zarr3 driver)"
        elif isinstance(impl, DirectImpl):
            where = "zarrs_cffi.Array (region reads; oindex by row blocks, no vindex)"
        else:
            where = (
                f"zarrs {impl.zarrs_version} from Rust, zarrs-ffi/examples/bench_zarrs.rs (timed inside the "
                "binary; oindex by row blocks and vindex by chunk, small reads and oindex through zarrs' "
                "shard index cache; its FilesystemStore fsyncs each chunk it writes)"
            )
        status = f"unavailable: {unavailable[impl.key]}" if impl.key in unavailable else where
        out.append(f"- {impl.label}: {status}")
    fancy = any(op in settings.SELECTED_OPERATIONS for op in ("oindex", "vindex")) or minibatch
    if fancy and "zarrs-python" in {i.key for i in impls}:
        out.append(
            "- zarrs-python has no native oindex/vindex: those cells (and the mini-batch rows) time its "
            "fallback to zarr's pipeline (`codec_pipeline.strict` off for them only)"
        )
    return out


def _seconds_table(
    rows: list[tuple[Layout, str]], impls: list[Impl], results: dict[tuple[str, str, str], Cell], notes: Notes
) -> list[str]:
    def seconds(layout: Layout, operation: str, impl: Impl) -> str:
        return notes.cell(results[layout.name, operation, impl.key], f"{layout.name} / {operation} / {impl.label}")

    return ["", "## Seconds (lower is better)", "", *markdown_table(
        ["layout", "operation", *(impl.label for impl in impls)],
        [[layout.name, op, *(seconds(layout, op, impl) for impl in impls)] for layout, op in rows],
    )]


def _speedup_table(
    rows: list[tuple[Layout, str]], impls: list[Impl], results: dict[tuple[str, str, str], Cell]
) -> list[str]:
    """time(Batched) / time(impl) for every other implementation; ours against zarrs-python,
    and how close it comes to zarrs called from Rust, when both ran."""
    out = ["", "## Speed-up over zarr BatchedCodecPipeline (time(Batched) / time(impl), higher is faster)", ""]
    keys = [impl.key for impl in impls]
    others = [impl for impl in impls if impl.key != "batched"]
    pair = "zarrs-python" in keys and "ours" in keys
    rust_pair = "zarrs-rust" in keys and "ours" in keys
    if "batched" not in keys or not (others or pair):
        return out + ["(needs `batched` and at least one other implementation in --impl)"]

    def ratio(layout: Layout, operation: str, numerator: str, denominator: str) -> str:
        return _ratio(results[layout.name, operation, numerator], results[layout.name, operation, denominator])

    header = ["layout", "operation", *(impl.label for impl in others)]
    header += (["ours vs zarrs-python"] if pair else []) + (["ours vs zarrs (Rust)"] if rust_pair else [])
    table = [
        [layout.name, op, *(ratio(layout, op, "batched", impl.key) for impl in others)]
        + ([ratio(layout, op, "zarrs-python", "ours")] if pair else [])
        + ([ratio(layout, op, "zarrs-rust", "ours")] if rust_pair else [])
        for layout, op in rows
    ]
    return out + markdown_table(header, table)


def extra_sections(
    impls: list[Impl],
    layouts: list[Layout],
    results: dict[tuple[str, str, str], Cell],
    minibatch: dict[tuple[str, str, str], Cell] | None,
    opened: dict[str, Cell] | None,
    open_count: int,
    notes: Notes,
    anndata: dict[tuple[str, str], Cell] | None = None,
) -> list[str]:
    """Peak memory, mini-batch, open and anndata tables, then the problem notes of the whole report."""
    out = _memory_table(impls, layouts, results, notes)
    if minibatch:
        out += _minibatch_tables(impls, minibatch, notes)
    if opened:
        out += ["", f"## Open {open_count} small arrays (seconds, lower is better)", ""]
        out += markdown_table(
            [impl.label for impl in impls],
            [[notes.cell(opened.get(impl.key, Cell("n/a")), f"open / {impl.label}") for impl in impls]],
        )
    out += _anndata_tables(impls, anndata, notes)
    if notes.lines:
        out += ["", "## Problems", "", *notes.lines]
    return out


def _memory_table(
    impls: list[Impl], layouts: list[Layout], results: dict[tuple[str, str, str], Cell], notes: Notes
) -> list[str]:
    if not any((layout.name, "peak_memory", impl.key) in results for layout in layouts for impl in impls):
        return []

    def peak(layout: Layout, impl: Impl) -> str:
        cell = results.get((layout.name, "peak_memory", impl.key), Cell("n/a"))
        return notes.cell(cell, f"{layout.name} / peak memory / {impl.label}", "{:.2f}x")

    return [
        "",
        "## Peak memory of a write-then-read roundtrip (multiple of the array's bytes, lower is better)",
        "",
        "Peak RSS above the RSS once the source array is loaded, in a fresh process per cell.",
        "",
        *markdown_table(
            ["layout", *(impl.label for impl in impls)],
            [[layout.name, *(peak(layout, impl) for impl in impls)] for layout in layouts],
        ),
    ]


def _minibatch_tables(impls: list[Impl], minibatch: dict[tuple[str, str, str], Cell], notes: Notes) -> list[str]:
    """ms per batch for each layout and reader count; with two reader counts, the scaling."""
    labels = [impl.label for impl in impls]
    keys = sorted({(name, readers) for name, readers, _ in minibatch}, key=lambda k: (k[0], int(k[1].split()[0])))

    def per_batch(name: str, readers: str, impl: Impl) -> str:
        cell = minibatch.get((name, readers, impl.key), Cell("n/a"))
        return notes.cell(cell, f"mini-batch {name} / {readers} / {impl.label}", "{:.2f}", 1e3)

    out = ["", "## Mini-batch loader (ms per batch, lower is better)", ""]
    out += markdown_table(
        ["layout", "readers", *labels],
        [[name, readers, *(per_batch(name, readers, impl) for impl in impls)] for name, readers in keys],
    )
    names = sorted({name for name, _ in keys})
    counts = sorted({readers for _, readers in keys}, key=lambda r: int(r.split()[0]))
    if len(counts) == 2:
        one, many = counts
        out += ["", f"### Scaling: time with {one} / time with {many} (higher is better)", ""]
        out += markdown_table(
            ["layout", *labels],
            [[name, *(_ratio(minibatch.get((name, one, impl.key)), minibatch.get((name, many, impl.key)))
                      for impl in impls)] for name in names],
        )
    return out


def _anndata_tables(impls: list[Impl], anndata: dict[tuple[str, str], Cell] | None, notes: Notes) -> list[str]:
    missing = anndata.get(("unavailable", "")) if anndata else None
    if missing:
        return ["", "## anndata", "", f"unavailable: {missing.detail}"]
    if not anndata:
        return []
    out = ["", "## anndata (seconds, lower is better)", ""]
    if "zarrs-python" in {impl.key for impl in impls}:
        out += [
            "zarrs-python has no variable-length strings: its cells time it with its fallback to zarr's "
            "pipeline for those arrays (`codec_pipeline.strict` off), as anndata itself runs it.",
            "",
        ]
    out += markdown_table(
        ["operation", *(impl.label for impl in impls)],
        [
            [op, *(notes.cell(anndata.get((op, impl.key), Cell("n/a")), f"anndata {op} / {impl.label}") for impl in impls)]
            for op in ANNDATA_OPERATIONS
        ],
    )
    others = [impl for impl in impls if impl.key != "batched" and isinstance(impl, ZarrPipelineImpl)]
    if "batched" in {impl.key for impl in impls} and others:
        out += ["", "### Speed-up over zarr Batched (time(Batched) / time(impl), higher is faster)", ""]
        out += markdown_table(
            ["operation", *(impl.label for impl in others)],
            [[op, *(_ratio(anndata.get((op, "batched")), anndata.get((op, impl.key))) for impl in others)]
             for op in ANNDATA_OPERATIONS],
        )
    return out
