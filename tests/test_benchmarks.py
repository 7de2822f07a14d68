"""The benchmark tools run and report every figure they promise (not their speed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_call_share_splits_a_small_read_into_zarrs_share_and_ours(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "call_share.py"), "--dir", str(tmp_path),
         "--size", "48", "--rounds", "1", "--reads", "10", "--layout", "zstd", "raw-sharded"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    for layout in ("zstd", "raw-sharded"):
        ours = re.search(rf"^\| {layout} \| ours \| (\d+) \| (-?\d+) \| (\d+) \| (-?\d+) \| (-?\d+) \| (\d+) \|$", out, re.M)
        assert ours, out
        total, zarr_share, inside, hop, planning, native = map(int, ours.groups())
        assert total == zarr_share + inside or abs(total - zarr_share - inside) <= 1
        assert abs(inside - hop - planning - native) <= 2
        assert native > 0 and total > native
        assert re.search(rf"^\| {layout} \| ours \(direct\) \| \d+ \|", out, re.M), out
    assert list(tmp_path.iterdir()) == []  # the arrays were removed


def test_fancy_share_splits_oindex_and_vindex_into_zarrs_part_and_ours(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fancy_share.py"), "--dir", str(tmp_path),
         "--size", "64", "--rounds", "1", "--layout", "zstd", "raw-sharded"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    number = r"(\d+\.\d)"
    for layout in ("zstd", "raw-sharded"):
        for op in ("oindex", "vindex"):
            row = re.search(
                rf"^\| {layout} \| {op} \| {number} \| {number} \| {number} \| {number} \| {number} \| "
                rf"(\d+\.\d\d) \| (\d+\.\d\d) \|$",
                out, re.M,
            )
            assert row, out
            ours, outside, batched_outside, inside, tensorstore, ratio, inside_ratio = map(float, row.groups())
            assert abs(ours - outside - inside) <= 0.15  # one decimal each
            assert inside > 0 and outside > 0 and batched_outside > 0 and tensorstore > 0
            assert abs(ratio - ours / tensorstore) <= 0.02 + 0.05 * ratio
            assert inside_ratio <= ratio
    assert list(tmp_path.iterdir()) == []  # the arrays were removed
