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

    .venv/bin/python tests/reliability/corruption_worker.py --dir /tmp/corrupt --only 'v3/zstd/uint16|zstd_fcs_2^46|chunk'

``ZARRS_CORRUPTION_ONLY`` (a glob over case ids ``chain|mutation|read``) runs a subset.
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import corruption_worker as worker

WORKER = Path(__file__).with_name("corruption_worker.py")
ROUTE_TIMEOUT = 60.0  # seconds for one read of a 16x16 chunk: anything longer is a hang
OK_VERDICTS = {"ok", "raise", "oracle-data", "oracle-error", "refused"}

# Classes of findings of the current code (zarrs-ffi and zarrs_cffi at the commit that added
# this list), one entry per root cause: "verdict routes chains mutations reads", each field a
# glob or comma-separated globs, matched against a finding's class (its mutation without the
# seed: "flip8#3" -> "flip8"). The test fails on a finding no entry matches, and on an entry
# that matches nothing (fixed: remove it), so the list only shrinks. Reproduce any with
# corruption_worker.py --only (module docstring).
KNOWN_CRASHES: list[tuple[str, str]] = [
    # Fixed-size data types no longer crash, bomb or return data from wrong-length chunks
    # (commit 1e4c86f: every decode bounded by the metadata before it allocates). gzip reads
    # every member and refuses trailing bytes. Variable-length chunks and shards no longer
    # panic or abort: their vlen layouts are checked and their shards read by engine/shard/, each
    # inner chunk bounded. Variable-length chunks, whose size no metadata bounds, are capped
    # at max_variable_chunk_bytes: the worker reads them with a 1 MiB cap and requires a
    # ZarrsCodecError naming the key and the cap (test_default_variable_cap_applies below
    # shows the 1 GiB default). Sharded chains other than one sharding codec (transpose
    # before it, crc32c after it, sharding nested in sharding) aborted, panicked and
    # returned data where zarr raised, through zarrs' own sharding codec: sharding followed
    # by bytes-to-bytes codecs is now decoded by engine/shard/ after those codecs run within
    # bounds; transpose before sharding is refused natively at open and read by zarr's
    # pipeline (verdict "refused").
    # The Python shard reader's entries (index entries used as sizes before being checked,
    # a missing marker in one field read as missing) went when shards.py became a byte mover
    # for the native read plan (plan.rs), which checks every entry.
    # Sharding nested in sharding (v3/shard[shard-end[zstd]]/*) aborted on a zstd frame
    # declaring 2^46 bytes and panicked on forged index entries of the inner shard, which
    # zarrs' sharding codec decoded: engine/shard/ now reads inner shards itself, recursively,
    # with the outer shard's checks (test_forged_inner_shard_index_entry_is_a_codec_error).
]


def _matches(klass: str, pattern: str) -> bool:
    """Whether a finding's class (five space-separated fields) matches a KNOWN_CRASHES pattern."""
    fields, globs = klass.split(" "), pattern.split(" ")
    assert len(globs) == 5, f"bad KNOWN_CRASHES pattern {pattern!r}"
    return all(any(fnmatch.fnmatchcase(f, g) for g in alternatives.split(",")) for f, alternatives in zip(fields, globs))


@dataclass
class Outcome:
    case: int
    route: int
    id: str
    verdict: str
    detail: str
    seconds: float = 0.0
    growth: int = 0

    @property
    def klass(self) -> str:
        chain, mutation, read = self.id.split("|")
        return f"{self.verdict} {worker.ROUTES[self.route]} {chain} {mutation.split('#')[0]} {read}"


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    workers: int = 0
    peak_reset: bool = True  # whether the workers could measure each read's peak memory
    seconds: float = 0.0
    growth: int = 0

    @property
    def findings(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict not in OK_VERDICTS and o.route != 0]

    @property
    def oracle_crashes(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.route == 0 and o.verdict not in OK_VERDICTS]


