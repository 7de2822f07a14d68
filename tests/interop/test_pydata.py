"""The PyData stack with our pipeline: dask.distributed worker processes and xarray.

dask: a small ``LocalCluster`` of worker processes, shared by the module. Arrays opened on
the client travel to the workers pickled with their pipeline, so ``from_zarr``/``to_zarr``
run natively there; arrays opened *inside* tasks use the worker's own ``zarr.config``,
which :func:`zarrs_cffi.dask.enable` sets. Worker-side counters come back through
``client.run`` (:func:`zarrs_cffi.dask.worker_stats`).

xarray: CF-encoded datasets written, appended to and partly rewritten (``region=``), read
back with zero fallbacks, and the same writes through zarr's own pipeline leave the same
bytes in every file.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numcodecs  # type: ignore[import-untyped]
import numpy as np
import pytest
import zarr

import zarrs_cffi

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
xr = pytest.importorskip("xarray")

from distributed import WorkerPlugin  # noqa: E402  (after the importorskips)

import zarrs_cffi.dask as zdask  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

    from distributed import Client, LocalCluster
    from xarray import Dataset

ZARRS = "zarrs_cffi.ZarrsCodecPipeline"
ZARR = "zarr.core.codec_pipeline.BatchedCodecPipeline"
SHAPE = (256, 256)
CHUNKS = (64, 64)
N_CHUNKS = (SHAPE[0] // CHUNKS[0]) * (SHAPE[1] // CHUNKS[1])

# xarray warns that consolidated metadata is not part of the Zarr v3 spec; both pipelines
# write it the same way.
pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")


# --- code that runs on the workers (imported there by name: see the cluster fixture) ---


def pipeline_name(array: zarr.Array[Any]) -> str:
    """The class of the codec pipeline zarr bound to ``array`` when it was opened."""
    return type(array._async_array.codec_pipeline).__name__


def copy_block(block: np.ndarray[Any, Any], block_info: dict[Any, Any], *, src: str, dst: str) -> np.ndarray[Any, Any]:
    """A map_blocks task that opens both arrays itself: ``dst[block] = 2 * src[block]``.

    Returns, for each element, whether both arrays got our pipeline.
    """
    region = tuple(slice(start, stop) for start, stop in block_info[0]["array-location"])
    source = zarr.open_array(src, mode="r")
    target = zarr.open_array(dst, mode="r+")
    target[region] = np.asarray(source[region]) * 2
    ours = pipeline_name(source) == pipeline_name(target) == "ZarrsCodecPipeline"
    return np.full(block.shape, ours)


def read_in_task(path: str) -> tuple[str, float]:
    """A delayed/submit task that opens ``path`` and sums it."""
    array = zarr.open_array(path, mode="r")
    return pipeline_name(array), float(np.asarray(array[:]).sum())


def worker_config(key: str) -> Any:
    """``zarr.config[key]`` in a worker's process."""
    return zarr.config.get(key, None)


class BreakSwitch(WorkerPlugin):
    """Applies ``ZARRS_CFFI_BREAK`` (inherited from this process) on every worker, as
    conftest does here, so the native-route assertions on workers can be shown to fail."""

    name = "zarrs-cffi-test-break-switch"
    idempotent = True

    def setup(self, worker: Any) -> None:
        import zarrs_cffi_gate  # type: ignore[import-not-found]  # in tests/conformance

        zarrs_cffi_gate.apply_break_switch()


# --- fixtures ---


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes, one thread each, on 127.0.0.1, no dashboard.

    The workers import this module by name for the task functions above (and the test
    plugin's break switch), and must not inherit ``ZARR_CODEC_PIPELINE__PATH`` (that would
    hide the pitfall tested below).
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ZARR_CODEC_PIPELINE__PATH", raising=False)
        here = Path(__file__).parents[1]  # tests/
        paths = (str(here), str(here / "conformance"), os.environ.get("PYTHONPATH"))
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            worker_dashboard_address=None,
        ) as local:
            with distributed.Client(local, set_as_default=False) as c:
                c.register_plugin(BreakSwitch())
            yield local


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    """The default dask scheduler while the test runs; workers' counters reset, no plugin.

    (Not ``dask.config.set(scheduler=client)``: a nanny starting a worker pickles dask's
    config for it, and a Client does not pickle.)
    """
    with distributed.Client(cluster) as c:
        zdask.disable(c)
        zdask.reset_worker_stats(c)
        yield c
        zdask.disable(c)


