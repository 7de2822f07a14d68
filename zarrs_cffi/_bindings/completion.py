"""Reads started now and finished on the library's own threads (``ffi/completion.rs``):
``CompletionQueue`` and the ``ArrayHandle`` method that starts a read on one.

Waiting is not done here: ``_pipeline/completion.py`` watches the queue's descriptor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ZarrsError
from .convert import _out_buffer, _u64, _u64_ptr, lib
from .handle import ArrayBase
from .library import check, ffi

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .batch import ChunkBatch
    from .options import Options

__all__ = ["CompletionMixin", "CompletionQueue"]


class CompletionQueue:
    """Finished asynchronous reads (``ZarrsCompletionQueue``) and the file descriptor,
    owned by the library, that is readable while some wait to be drained.

    Raises ``ZarrsUnsupportedError`` where the platform has no such descriptor.
    """

    __slots__ = ("_codes", "_count", "_handle", "_tokens", "fd")

    #: The most tokens one ``drain`` returns.
    CAPACITY = 64

    def __init__(self) -> None:
        out = ffi.new("ZarrsCompletionQueue **")
        fd = ffi.new("int32_t *")
        check(lib().zarrs_completion_queue_new(out, fd))
        self._handle = ffi.gc(out[0], lib().zarrs_completion_queue_free)
        self.fd = int(fd[0])
        self._tokens = ffi.new("uint64_t[]", self.CAPACITY)
        self._codes = ffi.new("int32_t[]", self.CAPACITY)
        self._count = ffi.new("size_t *")

    def drain(self) -> list[tuple[int, int]]:
        """Up to ``CAPACITY`` finished ``(token, result code)`` pairs, oldest first."""
        check(lib().zarrs_completion_queue_drain(self._handle, self._tokens, self._codes, self.CAPACITY, self._count))
        n = int(self._count[0])
        return list(zip(ffi.unpack(self._tokens, n), ffi.unpack(self._codes, n), strict=True))

    def error(self, token: int) -> ZarrsError:
        """The exception a drained failed ``token`` raises: the type and message ``check``
        gives the synchronous call (the message names the chunk key)."""
        try:
            check(lib().zarrs_completion_queue_take_error(self._handle, token))
        except ZarrsError as exc:
            return exc
        raise AssertionError("take_error succeeded")  # it never returns success


class CompletionMixin(ArrayBase):
    """``read_chunks_start``."""

    __slots__ = ()

    def read_chunks_start(
        self,
        queue: CompletionQueue,
        token: int,
        options: Options,
        batch: ChunkBatch,
        out: npt.NDArray[Any],
        present: npt.NDArray[np.uint8],
    ) -> None:
        """Start reading a batch into ``out`` on the library's reading threads; its outcome
        arrives as ``token`` on ``queue``. Argument errors raise here, as ``read_chunks``
        raises them. ``self``, ``out`` and ``present`` (``len(batch)`` bytes, 1 where the
        chunk is stored) must stay referenced until the token is drained."""
        self._check_out(out)
        geometry, geometry_len = self._geometry_args(batch)
        out_shape = _u64(out.shape, "out.shape")
        check(
            lib().zarrs_array_read_chunks_start(
                queue._handle, token, self._handle, options._cdata(), len(batch), batch.keys, len(batch.keys),
                _u64_ptr(batch.key_offsets), geometry, geometry_len,
                _out_buffer(out, "out"), out.nbytes, _u64_ptr(out_shape),
                ffi.from_buffer("uint8_t[]", present, require_writable=True), len(present),
            )
        )
