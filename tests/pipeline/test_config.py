"""zarr's config reaches the native options and takes effect, and pickled pipelines
re-read it.

Each setting is shown to change what happens, not only what is stored: ``async.concurrency``
bounds the store requests in flight, ``array.sharding_coalesce_*`` changes the byte-range
requests made, ``codec_pipeline.direct_io`` opens chunk files with ``O_DIRECT``,
``threading.max_workers`` bounds the native threads that work, ``validate_checksums``
decides whether a corrupted chunk reads, ``array.write_empty_chunks`` whether fill-value
chunks are stored.
"""

from __future__ import annotations

import os
import pickle
import re
import threading

import numpy as np
import pytest
import zarr
from conftest import (
    ZARR_PIPELINE,
    ZARRS_PIPELINE,
    CountingStore,
    assert_read_route,
    assert_route,
    assert_same,
    make_data,
    native_only,
    python_io_reason,
)
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi
from zarrs_cffi._pipeline import stores
from zarrs_cffi._bindings import Options

SETTINGS = {
    "threading.max_workers": 3,
    "codec_pipeline.chunk_concurrent_minimum": 2,
    "codec_pipeline.chunk_concurrent_maximum": 5,
    "codec_pipeline.validate_checksums": False,
    "codec_pipeline.fsync": True,
}
EXPECTED = Options(num_threads=3, chunk_concurrent_minimum=2, chunk_concurrent_maximum=5, validate_checksums=False, fsync=True)


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
@pytest.mark.parametrize("codec", ["zstd", "sharding", "nested-sharding"])
def test_few_workers_still_read_and_write(tmp_path, zarrs_pipeline, workers, codec):
    kwargs: dict[str, object] = {"chunks": (8, 8), "compressors": [ZstdCodec(level=1)]}
    if codec == "sharding":
        kwargs["shards"] = (16, 16)
    if codec == "nested-sharding":
        # Shards of inner shards of 8x8 chunks: each level of a read shares its inner shards
        # or chunks with the pool of one or two threads (small reads: on the caller alone).
        inner = ShardingCodec(chunk_shape=(8, 8), codecs=[BytesCodec(), ZstdCodec(level=1)])
        kwargs = {"chunks": (32, 32), "serializer": ShardingCodec(chunk_shape=(16, 16), codecs=[inner]), "compressors": None}
    settings = {"threading.max_workers": workers, "codec_pipeline.chunk_concurrent_maximum": 1}
    with zarr.config.set(settings):
        arr = zarr.create_array(LocalStore(tmp_path), shape=(200, 300), dtype="int64", **kwargs)
        assert _options(arr).num_threads == workers
        data = make_data("int64", (200, 300), seed=41)
        with native_only(writes=True, reads=True):
            arr[:] = data
            assert_same(arr[:], data)
            assert_same(arr[3:177, 5:299], data[3:177, 5:299])
            assert_same(arr[0:100, 0:128], data[0:100, 0:128])  # nested: 16 shards, the caller and the pool
            assert_same(arr[17:30, 40:70], data[17:30, 40:70])  # nested: 2 shards, the caller alone


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


# --- settings take effect ------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 8])
def test_async_concurrency_bounds_requests_in_flight(zarrs_pipeline, limit):
    # A store reached through its async API: every chunk read and write of one call is
    # fetched or stored concurrently, at most ``async.concurrency`` at a time.
    store = CountingStore()
    with zarr.config.set({"async.concurrency": limit}):
        arr = zarr.create_array(store, shape=(64, 64), chunks=(8, 8), dtype="int32")
        assert python_io_reason(arr) == "CountingStore has no native storage"
        data = make_data("int32", (64, 64), seed=44)
        zarrs_cffi.reset_stats()
        store.reset_counts()
        arr[:] = data
        assert (len(store.sets), store.peak) == (64, limit), (len(store.sets), store.peak)
        store.reset_counts()
        arr[2:60, 3:61] = -data[2:60, 3:61]  # partial chunks: old bytes fetched, then stored
        assert store.peak == limit, store.peak
        store.reset_counts()
        data[2:60, 3:61] *= -1
        assert_same(arr[:], data)
        assert (len(store.gets), store.peak) == (64, limit), (len(store.gets), store.peak)
    assert_route(zarrs_cffi.stats(), native_io=False)


