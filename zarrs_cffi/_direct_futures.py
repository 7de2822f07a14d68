"""The direct API's calls that return before they finish: ``Array.read_future``'s and
``write_future``'s ``concurrent.futures.Future``s, and the cancellation rule every
asynchronous call keeps.

A region read or a gather (an ``oindex`` or ``vindex`` selection that is one native gather)
is started natively on one completion queue per process (``ArrayHandle.read_chunks_start``,
``gather_orthogonal_start``, ``gather_points_start``) and finished on the library's reading
threads; one Python thread per process (not per call) waits on the queue's descriptor and
completes the futures. Such a future is running from the start, so ``cancel()`` is refused:
the native side writes into the result buffer until it completes. Anything else (writes,
selections that are no one gather, variable-length types) runs on a small pool of threads
shared by the process, whose futures can be cancelled only before they start.

The same rule for ``await``: a cancelled ``read_async`` or ``write_async`` raises
``CancelledError`` only once the native side is done with the caller's buffers
(``settled``), so a caller that reuses ``out`` or ``value`` after the cancellation never
races a write into it or a read from it. Per-process state is keyed by pid: a forked child
starts its own queue, thread and pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import select
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from ._bindings import CompletionQueue
from ._core import workers
from .errors import ZarrsUnsupportedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._bindings import ArrayHandle, ChunkBatch, Options

__all__ = ["run_future", "settled", "start_native", "start_region"]


class _Completer:
    """One process's completion queue and the thread that completes its futures."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue = CompletionQueue()
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        #: token -> (future, what to set it to, everything the native read uses until it completes)
        self._pending: dict[int, tuple[Future[Any], Callable[[], Any], tuple[Any, ...]]] = {}
        self._thread = threading.Thread(target=self._run, name="zarrs-cffi-completions", daemon=True)
        self._thread.start()

    def submit(self, start: Callable[[CompletionQueue, int], None], keep: tuple[Any, ...], finish: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        token = next(self._tokens)
        with self._lock:  # before the start: the call may finish before start returns
            self._pending[token] = (future, finish, keep)
        try:
            start(self.queue, token)
        except BaseException:
            with self._lock:
                self._pending.pop(token, None)
            raise
        return future

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.queue.fd, select.POLLIN)
        while True:
            poller.poll()
            self._drain()

    def _drain(self) -> None:
        queue = self.queue
        while True:
            done = queue.drain()
            for token, code in done:
                error = queue.error(token) if code else None
                with self._lock:
                    entry = self._pending.pop(token, None)
                if entry is None:
                    continue
                future, finish, _ = entry
                if error is not None:
                    future.set_exception(error)
                    continue
                try:
                    future.set_result(finish())
                except BaseException as exc:  # noqa: BLE001 - the caller's to see
                    future.set_exception(exc)
            if len(done) < queue.CAPACITY:
                return


_completer: _Completer | None = None
_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_start_lock = threading.Lock()
_supported = True
# A parent's completer and pool inherited through a fork: never used in the child.
_inherited: list[Any] = []


def _completer_here() -> _Completer | None:
    global _completer, _supported
    completer = _completer
    if completer is not None and completer.pid == os.getpid():
        return completer
    if not _supported:
        return None
    with _start_lock:
        if _completer is not None and _completer.pid != os.getpid():
            _inherited.append(_completer)
            _completer = None
        if _completer is None:
            try:
                _completer = _Completer()
            except ZarrsUnsupportedError:  # no descriptor on this platform
                _supported = False
                return None
            except OSError:  # no poll on this platform
                _supported = False
                return None
        return _completer


def start_region(
    native: ArrayHandle, options: Options, batch: ChunkBatch, out: np.ndarray[Any, Any], finish: Callable[[], Any]
) -> Future[Any]:
    """Start reading a region's ``batch`` into ``out``; a future of ``finish()``, set by the
    completion thread once the native read is done (on the pool where the platform has no
    completion descriptor)."""
    present = np.zeros(len(batch), dtype=np.uint8)
    return start_native(
        lambda queue, token: native.read_chunks_start(queue, token, options, batch, out, present),
        (native, options, batch, out, present),
        finish,
        lambda: native.read_chunks(options, batch, out),
    )


def start_native(
    start: Callable[[CompletionQueue, int], None],
    keep: tuple[Any, ...],
    finish: Callable[[], Any],
    blocking: Callable[[], Any],
) -> Future[Any]:
    """``start`` a native call on the process's completion queue: a future of ``finish()``,
    set by the completion thread once the call is done. ``keep`` holds everything the native
    side uses until then (the handle, the buffers it writes). Where the platform has no
    completion descriptor: ``blocking()`` then ``finish()`` on the pool. Argument errors of
    ``start`` raise here."""
    completer = _completer_here()
    if completer is None:
        return run_future(lambda: (blocking(), finish())[1])
    return completer.submit(start, keep, finish)


def run_future(function: Callable[..., Any], *args: Any) -> Future[Any]:
    """``function(*args)`` on the process's shared pool, as a future."""
    global _executor, _executor_pid
    with _start_lock:
        if _executor is None or _executor_pid != os.getpid():
            if _executor is not None:
                _inherited.append(_executor)
            _executor = ThreadPoolExecutor(max_workers=workers.MAX_WORKERS, thread_name_prefix="zarrs-cffi-direct")
            _executor_pid = os.getpid()
        executor = _executor
    return executor.submit(function, *args)


async def settled(awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable``; when the awaiting task is cancelled, raise ``CancelledError``
    only after it has finished, since until then the native side may still read or write
    the caller's buffers."""
    future = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what the caller sees
        raise
