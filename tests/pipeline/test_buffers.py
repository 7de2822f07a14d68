"""zarr buffers that are not host numpy memory: never filled or read through a copy.

zarr hands the pipeline ``NDBuffer``s. Their ``as_numpy_array()`` may be a host copy (zarr's
GPU buffer returns ``cupy.asnumpy``): a native read filling it would be lost without an
error. The pipeline uses a buffer natively only when ``as_numpy_array()`` is the buffer's own
memory (``as_ndarray_like()``); else it falls back, counted, logged, and an error under
``codec_pipeline.strict``. Every route is covered: native storage, a store's sync API and
its async API, sharded and not.

cupy does not import on the machines these tests run on, so zarr's real GPU buffer is not
exercised here; ``DeviceBuffer`` stands in for it (memory numpy can only copy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
from zarr.core.buffer import BufferPrototype, cpu
from zarr.storage import LocalStore, MemoryStore

import zarrs_cffi
from zarrs_cffi._pipeline import codec_pipeline as pipeline_module
from zarrs_cffi._core.fallback import Fallback
from zarrs_cffi._pipeline.routes import AsyncStoreRoute, StorageRoute, SyncStoreRoute

from conftest import ZARR_PIPELINE, ZARRS_PIPELINE

if TYPE_CHECKING:
    from pathlib import Path


class CopyingBuffer(cpu.NDBuffer):
    """A CPU buffer whose ``as_numpy_array()`` is a copy of its memory."""

    def as_numpy_array(self) -> np.ndarray[Any, Any]:
        return np.array(self._data, copy=True)


class ViewBuffer(cpu.NDBuffer):
    """A CPU buffer whose ``as_numpy_array()`` is another numpy object over the same memory."""

    def as_numpy_array(self) -> np.ndarray[Any, Any]:
        return self._data.view()


class Device:
    """Memory numpy can only copy, as cupy's: not an ndarray, converted by ``__array__``."""

    def __init__(self, host: np.ndarray[Any, Any]) -> None:
        self._host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def __len__(self) -> int:
        return len(self._host)

    def __getitem__(self, key: Any) -> Device:
        return Device(self._host[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._host[key] = np.asarray(value)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray[Any, Any]:
        return np.array(self._host, dtype=dtype, copy=True)


class DeviceBuffer(cpu.NDBuffer):
    """An NDBuffer over ``Device`` memory; ``as_numpy_array()`` copies it to the host."""

    def as_numpy_array(self) -> np.ndarray[Any, Any]:
        return np.asarray(self._data)

    @classmethod
    def from_ndarray_like(cls, ndarray_like: Any) -> DeviceBuffer:
        return cls(ndarray_like if isinstance(ndarray_like, Device) else Device(np.asarray(ndarray_like)))

    @property
    def host(self) -> np.ndarray[Any, Any]:
        data = self._data
        return data._host if isinstance(data, Device) else np.asarray(data)


class PyLocalStore(LocalStore):
    """A LocalStore subclass: its bytes move through its async API (AsyncStoreRoute)."""


ROUTES = {"local": StorageRoute, "memory": SyncStoreRoute, "async": AsyncStoreRoute}
SHAPE = (96, 80)
COPY_REASON = f"{__name__}.CopyingBuffer.as_numpy_array() is a copy, not the buffer's own memory"
DEVICE_REASON = f"{__name__}.DeviceBuffer holds {__name__}.Device, not host (numpy) memory"
SELECTIONS = {
    "basic": ("get_basic_selection", "set_basic_selection", (slice(5, 90), slice(3, 77))),
    "orthogonal": ("get_orthogonal_selection", "set_orthogonal_selection", ([50, 0, 7, 95], slice(None, None, 3))),
    "coordinate": ("get_coordinate_selection", "set_coordinate_selection", ([1, 40, 95, 2, 63], [0, 79, 3, 3, 40])),
}


def _store(kind: str, root: Path) -> Any:
    if kind == "local":
        return LocalStore(root)
    if kind == "memory":
        return MemoryStore()
    return PyLocalStore(root)


def _create(kind: str, root: Path, sharded: bool, pipeline: str) -> zarr.Array[Any]:
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        arr = zarr.create_array(
            _store(kind, root), shape=SHAPE, dtype="int32", chunks=(16, 16), shards=(32, 48) if sharded else None,
            compressors=[zarr.codecs.ZstdCodec(level=1)], fill_value=-1,
        )
        arr[:] = np.arange(np.prod(SHAPE), dtype="int32").reshape(SHAPE)
    return arr


def _out(shape: tuple[int, ...], buffer: type[cpu.NDBuffer]) -> cpu.NDBuffer:
    host = np.full(shape, -7, dtype="int32")
    return buffer(Device(host)) if buffer is DeviceBuffer else buffer(host)


def _host(out: cpu.NDBuffer) -> np.ndarray[Any, Any]:
    return out.host if isinstance(out, DeviceBuffer) else out.as_ndarray_like()


def _selection_shape(kind: str, selection: Any) -> tuple[int, ...]:
    shape: tuple[int, ...] = np.empty(SHAPE)[_numpy_index(kind, selection)].shape
    return shape


def _numpy_index(kind: str, selection: Any) -> Any:
    if kind == "orthogonal":
        return np.ix_(selection[0], np.arange(SHAPE[1])[selection[1]])
    return tuple(selection) if kind == "coordinate" else selection


def _reference_read(kind: str, selection: Any, tmp_path: Path, sharded: bool) -> np.ndarray[Any, Any]:
    arr = _create("local", tmp_path / "reference", sharded, ZARR_PIPELINE)
    return np.asarray(getattr(arr, SELECTIONS[kind][0])(selection))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("sharded", [False, True], ids=["chunked", "sharded"])
@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(("buffer", "reason"), [(CopyingBuffer, COPY_REASON), (DeviceBuffer, DEVICE_REASON)],
                         ids=["copying", "device"])
def test_read_into_a_buffer_that_is_not_its_numpy_array_falls_back(tmp_path, route, sharded, selection, buffer, reason):
    arr = _create(route, tmp_path / "data", sharded, ZARRS_PIPELINE)
    assert type(arr._async_array.codec_pipeline._open()) is ROUTES[route]
    get, _, index = SELECTIONS[selection]
    out = _out(_selection_shape(selection, index), buffer)
    zarrs_cffi.reset_stats()
    getattr(arr, get)(index, out=out)
    np.testing.assert_array_equal(_host(out), _reference_read(selection, index, tmp_path, sharded))
    s = zarrs_cffi.stats()
    assert s.native_reads == 0 and s.fallback_reads > 0, s
    assert dict(s.fallback_reasons) == {reason: s.fallback_reads}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("sharded", [False, True], ids=["chunked", "sharded"])
@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(("buffer", "reason"), [(CopyingBuffer, COPY_REASON), (DeviceBuffer, DEVICE_REASON)],
                         ids=["copying", "device"])
def test_write_from_a_buffer_that_is_not_its_numpy_array_falls_back(tmp_path, route, sharded, selection, buffer, reason):
    _, set_, index = SELECTIONS[selection]
    shape = _selection_shape(selection, index)
    value = (np.arange(int(np.prod(shape)), dtype="int32").reshape(shape) * 7 + 3) % 1000
    arr = _create(route, tmp_path / "data", sharded, ZARRS_PIPELINE)
    reference = _create("local", tmp_path / "reference", sharded, ZARR_PIPELINE)
    # zarr wraps the value with the prototype's ``nd_buffer.from_ndarray_like``.
    prototype = BufferPrototype(buffer=cpu.Buffer, nd_buffer=buffer)
    zarrs_cffi.reset_stats()
    ours = _outcome(lambda: getattr(arr, set_)(index, value, prototype=prototype))
    s = zarrs_cffi.stats()
    # zarr's sharding codec refuses non-default prototypes: the fallback raises as zarr does.
    assert ours == _outcome(lambda: getattr(reference, set_)(index, value, prototype=prototype))
    assert (ours is not None) == sharded
    np.testing.assert_array_equal(arr[:], reference[:])
    assert s.native_writes == 0 and s.fallback_writes > 0, s
    assert dict(s.fallback_reasons) == {reason: s.fallback_writes}


def _outcome(call: Any) -> tuple[type, str] | None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - compared with zarr's own outcome
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("route", ROUTES)
def test_strict_mode_refuses_a_copying_buffer(tmp_path, route):
    arr = _create(route, tmp_path / "data", False, ZARRS_PIPELINE)
    out = CopyingBuffer(np.full(SHAPE, -7, dtype="int32"))
    prototype = BufferPrototype(buffer=cpu.Buffer, nd_buffer=CopyingBuffer)
    with zarr.config.set({"codec_pipeline.strict": True}):
        with pytest.raises(zarrs_cffi.ZarrsUnsupportedError, match="is a copy, not the buffer's own memory"):
            arr.get_basic_selection(..., out=out)
        with pytest.raises(zarrs_cffi.ZarrsUnsupportedError, match="is a copy, not the buffer's own memory"):
            arr.set_basic_selection(..., np.zeros(SHAPE, dtype="int32"), prototype=prototype)
    assert (out.as_ndarray_like() == -7).all()
    np.testing.assert_array_equal(arr[:], np.arange(np.prod(SHAPE), dtype="int32").reshape(SHAPE))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("buffer", [cpu.NDBuffer, ViewBuffer], ids=["zarr-cpu", "view"])
def test_a_buffer_over_its_own_memory_stays_native(tmp_path, route, buffer):
    arr = _create(route, tmp_path / "data", True, ZARRS_PIPELINE)
    expected = np.arange(np.prod(SHAPE), dtype="int32").reshape(SHAPE)
    prototype = BufferPrototype(buffer=cpu.Buffer, nd_buffer=buffer)
    zarrs_cffi.reset_stats()
    for kind, (get, set_, index) in SELECTIONS.items():
        out = buffer(np.full(_selection_shape(kind, index), -7, dtype="int32"))
        getattr(arr, get)(index, out=out)
        np.testing.assert_array_equal(out.as_ndarray_like(), expected[_numpy_index(kind, index)])
        value = np.asarray(out.as_ndarray_like()) + 1
        getattr(arr, set_)(index, value, prototype=prototype)
        expected[_numpy_index(kind, index)] = value
    np.testing.assert_array_equal(arr[:], expected)
    s = zarrs_cffi.stats()
    assert s.fallbacks == 0 and s.native_reads > 0 and s.native_writes > 0, s


def test_the_identity_test_comes_first():
    """A buffer whose numpy array is its own memory is accepted without looking further:
    the ordinary case costs one ``is`` (no ``__array_interface__``, no overlap solve)."""

    class Native:
        dtype = np.dtype("int32")

    class Counting(np.ndarray):  # type: ignore[type-arg]
        lookups = 0

        @property
        def __array_interface__(self) -> Any:  # type: ignore[override]
            Counting.lookups += 1
            return super().__array_interface__

    own = np.zeros(4, dtype="int32").view(Counting)
    assert pipeline_module._numpy(Native(), cpu.NDBuffer(own)) is own  # type: ignore[arg-type]
    assert Counting.lookups == 0
    with pytest.raises(Fallback, match="is a copy"):
        pipeline_module._numpy(Native(), CopyingBuffer(own))  # type: ignore[arg-type]
