"""Run zarr-python's own test suite with ZarrsCodecPipeline and decide which failures are ours.

The tests come from the sdist of the installed zarr (downloaded once into ``.ci-cache/``;
CI pins the release in ``constraints.txt``), plus two modules this script writes: zarr's
``CodecPipelineTests`` subclassed with our pipeline, and zarr's parity matrix with our
pipeline in place of its Fused one. Everything runs with
``ZARR_CODEC_PIPELINE__PATH=zarrs_cffi.ZarrsCodecPipeline`` and the test-only plugin
``zarrs_cffi_gate`` (next to this file), which records every outcome and each process's
``zarrs_cffi.stats()``.

The gate fails when:

- pytest did not run the suite (it died, found nothing, or left no results);
- a test failed with our pipeline and is neither listed in ``known_failures.txt`` nor fails
  the same way (same exception type) with zarr's own pipeline. Tests that pin our pipeline
  in their code are rerun as the zarr test they were made from (``CodecPipelineTests``
  subclassed for zarr's Batched pipeline; the original parity module), so "fails with the
  default too" always means zarr's own pipeline, never ours again;
- too little ran natively: native chunks below ``MIN_NATIVE_SHARE`` of all chunks, or fewer
  than ``MIN_NATIVE_CHUNKS``, or fewer than ``MIN_NATIVE_IO_CHUNKS`` through native storage. A regression that sends every array to zarr's pipeline would
  otherwise pass zarr's suite trivially;
- a suite file this script expects is missing from the sdist, or a module it writes cannot
  be written: coverage never shrinks silently.

``ZARRS_CFFI_BREAK=fallback|corrupt`` (see ``zarrs_cffi_gate.py``) breaks the pipeline on
purpose; the gate must then fail.

Usage: ``python tests/conformance/run_zarr_suite.py [--min-native-chunks N]
[--min-native-io-chunks N] [--min-native-share F] [pytest node ids ...]``; with node ids,
the chunk floors default to 1 and 0 (the share floor stays).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = ROOT / ".ci-cache"
OURS = "zarrs_cffi.ZarrsCodecPipeline"
FILES = [
    "tests/test_indexing.py",
    "tests/test_codecs",
    "tests/test_array.py",
    "tests/test_api.py",
    "tests/test_group.py",
    "tests/test_v2.py",
    "tests/test_properties.py",
    "tests/test_codec_pipeline_suite.py",
    "tests/test_pipeline_parity.py",
    "tests/test_zarrs_cffi_suite.py",
    "tests/test_zarrs_cffi_parity.py",
]
# Floors for the whole suite, set from the run recorded in the README (zarr 3.4.2): 231,550
# chunks native (99.93% of all; 15,226 of them through native storage, the rest through
# MemoryStore/ZipStore's Python API), 153 fell back (codecs zarrs lacks). Set a margin
# below, so they catch a route that stopped being native, not noise from zarr's randomised
# property tests.
MIN_NATIVE_SHARE = 0.99
MIN_NATIVE_CHUNKS = 150_000
MIN_NATIVE_IO_CHUNKS = 10_000
# More failures than this means the pipeline is broken: rerunning each with zarr's
# pipeline would only take long to say so.
MAX_RERUNS = 300

# zarr's CodecPipelineTests pin their pipeline per subclass, so the suite file tests zarr's
# two pipelines whatever the environment says; this module adds the subclass for ours.
OUR_SUITE = '''"""Written by zarrs-cffi's tests/conformance/run_zarr_suite.py."""

from tests.test_codec_pipeline_suite import CodecPipelineTests


class TestZarrsCffiPipeline(CodecPipelineTests):
    pipeline_path = "zarrs_cffi.ZarrsCodecPipeline"
