"""Opening an array costs no native work: the pipeline opens it natively, and picks its
route, at the first read or write (on a worker thread), once. Also: the route chosen per
store, the fallback found at first use, and the result codes named in Python."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi
from zarrs_cffi import _bindings
from zarrs_cffi._pipeline import opening
from zarrs_cffi._bindings.library import Result, lib
from zarrs_cffi._pipeline.routes import AsyncStoreRoute, StorageRoute, SyncStoreRoute

from conftest import assert_no_fallback, fallback_array

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


class PyLocalStore(LocalStore):
    """A LocalStore subclass: its bytes move through its async Python API."""


@pytest.fixture
def native_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every native array open (``open_record`` and the C open beneath it), recorded; the
    cache of opened arrays starts empty."""
    calls: list[str] = []
    monkeypatch.setattr(opening, "_OPENED", {})

    def counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(opening, "open_record", counted("open_record", opening.open_record))
    monkeypatch.setattr(
        _bindings.ArrayHandle, "open_with_metadata",
        classmethod(counted("open_with_metadata", _bindings.ArrayHandle.open_with_metadata.__func__)),  # type: ignore[attr-defined]
    )
    return calls


STORES: dict[str, Callable[[Path], Any]] = {
    "local": lambda path: LocalStore(path),
    "memory": lambda path: MemoryStore(),
    "local-subclass": lambda path: PyLocalStore(path),
}


@pytest.mark.parametrize("kind", list(STORES))
def test_opened_but_unread_array_does_no_native_work(
    tmp_path: Path, kind: str, native_opens: list[str], zarrs_pipeline: None
) -> None:
    store = STORES[kind](tmp_path)
    with zarr.config.set({"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
        zarr.create_array(store, shape=(20, 20), chunks=(10, 10), dtype="int16")[:] = 7
    zarrs_cffi.reset_stats()
    arrays = [zarr.open_array(store, mode="r") for _ in range(5)]
    pickle.loads(pickle.dumps(arrays[0]))
    assert native_opens == []
    assert zarrs_cffi.stats() == zarrs_cffi.PipelineStats()
    np.testing.assert_array_equal(arrays[0][:], np.full((20, 20), 7, dtype="int16"))
    assert native_opens == ["open_record", "open_with_metadata"]
    np.testing.assert_array_equal(arrays[0][5:15, 5], np.full(10, 7, dtype="int16"))
    assert native_opens == ["open_record", "open_with_metadata"]  # once per pipeline
    assert zarrs_cffi.stats().native_reads == 4 + 2
    assert_no_fallback()


@pytest.mark.parametrize(
    ("kind", "route"), [("local", StorageRoute), ("memory", SyncStoreRoute), ("local-subclass", AsyncStoreRoute)]
)
def test_route_is_chosen_once_per_store(tmp_path: Path, kind: str, route: type, zarrs_pipeline: None) -> None:
    arr = zarr.create_array(STORES[kind](tmp_path), shape=(8,), chunks=(4,), dtype="uint8")
    pipeline = arr.async_array.codec_pipeline
    assert isinstance(pipeline, zarrs_cffi.ZarrsCodecPipeline)
    assert pipeline.opener is not None and pipeline.opener.result is None  # created, not opened
    arr[:] = 3
    assert type(pipeline.opener.result) is route
    assert (pipeline.native is not None) and ((pipeline.native.python_io is None) == (route is StorageRoute))


def test_fallback_is_found_at_first_use_and_counted(tmp_path: Path, zarrs_pipeline: None) -> None:
    fallback_array(tmp_path / "a")
    zarrs_cffi.reset_stats()
    arr = zarr.open_array(LocalStore(tmp_path / "a"), mode="r")
    assert zarrs_cffi.stats().fallbacks == 0
    assert arr[:].shape == (10, 12)
    s = zarrs_cffi.stats()
    assert s.native_reads == 0 and s.fallback_reads == 9
    [reason] = s.fallback_reasons
    assert reason.startswith("zarrs cannot open this array")
    pipeline = arr.async_array.codec_pipeline
    assert isinstance(pipeline, zarrs_cffi.ZarrsCodecPipeline)
    assert pipeline.native is None and pipeline.reason == reason
    with zarr.config.set({"codec_pipeline.strict": True}), pytest.raises(zarrs_cffi.ZarrsUnsupportedError, match="cannot open"):
        arr[0, 0]


def test_reading_native_and_reason_opens_without_a_read(tmp_path: Path, native_opens: list[str], zarrs_pipeline: None) -> None:
    arr = zarr.create_array(LocalStore(tmp_path), shape=(4,), chunks=(2,), dtype="float64")
    pipeline = arr.async_array.codec_pipeline
    assert isinstance(pipeline, zarrs_cffi.ZarrsCodecPipeline)
    assert pipeline.reason is None and pipeline.native is not None
    assert native_opens == ["open_record", "open_with_metadata"]


@pytest.mark.parametrize("kind", list(STORES))
def test_reopened_array_reuses_the_native_array(
    tmp_path: Path, kind: str, native_opens: list[str], zarrs_pipeline: None
) -> None:
    store = STORES[kind](tmp_path)
    zarr.create_array(store, name="a", shape=(6, 6), chunks=(3, 3), dtype="uint32")[:] = 9
    assert native_opens == ["open_record", "open_with_metadata"]
    again = zarr.open_array(store, path="a")  # a read-only open is other (read-only) native storage
    np.testing.assert_array_equal(again[:], np.full((6, 6), 9, dtype="uint32"))
    assert native_opens == ["open_record", "open_with_metadata", "open_record"]  # no second C open
    # Other metadata is another native array.
    zarr.create_array(store, name="b", shape=(6,), chunks=(2,), dtype="uint32")[:] = 1
    assert native_opens.count("open_with_metadata") == 2


def test_result_codes_match_the_library() -> None:
    for result in Result:
        name = "ZARRS_SUCCESS" if result is Result.SUCCESS else f"ZARRS_ERROR_{result.name}"
        assert getattr(lib(), name) == result.value, name
    assert len(Result) == 12