def totals(per_worker: dict[str, zarrs_cffi.PipelineStats]) -> dict[str, int]:
    """Counters summed over workers, every worker's fallbacks asserted zero on the way."""
    for address, s in per_worker.items():
        assert s.fallbacks == 0, (address, s.fallback_reasons)
    return {
        key: sum(getattr(s, key) for s in per_worker.values())
        for key in ("native_reads", "native_writes", "python_io_reads", "python_io_writes")
    }


def source_array(path: Path) -> np.ndarray[Any, Any]:
    """Write a SHAPE float32 array at ``path`` (in this process) and return its values."""
    values = np.arange(np.prod(SHAPE), dtype="float32").reshape(SHAPE)
    zarr.create_array(path, shape=SHAPE, chunks=CHUNKS, dtype="float32")[:] = values
    return values


# --- dask.distributed ---


def test_dask_from_zarr_and_to_zarr_run_natively_on_workers(
    client: Client, tmp_path: Path, zarrs_pipeline: None
) -> None:
    x = da.random.default_rng(0).random(SHAPE, chunks=CHUNKS).astype("float32")
    x.to_zarr(str(tmp_path / "a.zarr"))
    y = da.from_zarr(str(tmp_path / "a.zarr"))
    assert float((y - x).max().compute()) == 0.0
    # The client only wrote metadata: every chunk was encoded and decoded on a worker.
    assert zarrs_cffi.stats().native_reads == zarrs_cffi.stats().native_writes == 0
    assert totals(zdask.worker_stats(client)) == {
        "native_reads": N_CHUNKS, "native_writes": N_CHUNKS, "python_io_reads": 0, "python_io_writes": 0,
    }


def test_pitfall_without_enable_tasks_open_arrays_with_zarrs_own_pipeline(
    client: Client, tmp_path: Path, zarrs_pipeline: None
) -> None:
    """The pitfall: the client's zarr.config does not reach arrays opened in tasks."""
    values = source_array(tmp_path / "src.zarr")
    zarr.create_array(tmp_path / "dst.zarr", shape=SHAPE, chunks=CHUNKS, dtype="float32")
    ours = da.map_blocks(
        copy_block, da.zeros(SHAPE, chunks=CHUNKS), src=str(tmp_path / "src.zarr"), dst=str(tmp_path / "dst.zarr"),
        dtype=bool,
    ).compute()
    assert not ours.any()  # zarr's BatchedCodecPipeline in every task
    assert dask.delayed(read_in_task)(str(tmp_path / "src.zarr")).compute() == ("BatchedCodecPipeline", values.sum())
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "dst.zarr")[:], values * 2)
    assert totals(zdask.worker_stats(client))["native_reads"] == 0
    assert set(client.run(worker_config, "codec_pipeline.path").values()) == {ZARR}


def test_enable_reaches_current_and_future_workers(
    client: Client, cluster: LocalCluster, tmp_path: Path, zarrs_pipeline: None
) -> None:
    values = source_array(tmp_path / "src.zarr")
    zarr.create_array(tmp_path / "dst.zarr", shape=SHAPE, chunks=CHUNKS, dtype="float32")
    zdask.enable(client, {"codec_pipeline.strict": True})
    # Enabling again replaces the plugin: its teardown, then setup with the new config.
    zdask.enable(client, {"threading.max_workers": 1})
    assert set(client.run(worker_config, "codec_pipeline.path").values()) == {ZARRS}
    assert set(client.run(worker_config, "threading.max_workers").values()) == {1}
    assert set(client.run(worker_config, "codec_pipeline.strict").values()) == {None}  # the first config is gone

    ours = da.map_blocks(
        copy_block, da.zeros(SHAPE, chunks=CHUNKS), src=str(tmp_path / "src.zarr"), dst=str(tmp_path / "dst.zarr"),
        dtype=bool,
    ).compute()
    assert ours.all()
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "dst.zarr")[:], values * 2)
    assert totals(zdask.worker_stats(client)) == {
        "native_reads": N_CHUNKS, "native_writes": N_CHUNKS, "python_io_reads": 0, "python_io_writes": 0,
    }

    # A worker that joins later runs the plugin's setup before its first task.
    before = set(client.scheduler_info()["workers"])
    cluster.scale(len(before) + 1)  # type: ignore[no-untyped-call]
    client.wait_for_workers(len(before) + 1, timeout=60)
    (new,) = set(client.scheduler_info()["workers"]) - before
    task = client.submit(read_in_task, str(tmp_path / "src.zarr"), workers=[new], allow_other_workers=False, pure=False)
    assert task.result() == ("ZarrsCodecPipeline", values.sum())
    assert client.run(worker_config, "threading.max_workers", workers=[new]) == {new: 1}
    new_stats = zdask.worker_stats(client)[new]
    assert (new_stats.native_reads, new_stats.fallbacks) == (N_CHUNKS, 0)

    # disable: every worker gets back exactly the config it had.
    zdask.disable(client)
    assert set(client.run(worker_config, "codec_pipeline.path").values()) == {ZARR}
    assert set(client.run(worker_config, "threading.max_workers").values()) == {None}
    assert dask.delayed(read_in_task)(str(tmp_path / "src.zarr")).compute()[0] == "BatchedCodecPipeline"


