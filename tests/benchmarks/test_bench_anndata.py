"""benchmarks/bench.py's anndata section: every row measured and checked for each zarr
pipeline, and reported unavailable (not a crash) where anndata is not installed. anndata is
a benchmark extra (benchmarks/requirements.txt), never a test dependency: the full run is
skipped without it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_for_tests", ROOT / "benchmarks" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_without_anndata_the_section_is_reported_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench()
    monkeypatch.setitem(sys.modules, "anndata", None)  # import anndata now raises ImportError
    reason = bench.anndata_unavailable()
    assert reason is not None and "anndata" in reason
    impls = [bench.IMPLS["batched"], bench.IMPLS["ours"]]
    cells = {("unavailable", ""): bench.Cell("unavailable", detail=reason)}
    report = bench.render_report([], impls, {}, [], {}, anndata=cells)
    assert f"## anndata\n\nunavailable: {reason}\n" in report


def test_anndata_pipeline_switch_is_turned_off_and_restored() -> None:
    pytest.importorskip("anndata")
    bench = _bench()
    module = importlib.import_module("anndata._io.zarr")
    original = module.fast_zarr_context
    with bench.anndata_pipeline_as_configured():
        assert module.fast_zarr_context is not original
        with module.fast_zarr_context():  # a no-op: zarr's configured pipeline stays
            pass
    assert module.fast_zarr_context is original


def test_anndata_section_measures_and_checks_every_row(tmp_path: Path) -> None:
    pytest.importorskip("anndata")
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--dir", str(tmp_path), "--section", "anndata",
         "--impl", "batched", "ours", "ours-direct", "--layout", "zstd", "--ad-obs", "3000", "--ad-vars", "40",
         "--ad-repeat", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "anndata 0." in out and "3,000 obs x 40 vars" in out
    for operation in ("write_zarr", "read_zarr", "read_lazy", "lazy touch"):
        # seconds for both pipelines; the direct API has no anndata route
        assert re.search(rf"^\| {operation} \| \d+\.\d+ \| \d+\.\d+ \| n/a \|$", out, re.M), out
        assert re.search(rf"^\| {operation} \| \d+\.\d+x \|$", out, re.M), out
    assert "MISMATCH" not in out and "error" not in out
    assert list(tmp_path.iterdir()) == []  # the datasets were removed
