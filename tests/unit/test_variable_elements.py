"""Variable-length elements between numpy and the native element bytes plus offsets
(``zarrs_cffi/_pipeline/variable.py``): exact for every kind of element, and without a Python-level
step per element (anndata's string indexes hold one string per cell)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from zarrs_cffi._pipeline.variable import _pack_ascii, from_elements, to_elements

STRING = np.dtypes.StringDType()

TEXT_CASES = {
    "ascii": [f"cell-{i}" for i in range(50)],
    "non-ascii": ["é€😀", "a", "", "ß" * 5, "x"],
    "nul inside and at the end": ["NUL\x00inside", "end\x00", "\x00", "plain"],
    "all empty": ["", "", ""],
    "one long among short": ["a"] * 100 + ["y" * 100_000],
    "none": [],
}
BYTES_CASES = {
    "binary": [bytes(range(i % 7)) + b"\xff" * (i % 4) for i in range(40)],
    "nul at the end": [b"a\x00", b"\x00\x00", b""],
    "none": [],
}


def _reference(blob: bytes, offsets: np.ndarray[Any, Any], text: bool) -> list[Any]:
    bounds = offsets.tolist()
    items = [blob[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return [item.decode("utf-8") for item in items] if text else items


def _objects(items: list[Any]) -> np.ndarray[Any, Any]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


@pytest.mark.parametrize("case", list(TEXT_CASES))
@pytest.mark.parametrize("dtype", [STRING, np.dtype(object)], ids=["StringDType", "object"])
def test_text_round_trips(case: str, dtype: np.dtype[Any]) -> None:
    items = TEXT_CASES[case]
    chunk = np.array(items, dtype=STRING) if dtype == STRING else _objects(items)
    blob, offsets = to_elements([chunk], True)
    assert blob == "".join(items).encode("utf-8")
    assert offsets.dtype == np.uint64 and offsets.tolist() == np.cumsum([0] + [len(s.encode()) for s in items]).tolist()
    out = from_elements(blob, offsets, (len(items),), dtype, True)
    assert out.dtype == dtype and out.shape == (len(items),)
    assert out.tolist() == items == _reference(blob, offsets, True)


@pytest.mark.parametrize("case", list(BYTES_CASES))
def test_bytes_round_trip(case: str) -> None:
    items = BYTES_CASES[case]
    blob, offsets = to_elements([_objects(items)], False)
    assert blob == b"".join(items)
    out = from_elements(blob, offsets, (len(items),), np.dtype(object), False)
    assert out.dtype == object and out.tolist() == items


def test_several_chunks_in_c_order_and_shaped() -> None:
    chunks = [np.array([["a", "bb"], ["ccc", "é"]], dtype=STRING), np.array([["", "f"]], dtype=STRING)]
    blob, offsets = to_elements(chunks, True)
    assert blob == "abbcccéf".encode()
    assert offsets.tolist() == [0, 1, 3, 6, 8, 8, 9]
    first = from_elements(blob[:8], offsets[:5], (2, 2), STRING, True)
    np.testing.assert_array_equal(first, chunks[0])


def test_elements_that_are_not_strings_are_converted_with_str() -> None:
    blob, offsets = to_elements([_objects([1, "a", 2.5])], True)
    assert blob == b"1a2.5" and offsets.tolist() == [0, 1, 2, 5]


def test_a_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(UnicodeEncodeError):
        to_elements([_objects(["ok", "\ud800"])], True)


@pytest.mark.parametrize("dtype", [STRING, np.dtype(object)], ids=["StringDType", "object"])
def test_invalid_utf8_is_a_decode_error(dtype: np.dtype[Any]) -> None:
    with pytest.raises(UnicodeDecodeError):
        from_elements(b"ok\xff\xfe", np.array([0, 2, 4], dtype=np.uint64), (2,), dtype, True)


def test_offsets_that_decrease_are_refused() -> None:
    with pytest.raises(ValueError, match="decrease"):
        from_elements(b"abcd", np.array([0, 3, 1, 4], dtype=np.uint64), (3,), STRING, True)


def _python_steps(function: Any, *args: Any) -> int:
    """How many Python-level calls ``function(*args)`` makes (functions, generator steps and
    builtins called from Python code), counted with ``sys.setprofile``."""
    steps = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal steps
        if event in ("call", "c_call"):
            steps += 1

    sys.setprofile(count)
    try:
        function(*args)
    finally:
        sys.setprofile(None)
    return steps


@pytest.mark.parametrize("case", ["ascii", "non-ascii"])
def test_no_python_step_per_element(case: str) -> None:
    # Before: a generator step and an encode (or a slice and a decode) per element, so
    # 20,000 elements took more than 20,000 steps; now a fixed number, whatever the count.
    items = [f"{TEXT_CASES[case][i % len(TEXT_CASES[case])]}{i}" for i in range(20_000)]
    chunk = np.array(items, dtype=STRING)
    assert _python_steps(to_elements, [chunk], True) < 100
    blob, offsets = to_elements([chunk], True)
    for dtype in (STRING, np.dtype(object)):
        assert _python_steps(from_elements, blob, offsets, chunk.shape, dtype, True) < 100
    objects = _objects([item.encode() for item in items])
    blob, offsets = to_elements([objects], False)
    assert _python_steps(to_elements, [objects], False) < 100
    assert _python_steps(from_elements, blob, offsets, objects.shape, np.dtype(object), False) < 100


def test_ascii_string_chunks_are_packed_without_python_strings() -> None:
    # StringDType's tolist() builds a Python str per element (the slowest step of a string
    # write); ASCII text is cast to fixed-width bytes instead, NULs inside elements kept.
    chunks = [np.array([["a", "bb\x00"], ["", "dd"]], dtype=STRING), np.array(["\x00e", "f"], dtype=STRING)]
    packed = _pack_ascii(chunks)
    assert packed is not None
    blob, offsets = packed
    assert blob == b"abb\x00dd\x00ef" and offsets.tolist() == [0, 1, 4, 4, 6, 8, 9]
    assert (blob, offsets.tolist()) == (lambda b, o: (b, o.tolist()))(*to_elements(chunks, True))
    # Not ASCII, all empty, or one long element among short ones: the general path.
    assert _pack_ascii([np.array(["é", "a"], dtype=STRING)]) is None
    assert _pack_ascii([np.array(["", ""], dtype=STRING)]) is None
    assert _pack_ascii([np.array(["a"] * 100 + ["y" * 2_000_000], dtype=STRING)]) is None


class _CountingNumpy:
    """numpy as ``variable.py`` sees it, counting calls of ``np.full`` (a fill-value chunk)."""

    def __init__(self) -> None:
        self.full_calls = 0

    def full(self, *args: Any, **kwargs: Any) -> Any:
        self.full_calls += 1
        return np.full(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


@pytest.mark.parametrize("kind", ["string", "bytes"])
def test_a_chunk_written_whole_builds_no_fill_chunk(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    import zarr
    from zarr.storage import MemoryStore

    import zarrs_cffi
    from zarrs_cffi._pipeline import variable

    counting = _CountingNumpy()
    dtype = "str" if kind == "string" else "bytes"
    values = np.array([f"v{i}" for i in range(12)], dtype=STRING)
    if kind == "bytes":
        values = _objects([f"v{i}".encode() for i in range(12)])
    fill = "" if kind == "string" else b""
    stores = (MemoryStore(), MemoryStore())
    for store, pipeline in zip(stores, ("zarrs_cffi.ZarrsCodecPipeline", "zarr.core.codec_pipeline.BatchedCodecPipeline")):
        with zarr.config.set({"codec_pipeline.path": pipeline, "codec_pipeline.strict": True}):
            arr = zarr.create_array(store, shape=(12,), chunks=(4,), dtype=dtype)
            if pipeline.startswith("zarrs_cffi"):
                zarrs_cffi.reset_stats()
                monkeypatch.setattr(variable, "np", counting)
            arr[:] = values  # three whole chunks
            assert counting.full_calls == 0
            arr[0:4] = np.array([fill] * 4, dtype=values.dtype)  # whole, all fill value: deleted
            arr[5:7] = values[:2]  # in part: merged into the old chunk
            arr[10:] = values[:2]
            monkeypatch.setattr(variable, "np", np)
            if pipeline.startswith("zarrs_cffi"):
                assert zarrs_cffi.stats().fallback_writes == 0
            np.testing.assert_array_equal(arr[:], np.concatenate([[fill] * 4, values[4:5], values[:2], values[7:10], values[:2]]).astype(values.dtype))
    assert counting.full_calls == 0  # partial chunks merged with stored ones need none either
    assert "c/0" not in stores[0]._store_dict
    assert {k: v.to_bytes() for k, v in stores[0]._store_dict.items()} == {k: v.to_bytes() for k, v in stores[1]._store_dict.items()}
