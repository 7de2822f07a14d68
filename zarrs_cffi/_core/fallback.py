"""Falling back to zarr's own pipeline: the internal signal, and zarr's pipeline itself.

Whatever finds that an array, buffer or selection cannot be handled natively (opening the
array, planning a batch, taking zarr's buffer) calls ``fall_back`` with the reason's class
and the reason; it is the only place ``Fallback`` is raised, so one search for
``fall_back(`` finds every reason. ``ZarrsCodecPipeline`` catches it in one place, counts it
and hands the call to ``zarr_pipeline``'s result. It never reaches users.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NoReturn

from zarr.core.array_spec import ArrayConfig, ArraySpec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.core.metadata.v3 import ArrayV3Metadata

if TYPE_CHECKING:
    from zarr.abc.codec import CodecPipeline
    from zarr.core.metadata import ArrayMetadata

__all__ = ["Fallback", "Kind", "fall_back", "zarr_codecs", "zarr_pipeline"]

#: What a reason is about: the array's codecs (or metadata zarrs refuses), its data type,
#: the buffer zarr hands over, its store, or a batch's selections.
Kind = Literal["codec", "data type", "buffer", "store", "selection"]


class Fallback(Exception):
    """This array, buffer or batch is not native: zarr's own pipeline handles it.

    Parameters
    ----------
    kind
        The reason's class.
    reason
        Why, as counted in ``stats().fallback_reasons`` and logged.
    """

    def __init__(self, kind: Kind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def fall_back(kind: Kind, reason: str) -> NoReturn:
    """Hand this array, buffer or batch to zarr's own pipeline, saying why (the only raise
    of ``Fallback``; any exception being handled is not chained to it)."""
    raise Fallback(kind, reason) from None


def zarr_codecs(metadata: ArrayMetadata) -> CodecPipeline:
    """zarr's own pipeline for ``metadata``'s codec chain, not yet evolved for its chunks:
    the cheap first step of ``create_codec_pipeline``, where zarr validates the chain and
    warns about it (sharding combined with other codecs), so at the same moment as zarr."""
    if isinstance(metadata, ArrayV3Metadata):
        return BatchedCodecPipeline.from_codecs(metadata.codecs)
    from zarr.codecs._v2 import V2Codec

    return BatchedCodecPipeline.from_codecs([V2Codec(filters=metadata.filters, compressor=metadata.compressor)])


def zarr_pipeline(metadata: ArrayMetadata, codecs: CodecPipeline | None = None) -> CodecPipeline:
    """zarr's own pipeline for ``metadata``, built as zarr's create_codec_pipeline does;
    from ``codecs`` (``zarr_codecs(metadata)``, which warned already) when given."""
    codecs = zarr_codecs(metadata) if codecs is None else codecs
    if isinstance(metadata, ArrayV3Metadata):
        chunk_shape = getattr(metadata.chunk_grid, "chunk_shape", (1,) * len(metadata.shape))
        spec = ArraySpec(
            shape=chunk_shape,
            dtype=metadata.data_type,
            fill_value=metadata.fill_value,
            config=ArrayConfig.from_dict({}),
            prototype=default_buffer_prototype(),
        )
        return codecs.evolve_from_array_spec(spec)
    spec = ArraySpec(
        shape=metadata.chunks,
        dtype=metadata.dtype,
        fill_value=metadata.fill_value,
        config=ArrayConfig.from_dict({"order": metadata.order}),
        prototype=default_buffer_prototype(),
    )
    return codecs.evolve_from_array_spec(spec)
