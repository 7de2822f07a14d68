"""Where the direct API's arrays come from besides a directory: a URL, or a zarr array,
reached natively as the pipeline reaches the same store; and what their data type is
(``Typed``): the numpy type users see, the one zarrs decodes to, and whether elements are
variable-length."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._bindings import ArrayHandle
from ._core import keylocks
from ._core.metadata import as_raw_bits, metadata_json
from ._pipeline.stores import storage_for
from ._pipeline.variable import is_variable
from .errors import ZarrsError, ZarrsMetadataError, ZarrsUnsupportedError

if TYPE_CHECKING:
    from zarr.core.metadata import ArrayMetadata

    from ._bindings import Storage

__all__ = ["Typed", "node_path", "open_native", "open_url", "open_zarr", "read_zarr_metadata", "typed"]


def node_path(path: str) -> str:
    """zarrs wants absolute node paths ("/group/array"); zarr users write "group/array"."""
    return "/" + path.strip("/")


@dataclass(frozen=True)
class Typed:
    """An array's data type as the direct API moves it.

    Attributes
    ----------
    metadata
        zarr's metadata of the array (its own data type, fill value and chunk grid).
    dtype
        The numpy type of what reads return (zarr's: ``StringDType`` for ``string``,
        ``object`` for ``bytes``).
    native_dtype
        The numpy type whose bytes zarrs decodes into and encodes from (``dtype`` in native
        byte order, or the stored order of a type opened as raw bits); None for
        variable-length types, whose elements never sit in a strided buffer.
    variable
        ``"text"`` or ``"bytes"`` for variable-length types, else None.
    """

    metadata: ArrayMetadata
    dtype: np.dtype[Any]
    native_dtype: np.dtype[Any] | None
    variable: str | None


def _zarr_dtype(metadata: ArrayMetadata) -> tuple[np.dtype[Any], str | None]:
    """numpy's type of zarr's data type and its variable-length kind; a
    ``ZarrsUnsupportedError`` naming a type the direct API cannot take."""
    name = str(getattr(metadata.dtype, "_zarr_v3_name", None) or metadata.dtype)
    try:
        dtype = np.dtype(metadata.dtype.to_native_dtype())
    except (AttributeError, TypeError) as exc:
        raise ZarrsUnsupportedError(f"data type {name} has no numpy equivalent: the direct API cannot take it") from exc
    if is_variable(metadata.dtype):
        return dtype, "text" if type(metadata.dtype).__name__ == "VariableLengthUTF8" else "bytes"
    if dtype.kind not in "biufcmMUSV" or dtype.hasobject or dtype.itemsize == 0:
        raise ZarrsUnsupportedError(f"data type {name} ({dtype}) is not supported by the direct API")
    return dtype, None


def typed(native: ArrayHandle, metadata: ArrayMetadata, native_dtype: np.dtype[Any] | None = None) -> Typed:
    """The data type of an array opened natively from ``metadata`` (``native_dtype``: the
    raw-bits type it was opened as, if so); a ``ZarrsUnsupportedError`` naming a type the
    direct API cannot take or whose elements zarrs sizes otherwise than numpy."""
    dtype, variable = _zarr_dtype(metadata)
    if variable:
        return Typed(metadata, dtype, None, variable)
    if native_dtype is None:
        native_dtype = dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype
    if native.element_size != native_dtype.itemsize:
        raise ZarrsUnsupportedError(
            f"data type {metadata.dtype} ({dtype}): zarrs decodes {native.element_size}-byte elements, "
            f"numpy has {native_dtype.itemsize}; the direct API cannot take it"
        )
    return Typed(metadata, dtype, native_dtype, None)


def _named(entry: Any) -> Any:
    """A Zarr v3 named configuration in zarr's long form: zarrs writes one without
    configuration as its bare name, which zarr's parser does not take."""
    if entry == "bytes" or entry == {"name": "bytes"}:
        # zarrs takes a bytes codec without an endian setting for any type; zarr, which
        # wants one for multi-byte types, reads chunks here only through zarrs anyway.
        return {"name": "bytes", "configuration": {"endian": "little"}}
    if isinstance(entry, str):
        return {"name": entry}
    if isinstance(entry, dict) and isinstance(entry.get("configuration"), dict):
        configuration = dict(entry["configuration"])
        for key in ("codecs", "index_codecs"):
            if isinstance(configuration.get(key), list):
                configuration[key] = [_named(codec) for codec in configuration[key]]
        return {**entry, "configuration": configuration}
    return entry


# What stands for an array's codecs in zarr's view of its metadata: the direct API takes
# only the data type, fill value and chunk grid from it (zarrs runs the codecs, some of
# which zarr has no implementation of), and zarr checks the codecs against the data type.
_STAND_IN_CODECS = {"string": ["vlen-utf8"], "bytes": ["vlen-bytes"]}


def parse_metadata(document: dict[str, Any]) -> ArrayMetadata:
    """zarr's view of a ``zarr.json`` or ``.zarray`` document as zarrs reads it: its data
    type, fill value and chunk grid (the codecs replaced by a stand-in of the data type's);
    a ``ZarrsMetadataError`` when zarr cannot parse it."""
    from zarr.core.metadata import ArrayV2Metadata, ArrayV3Metadata

    try:
        if document.get("zarr_format") == 2:
            variable = document.get("filters") and any(
                isinstance(f, dict) and f.get("id") in ("vlen-utf8", "vlen-bytes") for f in document["filters"]
            )
            document = {**document, "compressor": None, **({} if variable else {"filters": None})}
            return ArrayV2Metadata.from_dict(document)
        document = dict(document)
        for key in ("chunk_grid", "chunk_key_encoding"):
            if key in document:
                document[key] = _named(document[key])
        name = document.get("data_type")
        document["codecs"] = [_named(codec) for codec in _STAND_IN_CODECS.get(name if isinstance(name, str) else "", ["bytes"])]
        if document["chunk_grid"].get("name") == "regular":
            return ArrayV3Metadata.from_dict(document)
        # zarr parses rectilinear grids only when asked (experimental); zarrs opened it.
        import zarr

        with zarr.config.set({"array.rectilinear_chunks": True}):
            return ArrayV3Metadata.from_dict(document)
    except Exception as exc:  # noqa: BLE001 - zarr's parsers raise many kinds
        raise ZarrsMetadataError(f"zarr cannot parse the array's metadata: {exc}") from exc


