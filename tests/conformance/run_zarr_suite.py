"""Run zarr-python's own test suite with ZarrsCodecPipeline and classify every failure.

The tests come from the sdist of the installed zarr version (downloaded once into
``.ci-cache/``), plus zarr's ``CodecPipelineTests`` subclassed with our pipeline. They run with ``ZARR_CODEC_PIPELINE__PATH=zarrs_cffi.ZarrsCodecPipeline``;
each failure is then rerun with zarr's default pipeline. A failure that also fails there is
not ours; one listed in ``known_failures.txt`` is expected (with its reason); every other
one fails this script.

Usage: ``python tests/conformance/run_zarr_suite.py [pytest files ...]``
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".ci-cache"
FILES = [
    "tests/test_indexing.py",
    "tests/test_codecs",
    "tests/test_array.py",
    "tests/test_api.py",
    "tests/test_group.py",
    "tests/test_codec_pipeline_suite.py",
    "tests/test_pipeline_parity.py",
    "tests/test_zarrs_cffi_suite.py",
    "tests/test_zarrs_cffi_parity.py",
]
# zarr's CodecPipelineTests pin their pipeline per subclass, so the suite above tests zarr's
# two pipelines whatever the environment says; this module adds the subclass for ours.
OUR_SUITE = '''"""Written by zarrs-cffi's tests/conformance/run_zarr_suite.py."""

from tests.test_codec_pipeline_suite import CodecPipelineTests


class TestZarrsCffiPipeline(CodecPipelineTests):
    pipeline_path = "zarrs_cffi.ZarrsCodecPipeline"
'''
OURS = "zarrs_cffi.ZarrsCodecPipeline"


def zarr_sources() -> Path:
    """The extracted sdist of the installed zarr, downloading it on first use."""
    ver = version("zarr")
    target = CACHE / f"zarr-{ver}"
    if not (target / "tests").is_dir():
        CACHE.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
             f"zarr=={ver}", "-d", str(CACHE)],
            check=True,
        )
        with tarfile.open(CACHE / f"zarr-{ver}.tar.gz") as sdist:
            sdist.extractall(CACHE, filter="data")
    (target / "tests" / "test_zarrs_cffi_suite.py").write_text(OUR_SUITE)
    # zarr's parity matrix compares its Fused pipeline against Batched (same values, same
    # keys, each reading the other's output, identical shard layouts): the same module with
    # ours in place of Fused.
    parity = (target / "tests" / "test_pipeline_parity.py").read_text()
    fused = '_FUSED = "zarr.core.codec_pipeline.FusedCodecPipeline"'
    if fused in parity:
        parity = parity.replace(fused, f'_FUSED = "{OURS}"  # ours, in place of Fused')
        (target / "tests" / "test_zarrs_cffi_parity.py").write_text(
            "# Written by zarrs-cffi's run_zarr_suite.py from zarr's test_pipeline_parity.py.\n" + parity
        )
    return target


def run(sources: Path, targets: list[str], pipeline: str | None, parallel: bool) -> tuple[int, set[str], str]:
    """Run pytest; return its exit code, the failed node ids and the summary line."""
    env = dict(os.environ)
    env.pop("ZARR_CODEC_PIPELINE__PATH", None)
    if pipeline:
        env["ZARR_CODEC_PIPELINE__PATH"] = pipeline
    command = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
               # Turn a hang into a failure with tracebacks instead of a stalled CI.
               "-o", "faulthandler_timeout=300", "-o", "faulthandler_exit_on_timeout=true"]
    if parallel:
        command += ["-n", str(min(os.cpu_count() or 1, 4))]
    result = subprocess.run(command + targets, cwd=sources, env=env, capture_output=True, text=True)
    failed = set(re.findall(r"^(?:FAILED|ERROR) (\S+)", result.stdout, flags=re.MULTILINE))
    # Counts as key=value, so CI's parsers never take this for a test runner's closing line.
    counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (passed|failed|skipped|xfailed|errors?)\b", result.stdout.splitlines()[-1] if result.stdout else ""))
    summary = " ".join(f"{word}={n}" for word, n in counts.items())
    if result.returncode not in (0, 1):
        sys.stdout.write(result.stdout[-5000:] + result.stderr[-5000:])
    return result.returncode, failed, summary


def known_failures() -> list[str]:
    lines = (ROOT / "tests" / "conformance" / "known_failures.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.strip() and not line.startswith("#")]


def main() -> int:
    sources = zarr_sources()
    # Older zarr releases lack some of these files (the pipeline suite and parity matrix).
    targets = sys.argv[1:] or [f for f in FILES if (sources / f).exists()]
    print(f"zarr {version('zarr')} test suite with {OURS}: {' '.join(targets)}")
    code, failed, summary = run(sources, targets, OURS, parallel=True)
    print(f"  with {OURS}: {summary}")
    if code not in (0, 1):
        print(f"pytest could not run the suite (exit {code})")
        return code
    if not failed:
        print("zarr suite: every test passed with our pipeline")
        return 0
    _, failed_default, _ = run(sources, sorted(failed), None, parallel=False)
    not_ours = failed & failed_default
    known = {f for f in failed - not_ours if any(f.startswith(k) for k in known_failures())}
    ours = failed - not_ours - known
    for label, group in (("also fails with zarr's default pipeline", not_ours), ("known, see known_failures.txt", known), ("OURS", ours)):
        for node in sorted(group):
            print(f"  {label}: {node}")
    print(f"zarr suite failures: total={len(failed)} also_default={len(not_ours)} known={len(known)} ours={len(ours)}")
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main())
