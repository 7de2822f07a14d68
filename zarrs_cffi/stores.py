"""Which zarr stores map to native storage, and how.

A store maps natively when the native library can reach the same bytes itself; the
pipeline then never calls the store for chunk data. Anything else is reported with a
reason, and the pipeline falls back. Native storage objects are shared per store root.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from zarr.storage import LocalStore

from ._bindings import Storage

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = ["native_storage"]

_lock = threading.Lock()
_cache: dict[tuple[str, str, bool, bool], Storage] = {}


def native_storage(store: Store, *, direct_io: bool = False) -> Storage | str:
    """The native storage reaching ``store``'s bytes, or the reason there is none."""
    # Exactly LocalStore: a subclass (or a mock with its spec) may override get/set, and
    # native I/O would silently bypass that Python code.
    if type(store) is LocalStore:
        key = ("filesystem", str(store.root), direct_io, store.read_only)
        with _lock:
            storage = _cache.get(key)
            if storage is None:
                storage = Storage.filesystem(str(store.root), direct_io=direct_io, read_only=store.read_only)
                _cache[key] = storage
        return storage
    if isinstance(store, LocalStore):
        return f"{type(store).__name__} subclasses LocalStore and may intercept I/O in Python"
    return f"{type(store).__name__} has no native storage yet"