def _tail(path: Path, lines: int = 4) -> str:
    """What a dead worker said last: Rust's allocation failure or panic line if any."""
    try:
        text = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    key = [line for line in text if any(m in line for m in ("memory allocation of", "panicked at", "Fatal Python"))]
    return " | ".join(key[:2] or text[-lines:])


class _Lines:
    """JSON events from a pipe, with a deadline per event."""

    def __init__(self, stream: Any) -> None:
        self.fd = stream.fileno()
        self.selector = selectors.DefaultSelector()
        self.selector.register(stream, selectors.EVENT_READ)
        self.buffer = b""
        self.pending: list[dict[str, Any]] = []

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after ``timeout`` seconds; EOFError at the end."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            if not self.selector.select(timeout=max(0.0, deadline - time.monotonic())):
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError
            *lines, self.buffer = (self.buffer + chunk).split(b"\n")
            for line in lines:
                try:
                    self.pending.append(json.loads(line))
                except ValueError:
                    continue  # something a library printed, not an event
        return self.pending.pop(0)


def run_cases(scratch: Path, only: str | None = None, route_timeout: float = ROUTE_TIMEOUT) -> Run:
    """Run every case in workers forked from one zygote, resuming after each crash or hang."""
    run = Run()
    started = time.perf_counter()
    command = [sys.executable, str(WORKER), "--dir", str(scratch), "--zygote"]
    with open(scratch / "zygote.stderr", "wb") as stderr:
        # No backtraces: capturing one costs tens of MiB, which would blur the memory verdict.
        # Large allocations always mmapped and unmapped when freed (glibc's threshold fixed,
        # not adaptive), so a read's peak RSS does not depend on what earlier reads freed.
        env = {**os.environ, "RUST_BACKTRACE": "0", "MALLOC_MMAP_THRESHOLD_": "1048576"}
        zygote = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=WORKER.parent.parent, env=env
        )
    assert zygote.stdin is not None and zygote.stdout is not None
    events = _Lines(zygote.stdout)
    try:
        first = events.next(300)
        assert first is not None and first["ev"] == "zygote", f"no zygote: {_tail(scratch / 'zygote.stderr')}"
        resume, oracle_unknown = (0, 0), False
        while True:
            stderr_path = scratch / f"worker-{run.workers}.stderr"
            run.workers += 1
            request = {"resume": resume, "oracle_unknown": oracle_unknown, "only": only, "stderr": str(stderr_path)}
            zygote.stdin.write((json.dumps(request) + "\n").encode())
            zygote.stdin.flush()
            current: tuple[int, int, str] | None = None
            worker_pid = None
            done = hung = False
            timeout = 300.0  # imports are done; fixtures are created by the first worker
            while True:
                event = events.next(timeout)
                if event is None:
                    hung = True
                    assert worker_pid is not None, "the worker never started"
                    os.kill(worker_pid, signal.SIGKILL)  # our own forked worker, by its pid
                    timeout = 300.0
                    continue
                if event["ev"] == "hello":
                    worker_pid = event["pid"]
                    run.peak_reset = run.peak_reset and event["peak_reset"]
                elif event["ev"] == "start":
                    current = (event["case"], event["route"], event["id"])
                    timeout = route_timeout
                elif event["ev"] == "end":
                    assert current is not None and current[:2] == (event["case"], event["route"])
                    run.outcomes.append(
                        Outcome(current[0], current[1], current[2], event["verdict"], event["detail"], event["seconds"],
                                event["growth"])
                    )
                    current = None
                elif event["ev"] == "done":
                    done = True
                elif event["ev"] == "exit":
                    break
            if done:
                break
            if current is None:
                raise AssertionError(f"a worker died outside a case ({event}): {_tail(stderr_path)}")
            case, route, case_id = current
            if hung:
                verdict = "hang"
            elif event["signal"]:
                verdict = f"signal:{signal.Signals(event['signal']).name}"
            else:
                verdict = f"exit:{event['code']}"
            run.outcomes.append(Outcome(case, route, case_id, verdict, _tail(stderr_path), 0.0))
            resume = [case, route + 1] if route + 1 < len(worker.ROUTES) else [case + 1, 0]
            oracle_unknown = route == 0
    finally:
        zygote.stdin.close()
        try:
            zygote.wait(timeout=30)
        except subprocess.TimeoutExpired:
            zygote.kill()  # the zygote we started, by its handle
            zygote.wait()
        zygote.stdout.close()
    run.seconds = time.perf_counter() - started
    return run


