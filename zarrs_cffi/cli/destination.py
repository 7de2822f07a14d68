"""Where ``copy`` may write: the destination it creates, or the array it resumes or replaces.

Nothing is deleted or written into that is not a Zarr node ``copy`` was asked to replace: a
location holding anything but a Zarr array is refused, and ``--overwrite`` replaces an array
whose every file is its own (metadata and chunks) or a group holding nothing but its
metadata. Every refusal happens before the first byte is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zarr
import zarr.errors
from zarr.core.sync import sync
from zarr.storage import ZipStore

from .arrays import is_url, metadata_document, pipeline_config, store_and_path
from .errors import CLIError, exception_text
from .geometry import CHUNK_KEY
from .implementations import OURS
from .options import parse_storage_options

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["open_destination"]

# What a Zarr node's own files are called, relative to the node: its metadata documents,
# and chunk keys (default or v2 encoding, either separator).
_METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})
# A write's temporary file beside its key, left by a killed writer: ours
# (``.<name>.<pid>-<namespace>-<random>-<n>.partial``) or zarr's LocalStore's
# (``<key with its suffix replaced by .<uuid hex>>.partial``).
_OUR_TEMPORARY = re.compile(r"\.(?P<name>[^/]+)\.\d+-[0-9a-f]{8}-[0-9a-f]{8}-\d+\.partial")
_ZARR_TEMPORARY = re.compile(r"[^/]*\.[0-9a-f]{32}\.partial")


def open_destination(
    args: argparse.Namespace, src: zarr.Array[Any], options: dict[str, Any], planned: zarr.Array[Any]
) -> tuple[zarr.Array[Any], bool]:
    """The destination array (created, or the existing one when resuming) and whether it existed.

    ``planned`` is the destination as it will be, built in memory: a resumed array must
    have its metadata.
    """
    store, path = store_and_path(args.dst, write=True)
    storage_options = parse_storage_options(args.storage_option) if is_url(args.dst) else None
    entries = _destination_entries(args.dst, store, path, storage_options)
    existing = _existing_node(args.dst, store, path, storage_options)
    _refuse_foreign(args, existing, entries)
    if existing is not None and args.overwrite and isinstance(store, ZipStore):
        raise CLIError(f"--overwrite cannot replace {args.dst}: a zip archive cannot delete its entries")
    if isinstance(existing, zarr.Array) and not args.overwrite:
        return _resumable(args, store, existing, planned), True
    try:
        with pipeline_config(OURS):
            dst = zarr.from_array(
                store, name=path or None, data=src, write_data=False, overwrite=args.overwrite,
                storage_options=storage_options, **options,
            )
    except Exception as exc:  # a read-only or unreachable destination, or options zarr refuses
        raise CLIError(f"cannot create {args.dst}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    return dst, False


def _existing_node(
    location: str, store: Any, path: str, storage_options: dict[str, Any] | None
) -> zarr.Array[Any] | zarr.Group | None:
    """The Zarr node already at the destination, if any."""
    try:
        with pipeline_config(OURS):
            return zarr.open(store=store, path=path, mode="r+", storage_options=storage_options)
    except (FileNotFoundError, zarr.errors.NodeNotFoundError, zarr.errors.ArrayNotFoundError,
            zarr.errors.GroupNotFoundError, KeyError):
        return None
    except OSError:
        raise
    except Exception as exc:  # metadata zarr refuses: not a node we can knowingly replace
        raise CLIError(f"{location} holds metadata zarr cannot read ({exception_text(exc)}); nothing was written") from None


def _refuse_foreign(
    args: argparse.Namespace, existing: zarr.Array[Any] | zarr.Group | None, entries: list[str] | None
) -> None:
    """Refuse a destination holding files that are not a Zarr node's, or a group (unless
    ``--overwrite`` and it holds nothing but its metadata)."""
    if existing is None:
        if entries:
            raise CLIError(
                f"{args.dst} is not empty and is not a Zarr array (it holds {_some(entries)}); nothing was written: "
                "give a new or empty location"
            )
    elif isinstance(existing, zarr.Group):
        members = [e for e in entries or () if e not in _METADATA_NAMES]
        if not args.overwrite:
            raise CLIError(f"{args.dst} is a group; give a new path for the copy")
        if members:
            raise CLIError(
                f"{args.dst} is a group holding {_some(members)}; --overwrite replaces an array or an empty group only, "
                "nothing was written"
            )
    elif args.overwrite:
        foreign = [e for e in entries or () if not _is_array_entry(e)]
        if foreign:
            raise CLIError(
                f"{args.dst} holds files that are not its array's ({_some(foreign)}); --overwrite would delete them, "
                "nothing was written"
            )


def _resumable(
    args: argparse.Namespace, store: Any, existing: zarr.Array[Any], planned: zarr.Array[Any]
) -> zarr.Array[Any]:
    """The existing array, when ``--resume`` may finish a copy into it."""
    if not args.resume:
        raise CLIError(f"{args.dst} already exists: --resume finishes an interrupted copy, --overwrite replaces it")
    if isinstance(store, ZipStore):
        raise CLIError("--resume cannot continue a copy into a zip archive")
    have, want = metadata_document(existing), metadata_document(planned)
    if have != want:
        differ = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
        raise CLIError(f"{args.dst} exists with other metadata ({', '.join(differ)} differ); cannot resume")
    return existing


def _is_array_entry(entry: str) -> bool:
    """Whether ``entry`` (relative to an array) is one of the array's own files."""
    if entry in _METADATA_NAMES or CHUNK_KEY.fullmatch(entry):
        return True
    parent, _, name = entry.rpartition("/")
    ours = _OUR_TEMPORARY.fullmatch(name)
    if ours:
        key = f"{parent}/{ours.group('name')}" if parent else ours.group("name")
        return key in _METADATA_NAMES or CHUNK_KEY.fullmatch(key) is not None
    return _ZARR_TEMPORARY.fullmatch(name) is not None and (not parent or CHUNK_KEY.fullmatch(parent) is not None)


def _some(entries: Sequence[str]) -> str:
    shown = ", ".join(repr(e) for e in sorted(entries)[:3])
    return shown if len(entries) <= 3 else f"{shown}, ... ({len(entries):,} in all)"


def _destination_entries(
    location: str, store: Any, path: str, storage_options: dict[str, Any] | None
) -> list[str] | None:
    """What is already at the destination, relative to it: files (and, for a directory, empty
    subdirectories and links); None when the storage cannot list (HTTP)."""
    if isinstance(store, Path):
        if not store.exists() and not store.is_symlink():
            return []
        if not store.is_dir() or store.is_symlink():
            raise CLIError(f"{location} exists and is not a directory; nothing was written")
        found: list[str] = []
        for top, dirs, files in os.walk(store):
            relative = Path(top).relative_to(store)
            for name in dirs:
                entry = Path(top) / name
                if entry.is_symlink() or not any(entry.iterdir()):
                    found.append((relative / name).as_posix())
            found.extend((relative / name).as_posix() for name in files)
        return found
    prefix = f"{path}/" if path else ""
    listed: Any
    try:
        if isinstance(store, ZipStore):
            if store.path is None or not Path(store.path).exists():
                return []
            listed = store
        else:
            from zarr.storage import FsspecStore

            listed = FsspecStore.from_url(location, storage_options=storage_options, read_only=True)
            prefix = ""

        async def keys() -> list[str]:
            return [key async for key in listed.list_prefix(prefix)]

        return [key[len(prefix):] for key in sync(keys())]
    except (NotImplementedError, OSError, ValueError):
        return None

