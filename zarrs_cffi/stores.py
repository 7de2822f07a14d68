"""Which zarr stores map to native storage, and how.

A store maps natively when the native library can reach the same bytes itself; the
pipeline then never calls the store for chunk data. Any other store is reached through its
own Python API, and only the codecs run natively: ``native_storage`` says why, and
``codec_storage`` is the (never touched) storage such arrays are opened on. Native storage
objects are shared per store root.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from zarr.storage import LocalStore

from ._bindings import Storage

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = ["codec_storage", "native_storage"]

_lock = threading.Lock()
_cache: dict[tuple[str, str, bool, bool], Storage] = {}


def native_storage(store: Store, *, direct_io: bool = False) -> Storage | str:
    """The native storage reaching ``store``'s bytes, or the reason there is none."""
    # Exactly LocalStore: a subclass (or a mock with its spec) may override get/set, and
    # native I/O would silently bypass that Python code.
    if type(store) is LocalStore:
        return _filesystem(str(store.root), direct_io=direct_io, read_only=store.read_only)
    if isinstance(store, LocalStore):
        return f"{type(store).__name__} subclasses LocalStore and may intercept I/O in Python"
    name = type(store).__name__
    if name == "FsspecStore" and type(store).__module__.startswith("zarr."):
        return _fsspec(store, direct_io=direct_io)
    return f"{name} has no native storage"


def _filesystem(root: str, *, direct_io: bool, read_only: bool) -> Storage:
    key = ("filesystem", root, direct_io, read_only)
    with _lock:
        storage = _cache.get(key)
        if storage is None:
            storage = Storage.filesystem(root, direct_io=direct_io, read_only=read_only)
            _cache[key] = storage
    return storage


def _fsspec(store: Any, *, direct_io: bool) -> Storage | str:
    """Native storage for a zarr FsspecStore whose filesystem we can reach ourselves."""
    fs = store.fs
    # zarr wraps synchronous filesystems (such as the local one) in an async wrapper.
    inner = getattr(fs, "sync_fs", fs)
    protocols = inner.protocol if isinstance(inner.protocol, tuple) else (inner.protocol,)
    if type(inner).__name__ == "LocalFileSystem" and "file" in protocols:
        return _filesystem(str(store.path), direct_io=direct_io, read_only=store.read_only)
    return f"FsspecStore over {protocols[0]!r} has no native storage"


def codec_storage() -> Storage:
    """The storage of arrays whose bytes move through Python: in memory, and never used."""
    global _codec_storage
    with _lock:
        if _codec_storage is None:
            _codec_storage = Storage.memory()
        return _codec_storage


_codec_storage: Storage | None = None
