"""The zarr-suite gate (tests/conformance/run_zarr_suite.py) fails when it should.

It runs on one small module of zarr's suite, zarr's ``CodecPipelineTests`` subclassed with
our pipeline (63 tests, about 15 s): with the pipeline intact it passes; broken on purpose
with the test-only switch (every array falling back, or one byte of every read flipped), or
with pytest dying at start-up, it must fail and say why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import run_zarr_suite  # noqa: E402

RUNNER = Path(__file__).parent / "run_zarr_suite.py"
# Our CodecPipelineTests module: zarr's v2 Delta-filter scenarios fall back (zarrs has no
# delta codec), 40 of 656 chunks, hence the share floor for this module.
SUBSET = ["--min-native-share", "0.9", "--min-native-chunks", "300", "tests/test_zarrs_cffi_suite.py"]


def _gate(break_mode: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ZARRS_CFFI_BREAK", None)
    env.pop("PYTEST_ADDOPTS", None)
    if break_mode:
        env["ZARRS_CFFI_BREAK"] = break_mode
    env.update(extra_env)
    return subprocess.run([sys.executable, str(RUNNER), *SUBSET], env=env, capture_output=True, text=True, timeout=600)


def test_gate_passes_with_the_pipeline_intact() -> None:
    result = _gate()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed=63" in result.stdout
    assert "zarr suite gate: passed" in result.stdout


def test_gate_fails_when_every_array_falls_back() -> None:
    # zarr's own pipeline then does all the work and every test passes: only the native
    # accounting can tell.
    result = _gate("fallback")
    assert result.returncode == 1, result.stdout
    assert "passed=63" in result.stdout
    assert "native share 0.0000 is below the floor" in result.stdout
    assert "only 0 chunks ran natively" in result.stdout


def test_gate_fails_when_reads_are_corrupted() -> None:
    # The failing tests are rerun as zarr's TestBatchedPipeline (not as our subclass again),
    # where they pass: so they are ours.
    result = _gate("corrupt")
    assert result.returncode == 1, result.stdout
    assert "failures are ours" in result.stdout
    assert "tests/test_codec_pipeline_suite.py::TestBatchedPipeline::" in result.stdout
    assert "also_default=0" in result.stdout


def test_gate_fails_when_pytest_dies_at_start_up() -> None:
    result = _gate(PYTEST_ADDOPTS="-p no_such_plugin_for_the_gate_test")
    assert result.returncode == 1, result.stdout
    assert "pytest did not run the suite" in result.stdout


@pytest.mark.parametrize(
    ("ours", "theirs", "same"),
    [
        ("AssertionError: assert 1 == 2", "AssertionError: assert 3 == 4", True),
        ("ValueError: bad chunk", "ValueError: other words", True),
        ("ZarrsCodecError: c/0 in a.zarr: truncated", "ValueError: truncated", False),
        ("Failed: DID NOT RAISE <class 'ValueError'>", "AssertionError: x", False),
    ],
)
def test_failures_match_by_exception_type(ours: str, theirs: str, same: bool) -> None:
    assert (run_zarr_suite.exception_type(ours) == run_zarr_suite.exception_type(theirs)) is same


def test_our_modules_rerun_as_the_zarr_tests_they_came_from() -> None:
    assert (
        run_zarr_suite.zarr_equivalent("tests/test_zarrs_cffi_suite.py::TestZarrsCffiPipeline::test_scenario[memory-x]")
        == "tests/test_codec_pipeline_suite.py::TestBatchedPipeline::test_scenario[memory-x]"
    )
    assert (
        run_zarr_suite.zarr_equivalent("tests/test_zarrs_cffi_parity.py::test_pipeline_parity[a-b]")
        == "tests/test_pipeline_parity.py::test_pipeline_parity[a-b]"
    )
    node = "tests/test_array.py::test_x[local]"
    assert run_zarr_suite.zarr_equivalent(node) == node
