"""The routes for variable-length data types (``string``, ``bytes``): whole chunks move
through the store's Python API and are decoded and encoded natively as whole chunks,
numpy doing the selection (``..variable``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._core import workers
from .. import variable
from .async_store import fetch_all, store_all
from .base import Route
from .sync_store import fetch_sync, store_sync

if TYPE_CHECKING:
    from ..._bindings import Options
    from .base import Array, Requests

__all__ = ["SyncVariableRoute", "VariableRoute"]


class VariableRoute(Route):
    """Whole chunks through the store's async API, codecs and numpy on worker threads."""

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        encoded = await fetch_all(batch)
        present: list[bool] = await workers.run(variable.read_chunks, self.native, batch, out, drop_axes, encoded)
        return present

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        partial = [i for i, request in enumerate(batch) if not request.is_complete]
        old = dict(zip(partial, await fetch_all([batch[i] for i in partial]), strict=True))
        encoded = await workers.run(variable.encode_chunks, self.native, batch, value, drop_axes, old)
        await store_all(batch, encoded)


class SyncVariableRoute(Route):
    """Whole chunks through the store's synchronous API: fetch, codecs, numpy and store in
    one worker call."""

    async def read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        present: list[bool] = await workers.run(self._read, batch, out, drop_axes)
        return present

    async def write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...], options: Options) -> None:
        await workers.run(self._write, batch, value, drop_axes)

    def _read(self, batch: Requests, out: Array, drop_axes: tuple[int, ...]) -> list[bool]:
        return variable.read_chunks(self.native, batch, out, drop_axes, fetch_sync(batch))

    def _write(self, batch: Requests, value: Array, drop_axes: tuple[int, ...]) -> None:
        partial = [i for i, request in enumerate(batch) if not request.is_complete]
        old = dict(zip(partial, fetch_sync([batch[i] for i in partial]), strict=True)) if partial else {}
        store_sync(batch, variable.encode_chunks(self.native, batch, value, drop_axes, old))
