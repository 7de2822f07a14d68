"""Result arrays of the direct API, from a small pool of reused buffers.

A read that returns a new array of a few hundred KiB or more would otherwise get it from
``malloc``, which for such sizes often maps fresh pages and unmaps them at ``free``
(glibc's mmap and trim thresholds): every read then pays a page fault per 4 KiB it writes,
as much as the decode itself for a 1 MiB chunk (benchmarks/RESULTS.md). Here a result is a
view of a buffer the pool keeps (``empty``); once nothing outside the pool refers to that
buffer any more (the result and every view, memoryview or array made from it are gone) it
is handed out again. Whether anything still refers to it is read from its reference count,
so a buffer is never reused while any object can reach its memory; without a GIL
(free-threaded builds), where reference counts are not exact, there is no pool.

The pool keeps at most ``budget()`` bytes (``zarrs_cffi.result_pool_bytes``) of buffers (in use or idle); beyond it, and for
results under ``SMALL`` bytes, results are plain ``numpy.empty`` arrays.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

__all__ = ["SMALL", "budget", "empty", "result_pool_bytes", "set_budget"]

#: Results smaller than this come from numpy directly: malloc reuses such blocks.
SMALL = 1 << 18
_DEFAULT_BUDGET = 64 << 20

_lock = threading.Lock()
_buffers: list[np.ndarray[Any, Any]] = []
_held = 0
_budget = _DEFAULT_BUDGET if getattr(sys, "_is_gil_enabled", lambda: True)() else 0


def _count(buffer: np.ndarray[Any, Any]) -> int:
    return sys.getrefcount(buffer)


def _calibrate() -> int:
    # The references to a buffer that only the pool holds, counted as every check below
    # counts them (a loop over a list of buffers, then ``_count``): the list's slot, the
    # loop variable, ``_count``'s argument and getrefcount's own, as this interpreter
    # counts them.
    probe = [np.empty(1, dtype=np.uint8)]
    for buffer in probe:
        return _count(buffer)
    raise AssertionError("unreachable")


_ALONE = _calibrate()


def budget() -> int:
    """The most bytes the pool keeps."""
    return _budget


def set_budget(nbytes: int) -> None:
    """Keep at most ``nbytes`` of result buffers (0: no pool); idle ones beyond it are
    let go now."""
    global _budget
    if not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"the result pool's budget must be a non-negative int, not {nbytes!r}")
    with _lock:
        _budget = nbytes if getattr(sys, "_is_gil_enabled", lambda: True)() else 0
        _let_go(0)


def result_pool_bytes(nbytes: int | None = None) -> int:
    """The most bytes of buffers the direct API keeps for its result arrays (64 MiB by
    default), after setting it to ``nbytes`` if given; 0 turns the pool off.

    ``zarrs_cffi.Array`` returns reads of 256 KiB or more as views of buffers it reuses
    once nothing refers to them any more, so repeated reads do not pay the kernel's page
    faults for fresh memory. The memory of idle buffers stays with the process, up to
    this budget.
    """
    if nbytes is not None:
        set_budget(nbytes)
    return budget()


def empty(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, from the pool when
    it is large enough to be worth it."""
    global _held
    nbytes = dtype.itemsize
    for extent in shape:
        nbytes *= extent
    if nbytes < SMALL or nbytes > _budget or dtype.hasobject:
        return np.empty(shape, dtype=dtype)
    with _lock:
        found = _idle(nbytes)
        if found is not None:
            return found.view(dtype).reshape(shape)
        if _held + nbytes > _budget:
            _let_go(nbytes)
            if _held + nbytes > _budget:
                return np.empty(shape, dtype=dtype)
        fresh = np.empty(nbytes, dtype=np.uint8)
        _buffers.append(fresh)
        _held += nbytes
        return fresh.view(dtype).reshape(shape)


def _idle(nbytes: int) -> np.ndarray[Any, Any] | None:
    """An idle buffer of exactly ``nbytes``, if the pool has one (under ``_lock``)."""
    for buffer in _buffers:
        if buffer.nbytes == nbytes and _count(buffer) <= _ALONE:
            return buffer
    return None


def _let_go(room: int) -> None:
    """Drop idle buffers, oldest first, until ``room`` more bytes fit the budget (under
    ``_lock``)."""
    global _held
    idle = []
    # By index: enumerate's reused result tuple would hold one more reference.
    for index in range(len(_buffers)):
        if _held + room <= _budget:
            break
        buffer = _buffers[index]
        if _count(buffer) <= _ALONE:
            idle.append(index)
            _held -= buffer.nbytes
    for index in reversed(idle):
        del _buffers[index]
