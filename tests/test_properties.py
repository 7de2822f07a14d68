"""Property test: any sequence of basic-selection writes and reads matches numpy.

Random shapes, chunk shapes, codecs and selections (step-1 slices, integers, negative
indices, empty slices), all handled natively.
"""

from __future__ import annotations

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
