"""``benchmarks/direct_writes.py`` runs (``--quick``), checks every implementation's copy
against numpy, and reports a time for every operation and implementation."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TENSORSTORE = importlib.util.find_spec("tensorstore") is not None


def test_direct_writes_reports_every_operation_for_every_implementation(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "direct_writes.py"), "--dir", str(tmp_path), "--quick"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    names = ["direct", "ours", "batched"] + (["tensorstore"] if TENSORSTORE else [])
    cell = r"(\d+\.\d\d) \((\d+\.\d\d)\)" + (r", \*\*\d+\.\d\dx\*\*" if TENSORSTORE else "")
    for layout in ("zstd", "sharded"):
        assert f"### {layout}:" in out, out
        for op in ("oindex", "vindex", "chunk"):
            row = re.search(rf"^\| {op} \| " + r" \| ".join([cell] * len(names)) + r" \|$", out, re.M)
            assert row, out
            assert all(float(value) > 0 for value in row.groups()[::2]), row.group(0)
    assert list(tmp_path.iterdir()) == []
