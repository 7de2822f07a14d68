"""The layouts section: every selected operation of every implementation on one layout's
array (``bench_layout``), each result checked against the source data.

Python implementations are timed here, best of the repeats; the Rust binary times itself
(``measure_rust_layout``) and its results are checked here like the others'.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import settings, stores
from .cells import Cell, describe, guarded, log_cell
from .data import Layout, fancy_selections, random_boxes, same, source_file
from .impls import Impl, PyImpl, RustImpl, row_block
from .memory import measure_memory
from .settings import BOX_SIDE, REFERENCE_CONFIG, log


def bench_layout(
    layout: Layout,
    impls: list[Impl],
    data: np.ndarray,
    workdir: Path,
    *,
    repeat: int,
    small_repeat: int,
    n_small: int,
    memory: bool = False,
) -> dict[tuple[str, str], Cell]:
    """Run every operation of every implementation on one layout; keys are (operation, impl key)."""
    ref_path = workdir / f"{layout.name}-reference"
    with zarr.config.set(REFERENCE_CONFIG):
        reference = stores.create_zarr_array(ref_path, layout, data.shape)
        reference[:] = data
        stores.STORE.finish(reference.store)
        del reference
    metadata = stores.STORE.metadata(ref_path)
    boxes = random_boxes(data.shape[0], n_small)

    results: dict[tuple[str, str], Cell] = {}
    for impl in impls:
        own_path = workdir / f"{layout.name}-{impl.key}"
        if isinstance(impl, RustImpl):
            cells = measure_rust_layout(
                impl, layout, ref_path, own_path, metadata, data, boxes, repeat, small_repeat, workdir
            )
            for operation, cell in cells.items():
                log_cell(layout.name, operation, impl, cell)
        else:
            with impl.session():  # logs each cell as it is measured
                cells = _measure_python_layout(
                    impl, layout, ref_path, own_path, metadata, data, boxes, repeat, small_repeat
                )
        results.update({(operation, impl.key): cell for operation, cell in cells.items()})
        stores.STORE.remove(own_path)
    if memory:
        results.update(_memory_cells(layout, impls, data, workdir, metadata))
    stores.STORE.remove(ref_path)
    return results


def _measure_python_layout(
    impl: PyImpl, layout: Layout, ref_path: Path, own_path: Path, metadata: dict, data: np.ndarray,
    boxes: list[tuple[slice, ...]], repeat: int, small_repeat: int,
) -> dict[str, Cell]:
    """The selected operations of one implementation driven from this process; writes go to
    its own array, reads come from the reference array."""
    steps = {
        "write_all": partial(measure_write_all, impl, own_path, layout, metadata, data, repeat),
        "read_all": partial(measure_read_all, impl, ref_path, data, repeat),
        "small_reads": partial(measure_small_reads, impl, ref_path, data, boxes, small_repeat),
        "oindex": partial(measure_fancy, impl, ref_path, data, "oindex", repeat),
        "vindex": partial(measure_fancy, impl, ref_path, data, "vindex", repeat),
    }
    cells: dict[str, Cell] = {}
    for operation, step in steps.items():
        if operation not in settings.SELECTED_OPERATIONS:
            continue
        os.sync()
        cells[operation] = guarded(step)
        gc.collect()
        log_cell(layout.name, operation, impl, cells[operation])
    return cells


def _memory_cells(
    layout: Layout, impls: list[Impl], data: np.ndarray, workdir: Path, metadata: dict
) -> dict[tuple[str, str], Cell]:
    """Peak memory of every implementation on this layout (``memory.measure_memory``)."""
    cells: dict[tuple[str, str], Cell] = {}
    for impl in impls:
        cell = guarded(partial(measure_memory, impl, layout, data, workdir, metadata))
        cells["peak_memory", impl.key] = cell
        if cell.status == "ok":
            log.info("  %-12s %-11s %-17s %8.2fx the array", layout.name, "peak_memory", impl.label, cell.seconds)
        else:
            log_cell(layout.name, "peak_memory", impl, cell)
    return cells


def measure_rust_layout(
    impl: RustImpl,
    layout: Layout,
    ref_path: Path,
    own_path: Path,
    metadata: dict,
    data: np.ndarray,
    boxes: list[tuple[slice, ...]],
    repeat: int,
    small_repeat: int,
    workdir: Path,
) -> dict[str, Cell]:
    """Every selected operation of one layout in one run of the Rust binary, each result
    checked here against the source data."""
    operations = settings.SELECTED_OPERATIONS
    outputs = workdir / "zarrs-rust-out"
    outputs.mkdir(exist_ok=True)
    job = {
        "mode": "bench",
        "source": str(source_file(data, workdir)),
        "reference": str(ref_path),
        "target": str(own_path),
        "outputs": str(outputs),
        "metadata": metadata,
        "operations": list(operations),
        "repeat": repeat,
        "small_repeat": small_repeat,
        **_rust_selections(data, boxes, metadata),
    }
    try:
        report = impl.run(job, workdir)
    except Exception as exc:  # the whole layout's cells become errors
        return {op: Cell("error", detail=describe(exc)) for op in operations}
    check = partial(_check_rust_result, report, own_path, outputs, data, boxes)
    return {operation: guarded(partial(check, operation)) for operation in operations}


def _rust_selections(data: np.ndarray, boxes: list[tuple[slice, ...]], metadata: dict) -> dict[str, Any]:
    """The boxes, rows and points the Python implementations read, for the binary's job."""
    rows, points = fancy_selections(data.shape[0])
    return {
        "box_shape": [BOX_SIDE] * data.ndim,
        "boxes": [[s.start for s in box] for box in boxes],
        "rows": rows.tolist(),
        "row_block": row_block(metadata),
        "points": [axis.tolist() for axis in points],
    }


