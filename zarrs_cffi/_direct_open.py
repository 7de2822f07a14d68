"""Where the direct API's arrays come from besides a directory: a URL, or a zarr array,
reached natively as the pipeline reaches the same store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._bindings import ArrayHandle
from ._core import keylocks
from ._core.metadata import metadata_json
from ._pipeline.stores import storage_for
from .errors import ZarrsUnsupportedError

if TYPE_CHECKING:
    from ._bindings import Storage

__all__ = ["node_path", "open_url", "open_zarr"]


def node_path(path: str) -> str:
    """zarrs wants absolute node paths ("/group/array"); zarr users write "group/array"."""
    return "/" + path.strip("/")


def reach(store: Any, name: str) -> Storage:
    """The native storage reaching ``store``'s bytes, as the pipeline maps it; a
    ``ZarrsUnsupportedError`` saying why there is none."""
    storage = storage_for(store)
    if isinstance(storage, str):
        raise ZarrsUnsupportedError(f"the direct API cannot reach {name} natively: {storage}")
    return storage


def open_url(
    url: str, array_path: str, *, read_only: bool, storage_options: dict[str, Any] | None
) -> tuple[ArrayHandle, str]:
    """The array at ``array_path`` under ``url`` (``s3://``, ``gs://``, ``az://`` or
    ``abfs://``, ``http(s)://``: read only), its storage options mapped as for an
    ``FsspecStore``; and its write-lock prefix."""
    from zarr.storage import FsspecStore

    writable = not (read_only or url.startswith("http"))
    store = FsspecStore.from_url(url, storage_options=storage_options, read_only=not writable)
    return ArrayHandle.open(reach(store, url), node_path(array_path)), keylocks.store_prefix(store)


def open_zarr(array: Any) -> tuple[ArrayHandle, str]:
    """A zarr ``Array`` or ``AsyncArray`` opened natively on its store (its metadata as zarr
    holds it, nothing read again); and its write-lock prefix, the one zarr's writes take."""
    inner = getattr(array, "_async_array", array)
    store = inner.store_path.store
    native = ArrayHandle.open_with_metadata(
        reach(store, type(store).__name__), metadata_json(inner.metadata), node_path(inner.store_path.path)
    )
    return native, keylocks.store_prefix(store)
