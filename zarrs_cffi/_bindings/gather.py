"""Native gathers of ``ArrayHandle`` (``ffi/gather.rs``): scattered picks of many chunks,
each chunk decoded once, copied straight into the caller's buffer; blocking, or started on
a ``CompletionQueue`` and finished on the library's reading threads.

Which chunks and picks is decided above this module (``_selection``); here only the
arrays are checked and passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ZarrsValueError
from .convert import _flat_u64, _out_buffer, _u64, _u64_ptr, lib
from .handle import ArrayBase
from .library import check, ffi

if TYPE_CHECKING:
    import numpy.typing as npt

    from .completion import CompletionQueue
    from .options import Options

__all__ = ["GatherMixin"]


class GatherMixin(ArrayBase):
    """``gather_orthogonal`` and ``gather_points``, and their ``*_start`` forms."""

    __slots__ = ()

    def gather_orthogonal(
        self,
        options: Options,
        keys: bytes,
        key_offsets: npt.NDArray[np.uint64],
        chunk_shapes: npt.NDArray[Any],
        picks: npt.NDArray[Any],
        indices: npt.NDArray[Any],
        positions: npt.NDArray[Any],
        out: npt.NDArray[Any],
    ) -> npt.NDArray[np.bool_]:
        """Gather an orthogonal selection of chunks straight into ``out`` (the array's ndim).

        ``keys`` back to back with ``len + 1`` ``key_offsets``; ``chunk_shapes`` of shape
        ``(len, ndim)``; ``picks`` of shape ``(len, ndim, 2)``: per chunk and axis a
        ``(start, count)`` pair, the axis' picks being ``indices[start:start + count]`` of
        the chunk going to ``positions[start:start + count]`` of ``out``. Returns which
        chunks are stored (the others' picks get the fill value).
        """
        n = len(key_offsets) - 1
        present = np.zeros(n, dtype=np.uint8)
        check(lib().zarrs_array_gather_orthogonal(self._handle, *self._orthogonal_args(
            options, keys, key_offsets, chunk_shapes, picks, indices, positions, out, present
        )))
        return present.view(np.bool_)

    def gather_orthogonal_start(
        self,
        queue: CompletionQueue,
        token: int,
        options: Options,
        keys: bytes,
        key_offsets: npt.NDArray[np.uint64],
        chunk_shapes: npt.NDArray[Any],
        picks: npt.NDArray[Any],
        indices: npt.NDArray[Any],
        positions: npt.NDArray[Any],
        out: npt.NDArray[Any],
        present: npt.NDArray[np.uint8],
    ) -> None:
        """Start ``gather_orthogonal`` on the library's reading threads; its outcome arrives
        as ``token`` on ``queue``. Argument errors raise here. ``self``, ``out`` and
        ``present`` (one byte per chunk, 1 where stored) must stay referenced, and unused,
        until the token is drained; the other arrays are copied."""
        check(lib().zarrs_array_gather_orthogonal_start(queue._handle, token, self._handle, *self._orthogonal_args(
            options, keys, key_offsets, chunk_shapes, picks, indices, positions, out, present
        )))

    def _orthogonal_args(
        self,
        options: Options,
        keys: bytes,
        key_offsets: npt.NDArray[np.uint64],
        chunk_shapes: npt.NDArray[Any],
        picks: npt.NDArray[Any],
        indices: npt.NDArray[Any],
        positions: npt.NDArray[Any],
        out: npt.NDArray[Any],
        present: npt.NDArray[np.uint8],
    ) -> tuple[Any, ...]:
        """The C arguments of an orthogonal gather after the handle, checked."""
        self._check_out(out)
        n = len(key_offsets) - 1
        shapes, pairs = _flat_u64(chunk_shapes), _flat_u64(picks)
        indices, positions = _flat_u64(indices), _flat_u64(positions)
        if indices.size != positions.size:
            raise ZarrsValueError(f"{indices.size} indices but {positions.size} positions")
        _check_present(present, n)
        out_shape = _u64(out.shape, "out.shape")
        return (
            options._cdata(), n, keys, len(keys), _u64_ptr(_flat_u64(key_offsets)),
            _u64_ptr(shapes), shapes.size, _u64_ptr(pairs), pairs.size,
            _u64_ptr(indices), _u64_ptr(positions), indices.size,
            _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
            ffi.from_buffer("uint8_t[]", present, require_writable=True), n,
        )

    def gather_points(
        self,
        options: Options,
        keys: bytes,
        key_offsets: npt.NDArray[np.uint64],
        chunk_shapes: npt.NDArray[Any],
        counts: npt.NDArray[Any],
        coords: npt.NDArray[Any],
        offsets: npt.NDArray[Any],
        out: npt.NDArray[Any],
    ) -> npt.NDArray[np.bool_]:
        """Gather points of chunks straight into ``out`` (any shape, C order, addressed by
        flat element offset).

        ``keys``, ``key_offsets`` and ``chunk_shapes`` as for ``gather_orthogonal``;
        ``counts[i]`` points of chunk ``i`` follow in order in ``coords`` (shape
        ``(points, ndim)``, in the chunk) and ``offsets`` (``points``, into ``out``).
        Returns which chunks are stored.
        """
        n = len(key_offsets) - 1
        present = np.zeros(n, dtype=np.uint8)
        check(lib().zarrs_array_gather_points(self._handle, *self._points_args(
            options, keys, key_offsets, chunk_shapes, counts, coords, offsets, out, present
        )))
        return present.view(np.bool_)

    def gather_points_start(
        self,
        queue: CompletionQueue,
        token: int,
        options: Options,
        keys: bytes,
        key_offsets: npt.NDArray[np.uint64],
        chunk_shapes: npt.NDArray[Any],
        counts: npt.NDArray[Any],
        coords: npt.NDArray[Any],
        offsets: npt.NDArray[Any],
        out: npt.NDArray[Any],
        present: npt.NDArray[np.uint8],
    ) -> None:
        """Start ``gather_points`` on the library's reading threads, as
        ``gather_orthogonal_start`` starts ``gather_orthogonal``."""
        check(lib().zarrs_array_gather_points_start(queue._handle, token, self._handle, *self._points_args(
            options, keys, key_offsets, chunk_shapes, counts, coords, offsets, out, present
        )))

    def _points_args(
        self,
        options: Options,
        keys: bytes,
        key_offsets: npt.NDArray[np.uint64],
        chunk_shapes: npt.NDArray[Any],
        counts: npt.NDArray[Any],
        coords: npt.NDArray[Any],
        offsets: npt.NDArray[Any],
        out: npt.NDArray[Any],
        present: npt.NDArray[np.uint8],
    ) -> tuple[Any, ...]:
        """The C arguments of a point gather after the handle, checked."""
        self._check_elements(out, "out")
        n = len(key_offsets) - 1
        shapes, counts, coords, offsets = _flat_u64(chunk_shapes), _flat_u64(counts), _flat_u64(coords), _flat_u64(offsets)
        if counts.size != n:
            raise ZarrsValueError(f"{counts.size} counts for {n} chunks")
        _check_present(present, n)
        return (
            options._cdata(), n, keys, len(keys), _u64_ptr(_flat_u64(key_offsets)),
            _u64_ptr(shapes), shapes.size, _u64_ptr(counts), _u64_ptr(coords), coords.size,
            _u64_ptr(offsets), offsets.size, _out_buffer(out, "out"), out.nbytes,
            ffi.from_buffer("uint8_t[]", present, require_writable=True), n,
        )


def _check_present(present: npt.NDArray[np.uint8], n: int) -> None:
    if present.dtype != np.uint8 or present.shape != (n,) or not present.flags.c_contiguous:
        raise ZarrsValueError(f"present must be {n} contiguous uint8 values, not {present.dtype} {present.shape}")
