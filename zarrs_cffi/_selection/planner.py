"""How one array's reads and writes are planned: chosen once, with its route.

A route holds one ``Planner`` and every read or write asks it. Nothing here does I/O or
touches native handles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from . import boxes, contiguous, picks
from .boxes import BoxGroup
from .contiguous import ChunkPlan
from .picks import OrthogonalPicks, PointPicks

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .requests import ChunkRequest

__all__ = ["Planner", "ReadPlan", "WritePlan"]

#: A read: contiguous subsets decoded straight into zarr's output, picks the native side
#: gathers itself, or bounding boxes numpy copies out of.
ReadPlan: TypeAlias = "ChunkPlan | OrthogonalPicks | PointPicks | list[BoxGroup]"
#: A write: contiguous subsets encoded from zarr's value, or bounding boxes numpy copies into
#: (a read-modify-write of each box).
WritePlan: TypeAlias = "ChunkPlan | list[BoxGroup]"


@dataclass(frozen=True)
class Planner:
    """The plans of one array's batches.

    Attributes
    ----------
    ndim, itemsize
        The array's number of axes and element size.
    native_picks
        Scattered reads are gathered by the native side (``picks.py``): only where the
        native library reaches the store's bytes itself.
    split_inner
        The inner chunk shape at which box reads split integer-array axes
        (``boxes.split_inner``), where reading a shard once per box costs little: its
        index is read again per box. None: one box per chunk.
    """

    ndim: int
    itemsize: int
    native_picks: bool = False
    split_inner: tuple[int, ...] | None = None

    def contiguous(self, batch: Sequence[ChunkRequest], drop_axes: tuple[int, ...]) -> ChunkPlan | None:
        """The batch as contiguous subsets, or None when a selection is not contiguous."""
        return contiguous.plan_contiguous(batch, self.ndim, drop_axes)

    def read(self, batch: Sequence[ChunkRequest], drop_axes: tuple[int, ...]) -> ReadPlan:
        """A read's plan: contiguous, else native picks, else boxes; raises ``Fallback``
        when none applies."""
        planned = contiguous.plan_contiguous(batch, self.ndim, drop_axes)
        if planned is not None:
            return planned
        if self.native_picks:
            picked = picks.plan_picks(batch, self.ndim, drop_axes)
            if picked is not None:
                return picked
        if not drop_axes:
            points = boxes.plan_point_boxes(batch, self.ndim, self.itemsize)
            if points is not None:
                return points
        return boxes.plan_boxes(batch, self.ndim, self.itemsize, inner=self.split_inner, drop_axes=drop_axes)

    def write(self, batch: Sequence[ChunkRequest], drop_axes: tuple[int, ...]) -> WritePlan:
        """A write's plan: contiguous, else boxes; raises ``Fallback`` when neither applies."""
        planned = contiguous.plan_contiguous(batch, self.ndim, drop_axes)
        if planned is not None:
            return planned
        return boxes.plan_boxes(batch, self.ndim, self.itemsize, drop_axes=drop_axes)
