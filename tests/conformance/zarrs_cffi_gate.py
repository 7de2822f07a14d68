"""A pytest plugin for every test run of zarrs_cffi: native-path accounting and a break switch.

Loaded by ``tests/conftest.py`` for our own tests and with ``-p zarrs_cffi_gate`` by
``run_zarr_suite.py`` for zarr's suite. It is test-only code: the package knows nothing of it.

- ``ZARRS_CFFI_STATS_DIR``: at the end of the session each process (every xdist worker too)
  writes its ``zarrs_cffi.stats()`` there as ``stats-<pid>.json``, so the runner can prove how
  much of a suite really ran natively; the controlling process also writes ``results.json``,
  every test's outcome and, for failures, the exception that ended it (``crash``), so the
  runner never has to parse pytest's terminal output.
- ``ZARRS_CFFI_BREAK``: break the pipeline on purpose, to show that the gates catch it:
  ``fallback`` makes every array refuse the native route (as if ``open_record`` failed);
  ``corrupt`` flips one byte of every native read's output. Unset in normal runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

BREAK_ENV = "ZARRS_CFFI_BREAK"
STATS_ENV = "ZARRS_CFFI_STATS_DIR"
_applied = False


def _corrupting(method: Any, buffer_index: int) -> Any:
    """``method`` with one byte of its output buffer (positional ``buffer_index``) flipped."""
    import numpy as np

    def call(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        buffer = args[buffer_index]
        if isinstance(buffer, np.ndarray) and buffer.nbytes:
            raw = buffer.reshape(-1).view(np.uint8)
            raw[raw.size // 2] ^= 0x5A
        return result

    return call


def apply_break_switch() -> None:
    """Install the breakage ``ZARRS_CFFI_BREAK`` asks for (once per process)."""
    global _applied
    mode = os.environ.get(BREAK_ENV, "")
    if _applied or not mode:
        return
    _applied = True
    from zarrs_cffi import _bindings
    from zarrs_cffi._core.fallback import fall_back
    from zarrs_cffi._pipeline import opening

    if mode == "fallback":

        def refuse(*args: Any, **kwargs: Any) -> Any:
            fall_back("codec", f"broken on purpose ({BREAK_ENV}=fallback)")

        opening.open_record = refuse
    elif mode == "corrupt":
        native = _bindings.ArrayHandle
        # read_chunks(self, options, chunks, out); decode_chunks(self, options, chunks, encoded, out)
        native.read_chunks = _corrupting(native.read_chunks, 3)  # type: ignore[method-assign]
        native.decode_chunks = _corrupting(native.decode_chunks, 4)  # type: ignore[method-assign]
    else:
        raise ValueError(f"{BREAK_ENV}={mode!r}: expected 'fallback' or 'corrupt'")


_results: dict[str, dict[str, str]] = {}
_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "xpassed": 2, "failed": 3, "error": 3}


def pytest_configure(config: Any) -> None:
    apply_break_switch()


def pytest_runtest_logreport(report: Any) -> None:
    """Keep each test's worst outcome (setup, call, teardown) and what ended a failure."""
    if report.passed and report.when != "call" and not hasattr(report, "wasxfail"):
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"
    else:
        outcome = "skipped" if report.skipped else "passed"
    previous = _results.get(report.nodeid)
    if previous is not None and _RANK[previous["outcome"]] >= _RANK[outcome]:
        return
    entry = {"outcome": outcome}
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        entry["crash"] = crash.message.splitlines()[0] if crash is not None and crash.message else str(report.longrepr)[-300:]
    _results[report.nodeid] = entry


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    directory = os.environ.get(STATS_ENV)
    if not directory:
        return
    import zarrs_cffi

    if not hasattr(session.config, "workerinput"):  # the controller (or the only process)
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "results.json").write_text(json.dumps(_results))

    s = zarrs_cffi.stats()
    record = {
        "native_reads": s.native_reads,
        "native_writes": s.native_writes,
        "python_io_reads": s.python_io_reads,
        "python_io_writes": s.python_io_writes,
        "fallback_reads": s.fallback_reads,
        "fallback_writes": s.fallback_writes,
        "fallback_reasons": dict(s.fallback_reasons),
    }
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / f"stats-{os.getpid()}.json").write_text(json.dumps(record))
