"""One measured result (``Cell``): a time, or why there is none; and the guard that turns
any failure of an implementation into a cell instead of ending the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .settings import log

class NotApplicable(Exception):
    """An operation an implementation has no way to express (reported as n/a, not an error)."""

@dataclass(frozen=True)
class Cell:
    """One (layout, operation, implementation) result: a time, or why there is none."""

    status: str  # "ok", "MISMATCH", "error", "unavailable" or "n/a"
    seconds: float | None = None  # for peak memory: the multiple of the array's bytes
    detail: str = ""

def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]

def guarded(measure: Callable[[], Cell]) -> Cell:
    try:
        return measure()
    except NotApplicable as exc:
        return Cell("n/a", detail=str(exc))
    except Exception as exc:  # any failure of an implementation becomes a cell
        return Cell("error", detail=describe(exc))

def log_cell(layout: str, operation: str, impl: Any, cell: Cell) -> None:
    if cell.status == "ok":
        log.info("  %-12s %-11s %-17s %8.3f s", layout, operation, impl.label, cell.seconds)
    else:
        log.warning("  %-12s %-11s %-17s %s: %s", layout, operation, impl.label, cell.status, cell.detail)

