"""Array metadata as zarrs reads it: the JSON document, and data types rewritten as raw bits.

zarrs lacks some fixed-size data types zarr has (null-terminated and raw bytes, structured
types, Zarr v2 datetimes). Their chunks are their bytes in the stored byte order, so such an
array opens natively as raw bits of the same size (``as_raw_bits``) and numpy converts the
byte order. The codec walkers here read Zarr v3 codec chains as JSON (``sharding_indexed``
nested inside); this module never touches a native handle.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zarr.core.metadata import ArrayMetadata

__all__ = ["as_raw_bits", "metadata_json"]

# Codecs that move bytes without looking at the element type: raw bits pass through them.
_BYTE_CODECS = frozenset({"bytes", "crc32c", "gzip", "zstd", "blosc"})


def metadata_json(metadata: ArrayMetadata) -> str:
    """The array's metadata document for zarrs (``zarr.json``, or ``.zarray`` for Zarr v2),
    without its user attributes: they play no part in encoding or decoding, and any JSON
    Python writes (lone surrogates in escapes, found by zarr's property tests) would
    otherwise make zarrs refuse the whole array. Compact, as zarr's ``to_buffer_dict``
    writes it with no ``json_indent`` (half the cost of going through it)."""
    document = metadata.to_dict()
    document.pop("attributes", None)
    return json.dumps(document)


def as_raw_bits(document: dict[str, Any], dtype: np.dtype[Any], fill_value: Any) -> tuple[str, np.dtype[Any]] | None:
    """``document`` with its data type replaced by raw bits of the same size, and the numpy
    data type whose bytes are the stored bytes; None when a codec depends on the element
    type (a filter, or an array-to-array codec). Raises TypeError or ValueError for a fill
    value numpy cannot convert."""
    if document.get("zarr_format") != 3:
        if document.get("filters"):
            return None
        document["dtype"] = f"|V{dtype.itemsize}"
        fill = _fill_bytes(fill_value, dtype, dtype)
        document["fill_value"] = base64.standard_b64encode(fill).decode("ascii")
        return json.dumps(document), dtype
    codecs = document.get("codecs", [])
    if not _byte_codecs_only(codecs):
        return None
    stored = dtype
    endian = _bytes_endian(codecs)
    if endian is not None:
        stored = dtype.newbyteorder("<" if endian == "little" else ">")
    document["data_type"] = f"r{dtype.itemsize * 8}"
    document["fill_value"] = list(_fill_bytes(fill_value, dtype, stored))
    # Raw bits have no byte order: the bytes codec takes no endian setting.
    _strip_endian(codecs)
    return json.dumps(document), stored


def _fill_bytes(fill_value: Any, dtype: np.dtype[Any], stored: np.dtype[Any]) -> bytes:
    """The fill value's bytes in the stored byte order; zeros for a Zarr v2 null fill value,
    which zarr reads as the data type's default."""
    if fill_value is None:
        return bytes(dtype.itemsize)
    return np.array(fill_value, dtype=dtype).astype(stored).tobytes()


def _name(codec: Any) -> Any:
    return codec.get("name") if isinstance(codec, dict) else codec


def _inner(codec: dict[str, Any]) -> list[Any]:
    codecs: list[Any] = codec["configuration"]["codecs"]
    return codecs


def _byte_codecs_only(codecs: list[Any]) -> bool:
    """Whether every codec of a v3 chain (inside sharding too) only moves bytes."""
    for codec in codecs:
        if _name(codec) == "sharding_indexed":
            if not _byte_codecs_only(_inner(codec)):
                return False
        elif _name(codec) not in _BYTE_CODECS:
            return False
    return True


def _bytes_endian(codecs: list[Any]) -> str | None:
    """The endian setting of the bytes codec in a v3 codec chain (inside sharding too)."""
    for codec in codecs:
        if not isinstance(codec, dict):
            continue
        if codec.get("name") == "bytes":
            endian = (codec.get("configuration") or {}).get("endian")
            return None if endian is None else str(endian)
        if codec.get("name") == "sharding_indexed":
            return _bytes_endian(_inner(codec))
    return None


def _strip_endian(codecs: list[Any]) -> None:
    """Remove the bytes codec's endian setting throughout a v3 codec chain, in place."""
    for codec in codecs:
        if isinstance(codec, dict) and codec.get("name") == "bytes":
            codec.pop("configuration", None)
        elif isinstance(codec, dict) and codec.get("name") == "sharding_indexed":
            _strip_endian(_inner(codec))
