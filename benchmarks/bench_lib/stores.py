"""Where the benchmark's arrays live (``--store``): local files, a MemoryStore, a zip
archive or an S3 server, and the store of this run (``STORE``, set by ``command.main`` and by
the child processes)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from .data import Layout
from .settings import REFERENCE_CONFIG, REPO


class StoreKind:
    """Where arrays live: each benchmark path names one array in this kind of store."""

    name = "local"
    # tensorstore reaches only some stores; others report it unavailable.
    tensorstore = True

    def writer(self, path: Path) -> Any:
        """A fresh, empty store for a new array at `path`."""
        return LocalStore(path)

    def finish(self, store: Any) -> None:
        """Called after an array has been written (a zip file is closed)."""

    def reader(self, path: Path) -> Any:
        """The store to read the finished array at `path` from."""
        return LocalStore(path, read_only=True)

    def remove(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def metadata(self, path: Path) -> dict:
        async def read() -> Any:
            return await self.reader(path).get("zarr.json", zarr.core.buffer.default_buffer_prototype())

        return json.loads(zarr.core.sync.sync(read()).to_bytes())

    def describe(self) -> str:
        return "LocalStore"


class MemoryStoreKind(StoreKind):
    name = "memory"
    tensorstore = False

    def __init__(self) -> None:
        self.stores: dict[Path, Any] = {}

    def writer(self, path: Path) -> Any:
        self.stores[path] = zarr.storage.MemoryStore()
        return self.stores[path]

    def reader(self, path: Path) -> Any:
        return self.stores[path]

    def remove(self, path: Path) -> None:
        self.stores.pop(path, None)

    def describe(self) -> str:
        return "MemoryStore"


class ZipStoreKind(StoreKind):
    name = "zip"
    tensorstore = False

    def writer(self, path: Path) -> Any:
        self.remove(path)
        return zarr.storage.ZipStore(path.with_suffix(".zip"), mode="w")

    def finish(self, store: Any) -> None:
        store.close()

    def reader(self, path: Path) -> Any:
        return zarr.storage.ZipStore(path.with_suffix(".zip"), mode="r", read_only=True)

    def remove(self, path: Path) -> None:
        path.with_suffix(".zip").unlink(missing_ok=True)

    def describe(self) -> str:
        return "ZipStore (stored, uncompressed zip)"


class S3StoreKind(StoreKind):
    """An S3-compatible moto server in its own process, through s3fs (FsspecStore)."""

    name = "s3"
    tensorstore = False
    bucket = "bench"

    def __init__(self) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from servers import moto_s3

        self._context = moto_s3()
        self.server = self._context.__enter__()
        self.server.create_bucket(self.bucket)

    def _url(self, path: Path) -> str:
        return f"s3://{self.bucket}/{path.parent.name}/{path.name}"

    def writer(self, path: Path) -> Any:
        self.remove(path)
        return zarr.storage.FsspecStore.from_url(self._url(path), storage_options=self.server.s3fs_options())

    def reader(self, path: Path) -> Any:
        return zarr.storage.FsspecStore.from_url(self._url(path), storage_options=self.server.s3fs_options(), read_only=True)

    def remove(self, path: Path) -> None:
        store = zarr.storage.FsspecStore.from_url(self._url(path), storage_options=self.server.s3fs_options())
        zarr.core.sync.sync(store.delete_dir(""))

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def describe(self) -> str:
        return f"FsspecStore (s3fs) on a moto S3 server at {self.server.endpoint}"


STORE_KINDS: dict[str, type[StoreKind]] = {
    kind.name: kind for kind in (StoreKind, MemoryStoreKind, ZipStoreKind, S3StoreKind)
}
# The store of this run (set by main, and by the preflight child).
STORE: StoreKind = StoreKind()


def create_zarr_array(path: Path, layout: Layout, shape: tuple[int, ...]) -> zarr.Array:
    return zarr.create_array(
        STORE.writer(path),
        shape=shape,
        dtype=np.uint16,
        fill_value=0,
        **layout.create_kwargs(),
    )


def read_with_reference(path: Path) -> np.ndarray:
    """Read a whole array with zarr's default pipeline, the yardstick for correctness."""
    with zarr.config.set(REFERENCE_CONFIG):
        return zarr.open_array(STORE.reader(path), mode="r")[:]
