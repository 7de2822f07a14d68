"""Thin, typed wrappers over the C functions: argument checks in, exceptions out.

Each native handle lives in a Python object that frees it when collected (``ffi.gc``).
Buffers are numpy arrays, checked for C order, dtype width and size before the call, so
the C side only ever sees pointers with correct lengths. Nothing above this package touches
cffi objects.

One module per C group of ``zarrs_ffi.h`` (its ``ffi/<group>.rs``), each importing only
those listed before it:

- ``library``: loading the library, ``Result`` codes and ``check`` (the only module that
  opens it)
- ``convert``: pointers, lengths and strings from Python values; ``lib()`` for every
  wrapper; errors of codec-only calls named by key (``_check_named``)
- ``options``: ``native_version``, ``keep_warm``, ``Options`` (``mod.rs``, ``options.rs``)
- ``storage``: ``Storage`` (``storage.rs``)
- ``batch``: ``ChunkBatch`` and the per-chunk pointers and keys the batch, codec and
  encoded-I/O calls take
- ``handle``: ``ArrayBase``, the state and checks every group of ``ArrayHandle`` shares
- ``codec``: ``decode_chunks``, ``encode_chunks`` (``codec.rs``)
- ``chunks``: ``read_chunks``, ``write_chunks`` (``batch.rs``); ``fetch_encoded``,
  ``store_encoded`` (``encoded_io.rs``)
- ``completion``: ``CompletionQueue``, ``read_chunks_start`` (``completion.rs``)
- ``gather``: ``gather_orthogonal``, ``gather_points`` (``gather.rs``)
- ``plan``: ``ReadPlan``, ``REQUEST_*``, ``read_plan``, ``sharded``, ``needs_old``
  (``plan.rs``)
- ``array``: ``ArrayHandle``, with the array group itself (``array.rs``), composed of the
  mixins above
- ``variable``: ``decode_variable_chunks``, ``encode_variable_chunks`` (``variable.rs``)

This module only re-exports their public names.
"""

from __future__ import annotations

from .array import ArrayHandle
from .batch import ChunkBatch
from .completion import CompletionQueue

# Re-exported so that one patch of ``_bindings.lib`` reaches every wrapper (convert.lib).
from .library import lib as lib
from .options import Options, keep_warm, native_version
from .plan import REQUEST_RANGE, REQUEST_SUFFIX, REQUEST_WHOLE, ReadPlan
from .storage import Storage
from .variable import decode_variable_chunks, encode_variable_chunks

__all__ = [
    "REQUEST_RANGE",
    "REQUEST_SUFFIX",
    "REQUEST_WHOLE",
    "ArrayHandle",
    "ChunkBatch",
    "CompletionQueue",
    "Options",
    "ReadPlan",
    "Storage",
    "decode_variable_chunks",
    "encode_variable_chunks",
    "keep_warm",
    "native_version",
]