def summarize(run: Run) -> str:
    cases = len({o.case for o in run.outcomes})
    by_class: dict[str, list[Outcome]] = {}
    for outcome in run.findings:
        by_class.setdefault(outcome.klass, []).append(outcome)
    oracle = {o.case: o.verdict for o in run.outcomes if o.route == 0}
    stricter = sum(1 for o in run.outcomes if o.route and o.verdict == "raise" and oracle.get(o.case) == "oracle-data")
    lines = [
        f"{cases} cases, {len(run.outcomes)} reads ({len(worker.ROUTES)} routes each) in {run.seconds:.1f} s, "
        f"{run.workers} worker processes; {len(run.findings)} findings in {len(by_class)} classes; "
        f"{stricter} reads raised where zarr's pipeline returned data (allowed)"
    ]
    for klass, outcomes in sorted(by_class.items()):
        lines.append(f"  {klass}  x{len(outcomes)}  e.g. {outcomes[0].id}: {outcomes[0].detail[:200]}")
    slowest = sorted(run.outcomes, key=lambda o: -o.seconds)[:3]
    lines.append("  slowest reads: " + ", ".join(f"{o.id} {worker.ROUTES[o.route]} {o.seconds:.2f} s" for o in slowest))
    for outcome in run.oracle_crashes:
        lines.append(f"  (zarr's own pipeline) {outcome.verdict} {outcome.id}: {outcome.detail[:200]}")
    return "\n".join(lines)


def test_corruption_differential(tmp_path_factory: pytest.TempPathFactory) -> None:
    only = os.environ.get("ZARRS_CORRUPTION_ONLY")
    scratch = tmp_path_factory.mktemp("corruption")
    run = run_cases(scratch, only)
    report = summarize(run)
    (scratch / "outcomes.json").write_text(json.dumps([o.__dict__ for o in run.outcomes]))
    print("\n" + report)
    expected = len(worker.all_cases()) if not only else None
    if expected is not None:
        assert len({o.case for o in run.outcomes}) == expected, "some cases never ran"
    unexpected = [o for o in run.findings if not any(_matches(o.klass, p) for p, _ in KNOWN_CRASHES)]
    stale = [p for p, _ in KNOWN_CRASHES if not any(_matches(o.klass, p) for o in run.findings)]
    # Chains the native side refuses at open: zarr's pipeline read every one of them (a
    # fallback, counted) and the direct API raised; none reached zarrs' sharding codec.
    refused = {c.name for c in worker.CONFIGS if c.wrap in worker.REFUSED}
    for outcome in run.outcomes:
        if outcome.route and outcome.id.split("|")[0] in refused:
            expected = "raise" if worker.ROUTES[outcome.route] == "capi" else "refused"
            assert outcome.verdict == expected, f"{outcome.id} {worker.ROUTES[outcome.route]}: {outcome.verdict} {outcome.detail}"
    if not run.peak_reset:
        # /proc/self/clear_refs is not writable here: no memory verdicts at all.
        print("peak RSS cannot be reset in this environment: memory findings are not checked")
        stale = [p for p in stale if not p.startswith("memory ")]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} findings outside KNOWN_CRASHES:")
        problems += [f"  {o.klass}: {o.id}: {o.detail[:300]}" for o in unexpected[:200]]
    if stale and not only:
        problems.append("KNOWN_CRASHES entries that no longer occur (fixed? remove them):")
        problems += [f"  {p}" for p in stale]
    assert not problems, "\n".join(problems) + "\n\n" + report


