"""Shared fixtures and helpers for the zarrs_cffi test suite.

zarr binds a codec pipeline to an array when the array is opened, so every test opens
its arrays inside the ``zarrs_pipeline`` (or ``zarr_pipeline``) fixture's config context.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr

import zarrs_cffi

sys.path.insert(0, str(Path(__file__).parent / "conformance"))
import zarrs_cffi_gate  # noqa: E402  (test-only plugin: break switch, stats dump)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def pytest_configure(config: pytest.Config) -> None:
    # ZARRS_CFFI_BREAK=fallback|corrupt breaks the pipeline on purpose: the native-route
    # assertions below must then fail (see tests/conformance/zarrs_cffi_gate.py).
    zarrs_cffi_gate.apply_break_switch()

ZARRS_PIPELINE = "zarrs_cffi.ZarrsCodecPipeline"
ZARR_PIPELINE = "zarr.core.codec_pipeline.BatchedCodecPipeline"

# Every fixed-size data type the pipeline handles natively.
NATIVE_DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]


@pytest.fixture
def zarrs_pipeline() -> Iterator[None]:
    """zarr configured to use ZarrsCodecPipeline, with the stats counters reset."""
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        zarrs_cffi.reset_stats()
        yield


@pytest.fixture
def zarr_pipeline() -> Iterator[None]:
    """zarr configured to use its own BatchedCodecPipeline (the reference)."""
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        yield


def assert_route(s: zarrs_cffi.PipelineStats, *, native_io: bool) -> None:
    """Every chunk of ``s`` was native, with something read and written; with
    ``native_io`` the library moved the bytes itself, else the store's Python API did."""
    assert s.fallbacks == 0, s.fallback_reasons
    assert s.native_reads > 0 and s.native_writes > 0, s
    if native_io:
        assert (s.python_io_reads, s.python_io_writes) == (0, 0), s
    else:
        assert (s.python_io_reads, s.python_io_writes) == (s.native_reads, s.native_writes), s


def assert_no_fallback() -> None:
    """Fail, listing the reasons, if any chunk went to zarr's own pipeline."""
    s = zarrs_cffi.stats()
    assert s.fallbacks == 0, s.fallback_reasons


@contextlib.contextmanager
def native_only(*, reads: bool = False, writes: bool = False) -> Iterator[None]:
    """The block must read and/or write chunks natively, and nothing may fall back."""
    before = zarrs_cffi.stats()
    yield
    after = zarrs_cffi.stats()
    assert after.fallbacks == 0, after.fallback_reasons
    if reads:
        assert after.native_reads > before.native_reads, "no chunk was read natively"
    if writes:
        assert after.native_writes > before.native_writes, "no chunk was written natively"


@pytest.fixture
def expect_native(zarrs_pipeline: None) -> Callable[..., contextlib.AbstractContextManager[None]]:
    """A context manager: the block must read (``reads=True``) and/or write
    (``writes=True``) chunks natively, and nothing may have fallen back."""
    return native_only