def test_arrays_opened_on_the_client_keep_the_clients_pipeline(
    client: Client, tmp_path: Path, zarr_pipeline: None
) -> None:
    """The other half of the rule: enable() does not change arrays that travel in the graph."""
    values = source_array(tmp_path / "src.zarr")
    zdask.enable(client)
    y = da.from_zarr(str(tmp_path / "src.zarr"))  # opened here, with zarr's pipeline
    assert float(y.sum().compute()) == values.sum()
    assert totals(zdask.worker_stats(client))["native_reads"] == 0


def test_xarray_dask_dataset_written_by_workers(client: Client, tmp_path: Path, zarrs_pipeline: None) -> None:
    # Strings stay in memory (xarray would load a dask object array to find its type).
    ds = make_dataset().chunk({"time": 8}).assign_coords(label=make_dataset().label)
    ds.to_zarr(tmp_path / "ds.zarr", consolidated=True)
    written = totals(zdask.worker_stats(client))
    assert written["native_writes"] > 0
    back = xr.open_zarr(tmp_path / "ds.zarr").compute()
    assert totals(zdask.worker_stats(client))["native_reads"] > 0
    xr.testing.assert_allclose(back, make_dataset(), atol=0.006)


def test_without_distributed_the_import_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.delitem(sys.modules, "zarrs_cffi.dask")
    with pytest.raises(ImportError, match="pip install distributed"):
        importlib.import_module("zarrs_cffi.dask")


# --- xarray ---


def make_dataset() -> Dataset:
    """Small and CF-encoded: packed int16 with scale/offset and _FillValue, NaN-filled
    floats (one chunk all NaN, so never stored), datetime and string coordinates."""
    rng = np.random.default_rng(0)
    n_time, n_station, n_x = 24, 6, 32
    temp = (15 + 8 * rng.standard_normal((n_time, n_station, n_x))).astype("float32")
    temp[3, 2, :5] = np.nan
    precip = rng.gamma(1.0, 2.0, (n_time, n_station, n_x))
    precip[::5, 1] = np.nan
    precip[16:] = np.nan
    ds: Dataset = xr.Dataset(
        {
            "temp": (("time", "station", "x"), temp),
            "precip": (("time", "station", "x"), precip),
            "flag": (("time", "station"), rng.integers(0, 3, (n_time, n_station)).astype("int8")),
        },
        coords={
            "time": pd.date_range("2024-01-01", periods=n_time, freq="6h"),
            "station": np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]),  # fixed-length <U
            "label": ("station", np.array([f"site {i}" * (i + 1) for i in range(n_station)], dtype=object)),
            "x": np.arange(n_x, dtype="float64"),
        },
        attrs={"title": "zarrs-cffi xarray round trip"},
    )
    ds["temp"].encoding = {
        "dtype": "int16", "scale_factor": 0.01, "add_offset": 10.0, "_FillValue": -32768, "chunks": (8, 3, 16),
    }
    ds["precip"].encoding = {"chunks": (8, 6, 32)}
    ds["flag"].encoding = {"chunks": (8, 6)}
    return ds


def region_update(ds: Dataset) -> Dataset:
    """New values for time steps 4..11 (partial chunks), only variables along time."""
    part = ds.isel(time=slice(4, 12)).drop_vars([name for name in ds.variables if "time" not in ds[name].dims])
    return part.assign(temp=part.temp + 1, flag=part.flag * 0 + 7).drop_vars("time")


