"""Per-key write locks: writers in one process never lose each other's updates.

Writing part of a chunk, or one inner chunk of a shard, is a read-modify-write of the stored
object: fetch its bytes, merge, store it whole. Two writers doing that to one key at once
each store their own merge, and one update is lost. Within a process, every write through
``ZarrsCodecPipeline`` and every write of ``zarrs_cffi.Array`` holds the keys it touches,
from the fetch to the store; writers of disjoint keys never wait for each other. Other
processes are not covered: between processes the stored object (a shard, else a chunk)
stays the unit of concurrent writing. Reads take no lock: a write replaces each object
whole, so a reader sees it old or new.

One table serves two kinds of waiter, because a direct-API writer and a pipeline writer can
touch the same key:

- the pipeline acquires on zarr's event loop (``Holding`` as an async context manager):
  its waiters are futures, woken with ``loop.call_soon_threadsafe``. It must never block
  the loop, nor a worker thread of ``workers.py`` (a pool of workers all waiting for keys
  held by writes that need a worker to finish would never finish), so keys are held
  around a route's whole write before it hands work to a worker;
- ``zarrs_cffi.Array``'s writes are synchronous and wait on their own thread
  (``Holding`` as a plain context manager).

A batch acquires its keys in sorted order, so two batches never wait for each other in a
cycle. A released key goes straight to its oldest waiter (FIFO, no barging); a waiter
cancelled before it runs passes its key on, and one cancelled while waiting leaves the
queue, so a cancelled write never leaves a key held. An uncontended batch takes the
table's mutex once and does one dict insertion per key.

A key names the stored object, not the store object, so two zarr stores (or a store and
``zarrs_cffi.Array``) over the same bytes share it (``store_prefix``):

- files (``LocalStore`` and its subclasses, fsspec's and obstore's local filesystems,
  ``zarrs_cffi.Array``): the resolved path of the file;
- ``MemoryStore``: the identity of the dict holding its values;
- other fsspec filesystems: the protocol and the path;
- anything else (``ZipStore``, third-party stores): the store object's identity.

zarr's ``WrapperStore``s (``LoggingStore``) are seen through to the store they wrap.

The table is per process (keyed by pid): a forked child starts with no key held, since the
threads that held its parent's keys do not exist there.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from zarr.abc.store import Store

__all__ = ["Holding", "file_prefix", "holding", "object_prefix", "store_prefix"]

#: Whether writes take their keys' locks. Off only to measure what the locks cost
#: (benchmarks/disjoint_writes.py); never a user setting, since off loses updates.
_ENABLED = True


class _Waiter:
    """One batch waiting for one key: a future on an event loop, or a blocked thread."""

    __slots__ = ("future", "granted", "lock", "loop", "stranded")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.granted = False  # set under the table's mutex when the key is handed over
        # Set under the mutex by whichever first finds the key granted to a closed loop
        # (the waker, or the waiter's coroutine finalised later); that one releases it.
        self.stranded = False
        if loop is None:
            self.future: asyncio.Future[None] | None = None
            # Held until the key is granted: the waiting thread blocks acquiring it again.
            self.lock: threading.Lock | None = threading.Lock()
            self.lock.acquire()
        else:
            self.future = loop.create_future()
            self.lock = None


class KeyLocks:
    """The process's table of held keys and their waiters.

    A key is held while it is in ``_queues``; its deque (None until someone waits) holds
    the waiters in arrival order. Ownership passes under ``_mutex``; waking the new owner
    happens after the mutex is released.
    """

    __slots__ = ("_mutex", "_queues", "abandoned", "pid")

    def __init__(self) -> None:
        self.pid = os.getpid()
        # Set in a forked child on its parent's table: the threads that held its keys are
        # gone, and its mutex may have been held at the fork.
        self.abandoned = False
        self._mutex = threading.Lock()
        self._queues: dict[str, deque[_Waiter] | None] = {}

    def _take(self, keys: list[str], start: int) -> int:
        """Under the mutex: take the free keys of ``keys[start:]`` in order, up to the first
        one held; its index (``len(keys)`` when all are taken)."""
        queues = self._queues
        for i in range(start, len(keys)):
            key = keys[i]
            if key in queues:
                return i
            queues[key] = None
        return len(keys)

    def _enqueue(self, key: str, waiter: _Waiter) -> None:
        queue = self._queues[key]
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(waiter)

    def _withdraw(self, key: str, waiter: _Waiter) -> bool:
        """Under the mutex: take ``waiter`` out of ``key``'s queue unless it was granted the
        key already; whether it was (then it owns the key)."""
        if waiter.granted:
            return True
        queue = self._queues[key]
        assert queue is not None
        queue.remove(waiter)
        return False

    async def acquire(self, keys: list[str]) -> None:
        """Hold every key of ``keys`` (sorted, distinct), waiting on the running loop."""
        got = self._try(keys)
        if got == len(keys):
            return
        loop = asyncio.get_running_loop()
        waiter: _Waiter | None = None
        waiting = -1  # the index of the key ``waiter`` waits for
        try:
            while got < len(keys):
                with self._mutex:
                    got = self._take(keys, got)
                    if got == len(keys):
                        break
                    waiter, waiting = _Waiter(loop), got
                    self._enqueue(keys[got], waiter)
                assert waiter.future is not None
                await waiter.future
                got += 1
        except BaseException:
            if waiter is not None and waiting == got and self._owned_after_cancel(keys[got], waiter):
                got += 1
            self.release(keys[:got])
            raise

    def _owned_after_cancel(self, key: str, waiter: _Waiter) -> bool:
        """Whether an async waiter interrupted while waiting for ``key`` owns it now."""
        with self._mutex:
            granted = self._withdraw(key, waiter)
        if not granted:
            return False
        future = waiter.future
        assert future is not None
        if future.done() and not future.cancelled():
            return True  # granted and delivered, but the task was cancelled before it resumed
        assert waiter.loop is not None
        if waiter.loop.is_closed():
            # A coroutine finalised after its loop closed: cancelling the future would
            # schedule on the closed loop. The key is this waiter's to release unless the
            # waker found the loop closed first and released it.
            return self._strand(waiter)
        # Granted, the delivery still queued on this loop: ``_deliver`` will find the future
        # cancelled and pass the key on.
        future.cancel()
        return False

    def acquire_blocking(self, keys: list[str]) -> None:
        """Hold every key of ``keys`` (sorted, distinct), blocking the calling thread."""
        got = self._try(keys)
        waiter: _Waiter | None = None
        waiting = -1  # the index of the key ``waiter`` waits for
        try:
            while got < len(keys):
                with self._mutex:
                    got = self._take(keys, got)
                    if got == len(keys):
                        break
                    waiter, waiting = _Waiter(None), got
                    self._enqueue(keys[got], waiter)
                assert waiter.lock is not None
                waiter.lock.acquire()
                got += 1
        except BaseException:  # KeyboardInterrupt while waiting
            if waiter is not None and waiting == got:
                with self._mutex:
                    if self._withdraw(keys[got], waiter):
                        got += 1
            self.release(keys[:got])
            raise

    def _try(self, keys: list[str]) -> int:
        with self._mutex:
            return self._take(keys, 0)

    def release(self, keys: Iterable[str]) -> None:
        """Give up ``keys``: each goes to its oldest waiter, or becomes free."""
        if self.abandoned:
            return  # a parent's table in a forked child: nobody there waits on it
        grants: list[tuple[str, _Waiter]] = []
        with self._mutex:
            queues = self._queues
            for key in keys:
                queue = queues[key]
                if queue:
                    waiter = queue.popleft()
                    waiter.granted = True
                    grants.append((key, waiter))
                else:
                    del queues[key]
        for key, waiter in grants:
            self._wake(key, waiter)

    def _wake(self, key: str, waiter: _Waiter) -> None:
        if waiter.lock is not None:
            waiter.lock.release()
            return
        assert waiter.loop is not None
        try:
            waiter.loop.call_soon_threadsafe(self._deliver, key, waiter)
        except RuntimeError:  # its loop is closed: nobody will ever take the key
            if self._strand(waiter):
                self.release((key,))

    def _strand(self, waiter: _Waiter) -> bool:
        """Whether the caller is the first to find ``waiter``'s granted key stranded on a
        closed loop (then the caller releases it)."""
        with self._mutex:
            first = not waiter.stranded
            waiter.stranded = True
            return first

    def _deliver(self, key: str, waiter: _Waiter) -> None:
        """On the waiter's loop: hand it the key, or pass the key on if it was cancelled."""
        future = waiter.future
        assert future is not None
        if future.cancelled():
            self.release((key,))
        else:
            future.set_result(None)

    def held(self) -> int:
        """How many keys are held (for tests)."""
        with self._mutex:
            return len(self._queues)


