"""``ArrayBase``: what every group of ``ArrayHandle``'s methods relies on.

The handle, its dimensionality and element size, and the checks every data call makes
before it passes a caller's buffer or a batch's geometry to C. The methods themselves live
in one mixin per C group (``array.py``, ``chunks.py``, ``completion.py``, ``gather.py``,
``codec.py``, ``plan.py``), composed into ``ArrayHandle`` in ``array.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ZarrsValueError
from .convert import _u64_ptr

if TYPE_CHECKING:
    import numpy.typing as npt

    from .batch import ChunkBatch
    from .storage import Storage

__all__ = ["ArrayBase"]


class ArrayBase:
    """The state of an open native array (``ZarrsArray``) and the checks its calls share."""

    # The only slots of ArrayHandle: its mixins add none, so it has no __dict__.
    __slots__ = ("_handle", "_shape", "element_size", "ndim", "storage")

    _handle: Any
    _shape: tuple[int, ...]
    element_size: int
    ndim: int
    storage: Storage

    def _check_elements(self, array: npt.NDArray[Any], name: str) -> None:
        # The native side sees raw bytes. Object arrays hold PyObject pointers: decoding
        # into them (or encoding their addresses) would corrupt memory or leak addresses.
        if not isinstance(array, np.ndarray):
            raise ZarrsValueError(f"{name} must be a numpy array, not {type(array).__name__}")
        if array.dtype.hasobject:
            raise ZarrsValueError(f"{name} has dtype {array.dtype}, which holds Python objects; a numeric buffer is required")
        if array.dtype.itemsize != self.element_size:
            raise ZarrsValueError(
                f"{name} has {array.dtype.itemsize}-byte elements ({array.dtype}); "
                f"the array has {self.element_size}-byte elements"
            )

    def _check_out(self, out: npt.NDArray[Any]) -> None:
        """``_check_elements`` for an output with the array's own dimensionality."""
        self._check_elements(out, "out")
        if out.ndim != self.ndim:
            raise ZarrsValueError(f"out has {out.ndim} dimensions; the array has {self.ndim}")

    def _geometry_args(self, batch: ChunkBatch) -> tuple[Any, int]:
        if batch.geometry.shape[1:] != (4, self.ndim):
            raise ZarrsValueError(
                f"geometry has shape {batch.geometry.shape}; expected (n, 4, {self.ndim})"
            )
        return _u64_ptr(batch.geometry.reshape(-1)), batch.geometry.size
