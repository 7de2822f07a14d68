"""The direct API's reads beyond one blocking region: ``Array.oindex`` and ``Array.vindex``,
gathered natively (``ArrayHandle.gather_orthogonal`` / ``gather_points``), each chunk
decoded once and its picked elements written straight into the result; and
``Array.read_async``'s two ways (a region started natively and completed through the loop's
descriptor, anything else on the worker pool)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.core.indexing import is_bool_array

from ._core import results, workers
from ._direct_futures import settled
from ._pipeline import completion
from ._selection.picks import OrthogonalPicks
from ._selection.whole import plan_coordinates, plan_mask, plan_orthogonal
from .errors import ZarrsValueError

if TYPE_CHECKING:
    import numpy.typing as npt

    from collections.abc import Callable

    from ._bindings import ArrayHandle, ChunkBatch, Options
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
        typed = self._selections.typed
        if typed.variable or typed.native_dtype != self._dtype:
            if typed.native_dtype is None:
                values = self._selections.read(self._kind, selection, self._options)
            else:
                # Stored in another byte order (raw bits): gathered as stored, then converted.
                as_stored = Gathers(self._native, self._options, self._grid, typed.native_dtype, self._kind, self._selections)
                values = as_stored.read(selection)
            values = values.astype(self._dtype, copy=False)
            if out is None:
                return values
            if out.dtype != self._dtype or out.shape != values.shape or not out.flags.writeable:
                raise ZarrsValueError(f"out must be a writeable {self._dtype} array of shape {values.shape}, not {out.dtype} {out.shape}")
            out[...] = values
            return out
        picks: OrthogonalPicks | PointPicks | None
        if self._kind == "orthogonal":
            picks, shape = plan_orthogonal(self._grid, selection)
        elif is_bool_array(selection) and np.shape(selection) == self._grid.shape:
            picks, shape = plan_mask(self._grid, selection)
        else:
            picks, shape = plan_coordinates(self._grid, selection)
        if out is None:
            out = results.empty(shape, self._dtype)
        elif out.dtype != self._dtype or out.shape != shape or not out.flags.c_contiguous or not out.flags.writeable:
            raise ZarrsValueError(
                f"out must be a writeable C-contiguous {self._dtype} array of shape {shape}, "
                f"not {out.dtype} {out.shape}"
            )
        if picks is None:
            return out
        if isinstance(picks, OrthogonalPicks):
            extents = iter(shape)
            # The native output has every axis of the array, of length 1 where an integer indexes.
            target = out.reshape([1 if d in picks.inserted_axes else next(extents) for d in range(len(self._grid.shape))])
            self._native.gather_orthogonal(
                self._options, picks.keys, picks.key_offsets, picks.chunk_shapes, picks.picks, picks.indices,
                picks.positions, target,
            )
        else:
            self._native.gather_points(
                self._options, picks.keys, picks.key_offsets, picks.chunk_shapes, picks.counts, picks.coords,
                picks.offsets, out,
            )
        return out


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


async def read_scattered_async(read: Callable[[Any], npt.NDArray[Any]], key: Any) -> npt.NDArray[Any]:
    """``read(key)`` on the worker pool (the native gathers have no completion call)."""
    result: npt.NDArray[Any] = await settled(workers.run(read, key))
    return result
