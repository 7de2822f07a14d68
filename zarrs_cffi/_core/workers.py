"""Worker threads that run the pipeline's blocking work off zarr's event loop.

zarr runs every read and write on one event-loop thread, so anything that takes time there
(a native call, a store's synchronous I/O, a numpy loop over chunks) stalls every other
coroutine: concurrent reads would run one after another. ``run`` hands a function to a
worker thread and returns a future the loop awaits.

It is cheaper than ``asyncio.to_thread`` (which small reads notice): no context copy, no
``concurrent.futures.Future`` chained to an asyncio one; a job is one ``SimpleQueue.put``
and its completion one ``loop.call_soon_threadsafe``. The functions run here never read
context variables (zarr's config is process-wide, not a context variable).

The pool is per process: it is keyed by ``os.getpid()``, so a forked child (multiprocessing,
data-loader workers) starts its own instead of queueing jobs for threads that did not survive
the fork. Threads start on demand up to a bound, and never while a lock is held.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["run"]

# Workers mostly wait (in native calls with the GIL released, or for store I/O), so there
# may be more of them than CPUs; concurrent.futures' default bound.
MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)

_names = itertools.count()


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class _Pool:
    """Threads taking jobs from one queue; started on demand, kept for the process."""

    __slots__ = ("_idle", "_jobs", "_limit", "_lock", "_threads", "pid")

    def __init__(self, limit: int) -> None:
        self.pid = os.getpid()
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job and not yet claimed by a submit
        self._threads = 0
        self._limit = limit

    def submit(self, job: tuple[Any, ...]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                spawn = False
            else:
                spawn = self._threads < self._limit
                if spawn:
                    self._threads += 1
        if spawn:
            # Started outside the lock: a fork while another thread is inside it must not
            # leave the child with a lock nobody will release.
            try:
                threading.Thread(target=self._work, name=f"zarrs-cffi-{next(_names)}", daemon=True).start()
            except BaseException:
                with self._lock:
                    self._threads -= 1
                if not self._threads:
                    raise  # no worker would ever take the job
        self._jobs.put(job)

    def _work(self) -> None:
        jobs = self._jobs
        lock = self._lock
        while True:
            outcome = _call(*jobs.get())
            with lock:
                self._idle += 1
            _hand_back(*outcome)
            # Nothing of the job stays referenced while this worker waits for the next one
            # (buffers are freed now); the loop, just woken, gets the GIL at the next get().
            del outcome


def _call(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], function: Any, args: Any) -> tuple[Any, ...]:
    try:
        return loop, _succeed, future, function(*args)
    except BaseException as exc:  # noqa: BLE001 - raised by the awaiting coroutine
        return loop, _fail, future, exc


def _hand_back(loop: asyncio.AbstractEventLoop, callback: Any, future: asyncio.Future[Any], value: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, future, value)
    except RuntimeError:
        pass  # the loop was closed while the job ran: nobody is waiting


_pool: _Pool | None = None


def run(function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """Run ``function(*args)`` on a worker thread; await the result on the running loop."""
    global _pool
    pool = _pool
    if pool is None or pool.pid != os.getpid():
        # First use in this process (a forked child included). Two threads racing here
        # each start a pool; the loser's workers still finish its jobs.
        pool = _pool = _Pool(MAX_WORKERS)
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    pool.submit((loop, future, function, args))
    return future