def _check_rust_result(
    report: dict[str, Any], own_path: Path, outputs: Path, data: np.ndarray, boxes: list[tuple[slice, ...]],
    operation: str,
) -> Cell:
    """The binary's time for ``operation`` if its result (a file it wrote, or the array it
    wrote, read back with zarr's pipeline) equals the source."""
    outcome = report["results"].get(operation, {"error": "not reported"})
    if "error" in outcome:
        return Cell("error", detail=str(outcome["error"])[:300])
    if operation == "write_all":
        ok = same(stores.read_with_reference(own_path), data)
        stores.STORE.remove(own_path)
        detail = "array read back with BatchedCodecPipeline differs from source"
    else:
        rows, points = fancy_selections(data.shape[0])
        expected = {
            "read_all": lambda: data,
            "small_reads": lambda: np.concatenate([data[box].ravel() for box in boxes]),
            "oindex": lambda: data[rows],
            "vindex": lambda: data[points],
        }[operation]()
        out = outputs / f"{operation}.bin"
        result = np.fromfile(out, dtype=data.dtype)
        out.unlink()
        ok = result.size == expected.size and same(result.reshape(expected.shape), expected)
        detail = f"{operation} result differs from source"
    return Cell("ok", outcome["seconds"]) if ok else Cell("MISMATCH", detail=detail)


def measure_write_all(
    impl: PyImpl,
    path: Path,
    layout: Layout,
    metadata: dict,
    data: np.ndarray,
    repeat: int,
) -> Cell:
    best = math.inf
    for _ in range(repeat):
        stores.STORE.remove(path)
        array = impl.create(path, layout, data.shape, metadata)
        os.sync()  # don't bill the writeback of earlier steps to this write
        start = time.perf_counter()
        impl.write_all(array, data)
        best = min(best, time.perf_counter() - start)
        del array
    written = stores.read_with_reference(path)
    ok = same(written, data)
    del written
    stores.STORE.remove(path)
    if not ok:
        return Cell(
            "MISMATCH",
            detail="array read back with BatchedCodecPipeline differs from source",
        )
    return Cell("ok", best)


def measure_read_all(impl: PyImpl, path: Path, data: np.ndarray, repeat: int) -> Cell:
    array = impl.open(path)
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = impl.read_all(array)
        elapsed = time.perf_counter() - start
        ok = same(result, data)
        del result
        if not ok:
            return Cell("MISMATCH", detail="read_all result differs from source")
        best = min(best, elapsed)
    return Cell("ok", best)


def measure_small_reads(
    impl: PyImpl,
    path: Path,
    data: np.ndarray,
    boxes: list[tuple[slice, ...]],
    repeat: int,
) -> Cell:
    array = impl.open(path)
    # Untimed first read: one-off setup (thread pools, lazy initialisation) is
    # not part of the per-read cost being measured.
    impl.read_box(array, boxes[0])
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        results = [impl.read_box(array, box) for box in boxes]
        elapsed = time.perf_counter() - start
        bad = sum(
            not same(result, data[box])
            for result, box in zip(results, boxes, strict=True)
        )
        if bad:
            return Cell(
                "MISMATCH", detail=f"{bad} of {len(boxes)} boxes differ from source"
            )
        best = min(best, elapsed)
    return Cell("ok", best)


def measure_fancy(
    impl: PyImpl, path: Path, data: np.ndarray, kind: str, repeat: int
) -> Cell:
    """oindex or vindex reads: best of `repeat`, after one untimed read."""
    rows, points = fancy_selections(data.shape[0])
    with contextlib.ExitStack() as stack:
        if impl.key == "zarrs-python":
            # zarrs-python cannot run these natively; what its users get is its fallback
            # to zarr's pipeline, so that is what is timed (noted in the report).
            stack.enter_context(zarr.config.set({"codec_pipeline.strict": False}))
        return _measure_fancy(impl, path, data, kind, repeat, rows, points)


def _measure_fancy(
    impl: PyImpl, path: Path, data: np.ndarray, kind: str, repeat: int, rows: np.ndarray, points: tuple[np.ndarray, ...]
) -> Cell:
    array = impl.open(path)
    if kind == "oindex":
        read, expected = partial(impl.read_oindex, array, rows), data[rows]
    else:
        read, expected = partial(impl.read_vindex, array, points), data[points]
    read()
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = read()
        elapsed = time.perf_counter() - start
        if not same(result, expected):
            return Cell("MISMATCH", detail=f"{kind} result differs from source")
        best = min(best, elapsed)
    return Cell("ok", best)