_table: KeyLocks | None = None


def _locks() -> KeyLocks:
    global _table
    table = _table
    if table is None or table.pid != os.getpid():
        # First use in this process, or a child forked without Python's fork handlers.
        # Two threads racing here each build one; only the one stored is used afterwards,
        # and a batch keeps the table it acquired on until it releases.
        if table is not None:
            table.abandoned = True
        table = _table = KeyLocks()
    return table


def _after_fork_in_child() -> None:
    global _table
    if _table is not None:
        _table.abandoned = True
    _table = None


os.register_at_fork(after_in_child=_after_fork_in_child)


class Holding:
    """Holds a batch of keys: ``async with`` on an event loop, ``with`` on a thread.

    Parameters
    ----------
    keys
        The keys (as ``store_prefix`` + the store key), in any order, repeats allowed.
    """

    __slots__ = ("_keys", "_table")

    def __init__(self, keys: Iterable[str]) -> None:
        if not _ENABLED:
            keys = []
        elif not isinstance(keys, list) or len(keys) > 1:
            keys = sorted(set(keys))
        self._keys: list[str] = keys
        self._table = _locks()

    async def __aenter__(self) -> None:
        if self._keys:
            await self._table.acquire(self._keys)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._keys:
            self._table.release(self._keys)

    def __enter__(self) -> None:
        if self._keys:
            self._table.acquire_blocking(self._keys)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._keys:
            self._table.release(self._keys)