def write_sequence(path: Path, ds: Dataset, zarr_format: int) -> Dataset:
    """Write half, append the other half along time, rewrite a region; return what the
    store should now hold."""
    ds.isel(time=slice(0, 12)).to_zarr(path, zarr_format=zarr_format, consolidated=True)
    ds.isel(time=slice(12, None)).to_zarr(path, append_dim="time", consolidated=True)
    update = region_update(ds)
    update.to_zarr(path, region={"time": slice(4, 12)}, consolidated=True)
    expected = ds.copy(deep=True)
    expected["temp"][4:12] = update.temp.values
    expected["flag"][4:12] = update.flag.values
    return expected


def stored_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_xarray_round_trip_native(tmp_path: Path, zarrs_pipeline: None, zarr_format: int) -> None:
    ds = make_dataset()
    expected = write_sequence(tmp_path / "ds.zarr", ds, zarr_format)
    written = zarrs_cffi.stats()
    assert written.fallbacks == 0, written.fallback_reasons
    assert written.native_writes > 0

    back = xr.open_zarr(tmp_path / "ds.zarr", consolidated=True).load()
    s = zarrs_cffi.stats()
    assert s.fallbacks == 0, s.fallback_reasons
    assert s.native_reads > 0
    # Packed to int16 with scale_factor 0.01: within half a step of the original.
    xr.testing.assert_allclose(back, expected, atol=0.006)
    assert np.isnan(back.temp.values[3, 2, :5]).all() and np.isnan(back.precip.values[16:]).all()
    assert back.time.dtype.kind == "M" and back.station.dtype.kind == "U"
    assert list(back.label.values) == list(ds.label.values)
    assert back.attrs == ds.attrs
    assert back.temp.encoding["scale_factor"] == 0.01 and back.temp.encoding["dtype"] == np.dtype("int16")

    # The route of every array: the library does the I/O itself, except the
    # variable-length strings, whose bytes move through the store's Python API.
    group = zarr.open_group(tmp_path / "ds.zarr", mode="r")
    routes = {}
    for name, array in group.arrays():
        pipeline = array._async_array.codec_pipeline
        assert isinstance(pipeline, zarrs_cffi.ZarrsCodecPipeline) and pipeline.native is not None, name
        routes[name] = pipeline.native.python_io
    assert routes == {name: None for name in routes} | {"label": "variable-length data type"}
    assert 0 < s.python_io_writes < s.native_writes


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_xarray_stored_bytes_identical_to_zarr_pipeline(tmp_path: Path, zarr_format: int) -> None:
    ds = make_dataset()
    with zarr.config.set({"codec_pipeline.path": ZARRS}):
        zarrs_cffi.reset_stats()
        write_sequence(tmp_path / "ours", ds, zarr_format)
        assert zarrs_cffi.stats().fallbacks == 0
    with zarr.config.set({"codec_pipeline.path": ZARR}):
        write_sequence(tmp_path / "zarr", ds, zarr_format)
    ours, theirs = stored_files(tmp_path / "ours"), stored_files(tmp_path / "zarr")
    assert sorted(ours) == sorted(theirs)
    # The all-NaN chunk of precip is the fill value: neither pipeline stores it.
    missing = "precip/2.0.0" if zarr_format == 2 else "precip/c/2/0/0"
    assert missing not in ours
    differ = sorted(key for key in ours if ours[key] != theirs[key])
    if zarr_format == 3:
        assert differ == []
        return
    # Zarr v2 only: the variable-length string chunk's blosc header. zarrs translates v2
    # blosc metadata ("shuffle": 1) for a variable-size data type to "noshuffle"
    # (zarrs_metadata_ext codec_blosc_v2_numcodecs_to_v3), while numcodecs compresses the
    # vlen-utf8 bytes with shuffle on and typesize 1; byte shuffle of 1-byte items is the
    # identity, so the compressed payload is the same and only c-blosc's flags byte (offset
    # 2, bit 0x01 BLOSC_DOSHUFFLE) differs. Either reader decodes both to the same bytes.
    assert differ == ["label/0"]
    a, b = ours["label/0"], theirs["label/0"]
    assert (a[:2], a[3:]) == (b[:2], b[3:]) and (a[2], b[2]) == (0x20, 0x21)
    blosc = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    assert bytes(blosc.decode(a)) == bytes(blosc.decode(b))
