"""The direct API's reads beyond one blocking region: ``Array.oindex`` and ``Array.vindex``,
gathered natively (``ArrayHandle.gather_orthogonal`` / ``gather_points``), each chunk
decoded once and its picked elements written straight into the result, blocking or started
(``*_start``: completed through the loop's descriptor for ``read_async``, the process's
completion queue for ``read_future``); and ``Array.read_async``'s region started natively.
What is no native gather (variable-length types) runs on the worker pool."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.core.indexing import is_bool_array

from ._core import results, workers
from ._direct_futures import run_future, settled, start_native
from ._pipeline import completion
from ._selection.picks import OrthogonalPicks
from ._selection.whole import plan_coordinates, plan_mask, plan_orthogonal
from .errors import ZarrsValueError

if TYPE_CHECKING:
    import numpy.typing as npt

    from collections.abc import Callable

    from ._bindings import ArrayHandle, ChunkBatch, CompletionQueue, Options
    from ._direct_selections import Selections
    from ._selection.picks import PointPicks
    from ._selection.whole import Grid

__all__ = ["Gathers", "read_region_async", "read_scattered_async"]


class Gathers:
    """``Array.oindex`` or ``Array.vindex``: ``[selection]`` reads into a new array,
    ``read(selection, out=...)`` into ``out``.

    Parameters
    ----------
    native, options, grid, dtype
        The array's handle, its options, its grid as the gathers take it, its data type.
    kind
        ``"orthogonal"`` or ``"points"``.
    selections
        The array's selections through zarr's indexers: writes, and every read of a
        variable-length type.
    """

    __slots__ = ("_dtype", "_grid", "_kind", "_native", "_options", "_selections")

    def __init__(
        self, native: ArrayHandle, options: Options, grid: Grid, dtype: np.dtype[Any], kind: str, selections: Selections
    ) -> None:
        self._native, self._options, self._grid, self._dtype, self._kind = native, options, grid, dtype, kind
        self._selections = selections

    def __getitem__(self, selection: Any) -> npt.NDArray[Any]:
        return self.read(selection)

    def __setitem__(self, selection: Any, value: Any) -> None:
        """Write ``value`` to the selection: each chunk's bounding box of it decoded, merged
        and stored whole natively, under the chunks' write locks."""
        self._selections.write(self._kind, selection, value, self._options)

    def read(self, selection: Any, out: npt.NDArray[Any] | None = None) -> npt.NDArray[Any]:
        """The selection's values.

        Parameters
        ----------
        selection
            As zarr's ``oindex`` or ``vindex`` takes it.
        out : numpy.ndarray, optional
            A writeable C-contiguous array of the array's dtype and the result's shape.

        Returns
        -------
        numpy.ndarray
            ``out``, or a new array; elements of chunks not stored are the fill value.

        Raises
        ------
        IndexError
            An index out of bounds or a selection zarr would refuse.
        ZarrsValueError
            An ``out`` of the wrong dtype, shape or layout.
        """
        planned = self._plan(selection, out)
        if planned is None:
            return self._read_selected(selection, out)
        planned.gather(self._native, self._options)
        return planned.finish()

    def read_future(self, selection: Any) -> Future[npt.NDArray[Any]]:
        """The selection's values, started now (``Array.read_future``): one native gather
        started on the process's completion queue, else (variable-length types) on the
        pool. Errors, the selection's included, are the future's."""
        try:
            planned = self._plan(selection, None)
        except Exception as exc:  # noqa: BLE001 - the caller's to see, from result()
            failed: Future[npt.NDArray[Any]] = Future()
            failed.set_exception(exc)
            return failed
        if planned is None:
            return run_future(self._read_selected, selection, None)
        if planned.picks is None:  # nothing to gather
            done: Future[npt.NDArray[Any]] = Future()
            done.set_running_or_notify_cancel()
            done.set_result(planned.finish())
            return done
        native, options = self._native, self._options
        present = planned.present()
        return start_native(
            lambda queue, token: planned.start(native, options, queue, token, present),
            (native, options, planned, present),
            planned.finish,
            lambda: planned.gather(native, options),
        )

    async def read_async(self, selection: Any) -> npt.NDArray[Any]:
        """The selection's values, awaited (``Array.read_async``): one native gather
        completed through the loop's descriptor, else on the worker pool. Cancelled, it
        raises only once the native side is done with the result buffer."""
        planned = self._plan(selection, None)
        if planned is None:
            return await read_scattered_async(self._read_selected, selection, None)
        if planned.picks is not None:
            native, options = self._native, self._options
            present = planned.present()
            started = completion.submit_start(
                lambda queue, token: planned.start(native, options, queue, token, present),
                (native, options, planned, present),
            )
            if started is None:
                await settled(workers.run(planned.gather, native, options))
            else:
                await settled(started)
        return planned.finish()

    def _plan(self, selection: Any, out: npt.NDArray[Any] | None) -> _Planned | None:
        """The selection as one native gather; None where it is no gather (variable-length
        types go through zarr's indexers)."""
        typed = self._selections.typed
        gathered = typed.native_dtype
        if typed.variable or gathered is None:
            return None
        picks: OrthogonalPicks | PointPicks | None
        if self._kind == "orthogonal":
            picks, shape = plan_orthogonal(self._grid, selection)
        elif is_bool_array(selection) and np.shape(selection) == self._grid.shape:
            picks, shape = plan_mask(self._grid, selection)
        else:
            picks, shape = plan_coordinates(self._grid, selection)
        converts = gathered != self._dtype
        if out is None:
            out = results.empty(shape, self._dtype)
        elif (
            out.dtype != self._dtype or out.shape != shape or not out.flags.writeable
            or not (converts or out.flags.c_contiguous)
        ):
            layout = "" if converts else "C-contiguous "
            raise ZarrsValueError(
                f"out must be a writeable {layout}{self._dtype} array of shape {shape}, not {out.dtype} {out.shape}"
            )
        # Stored in another byte order (raw bits): gathered as stored, then converted.
        buffer = np.empty(shape, dtype=gathered) if converts else out
        target = buffer
        if isinstance(picks, OrthogonalPicks):
            extents = iter(shape)
            # The native output has every axis of the array, of length 1 where an integer indexes.
            target = buffer.reshape([1 if d in picks.inserted_axes else next(extents) for d in range(len(self._grid.shape))])
        return _Planned(picks, target, buffer, out)

    def _read_selected(self, selection: Any, out: npt.NDArray[Any] | None) -> npt.NDArray[Any]:
        """The selection read through zarr's indexers (variable-length types)."""
        values = self._selections.read(self._kind, selection, self._options).astype(self._dtype, copy=False)
        if out is None:
            return values
        if out.dtype != self._dtype or out.shape != values.shape or not out.flags.writeable:
            raise ZarrsValueError(f"out must be a writeable {self._dtype} array of shape {values.shape}, not {out.dtype} {out.shape}")
        out[...] = values
        return out