'''
FUSED_LINE = '_FUSED = "zarr.core.codec_pipeline.FusedCodecPipeline"'
# Our modules' tests, as the zarr tests they were made from (run with zarr's own pipeline).
ZARR_EQUIVALENT = {
    "tests/test_zarrs_cffi_suite.py::TestZarrsCffiPipeline::": "tests/test_codec_pipeline_suite.py::TestBatchedPipeline::",
    "tests/test_zarrs_cffi_parity.py::": "tests/test_pipeline_parity.py::",
}


class GateError(Exception):
    """The suite could not be run as this script promises."""


def _write_module(path: Path, text: str) -> None:
    """Write a generated module whole (a temporary file renamed over it), and only when it
    changed: a run collecting it meanwhile sees the old text or the new, never a part."""
    if path.exists() and path.read_text() == text:
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def zarr_sources() -> Path:
    """The extracted sdist of the installed zarr with our two modules written into it."""
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
    tests = target / "tests"
    _write_module(tests / "test_zarrs_cffi_suite.py", OUR_SUITE)
    parity = (tests / "test_pipeline_parity.py").read_text()
    if parity.count(FUSED_LINE) != 1:
        raise GateError(f"zarr {ver}'s test_pipeline_parity.py no longer has the line {FUSED_LINE!r}: "
                        "update run_zarr_suite.py so the parity matrix still runs with our pipeline")
    _write_module(
        tests / "test_zarrs_cffi_parity.py",
        "# Written by zarrs-cffi's run_zarr_suite.py from zarr's test_pipeline_parity.py.\n"
        + parity.replace(FUSED_LINE, f'_FUSED = "{OURS}"  # ours, in place of Fused'),
    )
    missing = [f for f in FILES if not (target / f).exists()]
    if missing:
        raise GateError(f"zarr {ver}'s sdist lacks {', '.join(missing)}: test a zarr release that has them "
                        "(constraints.txt) or change FILES on purpose")
    return target


def run(sources: Path, targets: list[str], *, ours: bool, parallel: bool) -> tuple[dict[str, dict[str, str]], list[dict]]:
    """Run pytest on ``targets``; return every test's outcome and each process's stats."""
    env = dict(os.environ)
    env.pop("ZARR_CODEC_PIPELINE__PATH", None)
    if ours:
        env["ZARR_CODEC_PIPELINE__PATH"] = OURS
    else:
        env.pop("ZARRS_CFFI_BREAK", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="zarr-suite-") as out:
        env["ZARRS_CFFI_STATS_DIR"] = out
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "zarrs_cffi_gate",
                   # Turn a hang into a failure with tracebacks instead of a stalled CI.
                   "-o", "faulthandler_timeout=300", "-o", "faulthandler_exit_on_timeout=true"]
        if parallel:
            command += ["-n", str(min(os.cpu_count() or 1, 4))]
        result = subprocess.run(command + targets, cwd=sources, env=env, capture_output=True, text=True)
        results_file = Path(out) / "results.json"
        if result.returncode not in (0, 1) or not results_file.exists():
            sys.stdout.write(result.stdout[-5000:] + result.stderr[-5000:])
            raise GateError(f"pytest did not run the suite (exit {result.returncode}, "
                            f"{'no' if not results_file.exists() else 'a'} results file)")
        results = json.loads(results_file.read_text())
        stats = [json.loads(p.read_text()) for p in Path(out).glob("stats-*.json")]
    if result.returncode == 1 and not any(r["outcome"] in ("failed", "error", "xpassed") for r in results.values()):
        sys.stdout.write(result.stdout[-5000:])
        raise GateError("pytest exited 1 but reported no failing test")
    return results, stats


def counts(results: dict[str, dict[str, str]]) -> Counter[str]:
    return Counter(r["outcome"] for r in results.values())


def exception_type(crash: str | None) -> str:
    """``ValueError`` from ``ValueError: bad`` (pytest's crash line), the whole line otherwise."""
    text = (crash or "").strip()
    head = text.split(":", 1)[0]
    return head if head and " " not in head else text


def zarr_equivalent(node: str) -> str:
    for prefix, replacement in ZARR_EQUIVALENT.items():
        if node.startswith(prefix):
            return replacement + node[len(prefix):]
    return node


def known_failures() -> list[str]:
    lines = (HERE / "known_failures.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.strip() and not line.startswith("#")]


def check_native_share(stats: list[dict], min_share: float, min_chunks: int, min_io_chunks: int) -> list[str]:
    """Print what ran natively; return the reasons the share is too low (none if fine)."""
    total: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for s in stats:
        total.update({k: v for k, v in s.items() if isinstance(v, int)})
        reasons.update(s["fallback_reasons"])
    native = total["native_reads"] + total["native_writes"]
    native_io = native - total["python_io_reads"] - total["python_io_writes"]
    fallback = total["fallback_reads"] + total["fallback_writes"]
    share = native / (native + fallback) if native + fallback else 0.0
    print(f"  chunks: native_reads={total['native_reads']} native_writes={total['native_writes']} "
          f"of which native_storage={native_io} "
          f"fallback_reads={total['fallback_reads']} fallback_writes={total['fallback_writes']} "
          f"native_share={share:.4f} (floors: share {min_share}, {min_chunks} chunks, "
          f"{min_io_chunks} through native storage)")
    for reason, n in reasons.most_common(8):
        print(f"    fallback: {n} chunks: {reason}")
    problems = []
    if share < min_share:
        problems.append(f"native share {share:.4f} is below the floor {min_share}")
    if native < min_chunks:
        problems.append(f"only {native} chunks ran natively (at least {min_chunks} expected)")
    if native_io < min_io_chunks:
        problems.append(f"only {native_io} chunks moved through native storage (at least {min_io_chunks} expected)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-native-share", type=float, default=MIN_NATIVE_SHARE)
    parser.add_argument("--min-native-chunks", type=int, default=None)
    parser.add_argument("--min-native-io-chunks", type=int, default=None)
    parser.add_argument("targets", nargs="*", help="pytest node ids (default: the whole suite)")
    args = parser.parse_args()
    subset = bool(args.targets)
    min_chunks = args.min_native_chunks if args.min_native_chunks is not None else (1 if subset else MIN_NATIVE_CHUNKS)
    min_io = args.min_native_io_chunks if args.min_native_io_chunks is not None else (0 if subset else MIN_NATIVE_IO_CHUNKS)
    try:
        sources = zarr_sources()
        targets = args.targets or FILES
        print(f"zarr {version('zarr')} test suite with {OURS}: {' '.join(targets)}")
        results, stats = run(sources, targets, ours=True, parallel=True)
    except GateError as exc:
        print(f"zarr suite gate: FAILED: {exc}")
        return 1
    tally = counts(results)
    print("  with ours: " + " ".join(f"{k}={v}" for k, v in sorted(tally.items())))
    problems = check_native_share(stats, args.min_native_share, min_chunks, min_io)
    if tally["passed"] == 0:
        problems.append("no test passed: the suite did not really run")
    failed = {n: r for n, r in results.items() if r["outcome"] in ("failed", "error", "xpassed")}
    ours: set[str] = set()
    if len(failed) > MAX_RERUNS:
        problems.append(f"{len(failed)} tests failed with our pipeline (not rerun: more than {MAX_RERUNS})")
        ours = set(failed)
    elif failed:
        known_prefixes = known_failures()
        known = {n for n in failed if any(n.startswith(k) for k in known_prefixes)}
        rest = sorted(set(failed) - known)
        equivalents = {n: zarr_equivalent(n) for n in rest}
        default: dict[str, dict[str, str]] = {}
        if rest:
            try:
                default, _ = run(sources, sorted(set(equivalents.values())), ours=False, parallel=False)
            except GateError as exc:
                print(f"zarr suite gate: FAILED: rerun with zarr's pipeline: {exc}")
                return 1
        for node in rest:
            mine = failed[node]
            theirs = default.get(equivalents[node], {"outcome": "not run"})
            same = theirs["outcome"] in ("failed", "error") and exception_type(theirs.get("crash")) == exception_type(mine.get("crash"))
            if same:
                print(f"  also fails with zarr's pipeline: {node} ({exception_type(mine.get('crash'))})")
            else:
                ours.add(node)
                print(f"  OURS: {node}\n      ours: {mine['outcome']}: {mine.get('crash', '')[:300]}\n"
                      f"      zarr's pipeline ({equivalents[node]}): {theirs['outcome']}: {theirs.get('crash', '')[:300]}")
        for node in sorted(known):
            print(f"  known, see known_failures.txt: {node}")
        print(f"zarr suite failures: total={len(failed)} known={len(known)} "
              f"also_default={len(rest) - len(ours)} ours={len(ours)}")
    stale = [k for k in known_failures() if not any(n.startswith(k) for n in failed)] if not subset else []
    for prefix in stale:
        print(f"  note: known failure no longer fails, remove it from known_failures.txt: {prefix}")
    if ours:
        problems.append(f"{len(ours)} failures are ours")
    for problem in problems:
        print(f"zarr suite gate: FAILED: {problem}")
    if not problems:
        print("zarr suite gate: passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