def test_harness_records_signals_and_hangs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness itself: a worker killed by a signal, and one that hangs, are recorded
    against the route they were running and the remaining routes and cases still run."""
    monkeypatch.setenv("ZARRS_CORRUPTION_SELFTEST", "crash-and-hang")  # local route: SIGSEGV on part, hang on span
    run = run_cases(tmp_path, "v3/raw/uint16|trunc0|*", route_timeout=5.0)
    verdicts = {(o.id.split("|")[2], worker.ROUTES[o.route]): o.verdict for o in run.outcomes}
    assert len(verdicts) == len(worker.READS) * len(worker.ROUTES)
    assert verdicts["part", "local"] == "signal:SIGSEGV"
    assert verdicts["span", "local"] == "hang"
    assert verdicts["chunk", "local"] == "raise"
    assert verdicts["span", "capi"] == "raise"  # the routes after a crash still ran
    assert run.workers == 3


def test_default_variable_cap_applies(tmp_path: Path) -> None:
    """Without the config key, a variable-length chunk is capped at the 1 GiB default: a
    zstd frame declaring one byte more is refused from its header (nothing allocated), with
    a ZarrsCodecError naming the chunk key and the cap; one declaring 64 MiB is decoded (and
    then fails on its layout, not on the cap)."""
    import zarr
    from zarr.storage import MemoryStore

    import zarrs_cffi

    store = MemoryStore()
    with zarr.config.set({"codec_pipeline.path": worker.ZARR_PIPELINE}):
        arr = zarr.create_array(store, shape=(8,), chunks=(4,), dtype=str, compressors=zarr.codecs.ZstdCodec(level=1))
        arr[:] = [str(i) * 3 for i in range(8)]
    frame = store._store_dict["c/1"].to_bytes()
    buffer = type(store._store_dict["c/1"])
    with zarr.config.set({"codec_pipeline.path": worker.ZARRS_PIPELINE}):
        ours = zarr.open_array(store, mode="r")
        assert list(ours[:]) == [str(i) * 3 for i in range(8)]
        store._store_dict["c/1"] = buffer.from_bytes(worker.zstd_rewrite(frame, (1 << 30) + 1))
        with pytest.raises(zarrs_cffi.ZarrsCodecError, match=r"^c/1 in .*max_variable_chunk_bytes = 1073741824") as raised:
            ours[:]
        assert "1073741825" in str(raised.value)
        store._store_dict["c/1"] = buffer.from_bytes(worker.bomb("zstd"))
        with pytest.raises(zarrs_cffi.ZarrsCodecError, match=r"^c/1 in ") as raised:
            ours[:]
        assert "1073741824" not in str(raised.value)
    assert zarrs_cffi.stats().fallbacks == 0


_FORGED_INNER_READS = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a runaway allocation fails, not swaps
import zarr
from zarr.core.buffer import cpu
from zarr.storage import LocalStore, MemoryStore, WrapperStore
import zarrs_cffi

path, dtype = sys.argv[1], sys.argv[2]
zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"})
memory = {}
import pathlib
for file in pathlib.Path(path).rglob("*"):
    if file.is_file():
        memory[file.relative_to(path).as_posix()] = cpu.Buffer.from_bytes(file.read_bytes())
routes = {
    "local": zarr.open_array(LocalStore(path, read_only=True), mode="r"),
    "memory": zarr.open_array(MemoryStore(memory, read_only=True), mode="r"),
    "wrapped": zarr.open_array(WrapperStore(LocalStore(path, read_only=True)), mode="r"),
}
if dtype == "uint16":
    routes["direct"] = zarrs_cffi.Array.open(path, read_only=True)
outcomes = []
for route, array in routes.items():
    for read in ((slice(0, 16), slice(0, 16)), (slice(1, 6), slice(2, 7))):
        try:
            array[read]
            outcomes.append([route, str(read), "data", ""])
        except Exception as exc:
            outcomes.append([route, str(read), type(exc).__name__, str(exc)])
print(json.dumps({"outcomes": outcomes, "fallbacks": zarrs_cffi.stats().fallbacks}))
"""


