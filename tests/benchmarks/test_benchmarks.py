"""The benchmark tools run and report every figure they promise (not their speed)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# tensorstore is an optional peer of the benchmarks (benchmarks/requirements.txt, not CI's):
# without it the scripts still run and leave its cells out.
TENSORSTORE = importlib.util.find_spec("tensorstore") is not None


def test_call_share_reports_wall_cpu_and_our_share_for_chunks_and_boxes(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "call_share.py"), "--dir", str(tmp_path),
         "--size", "64", "--rounds", "3", "--reads", "10", "--layout", "zstd", "raw-sharded"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    assert "median over 3 interleaved rounds" in out, out
    peer = importlib.util.find_spec("zarrs") is not None
    for layout in ("zstd", "raw-sharded"):
        for kind in ("chunk", "box"):
            rows = {}
            for row in re.finditer(rf"^\| {layout} \| {kind} \| ([^|]+) \| (\d+) \| (\d+) \| (-?\d+) \| (\d+) \| (.*) \|$", out, re.M):
                name, wall, cpu, outside, inside = row.group(1), *map(int, row.groups()[1:5])
                assert wall > 0 and cpu > 0, row.group(0)
                assert abs(wall - outside - inside) <= 1, row.group(0)
                rows[name] = (wall, row.group(6).split(" | "))
            ours = ["ours", "ours (keep-warm on)", "ours (worker)", "ours (completion)"]
            expected = {*ours, "zarr Batched", "zarr floor"} | ({"zarrs-python"} if peer else set())
            assert set(rows) == expected, out
            floor = rows["zarr floor"][0]
            for name in ours:
                wall, (native, in_read, share, ratio, cpu_ratio) = rows[name]
                # Our share is our wall minus zarr's floor minus the native call.
                assert int(native) > 0 and abs(wall - floor - int(native) - int(share)) <= 1, (name, out)
                int(in_read)
                if peer:
                    assert re.fullmatch(r"\d+\.\d\dx", ratio) and re.fullmatch(r"\d+\.\d\dx", cpu_ratio), out
            assert rows["zarr floor"][1] == ["", "", "", "", ""], out
    assert list(tmp_path.iterdir()) == []  # the arrays were removed


def test_busy_neighbour_reports_reads_and_both_neighbours_progress(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "busy_neighbour.py"), "--dir", str(tmp_path),
         "--size", "64", "--rounds", "1", "--reads", "10", "--layout", "zstd"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    names = ["ours", "ours \\(keep-warm on\\)"] + (["zarrs-python"] if importlib.util.find_spec("zarrs") else [])
    for kind in ("chunk", "box"):
        # A neighbour may finish no block in a round this short: rates may be 0, losses nan.
        assert re.search(rf"^\| zstd \| {kind} \| no reads \|  \|  \| \d+ \| \d+ \|  \|  \|$", out, re.M), out
        for name in names:
            row = re.search(
                rf"^\| zstd \| {kind} \| {name} \| (\d+) \| (-?\d+) \| \d+ \| \d+ \| (-?\d+|nan)% \| (-?\d+|nan)% \|$",
                out, re.M,
            )
            assert row and int(row.group(1)) > 0, (name, out)
    assert list(tmp_path.iterdir()) == []


def test_keep_warm_reports_wall_and_cpu_off_and_on_for_both_apis(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "keep_warm.py"), "--dir", str(tmp_path),
         "--size", "48", "--rounds", "1", "--reads", "10", "--layout", "zstd", "raw-sharded", "--warm-us", "700"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    for layout in ("zstd", "raw-sharded"):
        for api in ("zarr", "direct"):
            for window in ("0", "700"):
                row = re.search(rf"^\| {layout} \| {api} \| {window} \| (\d+) \| (\d+) \| (\d+) \|$", out, re.M)
                assert row, out
                median, best, cpu = map(int, row.groups())
                assert 0 < best <= median and cpu > 0
            assert re.search(rf"^\| {layout} \| {api} \| on / off \| \d+\.\d\dx \| \d+\.\d\dx \| \d+\.\d\dx \|$", out, re.M), out
    assert list(tmp_path.iterdir()) == []


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
                rf"^\| {layout} \| {op} \| {number} \| {number} \| {number} \| {number} \| (.+) \|$", out, re.M
            )
            assert row, out
            ours, outside, batched_outside, inside = map(float, row.groups()[:4])
            assert abs(ours - outside - inside) <= 0.15  # one decimal each
            assert inside > 0 and outside >= 0 and batched_outside >= 0
            if not TENSORSTORE:
                assert row.group(5) == "- | - | -", out
                continue
            peer = re.fullmatch(rf"{number} \| (\d+\.\d\d) \| (\d+\.\d\d)", row.group(5))
            assert peer, out
            tensorstore, ratio, inside_ratio = map(float, peer.groups())
            assert tensorstore > 0
            # The ratio is of the unrounded times; each time is printed to 0.05 ms.
            low, high = (ours - 0.05) / (tensorstore + 0.05), (ours + 0.05) / max(tensorstore - 0.05, 1e-9)
            assert low - 0.005 <= ratio <= high + 0.005
            assert inside_ratio <= ratio
    assert list(tmp_path.iterdir()) == []  # the arrays were removed


def test_write_cpu_reports_wall_and_cpu_for_ours_and_tensorstore(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "write_cpu.py"), "--dir", str(tmp_path),
         "--size", "64", "--repeat", "1", "--layout", "zstd", "raw-sharded"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    cores = int(re.search(r", (\d+) cores,", out).group(1))  # type: ignore[union-attr]
    impls = ["ours \\(zarr\\)", "ours \\(direct\\)"] + (["tensorstore"] if TENSORSTORE else [])
    assert ("tensorstore: unavailable" in out) != TENSORSTORE, out
    for layout in ("zstd", "raw-sharded"):
        for impl in impls:
            row = re.search(rf"^\| {layout} \| {impl} \| (\d+\.\d+) \| (\d+\.\d+) \| (\d+\.\d+) \| (\d+\.\d+) \|$", out, re.M)
            assert row, out
            wall, cpu, system, per_core = map(float, row.groups())
            assert wall > 0 and system <= cpu + 0.001
            assert abs(per_core - cpu / cores) <= 0.001
    assert list(tmp_path.iterdir()) == []


def test_disjoint_writes_reports_locks_on_and_off_for_both_apis(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "disjoint_writes.py"), "--dir", str(tmp_path),
         "--rounds", "1", "--writes", "3", "--threads", "2", "--layout", "chunk", "shard-part"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    number = r"(\d+\.\d)"
    for layout in ("chunk", "shard-part"):
        for api in ("zarr", "direct"):
            for locks in ("on", "off"):
                row = re.search(rf"^\| {layout} \| {api} \| {locks} \| {number} \| {number} \| {number} \|$", out, re.M)
                assert row, out
                median, best, cpu = map(float, row.groups())
                assert 0 < best <= median and cpu > 0
            assert re.search(rf"^\| {layout} \| {api} \| on / off \| \d+\.\d\dx \| \d+\.\d\dx \| \d+\.\d\dx \|$", out, re.M), out
    assert "many-chunks" not in out
    assert list(tmp_path.iterdir()) == []


def test_direct_gathers_reports_every_operation_for_every_implementation(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "direct_gathers.py"), "--dir", str(tmp_path), "--quick"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    names = ["direct", "ours"] + (["zarrs-python"] if importlib.util.find_spec("zarrs") else []) + ["batched"]
    names += ["tensorstore"] if TENSORSTORE else []
    cell = r"(\d+\.\d\d) \((\d+\.\d\d)\)" + (r", \*\*\d+\.\d\dx\*\*" if TENSORSTORE else "")
    for layout in ("zstd", "sharded"):
        assert f"### {layout}:" in out, out
        for op in ("oindex", "vindex", "chunk"):
            row = re.search(rf"^\| {op} \| " + r" \| ".join([cell] * len(names)) + r" \|$", out, re.M)
            assert row, out
            assert all(float(value) > 0 for value in row.groups()[::2]), row.group(0)
    assert list(tmp_path.iterdir()) == []


def test_direct_overhead_reports_every_way_of_calling_against_the_c_call(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "direct_overhead.py"), "--dir", str(tmp_path), "--calls", "5", "--rounds", "1"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    number = r"(\d+\.\d)"
    assert re.search(rf"^\| C call \| {number} \| {number} \|  \|$", out, re.M), out
    for name in ("bindings", r"Array\.read\(out=\)", r"Array\[\.\.\.\]"):
        assert re.search(rf"^\| {name} \| {number} \| {number} \| [+-]\d+\.\d \|$", out, re.M), out
    assert ("| tensorstore |" in out) == TENSORSTORE, out
    assert list(tmp_path.iterdir()) == []


def test_loader_latency_reports_every_implementation_and_in_flight_value(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "loader_latency.py"), "--dir", str(tmp_path), "--quick", "--delay", "0.005"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    names = ["direct read_async", "direct read_future"] + (["tensorstore"] if TENSORSTORE else [])
    for layout in ("chunked", "sharded"):
        section = out.split(f"### {layout}")[1].split("floor:")[0]
        for in_flight in (1, 4, 16):
            for name in names:
                row = re.search(rf"^\| {in_flight} \| {name} \| (\d+) \| [^|]* \| (\d+\.\d\d)x \| (\d+) \| (\d+) \| ", section, re.M)
                assert row, section
                assert int(row.group(3)) > 0 and int(row.group(4)) >= 1, row.group(0)
        assert re.search(r"^\| 1 \| direct sync \| \d+ \|", section, re.M), section
    assert list(tmp_path.iterdir()) == []
