"""dask tokenizes our pipeline cheaply and deterministically.

dask names arrays by tokenizing them, pipeline included. Our pipeline's fields hold the
store (for the native route and to rebuild it when unpickled), so dask's default
tokenization hashed a MemoryStore's whole contents once more per such field: 100x zarr's
own pipeline. ``ZarrsCodecPipeline.__dask_tokenize__`` tokenizes what the pipeline was
built from (metadata or codecs) and its settings; the array's own token covers the store.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.storage import LocalStore, MemoryStore

from zarrs_cffi import ZarrsCodecPipeline

dask = pytest.importorskip("dask")
from dask.base import tokenize  # noqa: E402


class Tripwire:
    """A value in a store's dictionary that records every time dask tokenizes it (dask
    pickles objects it has no rule for, such as a MemoryStore)."""

    hits = 0

    def __dask_tokenize__(self) -> object:
        Tripwire.hits += 1
        return "tripwire"

    def __reduce__(self) -> tuple[Any, ...]:
        Tripwire.hits += 1
        return (Tripwire, ())


def _pipeline(arr: zarr.Array) -> Any:
    return arr.async_array.codec_pipeline


def _array(store: Any, **kwargs: Any) -> zarr.Array:
    options: dict[str, Any] = {"shape": (256, 256), "chunks": (64, 64), "dtype": "uint16"}
    options.update(kwargs)
    return zarr.create_array(store, **options)


def test_same_metadata_tokenizes_equal(tmp_path: Any, zarrs_pipeline: None) -> None:
    a = _array(LocalStore(tmp_path / "a"))
    again = zarr.open_array(LocalStore(tmp_path / "a"))
    elsewhere = _array(MemoryStore())  # same metadata, another store
    assert isinstance(_pipeline(a), ZarrsCodecPipeline)
    assert tokenize(_pipeline(a)) == tokenize(_pipeline(again)) == tokenize(_pipeline(elsewhere))
    # Deterministic across calls and through pickling (the pipeline is rebuilt).
    assert tokenize(_pipeline(a)) == tokenize(_pipeline(a))
    assert tokenize(pickle.loads(pickle.dumps(_pipeline(a)))) == tokenize(_pipeline(a))


@pytest.mark.parametrize(
    "change",
    [
        {"dtype": "int16"},
        {"chunks": (32, 64)},
        {"shape": (256, 128)},
        {"compressors": ZstdCodec(level=9)},
        {"fill_value": 7},
        {"shards": (128, 128)},
        {"zarr_format": 2},
    ],
    ids=lambda change: next(iter(change)),
)
def test_different_metadata_tokenizes_differently(change: dict[str, Any], zarrs_pipeline: None) -> None:
    base = _array(MemoryStore())
    other = _array(MemoryStore(), **change)
    assert tokenize(_pipeline(base)) != tokenize(_pipeline(other))


def test_settings_are_part_of_the_token(zarrs_pipeline: None) -> None:
    store = MemoryStore()
    arr = _array(store)
    with zarr.config.set({"codec_pipeline.validate_checksums": False}):
        unchecked = zarr.open_array(store)
    assert tokenize(_pipeline(arr)) != tokenize(_pipeline(unchecked))


def test_pipelines_built_from_codecs_tokenize_deterministically() -> None:
    codecs = _array(MemoryStore()).metadata.codecs
    assert tokenize(ZarrsCodecPipeline.from_codecs(codecs)) == tokenize(ZarrsCodecPipeline.from_codecs(codecs))
    other = _array(MemoryStore(), compressors=ZstdCodec(level=9)).metadata.codecs
    assert tokenize(ZarrsCodecPipeline.from_codecs(codecs)) != tokenize(ZarrsCodecPipeline.from_codecs(other))


def test_tokenizing_never_touches_the_store(zarrs_pipeline: None) -> None:
    store = MemoryStore()
    arr = _array(store, shape=(2048, 2048), chunks=(256, 256))  # 8 MiB
    arr[:] = np.arange(2048 * 2048, dtype="uint16").reshape(2048, 2048)
    store._store_dict["tripwire"] = Tripwire()  # type: ignore[attr-defined]
    pipeline = _pipeline(arr)
    Tripwire.hits = 0
    tokenize(pipeline)
    assert Tripwire.hits == 0, "tokenizing the pipeline hashed the store's contents"
    tokenize(arr)  # the array's own token does cover the store
    assert Tripwire.hits > 0

    # And costs the same order as tokenizing zarr's own pipeline for the same metadata,
    # where hashing the 8 MiB store (what dask did before) cost ~100x as much.
    zarrs_own = BatchedCodecPipeline.from_codecs(arr.metadata.codecs)

    def best(obj: object) -> float:
        times = []
        for _ in range(7):
            start = time.perf_counter()
            tokenize(obj)
            times.append(time.perf_counter() - start)
        return min(times)

    ours, theirs = best(pipeline), best(zarrs_own)
    assert ours < 10 * theirs + 1e-3, (ours, theirs)


def test_from_zarr_names_follow_the_array(tmp_path: Any, zarrs_pipeline: None) -> None:
    da = pytest.importorskip("dask.array")
    a = _array(LocalStore(tmp_path / "a"))
    a[:] = 1
    b = _array(LocalStore(tmp_path / "b"))
    b[:] = 2
    assert da.from_zarr(a).name == da.from_zarr(zarr.open_array(LocalStore(tmp_path / "a"))).name
    assert da.from_zarr(a).name != da.from_zarr(b).name
    assert int(da.from_zarr(b).sum().compute()) == 2 * 256 * 256
