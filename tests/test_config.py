"""zarr's config reaches the native options, and pickled pipelines re-read it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import zarr
from conftest import assert_same, make_data, native_only
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.storage import LocalStore

import zarrs_cffi
from zarrs_cffi import stores
from zarrs_cffi._bindings import Options

SETTINGS = {
    "threading.max_workers": 3,
    "codec_pipeline.chunk_concurrent_minimum": 2,
    "codec_pipeline.chunk_concurrent_maximum": 5,
    "codec_pipeline.validate_checksums": False,
}
EXPECTED = Options(num_threads=3, chunk_concurrent_minimum=2, chunk_concurrent_maximum=5, validate_checksums=False)


def _create(path, **kwargs) -> zarr.Array:
    return zarr.create_array(LocalStore(path), shape=(40, 30), chunks=(8, 8), dtype="float32", **kwargs)


def _options(arr: zarr.Array) -> Options:
    native = arr.async_array.codec_pipeline.native
    assert native is not None, arr.async_array.codec_pipeline.reason
    return native.options


def test_defaults(tmp_path, zarrs_pipeline):
    # zarr's default threading.max_workers is None: one native thread per CPU (0).
    assert zarr.config.get("threading.max_workers") is None
    assert _options(_create(tmp_path)) == Options()


def test_config_is_read_into_the_options(tmp_path, zarrs_pipeline):
    with zarr.config.set(SETTINGS):
        arr = _create(tmp_path)
    assert _options(arr) == EXPECTED
    # The options are fixed when the array is opened, not read on each call.
    data = make_data("float32", (40, 30), seed=40)
    with native_only(writes=True, reads=True):
        arr[:] = data
        assert_same(arr[:], data)
    assert _options(arr) == EXPECTED
    # Reopening picks up the current (default) config again.
    assert _options(zarr.open_array(LocalStore(tmp_path))) == Options()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("codec", ["zstd", "sharding"])
def test_few_workers_still_read_and_write(tmp_path, zarrs_pipeline, workers, codec):
    kwargs = {"compressors": [ZstdCodec(level=1)]}
    if codec == "sharding":
        kwargs["shards"] = (16, 16)
    settings = {"threading.max_workers": workers, "codec_pipeline.chunk_concurrent_maximum": 1}
    with zarr.config.set(settings):
        arr = zarr.create_array(LocalStore(tmp_path), shape=(200, 300), chunks=(8, 8), dtype="int64", **kwargs)
        assert _options(arr).num_threads == workers
        data = make_data("int64", (200, 300), seed=41)
        with native_only(writes=True, reads=True):
            arr[:] = data
            assert_same(arr[:], data)
            assert_same(arr[3:177, 5:299], data[3:177, 5:299])


def test_validate_checksums_defaults_to_true(tmp_path, zarrs_pipeline):
    with zarr.config.set({"codec_pipeline.validate_checksums": True}):
        assert _options(_create(tmp_path / "a")).validate_checksums is True
    assert _options(_create(tmp_path / "b", compressors=[Crc32cCodec()])).validate_checksums is True


@pytest.mark.parametrize("direct_io", [False, True])
def test_direct_io_selects_the_native_storage(tmp_path, zarrs_pipeline, direct_io):
    with zarr.config.set({"codec_pipeline.direct_io": direct_io}):
        arr = _create(tmp_path)
    storage = arr.async_array.codec_pipeline.native.array.storage
    assert storage is stores._cache[("filesystem", str(LocalStore(tmp_path).root), direct_io, False)]
    data = make_data("float32", (40, 30), seed=42)
    with native_only(writes=True, reads=True):
        arr[:] = data
        assert_same(arr[:], data)


def test_direct_io_and_buffered_storages_are_distinct(tmp_path, zarrs_pipeline):
    with zarr.config.set({"codec_pipeline.direct_io": True}):
        direct = _create(tmp_path)
    buffered = zarr.open_array(LocalStore(tmp_path))
    assert direct.async_array.codec_pipeline.native.array.storage is not buffered.async_array.codec_pipeline.native.array.storage
    # Both see the same bytes.
    with native_only(writes=True, reads=True):
        direct[:] = 7.0
        assert_same(buffered[:], np.full((40, 30), 7.0, dtype="float32"))


# --- pickling ------------------------------------------------------------------------------


def test_pickled_pipeline_reads_the_config_at_unpickling(tmp_path, zarrs_pipeline):
    with zarr.config.set({"threading.max_workers": 2}):
        arr = _create(tmp_path)
        pipeline = arr.async_array.codec_pipeline
        assert pipeline.native.options == Options(num_threads=2)
        blob = pickle.dumps(pipeline)
    with zarr.config.set(SETTINGS):
        restored = pickle.loads(blob)
    assert isinstance(restored, zarrs_cffi.ZarrsCodecPipeline)
    assert restored.native is not None, restored.reason
    assert restored.native.options == EXPECTED
    assert pipeline.native.options == Options(num_threads=2)
    # Unpickled without any special config: the defaults.
    assert pickle.loads(blob).native.options == Options()


def test_pickled_array_round_trips(tmp_path, zarrs_pipeline):
    data = make_data("float32", (40, 30), seed=43)
    arr = _create(tmp_path)
    arr[:] = data
    with zarr.config.set({"threading.max_workers": 1}):
        copy = pickle.loads(pickle.dumps(arr))
    assert isinstance(copy.async_array.codec_pipeline, zarrs_cffi.ZarrsCodecPipeline)
    assert _options(copy).num_threads == 1
    zarrs_cffi.reset_stats()
    with native_only(reads=True, writes=True):
        assert_same(copy[:], data)
        copy[0] = 1.0
        assert_same(arr[0], np.ones(30, dtype="float32"))


def test_pickled_codecs_only_pipeline(zarrs_pipeline):
    # Built by zarr for sharding's inner codecs: no store, so never native.
    pipeline = zarrs_cffi.ZarrsCodecPipeline.from_codecs([zarr.codecs.BytesCodec(), ZstdCodec(level=1)])
    restored = pickle.loads(pickle.dumps(pipeline))
    assert restored.native is None
    assert restored.reason == pipeline.reason
    assert [type(c) for c in restored] == [type(c) for c in pipeline]
