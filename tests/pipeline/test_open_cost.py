"""What opening an array costs with our pipeline: no native call, and zarr's own pipeline
(which most arrays never use) is not evolved for the array's chunks, most of its cost, so
workloads that open many small arrays (anndata's obs and var columns) pay less per open than
with zarr's default. zarr's codec chain is still checked at open, so its warnings come when
zarr's would; its pipeline is finished once, when first needed, and behaves as before."""

from __future__ import annotations

import pickle
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi
from zarrs_cffi import _bindings

from conftest import ZARR_PIPELINE, assert_no_fallback, fallback_array

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _no_fallbacks_left_behind() -> Any:
    """Tests here fall back on purpose; later modules count fallbacks from zero."""
    yield
    zarrs_cffi.reset_stats()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """zarr pipelines finished for an array's chunks (``evolve_from_array_spec``, the
    costly step of building zarr's pipeline) and native library calls (every C call goes
    through ``_bindings.library.lib()``), counted."""
    counts = {"zarr_pipeline": 0, "native": 0}
    evolve, lib = BatchedCodecPipeline.evolve_from_array_spec, _bindings.library.lib

    def counted_evolve(self: Any, *args: Any) -> Any:
        counts["zarr_pipeline"] += 1
        return evolve(self, *args)

    def counted_lib() -> Any:
        counts["native"] += 1
        return lib()

    monkeypatch.setattr(BatchedCodecPipeline, "evolve_from_array_spec", counted_evolve)
    monkeypatch.setattr(_bindings.library, "lib", counted_lib)
    return counts


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_opening_evolves_no_zarr_pipeline_and_calls_nothing_native(
    tmp_path: Path, kind: str, counted: dict[str, int], zarrs_pipeline: None
) -> None:
    store = MemoryStore() if kind == "memory" else LocalStore(tmp_path)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        zarr.create_array(store, shape=(20,), chunks=(5,), dtype="float32")[:] = np.arange(20)
    counted.update(zarr_pipeline=0, native=0)
    arrays = [zarr.open_array(store, mode="r") for _ in range(5)]
    assert counted == {"zarr_pipeline": 0, "native": 0}
    # Native reads never need zarr's pipeline either.
    np.testing.assert_array_equal(arrays[0][:], np.arange(20, dtype="float32"))
    np.testing.assert_array_equal(arrays[1][3:7], np.arange(3, 7, dtype="float32"))
    assert counted["zarr_pipeline"] == 0 and counted["native"] > 0
    assert_no_fallback()


def test_zarr_pipeline_is_built_once_when_an_array_falls_back(
    tmp_path: Path, counted: dict[str, int], zarrs_pipeline: None
) -> None:
    arr = fallback_array(tmp_path / "a")
    counted.update(zarr_pipeline=0)
    data = np.arange(120, dtype="int32").reshape(10, 12)
    arr[:] = data
    np.testing.assert_array_equal(arr[:], data)
    np.testing.assert_array_equal(arr[2:9, 3], data[2:9, 3])
    assert counted["zarr_pipeline"] == 1
    assert zarrs_cffi.stats().fallback_reads > 0


def test_a_pipeline_behaves_the_same_before_and_after_zarr_pipeline_is_built(tmp_path: Path, zarrs_pipeline: None) -> None:
    store = LocalStore(tmp_path)
    zarr.create_array(store, shape=(8, 8), chunks=(4, 4), dtype="uint16", compressors=zarr.codecs.ZstdCodec(level=1))
    first, second = (zarr.open_array(store, mode="r").async_array.codec_pipeline for _ in range(2))
    assert first.zarr_pipeline is None and second.zarr_pipeline is None
    reference = first.fallback
    assert first.zarr_pipeline is reference and first.fallback is reference  # built once
    assert first == second and hash(first) == hash(second)
    assert [type(codec).__name__ for codec in first] == [type(codec).__name__ for codec in reference]
    assert first.supports_partial_decode == reference.supports_partial_decode
    restored = pickle.loads(pickle.dumps(second))
    assert restored.zarr_pipeline is None
    assert restored == first


def test_zarr_warns_about_the_codec_chain_at_open_not_at_the_fallback(tmp_path: Path, zarrs_pipeline: None) -> None:
    from zarr.codecs import ShardingCodec, TransposeCodec
    from zarr.errors import ZarrUserWarning

    store = LocalStore(tmp_path)
    chain = {"filters": [TransposeCodec(order=(1, 0))], "serializer": ShardingCodec(chunk_shape=(2, 2)), "compressors": None}
    with pytest.warns(ZarrUserWarning, match="sharding_indexed"):
        arr = zarr.create_array(store, shape=(4, 4), chunks=(4, 4), dtype="int32", **chain)
    with pytest.warns(ZarrUserWarning, match="sharding_indexed"):
        arr = zarr.open_array(store, mode="r+")
    data = np.arange(16, dtype="int32").reshape(4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZarrUserWarning)  # zarr's pipeline, finished now, must not warn again
        arr[:] = data
        np.testing.assert_array_equal(arr[:], data)
    assert zarrs_cffi.stats().fallback_reads > 0  # transpose around sharding falls back
