"""Property test: any sequence of basic-selection writes and reads matches numpy.

Random shapes, chunk shapes, codecs and selections (step-1 slices, integers, negative
indices, empty slices), all handled natively.

Reproducible: conftest loads hypothesis' "ci" profile when CI is set (derandomized, so a
failure recurs on every run, and the failing example's ``@reproduce_failure`` blob is
printed) and the "dev" profile otherwise (random, with the example database in
``.hypothesis/`` replaying earlier failures first; the blob is printed too). Random numbers
inside a test come from seeds hypothesis draws, so they replay with the example.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import zarr
from conftest import ZARRS_PIPELINE, assert_same, native_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

import zarrs_cffi


@st.composite
def arrays(draw: st.DrawFn) -> dict[str, Any]:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 12), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n + 2)) for n in shape)
    codec = draw(st.sampled_from(["bytes", "zstd", "sharding"]))
    kwargs: dict[str, Any] = {"compressors": None if codec == "bytes" else [ZstdCodec(level=1)]}
    if codec == "sharding":
        kwargs["shards"] = tuple(c * draw(st.integers(1, 3)) for c in chunks)
    dtype = draw(st.sampled_from(["uint8", "int32", "float64", "complex64", "bool"]))
    return {"shape": shape, "chunks": chunks, "dtype": dtype, **kwargs}


@st.composite
def selections(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[Any, ...]:
    key: list[Any] = []
    for n in shape:
        if draw(st.booleans()):
            index = draw(st.integers(-n, n - 1))
            key.append(index)
        else:
            start = draw(st.one_of(st.none(), st.integers(-n - 2, n + 2)))
            stop = draw(st.one_of(st.none(), st.integers(-n - 2, n + 2)))
            key.append(slice(start, stop))
    # Sometimes leave trailing axes implicit.
    cut = draw(st.integers(0, len(key)))
    return tuple(key[: max(cut, 1)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), spec=arrays())
def test_basic_selections_match_numpy(data, spec):
    dtype = spec["dtype"]
    model = np.zeros(spec["shape"], dtype=dtype)
    with tempfile.TemporaryDirectory() as path, zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(LocalStore(path), fill_value=0, **spec)
        zarrs_cffi.reset_stats()
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        for _ in range(data.draw(st.integers(1, 4))):
            key = data.draw(selections(spec["shape"]))
            target = model[key]
            if data.draw(st.booleans()):
                value: Any = rng.integers(0, 100, np.shape(target)).astype(dtype)
            else:
                value = np.array(rng.integers(0, 100), dtype=dtype)[()]  # a scalar
            model[key] = value
            if np.size(target):
                with native_only(writes=True):
                    arr[key] = value
            else:
                arr[key] = value
            key = data.draw(selections(spec["shape"]))
            expected = model[key]
            if np.size(expected):
                with native_only(reads=True):
                    got = arr[key]
            else:
                got = arr[key]
            assert_same(np.asarray(got), np.asarray(expected))
        with native_only(reads=True):
            assert_same(arr[...], model)


# --- every selection kind, every kind of store, many data types, zero fallbacks -----------

DTYPES = ["uint8", "int32", ">i4", "float64", ">f8", "complex64", "bool", "datetime64[s]", "<U3", "S3", "str"]


def _values(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    ints = rng.integers(0, 100, shape)
    kind = np.dtype(dtype).kind if dtype != "str" else "U"
    if kind in "US":
        return ints.astype(dtype)  # digits as text or bytes
    if kind == "M":
        return ints.astype("int64").astype(dtype)
    return ints.astype(dtype)


@st.composite
def axis_keys(draw: st.DrawFn, n: int, *, unique: bool) -> Any:
    """One axis of an orthogonal selection: an int, a slice with a step, an integer array
    (unsorted; repeated unless ``unique``) or a boolean mask."""
    kind = draw(st.sampled_from(["int", "slice", "array", "mask"]))
    if kind == "int":
        return draw(st.integers(-n, n - 1))
    if kind == "slice":
        start = draw(st.one_of(st.none(), st.integers(-n, n)))
        stop = draw(st.one_of(st.none(), st.integers(-n, n)))
        return slice(start, stop, draw(st.integers(1, 4)))
    if kind == "array":
        elements = st.integers(0, n - 1)
        values = draw(st.lists(elements, min_size=1, max_size=2 * n, unique=unique))
        return np.array(values, dtype=np.intp)
    return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)


def _orthogonal(key: tuple[Any, ...], shape: tuple[int, ...]) -> tuple[Any, tuple[int, ...]]:
    """numpy's equivalent of zarr's orthogonal ``key``: an ``np.ix_`` index, and the axes
    that integers drop."""
    axes, dropped = [], []
    for d, (k, n) in enumerate(zip(key, shape, strict=True)):
        if isinstance(k, int):
            axes.append(np.array([k % n]))
            dropped.append(d)
        elif isinstance(k, slice):
            axes.append(np.arange(n)[k])
        elif k.dtype == bool:
            axes.append(np.flatnonzero(k))
        else:
            axes.append(k)
    return np.ix_(*axes), tuple(dropped)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), spec=arrays(), dtype=st.sampled_from(DTYPES), store=st.sampled_from(["local", "memory"]))
def test_every_selection_kind_matches_numpy_natively(data, spec, dtype, store):
    import warnings

    from zarr.storage import MemoryStore

    spec = {**spec, "dtype": dtype}
    shape = spec["shape"]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    with tempfile.TemporaryDirectory() as path, zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # some types have no stable v3 specification
            target = LocalStore(path) if store == "local" else MemoryStore()
            arr = zarr.create_array(target, **spec)
        model = np.full(shape, arr.fill_value, dtype=arr.dtype)
        zarrs_cffi.reset_stats()
        for _ in range(data.draw(st.integers(1, 3))):
            kind = data.draw(st.sampled_from(["basic", "oindex", "vindex", "mask"]))
            write = data.draw(st.booleans())
            if kind in ("basic", "oindex"):
                key = tuple(data.draw(axis_keys(n, unique=write)) for n in shape)
                if kind == "basic":
                    key = tuple(k if isinstance(k, (int, slice)) else slice(None, None, 2) for k in key)
                index, dropped = _orthogonal(key, shape)
                expected = model[index].squeeze(axis=dropped) if dropped else model[index]
                if write:
                    value = _values(rng, dtype, expected.shape)
                    if kind == "basic":
                        arr[key] = value
                    else:
                        arr.oindex[key] = value
                    model[index] = np.expand_dims(value, dropped) if dropped else value
                else:
                    got = arr[key] if kind == "basic" else arr.oindex[key]
                    assert_same(np.asarray(got), expected)
            elif kind == "vindex":
                count = data.draw(st.integers(1, 12))
                points = [tuple(int(rng.integers(0, n)) for n in shape) for _ in range(count)]
                if write:
                    points = list(dict.fromkeys(points))  # distinct: the write order is moot
                coords = tuple(np.array(c, dtype=np.intp) for c in zip(*points, strict=True))
                if write:
                    value = _values(rng, dtype, (len(points),))
                    arr.vindex[coords] = value
                    model[coords] = value
                else:
                    assert_same(np.asarray(arr.vindex[coords]), model[coords])
            else:
                mask = rng.random(shape) < 0.3
                if write:
                    value = _values(rng, dtype, (int(mask.sum()),))
                    arr.vindex[mask] = value
                    model[mask] = value
                else:
                    assert_same(np.asarray(arr.vindex[mask]), model[mask])
        assert_same(np.asarray(arr[...]), model)
        s = zarrs_cffi.stats()
        assert s.fallbacks == 0, s.fallback_reasons
        assert s.native_reads > 0


def test_hypothesis_profile_makes_failures_reproducible():
    # CI (CI=true) runs derandomized without a database; every profile prints the blob that
    # replays a failing example. The property tests above inherit it (their own @settings
    # only change the example count and health checks).
    expected = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    for test in (test_basic_selections_match_numpy, test_every_selection_kind_matches_numpy_natively):
        current = test._hypothesis_internal_use_settings  # type: ignore[attr-defined]
        assert current.print_blob is True
        if expected == "ci":
            assert current.derandomize is True
            assert current.database is None
        elif expected == "dev":
            assert current.derandomize is False