def holding(prefix: str, keys: Iterable[str]) -> Holding:
    """The locks of ``keys`` of the store whose ``store_prefix`` is ``prefix``."""
    return Holding([prefix + key for key in keys])


# -- what names a stored object --------------------------------------------------------


def file_prefix(root: str | os.PathLike[str]) -> str:
    """The prefix of the keys of files under the directory ``root``."""
    return f"file:{os.path.realpath(root).rstrip('/')}/"


def object_prefix(thing: object) -> str:
    """The prefix of the keys of a store known only as an object (alive while locked)."""
    return f"object:{id(thing)}:"


def _prefix_of(store: Any) -> str:
    # A store that claims a class without its attributes (a test's ``Mock(spec=LocalStore)``,
    # a proxy) is known only as an object.
    try:
        return _prefix_by_kind(store)
    except AttributeError:
        return object_prefix(store)


def _prefix_by_kind(store: Any) -> str:
    from zarr.storage import FsspecStore, LocalStore, MemoryStore, ObjectStore, WrapperStore

    while isinstance(store, WrapperStore):
        store = store._store
    if isinstance(store, LocalStore):
        return file_prefix(store.root)
    if isinstance(store, MemoryStore):
        return object_prefix(store._store_dict)
    if isinstance(store, FsspecStore):
        fs = getattr(store.fs, "sync_fs", store.fs)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if "file" in protocols or "local" in protocols:
            return file_prefix(str(store.path))
        return f"{protocols[0]}://{str(store.path).rstrip('/')}/"
    if isinstance(store, ObjectStore):
        inner = store.store
        if type(inner).__name__ == "LocalStore" and getattr(inner, "prefix", None) is not None:
            return file_prefix(str(inner.prefix))
    return object_prefix(store)


# Prefixes by store (resolving a path costs system calls): id -> (weak reference, prefix).
_prefixes: dict[int, tuple[weakref.ref[Any], str]] = {}


def store_prefix(store: Store) -> str:
    """The prefix naming ``store``'s stored objects in the lock table (see the module's
    docstring for what identifies each kind of store).

    Parameters
    ----------
    store
        A zarr store.

    Returns
    -------
    str
        The prefix to which store keys are appended.
    """
    entry = _prefixes.get(id(store))
    if entry is not None and entry[0]() is store:
        return entry[1]
    prefix = _prefix_of(store)
    key = id(store)

    def forget(ref: weakref.ref[Any]) -> None:
        if _prefixes.get(key, (None,))[0] is ref:
            _prefixes.pop(key, None)

    try:
        _prefixes[key] = (weakref.ref(store, forget), prefix)
    except TypeError:  # not weakly referenceable: computed each time
        pass
    return prefix