class _Planned:
    """One native gather, planned: its picks (None: it picks nothing), the buffer the
    native side writes (``target``, a view of ``buffer`` with the array's every axis for an
    orthogonal gather) and what the read returns (``result``: ``buffer``, or where the array
    is stored in another byte order, converted from it)."""

    __slots__ = ("buffer", "picks", "result", "target")

    def __init__(
        self, picks: OrthogonalPicks | PointPicks | None, target: npt.NDArray[Any], buffer: npt.NDArray[Any],
        result: npt.NDArray[Any],
    ) -> None:
        self.picks, self.target, self.buffer, self.result = picks, target, buffer, result

    def present(self) -> npt.NDArray[np.uint8]:
        """The presence flags a started gather writes, one per chunk."""
        picks = self.picks
        return np.zeros(0 if picks is None else len(picks.key_offsets) - 1, dtype=np.uint8)

    def gather(self, native: ArrayHandle, options: Options) -> None:
        """Gather, blocking."""
        picks = self.picks
        if isinstance(picks, OrthogonalPicks):
            native.gather_orthogonal(
                options, picks.keys, picks.key_offsets, picks.chunk_shapes, picks.picks, picks.indices,
                picks.positions, self.target,
            )
        elif picks is not None:
            native.gather_points(
                options, picks.keys, picks.key_offsets, picks.chunk_shapes, picks.counts, picks.coords,
                picks.offsets, self.target,
            )

    def start(
        self, native: ArrayHandle, options: Options, queue: CompletionQueue, token: int, present: npt.NDArray[np.uint8]
    ) -> None:
        """Start the gather on ``queue`` as ``token`` (``self`` and ``present`` stay
        referenced until it is drained)."""
        picks = self.picks
        if isinstance(picks, OrthogonalPicks):
            native.gather_orthogonal_start(
                queue, token, options, picks.keys, picks.key_offsets, picks.chunk_shapes, picks.picks,
                picks.indices, picks.positions, self.target, present,
            )
        elif picks is not None:
            native.gather_points_start(
                queue, token, options, picks.keys, picks.key_offsets, picks.chunk_shapes, picks.counts,
                picks.coords, picks.offsets, self.target, present,
            )

    def finish(self) -> npt.NDArray[Any]:
        """The values, once gathered."""
        if self.buffer is not self.result:
            self.result[...] = self.buffer
        return self.result


async def read_region_async(
    native: ArrayHandle, options: Options, batch: ChunkBatch, start: list[int], buffer: npt.NDArray[Any]
) -> None:
    """Read a region into ``buffer`` (its shape) without blocking the loop: started natively
    and completed through the loop's descriptor, else (no descriptor on this loop or
    platform) on the worker pool."""
    started = completion.submit(native, options, batch, buffer)
    # Cancelled, it still waits for the native read: until then it writes into ``buffer``.
    if started is None:
        await settled(workers.run(native.retrieve_subset, options, start, buffer))
    else:
        await settled(started)


async def read_scattered_async(read: Callable[..., npt.NDArray[Any]], *args: Any) -> npt.NDArray[Any]:
    """``read(*args)`` on the worker pool: what is neither a region nor one native gather."""
    result: npt.NDArray[Any] = await settled(workers.run(read, *args))
    return result
