"""The object-storage benchmark (benchmarks/latency.py) runs every implementation, op,
layout and backend it promises and checks every value (not its speed)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "latency.py"
OPS = ("read all", "box", "inner chunk cold", "inner chunk warm", "oindex 16 rows", "vindex 16 points")
# tensorstore and zarrs-python are optional peers (benchmarks/requirements.txt): without
# them their cells say why, and the rest still runs.
OPTIONAL = {"tensorstore": "tensorstore", "zarrs-python": "zarrs"}
BACKENDS = ("http", "s3", "gcs", "azure")
WRITABLE = ("s3", "gcs", "azure")
# What a peer cannot do there, and says so in its cell: tensorstore has no Azure driver;
# zarrs-python cannot be pointed at a GCS emulator.
NOT_THERE = {("tensorstore", "azure"), ("zarrs-python", "gcs")}


def _peer_fails_there(name: str, key: str, cell: dict[str, object]) -> bool:
    """A peer's known failure: adlfs asks Azure for a suffix range as ``bytes=-n-m``, which
    Azure refuses, so zarr + fsspec reads no sharded array there in part."""
    backend, layout, op = name.split("/")
    return (key == "zarr-fsspec" and backend == "azure" and layout == "sharded" and op != "read all"
            and cell["status"] == "error" and "range" in str(cell["detail"]))


def test_quick_run_reports_every_row_with_values_matching_the_data(tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--dir", str(tmp_path), "--delay", "0.005", "--json", str(out_json)],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    report = json.loads(out_json.read_text())
    impls = report["impls"]
    assert set(impls) == {"zarr-fsspec", "zarr-obstore", "zarrs-python", "tensorstore", "ours", "direct"}
    expected = {f"{backend}/{layout}/{op}" for backend in BACKENDS for layout in ("chunked", "sharded")
                for op in (*OPS, *(("write all",) if backend in WRITABLE else ()))}
    assert set(report["results"]) == expected
    for name, entry in report["results"].items():
        assert entry["floor"] > 0
        for key, cell in entry["cells"].items():
            assert cell["status"] != "MISMATCH", (name, key, cell)
            module = OPTIONAL.get(key)
            if module and importlib.util.find_spec(module) is None:
                continue
            if key == "tensorstore" and name.startswith("s3/"):
                # tensorstore's s3 kvstore against moto: either it works or its cell says why.
                assert cell["status"] == "ok" or cell["detail"], cell
                continue
            if (key, name.split("/")[0]) in NOT_THERE:
                assert cell["status"] == "n/a" and cell["detail"], (name, key, cell)
                continue
            if _peer_fails_there(name, key, cell):
                continue
            assert cell["status"] == "ok", (name, key, cell)
            assert not cell["warning"], (name, key, cell)  # ours reached every store natively
            assert cell["requests"] >= 1 and cell["bytes"] > 0 and cell["in_flight"] >= 1, (name, key, cell)
    # Ours read natively: one round trip for a chunk, all of a shard read's misses at once.
    sharded_box = report["results"]["http/sharded/box"]["cells"]["direct"]
    assert sharded_box["requests"] == 16 and sharded_box["in_flight"] == 8, sharded_box
    # A cold inner chunk: the metadata, the index, the chunk (on Azure a HEAD for the size too).
    for backend in BACKENDS:
        for key in ("ours", "direct"):
            cold = report["results"][f"{backend}/sharded/inner chunk cold"]["cells"][key]
            assert cold["requests"] == (4 if backend == "azure" else 3), (backend, key, cold)
    for backend in BACKENDS:
        for layout in ("chunked", "sharded"):
            header = re.search(rf"^## {backend}, {layout}: ms .*\n\n(\|.*\|)$", out, re.M)
            assert header, out
            for label in impls.values():
                assert f" {label} |" in header.group(1)
            for op in OPS:
                assert re.search(rf"^\| {op} \| \d+ \| \d+ \|", out, re.M), (op, out)
    assert list(p.name for p in tmp_path.iterdir()) == ["out.json"]  # the arrays were removed


def test_bad_arguments_are_refused_by_name(tmp_path: Path) -> None:
    for args, word in [(["--rounds", "0"], "--rounds"), (["--bandwidth", "0"], "--bandwidth"),
                       (["--lib", str(tmp_path / "nothing.so")], "nothing.so"), (["--impl", "nope"], "nope")]:
        result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and word in result.stderr, (args, result.stderr)


def test_lib_b_runs_a_second_build_as_rows_of_its_own(tmp_path: Path) -> None:
    import zarrs_cffi

    library = Path(zarrs_cffi.__file__).parent / "libzarrs_ffi.so"
    out_json = tmp_path / "out.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--dir", str(tmp_path), "--delay", "0", "--backend", "http",
         "--impl", "zarr-obstore", "--lib-b", str(library), "--json", str(out_json)],
        capture_output=True, text=True, check=True, timeout=600,
    )
    report = json.loads(out_json.read_text())
    assert set(report["impls"]) == {"zarr-obstore", "ours", "direct", "ours B", "direct B"}
    for name, entry in report["results"].items():
        for key in ("ours", "direct", "ours B", "direct B"):
            assert entry["cells"][key]["status"] == "ok", (name, key, entry["cells"][key])
        # The same library both times: the same requests.
        assert entry["cells"]["ours"]["requests"] == entry["cells"]["ours B"]["requests"], name
