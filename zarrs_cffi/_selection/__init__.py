"""zarr's per-chunk selections as native chunk batches, in pure Python.

zarr's indexers hand a codec pipeline, per chunk, a selection inside the chunk and a
selection inside the output (``requests.py``). A route's ``Planner`` (``planner.py``) turns
a batch of them into one of three plans; none does I/O or touches native handles:

- ``contiguous.py``: step-1 slices and integers become a subset of each chunk and a start
  in the output buffer, which the native side decodes into directly;
- ``picks.py``: scattered selections the native side gathers itself, each chunk decoded
  once and its picked elements written straight into zarr's output;
- ``boxes.py``: anything else, as bounding boxes decoded into a scratch buffer, with
  numpy's copies between the boxes and zarr's output or value beside the planner.

``points.py`` reads a batch of coordinate points as whole-batch arrays, for both picks and
boxes.
"""

from __future__ import annotations

from .boxes import BoxGroup
from .contiguous import ChunkPlan
from .picks import OrthogonalPicks, PointPicks
from .planner import Planner, ReadPlan, WritePlan
from .requests import ChunkRequest, requests

__all__ = [
    "BoxGroup", "ChunkPlan", "ChunkRequest", "OrthogonalPicks", "Planner", "PointPicks", "ReadPlan", "WritePlan",
    "requests",
]
