"""Preflight: keep a crashing implementation from taking the benchmark down.

Each implementation is imported and run once, small, in a child process first: native code
(a cdylib under development, loaded through cffi) can segfault, which no try/except would
catch.
"""

from __future__ import annotations

import multiprocessing
import signal
import tempfile
from pathlib import Path
from typing import Any

from . import stores
from .cells import describe
from .data import LAYOUTS, Layout, make_data
from .impls import IMPLS, Impl
from .layouts import bench_layout
from .settings import SMOKE_SIDE, SMOKE_TIMEOUT_S, log


def _smoke_run(impl_key: str, layout_names: list[str], store: str, conn: Any) -> None:
    """Child-process body of preflight(): import, then one small pass of the real benchmark."""
    stores.STORE = stores.STORE_KINDS[store]()
    impl = IMPLS[impl_key]
    try:
        impl.load()
    except Exception as exc:  # e.g. ImportError, or OSError from dlopen
        conn.send(describe(exc))
        return
    conn.send(None)
    log.disabled = True  # the main run reports any per-cell problem again
    data = make_data(SMOKE_SIDE)
    with tempfile.TemporaryDirectory() as tmp:
        for name in layout_names:
            # Python errors are ignored here: the main run reports them per cell.
            bench_layout(
                LAYOUTS[name],
                [impl],
                data,
                Path(tmp),
                repeat=1,
                small_repeat=1,
                n_small=2,
            )


def preflight(impl: Impl, layouts: list[Layout]) -> str | None:
    """Return why `impl` cannot be benchmarked, or None if it can.

    Runs in a child process because native code (a cdylib under development,
    loaded through cffi) can segfault, which no try/except would catch.
    """
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_smoke_run, args=(impl.key, [layout.name for layout in layouts], stores.STORE.name, sender)
    )
    child.start()
    sender.close()
    child.join(SMOKE_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join()
        return f"smoke run on {SMOKE_SIDE}^3 did not finish within {SMOKE_TIMEOUT_S} s"
    try:
        import_error = receiver.recv()
    except EOFError:  # the child died before reporting on the import
        import_error = None
    if import_error:
        return import_error
    if child.exitcode != 0:
        code = child.exitcode
        how = (
            f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        )
        return f"smoke run on {SMOKE_SIDE}^3 crashed ({how})"
    return None
