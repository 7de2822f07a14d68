"""How a pipeline's chunk bytes move: one interface, chosen once per array with its planner.

- ``StorageRoute`` (``storage.py``): the native library reaches the store itself
  (``stores.storage_for``); a whole read or write is one worker call, scattered reads are
  gathered natively.
- ``SyncStoreRoute`` (``sync_store.py``): the store's synchronous API (zarr's own
  ``MemoryStore``, ``ZipStore``) fetches and stores in the same worker call that decodes or
  encodes.
- ``AsyncStoreRoute`` (``async_store.py``): the store's async API moves the bytes,
  concurrently, on zarr's event loop; planning, codecs and numpy's part run on worker
  threads between the awaits.
- ``VariableRoute``, ``SyncVariableRoute`` (``variable.py``): variable-length types, whole
  chunks through the store's async or synchronous API.

The codecs always run natively. A route plans the batch (its ``Planner``, which raises
``Fallback`` for what it cannot plan) before any byte moves, so a fallback never follows a
partial write. Nothing here blocks the event loop: every blocking step runs through
``workers.run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zarr.abc.store import _store_supports_sync_io
from zarr.storage import LocalStore, MemoryStore, ZipStore

from ..._selection import Planner
from .async_store import AsyncStoreRoute
from .base import Route
from .storage import StorageRoute
from .sync_store import SyncStoreRoute
from .variable import SyncVariableRoute, VariableRoute

if TYPE_CHECKING:
    from ..record import ArrayRecord

__all__ = [
    "AsyncStoreRoute", "Route", "StorageRoute", "SyncStoreRoute", "SyncVariableRoute", "VariableRoute", "route_for",
]


def route_for(record: ArrayRecord) -> Route:
    """The route and planner for ``record``'s store, chosen once when the array is opened."""
    store = record.store
    ndim, itemsize = record.array.ndim, record.dtype.itemsize
    if record.python_io is None:
        # Local files: a shard's index read once more per box is one more small pread.
        split = record.inner_chunks if isinstance(store, LocalStore) else None
        return StorageRoute(record, Planner(ndim, itemsize, native_picks=True, split_inner=split))
    # Only zarr's own stores, exactly: a subclass or wrapper may override the async methods
    # (to log, count or transform) and not the sync ones, which would bypass it.
    sync = type(store) in (MemoryStore, ZipStore) and _store_supports_sync_io(store)
    if record.variable:
        return (SyncVariableRoute if sync else VariableRoute)(record, Planner(ndim, itemsize))
    if sync:
        # A MemoryStore hands out its values without a copy: a shard fetched once per box is free.
        split = record.inner_chunks if type(store) is MemoryStore else None
        return SyncStoreRoute(record, Planner(ndim, itemsize, split_inner=split))
    return AsyncStoreRoute(record, Planner(ndim, itemsize))