def _peak_partial_shard_read(pipeline: str, limit: int) -> int:
    with zarr.config.set({"codec_pipeline.path": pipeline, "async.concurrency": limit}):
        store = CountingStore()
        arr = zarr.create_array(store, shape=(64, 64), chunks=(4, 4), shards=(16, 16), dtype="int32")
        arr[:] = 1
        store.reset_counts()
        zarrs_cffi.reset_stats()
        # A part of each of the 16 shards: index, then one coalesced range request per shard.
        assert_same(arr[1:63, 1:63], np.ones((62, 62), dtype="int32"))
        return store.peak


def test_async_concurrency_bounds_partial_shard_reads():
    limit = 2
    # zarr's own pipeline keeps this read within the limit (one coalesced request per shard).
    assert _peak_partial_shard_read(ZARR_PIPELINE, limit) <= limit
    peak = _peak_partial_shard_read(ZARRS_PIPELINE, limit)
    s = zarrs_cffi.stats()
    assert (s.native_reads, s.python_io_reads, s.fallbacks) == (16, 16, 0), s
    assert peak <= limit, peak


COALESCE = {
    "default": {},
    "no-gaps": {"array.sharding_coalesce_max_gap_bytes": 0},
    "tiny-requests": {"array.sharding_coalesce_max_gap_bytes": 1 << 20, "array.sharding_coalesce_max_bytes": 40},
    "off": {"array.sharding_coalesce_max_gap_bytes": -1},
}


def _shard_requests(pipeline: str, settings: dict[str, int]) -> list[tuple[str, object]]:
    with zarr.config.set({"codec_pipeline.path": pipeline, **settings}):
        store = CountingStore()
        # One shard of 8 x 8 inner chunks of 2 x 2 int32 (16 bytes each, uncompressed).
        arr = zarr.create_array(
            store, shape=(16, 16), chunks=(2, 2), shards=(16, 16), dtype="int32", compressors=None
        )
        data = np.arange(256, dtype="int32").reshape(16, 16)
        arr[:] = data
        store.reset_counts()
        zarrs_cffi.reset_stats()
        # Rows 0-3, columns 0-5: inner chunks (0..1, 0..2) of 16 bytes each, stored in zarr's
        # default (Morton) order: a run of four at bytes 0-64 and a run of two at 128-160.
        assert_same(arr[0:4, 0:6], data[0:4, 0:6])
        return list(store.gets)


@pytest.mark.parametrize("name", list(COALESCE))
def test_sharding_coalesce_settings_change_the_requests(name):
    # Partial shard reads through a Python store fetch the index, then the inner chunks'
    # byte ranges merged as the settings allow: exactly the requests zarr's pipeline makes.
    ours = _shard_requests(ZARRS_PIPELINE, COALESCE[name])
    s = zarrs_cffi.stats()
    assert (s.native_reads, s.python_io_reads, s.fallbacks) == (1, 1, 0), s
    theirs = _shard_requests(ZARR_PIPELINE, COALESCE[name])
    assert sorted(ours, key=repr) == sorted(theirs, key=repr)
    ranged = [r for _, r in ours[1:]]
    # The index first, then the inner chunks only: never the whole shard.
    assert all(r is not None for _, r in ours), ours
    # One merged request; one per run; runs cut at 40 bytes; one per inner chunk.
    expected_count = {"default": 1, "no-gaps": 2, "tiny-requests": 3, "off": 6}[name]
    assert len(ranged) == expected_count, ranged