def _forge_inner_shard(cfg: worker.Config, stored: bytes, forgery: str) -> tuple[bytes, str]:
    """The stored nested shard with its inner shard forged, and what the error must say."""
    inner = worker.unwrap(cfg, stored)
    if forgery == "entry_past_end_2^45":
        body, entries = worker.split_shard(cfg, inner)
        entries[0], entries[1] = len(inner) + 100, 1 << 45
        forged = worker.rewrap(cfg, worker.join_shard(cfg, body, entries))
        return forged, f"the index of inner shard 0 of {{}}references bytes {len(inner) + 100}+{1 << 45} outside its {len(inner)} bytes"
    rng = random.Random(forgery)
    if forgery == "entry_wraps":
        forged = worker.mutations(cfg)["idx_offset_wraps@0"](cfg, stored, rng)
        return forged, f"the index of inner shard 0 of {{}}references bytes {2**64 - 2}+4 outside its {len(inner)} bytes"
    forged = worker.mutations(cfg)["zstd_fcs_2^46"](cfg, stored, rng)
    return forged, "zstd frame declares 70368744177664 bytes, chunk holds"


@pytest.mark.parametrize("forgery", ["entry_past_end_2^45", "entry_wraps", "zstd_2^46"])
@pytest.mark.parametrize("dtype", ["uint16", "string"])
def test_forged_inner_shard_index_entry_is_a_codec_error(tmp_path: Path, dtype: str, forgery: str) -> None:
    """Sharding nested in sharding: an index entry of the inner shard pointing past it (by
    an offset, with a length of 2^45, or by an offset + length that overflows), or a zstd
    frame inside it declaring 2^46 bytes, is a ZarrsCodecError naming the chunk key (and
    the inner shard, for index entries), on every route (native storage, a store's sync and
    async API with its read plan, the direct API), for whole and partial reads, natively.
    zarrs' sharding codec decoded inner shards before: it raised a message naming neither
    on the first, panicked on the second and aborted the process on the third; the reads
    run in a child process with a bounded address space so a regression fails the test
    instead of killing pytest."""
    cfg = worker.Config(3, dtype, ("zstd",), "end", wrap="nested")
    path = tmp_path / "nested"
    worker.create_array(cfg, path)
    forged, expected = _forge_inner_shard(cfg, (path / cfg.key).read_bytes(), forgery)
    (path / cfg.key).write_bytes(forged)

    proc = subprocess.run(
        [sys.executable, "-c", _FORGED_INNER_READS, str(path), dtype],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, f"the reader died with {proc.returncode} (negative: a signal): {proc.stderr[-2000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["fallbacks"] == 0
    assert len(result["outcomes"]) == (8 if dtype == "uint16" else 6)
    for route, read, kind, message in result["outcomes"]:
        assert kind == "ZarrsCodecError", (route, read, kind, message)
        assert message.startswith("c/0/0 in "), (route, read, message)
        # Inner messages name the shard by its key where the call has one, else "the shard".
        assert any(expected.format(name) in message for name in ("shard c/0/0 ", "shard chunk-0 ", "the shard ")), (
            route, read, expected, message
        )


def _blosc_block_entry(frame: bytes, block: int, value: int) -> bytes:
    """`frame` (blosc1) with entry `block` of its block-offset table set to `value`."""
    at = 16 + 4 * block
    return frame[:at] + (value & 0xFFFFFFFF).to_bytes(4, "little") + frame[at + 4 :]


_GATHER_FORGERIES: dict[str, tuple[str, Any]] = {
    # name: (compressor, forge(stored chunk) -> bytes)
    "zstd-truncated": ("zstd", lambda b: b[: len(b) // 2]),
    "zstd-truncated-by-one": ("zstd", lambda b: b[:-1]),
    "zstd-declares-double": ("zstd", lambda b: worker.zstd_rewrite(b, 2 * worker.zstd_content_size(b))),
    "zstd-declares-half": ("zstd", lambda b: worker.zstd_rewrite(b, worker.zstd_content_size(b) // 2)),
    "zstd-declares-2^46": ("zstd", lambda b: worker.zstd_rewrite(b, 1 << 46)),
    "zstd-trailing-bytes": ("zstd", lambda b: b + b"\x00" * 7),
    "blosc-truncated": ("blosc", lambda b: b[:-1]),
    "blosc-cbytes-lies": ("blosc", lambda b: worker.blosc_set(b, "cbytes", len(b) + 1000)),
    "blosc-nbytes-2^31": ("blosc", lambda b: worker.blosc_set(b, "nbytes", 1 << 31)),
    "blosc-blocksize-odd": ("blosc", lambda b: worker.blosc_set(b, "blocksize", 3)),
    "blosc-block-past-end": ("blosc", lambda b: _blosc_block_entry(b, 0, len(b) + 100)),
    "blosc-block-at-end": ("blosc", lambda b: _blosc_block_entry(b, 0, len(b) - 2)),
    "blosc-block-wraps": ("blosc", lambda b: _blosc_block_entry(b, 0, -1)),
    "blosc-block-in-table": ("blosc", lambda b: _blosc_block_entry(b, 0, 16)),
}


@pytest.mark.parametrize("forgery", list(_GATHER_FORGERIES))
@pytest.mark.parametrize("sharded", [False, True])
def test_forged_chunks_read_through_the_gather_are_codec_errors(tmp_path: Path, forgery: str, sharded: bool) -> None:
    """Truncated and forged zstd frames and blosc headers and block tables, read through
    the native gather (which decodes only the part of a chunk holding its picks: a zstd
    prefix, the blosc blocks holding picks), are a ZarrsCodecError naming the chunk key for
    oindex and vindex reads alike: a stream a whole decode would refuse is decoded whole."""
    import numpy as np
    import zarr
    from zarr.storage import LocalStore

    import zarrs_cffi

    compressor, forge = _GATHER_FORGERIES[forgery]
    codec = (
        zarr.codecs.ZstdCodec(level=1)
        if compressor == "zstd"
        else zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", blocksize=16384)
    )
    shards = {"shards": (2048, 256)} if sharded else {}
    path = tmp_path / "a"
    with zarr.config.set({"codec_pipeline.path": worker.ZARRS_PIPELINE}):
        array = zarr.create_array(LocalStore(path), shape=(2048, 256), chunks=(1024, 256), dtype="float32", compressors=codec, **shards)
        array[:] = (np.arange(2048 * 256) % 1000).astype("float32").reshape(2048, 256)
    stored = (path / "c/0/0").read_bytes()
    if sharded:
        # Inner chunk 0 of the shard: its index (offset, length per inner chunk, then a
        # crc32c) is at the end; the forged chunk goes last, the index is rewritten.
        index = stored[-(2 * 16 + 4) :]
        offset, length = (int.from_bytes(index[at : at + 8], "little") for at in (0, 8))
        chunk = forge(stored[offset : offset + length])
        body = stored[: -len(index)] + chunk
        entries = [len(stored) - len(index), len(chunk)] + [int.from_bytes(index[at : at + 8], "little") for at in (16, 24)]
        table = b"".join(e.to_bytes(8, "little") for e in entries)
        forged = body + table + worker._crc32c(table).to_bytes(4, "little")
    else:
        forged = forge(stored)
    (path / "c/0/0").write_bytes(forged)
    with zarr.config.set({"codec_pipeline.path": worker.ZARRS_PIPELINE, "codec_pipeline.strict": True}):
        array = zarr.open_array(LocalStore(path, read_only=True), mode="r")
        for read in (lambda: array.oindex[[0, 5]], lambda: array.oindex[[3], [0, 255]], lambda: array.vindex[[0, 2], [1, 2]]):
            with pytest.raises(zarrs_cffi.ZarrsCodecError, match=r"^c/0/0 in "):
                read()
    assert zarrs_cffi.stats().fallbacks == 0
