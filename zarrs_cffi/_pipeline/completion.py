"""Native asynchronous reads, completed on zarr's event loop through a file descriptor.

A small read handed to a Python worker (``workers.run``) pays for several wake-ups and
GIL hand-offs: the worker must take the GIL from the loop, and the loop must take it back
from the worker after ``call_soon_threadsafe`` (what that costs a small read:
benchmarks/RESULTS.md, §0c). Here
the loop thread starts the read natively (``ArrayHandle.read_chunks_start``: arguments are
checked and copied, nothing is read) and returns to its other work; one of the library's
reading threads reads, without the GIL, and signals a file descriptor the loop watches
(``loop.add_reader``). ``drain`` then resolves the awaiting future on the loop thread.
``StorageRoute.read`` uses it for small reads made while others are in flight on the loop
(``routes/storage.py``'s ``ASYNC_READ_ALONE`` says why not for a read alone); the direct
API starts its gathers on the same queue (``submit_start``).

One queue per (process, event loop): a forked child builds its own and never touches the
parent's. A read's handle, buffers and batch stay referenced until its token is drained,
also when the awaiting task was cancelled: the native side writes into them until then.
Where no queue can be had (no file descriptor on the platform, a loop without
``add_reader`` such as Windows' proactor loop), ``submit`` returns None and the caller
uses ``workers.run``. Nothing here blocks: every call returns at once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .._bindings import CompletionQueue
from ..errors import ZarrsUnsupportedError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._bindings import ArrayHandle, ChunkBatch, Options

__all__ = ["submit", "submit_start"]


class _LoopQueue:
    """One event loop's queue and the reads in flight on it."""

    __slots__ = ("_tokens", "loop", "pending", "queue")

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: CompletionQueue) -> None:
        self.loop = loop
        self.queue = queue
        self._tokens = itertools.count()
        #: token -> (future, everything the native read uses until it completes)
        self.pending: dict[int, tuple[asyncio.Future[list[bool]], tuple[Any, ...]]] = {}

    def submit(
        self, start: Callable[[CompletionQueue, int], None], keep: tuple[Any, ...]
    ) -> asyncio.Future[list[bool]]:
        token = next(self._tokens)
        future: asyncio.Future[list[bool]] = self.loop.create_future()
        start(self.queue, token)
        self.pending[token] = (future, keep)
        return future

    def drain(self) -> None:
        """Resolve every finished read (the loop's reader callback)."""
        queue = self.queue
        while True:
            done = queue.drain()
            for token, code in done:
                # The error is taken even when nobody awaits it: the native side keeps it
                # until then.
                error = queue.error(token) if code else None
                entry = self.pending.pop(token, None)
                if entry is None:
                    continue  # not ours (never expected): the other tokens still resolve
                future, keep = entry
                if future.done():  # the awaiting task was cancelled
                    continue
                if error is None:
                    future.set_result(keep[-1].view(np.bool_).tolist())
                else:
                    future.set_exception(error)
            if len(done) < queue.CAPACITY:
                return


# Per process: (pid, the loops' queues; None for a loop that cannot watch a descriptor).
_queues: dict[asyncio.AbstractEventLoop, _LoopQueue | None] = {}
_pid = os.getpid()
_supported = True
# Queues inherited through a fork: never drained, freed or unregistered in the child (the
# parent's loop and reading threads are not here; its reads may still write their buffers).
_inherited: list[Any] = []


def _reap() -> None:
    """Forget the queues of closed loops once their reads have finished (a read in flight
    when its loop closed keeps its queue, and its buffers, until then)."""
    for loop, entry in list(_queues.items()):
        if not loop.is_closed():
            continue
        if entry is not None:
            entry.drain()  # never blocks: only reads already finished are resolved
            if entry.pending:
                continue
        _queues.pop(loop, None)


def _queue_for(loop: asyncio.AbstractEventLoop) -> _LoopQueue | None:
    global _pid, _supported
    if os.getpid() != _pid:
        _inherited.append(list(_queues.items()))
        _queues.clear()
        _pid = os.getpid()
    _reap()
    if not _supported:
        return None
    try:
        queue = CompletionQueue()
    except ZarrsUnsupportedError:
        _supported = False
        return None
    created = _LoopQueue(loop, queue)
    entry: _LoopQueue | None = created
    try:
        loop.add_reader(queue.fd, created.drain)
    except NotImplementedError:
        entry = None  # the queue is freed now: nothing was started on it
    _queues[loop] = entry
    return entry


def submit(
    array: ArrayHandle, options: Options, batch: ChunkBatch, out: np.ndarray[Any, Any]
) -> asyncio.Future[list[bool]] | None:
    """Start reading ``batch`` into ``out``; a future for which chunks are stored, resolved
    on the running loop (or raising the native error). None: no queue on this loop or
    platform, use ``workers.run``. Argument errors raise here."""
    present = np.zeros(len(batch), dtype=np.uint8)
    return submit_start(
        lambda queue, token: array.read_chunks_start(queue, token, options, batch, out, present),
        (array, options, batch, out, present),
    )


def submit_start(start: Callable[[CompletionQueue, int], None], keep: tuple[Any, ...]) -> asyncio.Future[list[bool]] | None:
    """``start`` a native call on the running loop's queue (a gather's start, a batch
    read's); a future resolved on the loop when it is done: which chunks are stored, from the
    presence flags ``keep[-1]``, or the native error. ``keep`` holds everything the native side
    uses until then, its last item the presence flags it writes. None: no queue on this loop
    or platform. Argument errors raise here."""
    loop = asyncio.get_running_loop()
    try:
        entry = _queues[loop]
    except KeyError:
        entry = _queue_for(loop)
    else:
        if _pid != os.getpid():
            entry = _queue_for(loop)
    if entry is None:
        return None
    return entry.submit(start, keep)
