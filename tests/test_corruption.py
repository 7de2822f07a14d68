"""Differential corruption test: hostile chunk bytes never crash, hang or silently differ.

For every codec chain we support (raw, zstd, blosc, gzip, crc32c, sharding with the index
at the start and at the end, variable-length strings; Zarr v3, and v2 where it applies),
``corruption_worker.py`` stores an intact array, corrupts one chunk (truncated, extended,
bits flipped, compressor headers forged, decompression bombs, shard index entries forged,
variable-length headers forged) and reads it through zarr's own pipeline (the oracle) and
through ours: zarr on a LocalStore (native I/O), on a MemoryStore and on a wrapped store
(Python I/O), and the direct API / C calls. Each outcome must be zarr's data or a clear
exception (see the worker's docstring for the verdicts); never a signal, a hang or an
unbounded allocation.

The cases run in worker subprocesses, sequentially; a worker killed by a signal is
recorded against the route it was running, and a new one resumes after it.

``KNOWN_CRASHES`` lists the classes of findings of the current code, each with its reason.
The test fails on any finding outside the list, and on any listed class that no longer
occurs (strict), so the list shrinks as fixes land.

Reproduce one case with the worker directly, e.g.::

    .venv/bin/python tests/corruption_worker.py --dir /tmp/corrupt --only 'v3/zstd/uint16|zstd_fcs_2^46|chunk'

``ZARRS_CORRUPTION_ONLY`` (a glob over case ids ``chain|mutation|read``) runs a subset.
"""

from __future__ import annotations

import fnmatch
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import corruption_worker as worker

WORKER = Path(__file__).with_name("corruption_worker.py")
ROUTE_TIMEOUT = 60.0  # seconds for one read of a 16x16 chunk: anything longer is a hang
OK_VERDICTS = {"ok", "raise", "oracle-data", "oracle-error"}

# Classes of findings of the current code: (glob over "verdict route chain mutation read",
# reason). A finding's mutation drops its seed ("flip8#3" -> "flip8"). Remove an entry when
# its fix lands: the test fails while a listed class still matches nothing.
KNOWN_CRASHES: list[tuple[str, str]] = []


@dataclass
class Outcome:
    case: int
    route: int
    id: str
    verdict: str
    detail: str

    @property
    def klass(self) -> str:
        chain, mutation, read = self.id.split("|")
        return f"{self.verdict} {worker.ROUTES[self.route]} {chain} {mutation.split('#')[0]} {read}"


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    workers: int = 0
    seconds: float = 0.0

    @property
    def findings(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict not in OK_VERDICTS and o.route != 0]

    @property
    def oracle_crashes(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.route == 0 and o.verdict not in OK_VERDICTS]


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def run_cases(scratch: Path, only: str | None = None) -> Run:
    """Run every case in worker subprocesses, restarting after each crash or hang."""
    run = Run()
    started = time.perf_counter()
    resume, oracle_unknown = (0, 0), False
    while True:
        command = [sys.executable, str(WORKER), "--dir", str(scratch), "--resume", *map(str, resume)]
        if oracle_unknown:
            command.append("--oracle-unknown")
        if only:
            command += ["--only", only]
        stderr_path = scratch / f"worker-{run.workers}.stderr"
        run.workers += 1
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, cwd=WORKER.parent.parent)
        assert proc.stdout is not None
        current: tuple[int, int, str] | None = None
        done = hung = False
        buffer = b""
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 300  # imports and fixtures before the first case
        eof = False
        while not eof and not done:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                hung = True
                proc.kill()  # the worker we started, by its handle
                break
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                eof = True
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # something printed by a library, not ours
                if event["ev"] == "start":
                    current = (event["case"], event["route"], event["id"])
                    deadline = time.monotonic() + ROUTE_TIMEOUT
                elif event["ev"] == "end":
                    assert current is not None and current[:2] == (event["case"], event["route"])
                    run.outcomes.append(Outcome(current[0], current[1], current[2], event["verdict"], event["detail"]))
                    current = None
                    deadline = time.monotonic() + ROUTE_TIMEOUT
                elif event["ev"] == "done":
                    done = True
        selector.close()
        proc.stdout.close()
        code = proc.wait()
        if done:
            break
        if current is None:
            raise AssertionError(f"the worker died outside a case (exit {code}): {_tail(stderr_path)}")
        case, route, case_id = current
        if hung:
            verdict = "hang"
        elif code < 0:
            verdict = f"signal:{signal.Signals(-code).name}"
        else:
            verdict = f"exit:{code}"
        run.outcomes.append(Outcome(case, route, case_id, verdict, _tail(stderr_path)))
        resume = (case, route + 1) if route + 1 < len(worker.ROUTES) else (case + 1, 0)
        oracle_unknown = route == 0
    run.seconds = time.perf_counter() - started
    return run


def summarize(run: Run) -> str:
    cases = len({o.case for o in run.outcomes})
    by_class: dict[str, list[Outcome]] = {}
    for outcome in run.findings:
        by_class.setdefault(outcome.klass, []).append(outcome)
    lines = [
        f"{cases} cases, {len(run.outcomes)} reads ({len(worker.ROUTES)} routes each) in {run.seconds:.1f} s, "
        f"{run.workers} worker processes; {len(run.findings)} findings in {len(by_class)} classes"
    ]
    for klass, outcomes in sorted(by_class.items()):
        lines.append(f"  {klass}  x{len(outcomes)}  e.g. {outcomes[0].id}: {outcomes[0].detail[:200]}")
    for outcome in run.oracle_crashes:
        lines.append(f"  (zarr's own pipeline) {outcome.verdict} {outcome.id}: {outcome.detail[:200]}")
    return "\n".join(lines)


def test_corruption_differential(tmp_path_factory: pytest.TempPathFactory) -> None:
    only = os.environ.get("ZARRS_CORRUPTION_ONLY")
    scratch = tmp_path_factory.mktemp("corruption")
    run = run_cases(scratch, only)
    report = summarize(run)
    print("\n" + report)
    expected = len(worker.all_cases()) if not only else None
    if expected is not None:
        assert len({o.case for o in run.outcomes}) == expected, "some cases never ran"
    unexpected = [o for o in run.findings if not any(fnmatch.fnmatchcase(o.klass, p) for p, _ in KNOWN_CRASHES)]
    stale = [p for p, _ in KNOWN_CRASHES if not any(fnmatch.fnmatchcase(o.klass, p) for o in run.findings)]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} findings outside KNOWN_CRASHES:")
        problems += [f"  {o.klass}: {o.id}: {o.detail[:300]}" for o in unexpected[:200]]
    if stale and not only:
        problems.append("KNOWN_CRASHES entries that no longer occur (fixed? remove them):")
        problems += [f"  {p}" for p in stale]
    assert not problems, "\n".join(problems) + "\n\n" + report