def _open_fds_under(prefix: str) -> dict[str, int]:
    """The files under ``prefix`` this process has open, with their open flags."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(prefix):
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    found[target] = int(re.search(r"flags:\s*([0-7]+)", info.read()).group(1), 8)
        except (OSError, AttributeError):
            pass  # closed meanwhile
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fdinfo") or not hasattr(os, "O_DIRECT"), reason="Linux only")
@pytest.mark.parametrize("direct_io", [False, True])
def test_direct_io_opens_chunks_with_o_direct(tmp_path, zarrs_pipeline, direct_io):
    # Watch the process's open files while native reads run (the GIL is released): the
    # chunk files are open with O_DIRECT exactly when the setting asks for it.
    with zarr.config.set({"codec_pipeline.direct_io": direct_io}):
        arr = zarr.create_array(
            LocalStore(tmp_path), shape=(2048, 1024), chunks=(32, 1024), dtype="int32", compressors=None
        )
    data = make_data("int32", (2048, 1024), seed=46)
    arr[:] = data
    assert_same(arr[:], data)
    seen: dict[str, int] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(_open_fds_under(str(tmp_path / "c") + "/"))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        zarrs_cffi.reset_stats()
        for _ in range(200):
            arr[:]
            if len(seen) >= 3:
                break
    finally:
        stop.set()
        watcher.join()
    assert_read_route(zarrs_cffi.stats(), native_io=True)
    assert seen, "no chunk file was seen open during the reads"
    assert {bool(flags & os.O_DIRECT) for flags in seen.values()} == {direct_io}, seen


def _thread_cpu() -> dict[str, tuple[str, int]]:
    """Every thread of this process: its name and CPU time so far (clock ticks)."""
    threads = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        threads[tid] = (name, int(fields[11]) + int(fields[12]))  # utime + stime
    return threads


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux only")
@pytest.mark.parametrize("store_kind", ["local", "memory"])
@pytest.mark.parametrize("workers", [1, 3])
def test_max_workers_bounds_the_threads_that_work(tmp_path, zarrs_pipeline, workers, store_kind):
    # The library's compute threads are named zarrs-ffi-<n>; count those that used CPU time
    # during large reads (many compressed chunks, well past the inline thresholds).
    data = make_data("int64", (1024, 1024), seed=45)
    store = LocalStore(tmp_path) if store_kind == "local" else MemoryStore()
    with zarr.config.set({"threading.max_workers": workers}):
        arr = zarr.create_array(store, shape=data.shape, chunks=(64, 64), dtype="int64", compressors=[ZstdCodec(level=3)])
    arr[:] = data
    zarrs_cffi.reset_stats()
    before = _thread_cpu()

    def busy_threads() -> list[str]:
        return sorted(
            name for tid, (name, cpu) in _thread_cpu().items()
            if re.fullmatch(r"zarrs-ffi-\d+", name) and cpu > before.get(tid, (name, 0))[1]
        )

    # CPU time is counted in clock ticks (10 ms), and the calling thread shares each batch
    # with the pool, so one pool thread can take many reads alone before a second one ticks:
    # read until a second thread has worked, or 200 times (a fresh-clone CI run once saw
    # 40 reads go by on one thread).
    for _ in range(200):
        assert_same(arr[:], data)
        busy = busy_threads()
        if len(busy) >= min(workers, 2):
            break
    assert_read_route(zarrs_cffi.stats(), native_io=store_kind == "local")
    assert 1 <= len(busy) <= workers, busy
    if workers > 1:
        assert len(busy) >= 2, busy  # the setting is not simply one thread


@pytest.mark.parametrize("store_kind", ["local", "memory"])
@pytest.mark.parametrize("validate", [True, False])
def test_validate_checksums_decides_whether_a_corrupt_chunk_reads(tmp_path, zarrs_pipeline, validate, store_kind):
    data = np.arange(20, dtype="int32")
    store = LocalStore(tmp_path) if store_kind == "local" else MemoryStore()
    with zarr.config.set({"codec_pipeline.validate_checksums": validate}):
        arr = zarr.create_array(store, shape=(20,), chunks=(10,), dtype="int32", compressors=[Crc32cCodec()])
    assert _options(arr).validate_checksums is validate
    arr[:] = data
    # Flip a bit of the first element of chunk c/1 (the checksum is the chunk's last 4 bytes).
    if store_kind == "local":
        path = tmp_path / "c" / "1"
        raw = bytearray(path.read_bytes())
        raw[0] ^= 0x01
        path.write_bytes(bytes(raw))
    else:
        raw = bytearray(store._store_dict["c/1"].to_bytes())
        raw[0] ^= 0x01
        store._store_dict["c/1"] = store._store_dict["c/1"].from_bytes(bytes(raw))
    zarrs_cffi.reset_stats()
    if validate:
        with pytest.raises(zarrs_cffi.ZarrsChecksumError):
            arr[:]
        assert_same(arr[:10], data[:10])
    else:
        expected = data.copy()
        expected[10] ^= 1
        assert_same(arr[:], expected)
    assert_read_route(zarrs_cffi.stats(), native_io=store_kind == "local")


@pytest.mark.parametrize("store_kind", ["local", "memory"])
@pytest.mark.parametrize("write_empty_chunks", [True, False])
def test_write_empty_chunks_setting_decides_what_is_stored(tmp_path, zarrs_pipeline, write_empty_chunks, store_kind):
    # zarr's global ``array.write_empty_chunks``, read when the array is opened.
    store = LocalStore(tmp_path) if store_kind == "local" else MemoryStore()
    with zarr.config.set({"array.write_empty_chunks": write_empty_chunks}):
        arr = zarr.create_array(store, shape=(8, 8), chunks=(4, 4), dtype="float32", fill_value=0.0)
    zarrs_cffi.reset_stats()
    arr[:] = 1.0
    arr[:4, :4] = 0.0  # chunk c/0/0 becomes all fill value
    arr[4:, :] = 0.0  # so do c/1/0 and c/1/1
    keys = sorted(k for k in zarr.core.sync.sync(_list(store)) if k.startswith("c/"))
    expected = ["c/0/0", "c/0/1", "c/1/0", "c/1/1"] if write_empty_chunks else ["c/0/1"]
    assert keys == expected
    result = np.zeros((8, 8), dtype="float32")
    result[:4, 4:] = 1.0
    assert_same(arr[:], result)
    assert_route(zarrs_cffi.stats(), native_io=store_kind == "local")


async def _list(store: object) -> list[str]:
    return [key async for key in store.list()]  # type: ignore[attr-defined]


def test_max_variable_chunk_bytes_caps_variable_length_decoding(tmp_path, zarrs_pipeline) -> None:
    # A variable-length chunk's decoded size is not fixed by the metadata: this key bounds it.
    values = np.array(["x" * 100] * 8, dtype=object)
    arr = zarr.create_array(LocalStore(tmp_path / "s"), shape=(8,), chunks=(8,), dtype=str)
    arr[:] = values
    with zarr.config.set({"codec_pipeline.max_variable_chunk_bytes": 64}):
        capped = zarr.open_array(LocalStore(tmp_path / "s"), mode="r")
        with pytest.raises(zarrs_cffi.ZarrsCodecError):
            capped[:]
    roomy = zarr.open_array(LocalStore(tmp_path / "s"), mode="r")
    assert list(roomy[:]) == list(values)
    assert zarrs_cffi.stats().fallbacks == 0


BAD_SETTINGS = {
    "codec_pipeline.chunk_concurrent_minimum": -3,
    "codec_pipeline.chunk_concurrent_maximum": "many",
    "codec_pipeline.max_variable_chunk_bytes": 1.5,
    "codec_pipeline.validate_checksums": "sometimes",
    "codec_pipeline.fsync": 2,
    "codec_pipeline.direct_io": [],
}


@pytest.mark.parametrize("key", list(BAD_SETTINGS))
def test_a_setting_of_the_wrong_type_is_an_error_naming_the_key(tmp_path, zarrs_pipeline, key):
    arr = zarr.create_array(LocalStore(tmp_path), shape=(4,), chunks=(2,), dtype="int32")
    value = BAD_SETTINGS[key]
    with zarr.config.set({key: value}), pytest.raises(zarrs_cffi.ZarrsValueError, match=re.escape(f"{key} must be")) as caught:
        zarr.open_array(arr.store, mode="r")
    assert repr(value) in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", ["true", "True", 1, True])
def test_a_flag_set_from_the_environment_is_read_as_zarr_parses_it(tmp_path, zarrs_pipeline, value):
    # zarr reads ZARR_CODEC_PIPELINE__STRICT=true as the string "true".
    arr = zarr.create_array(LocalStore(tmp_path), shape=(4,), chunks=(2,), dtype="int32")
    with zarr.config.set({"codec_pipeline.strict": value}):
        opened = zarr.open_array(arr.store, mode="r")
        with pytest.raises(zarrs_cffi.ZarrsUnsupportedError):
            opened.get_orthogonal_selection(([0, 1],), out=_FloatBuffer.from_numpy_array(np.zeros(2)))


class _FloatBuffer(zarr.core.buffer.cpu.NDBuffer):
    """A zarr output buffer of another dtype than the array's: not native."""


@pytest.mark.parametrize("key", ["sharding_coalesce_max_gap_bytes", "sharding_coalesce_max_bytes"])
def test_coalesce_settings_of_the_wrong_type_are_errors_naming_the_key(key):
    from zarrs_cffi._core import config

    spec = type("Spec", (), {"config": type("ArrayConfig", (), {key: "big"})()})()
    with pytest.raises(zarrs_cffi.ZarrsValueError, match=f"{key} must be an integer, not 'big'"):
        config.coalesce(spec)
    assert config.coalesce(type("Spec", (), {"config": object()})()) == (config.COALESCE_MAX_GAP_BYTES, config.COALESCE_MAX_BYTES)