def typed_of(native: ArrayHandle) -> Typed:
    """The data type of an array opened natively from its own metadata; a
    ``ZarrsUnsupportedError`` naming a type zarr has no numpy type for."""
    try:
        metadata = parse_metadata(native.metadata)
    except ZarrsMetadataError as exc:
        raise ZarrsUnsupportedError(f"data type {native.data_type} is not supported by the direct API: {exc}") from exc
    return typed(native, metadata)


def read_zarr_metadata(store: Any, array_path: str) -> ArrayMetadata:
    """The array's metadata as zarr reads it from ``store``."""
    import zarr

    try:
        return zarr.open_array(store, path=array_path.strip("/"), mode="r").metadata
    except Exception as exc:  # noqa: BLE001 - zarr's reasons vary; ours says what failed
        raise ZarrsMetadataError(f"zarr cannot read the metadata of {array_path!r}: {exc}") from exc


def open_native(storage: Storage, metadata: ArrayMetadata, path: str) -> tuple[ArrayHandle, Typed]:
    """The array of ``metadata`` opened on ``storage``: as zarr describes it, else (a data type
    zarrs lacks whose chunks are its bytes, as the pipeline does) as raw bits of its size."""
    dtype, variable = _zarr_dtype(metadata)
    document = metadata_json(metadata)
    try:
        native = ArrayHandle.open_with_metadata(storage, document, path)
        return native, typed(native, metadata)
    except (ZarrsUnsupportedError, ZarrsMetadataError) as exc:
        if variable:
            raise
        try:
            raw = as_raw_bits(json.loads(document), dtype, metadata.fill_value)
        except (TypeError, ValueError) as error:
            raise ZarrsUnsupportedError(f"data type {metadata.dtype} ({dtype}) as raw bits: {error}") from exc
        if raw is None:
            raise ZarrsUnsupportedError(
                f"data type {metadata.dtype} ({dtype}) is not one zarrs has, and a codec depends on the element "
                f"type, so it cannot be read as raw bits: {exc}"
            ) from exc
        native = ArrayHandle.open_with_metadata(storage, raw[0], path)
        return native, typed(native, metadata, raw[1])


def open_at(storage: Storage, array_path: str, store: Any) -> tuple[ArrayHandle, Typed]:
    """The array at ``array_path`` on ``storage`` (``store``: zarr's view of the same bytes,
    read only when zarrs cannot open the metadata itself: a data type it lacks)."""
    path = node_path(array_path)
    try:
        native = ArrayHandle.open(storage, path)
    except (ZarrsUnsupportedError, ZarrsMetadataError) as exc:
        try:
            metadata = read_zarr_metadata(store, array_path)
        except ZarrsError:
            raise exc from None
        return open_native(storage, metadata, path)
    try:
        return native, typed_of(native)
    except ZarrsUnsupportedError as exc:
        try:
            metadata = read_zarr_metadata(store, array_path)
        except ZarrsMetadataError:
            raise exc from None
    return native, typed(native, metadata)


def reach(store: Any, name: str) -> Storage:
    """The native storage reaching ``store``'s bytes, as the pipeline maps it; a
    ``ZarrsUnsupportedError`` saying why there is none."""
    storage = storage_for(store)
    if isinstance(storage, str):
        raise ZarrsUnsupportedError(f"the direct API cannot reach {name} natively: {storage}")
    return storage


def url_store(url: str, *, read_only: bool, storage_options: dict[str, Any] | None) -> Any:
    """zarr's ``FsspecStore`` of ``url`` (``s3://``, ``gs://``, ``az://`` or ``abfs://``,
    ``http(s)://``: read only), as the pipeline maps it."""
    from zarr.storage import FsspecStore

    writable = not (read_only or url.startswith("http"))
    return FsspecStore.from_url(url, storage_options=storage_options, read_only=not writable)


def open_url(
    url: str, array_path: str, *, read_only: bool, storage_options: dict[str, Any] | None
) -> tuple[ArrayHandle, Typed, Any, str]:
    """The array at ``array_path`` under ``url`` (``s3://``, ``gs://``, ``az://``, ``abfs://``, ``http(s)://``: read only), its
    storage options mapped as for an ``FsspecStore``; its data type, zarr's store of it, and
    its write-lock prefix."""
    store = url_store(url, read_only=read_only, storage_options=storage_options)
    native, kind = open_at(reach(store, url), array_path, store)
    return native, kind, store, keylocks.store_prefix(store)


def open_zarr(array: Any) -> tuple[ArrayHandle, Typed, Any, str]:
    """A zarr ``Array`` or ``AsyncArray`` opened natively on its store (its metadata as zarr
    holds it, nothing read again); its data type, its store, and its write-lock prefix, the
    one zarr's writes take."""
    inner = getattr(array, "_async_array", array)
    store = inner.store_path.store
    native, kind = open_native(reach(store, type(store).__name__), inner.metadata, node_path(inner.store_path.path))
    return native, kind, store, keylocks.store_prefix(store)