def make_data(dtype: str | np.dtype[Any], shape: tuple[int, ...], seed: int = 0) -> np.ndarray[Any, Any]:
    """Random values of ``dtype`` including the type's edge cases (extremes, NaN, inf)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    if dt.kind == "b":
        flat = rng.integers(0, 2, size).astype(bool)
        specials: list[Any] = [True, False]
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        flat = rng.integers(info.min, info.max, size, dtype=dt, endpoint=True)
        specials = [info.min, info.max, 0, 1]
        if dt.kind == "i":
            specials.append(-1)
    elif dt.kind == "f":
        flat = (rng.standard_normal(size) * 1000).astype(dt)
        finfo = np.finfo(dt)
        specials = [np.nan, np.inf, -np.inf, -0.0, finfo.max, finfo.min, finfo.tiny]
    elif dt.kind == "c":
        part = np.dtype(f"f{dt.itemsize // 2}")
        flat = (rng.standard_normal(size) + 1j * rng.standard_normal(size)).astype(dt)
        specials = [complex(np.nan, 1), complex(1, np.nan), complex(np.inf, -np.inf), np.finfo(part).max]
    else:
        raise ValueError(f"no generator for {dt}")
    flat = flat.astype(dt)
    k = min(len(specials), size)
    flat[:k] = np.array(specials[:k], dtype=dt)
    # Scatter the edge cases so they land in different chunks.
    rng.shuffle(flat)
    return flat.reshape(shape)


def assert_same(got: Any, expected: np.ndarray[Any, Any]) -> None:
    """Equal dtype, shape and values; NaNs match NaNs in the same place (per component)."""
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    if expected.dtype.kind == "c":
        # Compare real and imaginary parts separately, so nan+1j never matches 1+nanj.
        part = np.dtype(f"f{expected.dtype.itemsize // 2}")
        got = np.ascontiguousarray(got).reshape(-1).view(part)
        expected = np.ascontiguousarray(expected).reshape(-1).view(part)
    if expected.dtype.kind == "f":
        np.testing.assert_array_equal(got, expected)  # treats NaN == NaN
        # -0.0 vs 0.0 matter for a byte-faithful round trip.
        np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))
    else:
        np.testing.assert_array_equal(got, expected)


def stored_keys(root: str | os.PathLike[str]) -> set[str]:
    """Every file under a directory store, as store keys (metadata included)."""
    root = Path(root)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def chunk_keys(root: str | os.PathLike[str]) -> set[str]:
    """The chunk (or shard) keys stored under a directory store."""
    return {k for k in stored_keys(root) if not k.endswith(("zarr.json", ".zarray", ".zattrs", ".zgroup"))}


def fallback_array(path: str | os.PathLike[str], **kwargs: Any) -> zarr.Array:
    """A (10, 12) int32 array zarrs cannot open (a Zarr v2 Delta filter), so every read and
    write of it falls back to zarr's own pipeline: chunks (4, 5), a 3 x 3 grid."""
    import numcodecs

    return zarr.create_array(
        zarr.storage.LocalStore(path), shape=(10, 12), chunks=(4, 5), dtype="int32", zarr_format=2,
        filters=[numcodecs.Delta(dtype="<i4")], compressors=None, **kwargs,
    )


# --- helpers added for issue 8 (route assertions, hypothesis profiles) ----------------------


def assert_read_route(s: zarrs_cffi.PipelineStats, *, native_io: bool, writes: bool = False) -> None:
    """Like ``assert_route`` for read-mostly tests: chunks were read natively, nothing fell
    back, and the bytes moved through the library itself (``native_io``) or the store's
    Python API. With ``writes`` the same holds for writes (at least one)."""
    assert s.fallbacks == 0, s.fallback_reasons
    assert s.native_reads > 0, s
    if writes:
        assert s.native_writes > 0, s
    if native_io:
        assert (s.python_io_reads, s.python_io_writes) == (0, 0), s
    else:
        assert s.python_io_reads == s.native_reads and s.python_io_writes == s.native_writes, s


def python_io_reason(arr: zarr.Array) -> str | None:
    """Why ``arr``'s chunk bytes move through Python (None: the library reaches the store
    itself). Fails if the array is not native at all."""
    pipeline = arr.async_array.codec_pipeline
    assert isinstance(pipeline, zarrs_cffi.ZarrsCodecPipeline), type(pipeline)
    assert pipeline.native is not None, pipeline.reason
    return pipeline.native.python_io


# Hypothesis: CI (which sets CI=true) runs derandomized, so a failure reproduces on the next
# run and locally from the printed example; every run prints the reproduce_failure blob. Local
# runs ("dev") are random with hypothesis' default example database (.hypothesis/), which
# replays earlier failures first. HYPOTHESIS_PROFILE picks a profile explicitly (e.g.
# "dev" in CI for a randomized, nightly-style run).
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
_hypothesis_settings.register_profile("dev", print_blob=True, deadline=None)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


class CountingStore(zarr.storage.MemoryStore):
    """A MemoryStore subclass (so its bytes move through its async API, never the native
    library or the synchronous path) that records every ``get``/``set`` with its byte range
    and how many were in flight at once. Each request yields to the loop once, so concurrent
    requests overlap. ``on_get(key, byte_range)`` runs before each get is served."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gets: list[tuple[str, Any]] = []
        self.sets: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.on_get: Callable[[str, Any], Any] | None = None

    def reset_counts(self) -> None:
        self.gets.clear()
        self.sets.clear()
        self.in_flight = self.peak = 0

    @contextlib.asynccontextmanager
    async def _request(self) -> Any:
        import asyncio

        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.002)
            yield
        finally:
            self.in_flight -= 1

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        async with self._request():
            self.gets.append((key, byte_range))
            if self.on_get is not None:
                await self.on_get(key, byte_range)
            return await super().get(key, prototype, byte_range)

    async def set(self, key: str, value: Any) -> None:
        async with self._request():
            self.sets.append(key)
            await super().set(key, value)
