"""Opening the arrays a command names, and what zarr built for them: the route our pipeline
took and the stored metadata document.

The route is what ``ZarrsCodecPipeline`` decided when zarr opened the array (``_pipeline``),
never recomputed here.
"""

from __future__ import annotations

import importlib
import json
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zarr
import zarr.errors
from zarr.storage import ZipStore

from .._pipeline.codec_pipeline import ZarrsCodecPipeline
from .errors import CLIError, exception_text
from .implementations import OURS, ZARRS_PYTHON

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["ROUTE_NAMES", "codecs_text", "describe_route", "is_url", "metadata_document", "open_array",
           "pipeline_config", "route_text", "store_and_path"]


def is_url(location: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", location) is not None and not location.startswith("file://")


def store_and_path(location: str, *, write: bool) -> tuple[Any, str]:
    """What zarr opens for ``location``: a URL as given, a local directory as a Path, and a
    path inside a ``.zip`` archive as a ZipStore and the path inside it."""
    if is_url(location):
        return location, ""
    local = Path(location.removeprefix("file://"))
    for archive in (local, *local.parents):
        if archive.suffix.lower() == ".zip" and (archive.is_file() or (write and archive == local)):
            if write and archive.exists() and not zipfile.is_zipfile(archive):
                # zipfile would append an archive to the end of whatever file this is.
                raise CLIError(f"{archive} exists and is not a zip archive; nothing was written")
            inner = local.relative_to(archive).as_posix()
            store = ZipStore(archive, mode="a", read_only=False) if write else ZipStore(archive, mode="r", read_only=True)
            return store, "" if inner == "." else inner
    return local, ""


@contextmanager
def pipeline_config(path: str) -> Iterator[None]:
    """zarr's config selecting the codec pipeline ``path`` (read when an array is opened)."""
    if path == ZARRS_PYTHON:
        # zarrs-python registers itself through an entry point; make sure it is known.
        from zarr.registry import register_pipeline

        register_pipeline(importlib.import_module("zarrs").ZarrsCodecPipeline)
    with zarr.config.set({"codec_pipeline.path": path}):
        yield


def open_array(
    location: str, *, storage_options: dict[str, Any] | None = None, pipeline: str = OURS
) -> zarr.Array[Any]:
    """Open the existing array at ``location`` read-only, with the codec pipeline ``pipeline``.

    Parameters
    ----------
    location
        A local path (a directory, or a path inside a ``.zip`` archive) or an fsspec URL.
    storage_options
        fsspec options for a URL.
    pipeline
        The fully qualified name of the codec pipeline class.

    Returns
    -------
    zarr.Array
        The array.

    Raises
    ------
    CLIError
        Nothing is there, or it is a group.
    """
    store, path = store_and_path(location, write=False)
    if storage_options and not is_url(location):
        raise CLIError("--storage-option applies to URLs only")
    try:
        with pipeline_config(pipeline):
            node = zarr.open(store=store, path=path, mode="r", storage_options=storage_options)
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, zarr.errors.ArrayNotFoundError,
            zarr.errors.GroupNotFoundError, KeyError):
        raise CLIError(f"no Zarr array at {location}") from None
    except OSError:
        raise  # unreachable or unreadable storage: reported as it is
    except Exception as exc:
        # Whatever zarr refuses in the metadata (a shape of "abc", JSON nested past the
        # recursion limit, an unknown data type) is the user's input, not our failure.
        raise CLIError(f"{location}: zarr cannot read its metadata: {exception_text(exc)}") from None
    if isinstance(node, zarr.Group):
        names = sorted(name for name, _ in node.arrays())
        hint = f"; its arrays: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}" if names else ""
        raise CLIError(f"{location} is a group, not an array{hint}")
    return node


def describe_route(array: zarr.Array[Any]) -> tuple[str, str]:
    """The route our pipeline takes for ``array``, and why, from the pipeline zarr built.

    Parameters
    ----------
    array
        An array opened with ``codec_pipeline.path`` set to our pipeline.

    Returns
    -------
    tuple of str
        ``("native", ...)`` when the Rust library reaches the storage itself,
        ``("python-io", reason)`` when zarrs runs the codecs and the store's Python API moves
        the bytes, ``("fallback", reason)`` when zarr's own pipeline does everything.
    """
    pipeline = array._async_array.codec_pipeline
    if not isinstance(pipeline, ZarrsCodecPipeline):
        return "fallback", f"the array was opened with {type(pipeline).__name__}"
    if pipeline.native is None:
        return "fallback", pipeline.reason or "unknown"
    if pipeline.native.python_io is not None:
        return "python-io", pipeline.native.python_io
    return "native", f"the Rust library reaches the {type(array.store).__name__} itself"


ROUTE_NAMES = {"native": "native storage", "python-io": "Python I/O", "fallback": "fallback to zarr's pipeline"}


def route_text(route: tuple[str, str]) -> str:
    return f"{ROUTE_NAMES[route[0]]} ({route[1]})"




def metadata_document(array: zarr.Array[Any]) -> dict[str, Any]:
    """The array's stored metadata document, without attributes."""
    from zarr.core.buffer import default_buffer_prototype

    documents = array.metadata.to_buffer_dict(default_buffer_prototype())
    document = documents.get("zarr.json") or documents[".zarray"]
    parsed: dict[str, Any] = json.loads(document.to_bytes())
    parsed.pop("attributes", None)
    return parsed



def _codec_text(codec: Any) -> str:
    """One codec from zarr's metadata JSON, e.g. ``zstd(level=5, checksum=False)``."""
    if isinstance(codec, str):
        return codec
    if not isinstance(codec, dict):
        return str(codec)
    name = codec.get("name", codec.get("id", "?"))
    config = codec.get("configuration", {k: v for k, v in codec.items() if k not in ("id", "name")})
    if name == "sharding_indexed":
        inner = _chain_text(config.get("codecs", []))
        index = _chain_text(config.get("index_codecs", []))
        return f"sharding_indexed({inner}; index: {index}, at the {config.get('index_location', 'end')})"
    args = ", ".join(f"{k}={v}" for k, v in (config or {}).items())
    return f"{name}({args})" if args else str(name)


def _chain_text(codecs: Sequence[Any]) -> str:
    return " -> ".join(_codec_text(c) for c in codecs) or "none"


def codecs_text(array: zarr.Array[Any]) -> str:
    """The array's codec chain as one line (filters and compressor for Zarr v2).

    Parameters
    ----------
    array
        The array.

    Returns
    -------
    str
        E.g. ``bytes(endian=little) -> zstd(level=5, checksum=False)``.
    """
    document = metadata_document(array)
    if document.get("zarr_format") == 3:
        return _chain_text(list(document.get("codecs") or []))
    chain = [*(document.get("filters") or []), *([document["compressor"]] if document.get("compressor") else [])]
    return _chain_text(chain)

