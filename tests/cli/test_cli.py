"""The ``zarrs-cffi`` command line tool: info, bench and copy, their output, ``--json``,
exit codes and errors (one line on stderr, exit status 2, no traceback)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.storage import ZipStore

from zarrs_cffi import ZarrsCodecPipeline, __version__, cli
from zarrs_cffi.cli import bench as cli_bench, copy as cli_copy, geometry

PYTHON = sys.executable
numcodecs: Any = importlib.import_module("numcodecs")  # untyped


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich wraps tables to the terminal width (80 columns when it is not a terminal).
    monkeypatch.setenv("COLUMNS", "200")


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> dict[str, Any]:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def data(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray[Any, Any]:
    return cli.synthetic_data(shape, np.dtype(dtype))


@pytest.fixture
def sharded(tmp_path: Path) -> Path:
    path = tmp_path / "sharded.zarr"
    array = zarr.create_array(path, shape=(64, 48, 40), chunks=(16, 16, 16), shards=(32, 48, 32), dtype="uint16")
    array[:] = data((64, 48, 40))
    return path


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    path = tmp_path / "v2.zarr"
    array = zarr.create_array(
        path, shape=(100, 70), chunks=(16, 16), dtype="float32", zarr_format=2,
        compressors=numcodecs.Blosc(cname="lz4", clevel=5), attributes={"units": "m"},
    )
    array[:] = data((100, 70), "float32")
    return path


def ours(path: Path | str) -> zarr.Array[Any]:
    """The array opened with our pipeline, as the CLI opens it."""
    return cli.open_array(str(path))


# -- info ------------------------------------------------------------------------------


def test_info_table(capsys: pytest.CaptureFixture[str], sharded: Path) -> None:
    code, out, err = run(capsys, "info", sharded)
    assert code == 0, err
    for text in ("(64, 48, 40)", "uint16", "(16, 16, 16)", "(32, 48, 32)", "(16, 16, 16), 36 in all", "(32, 48, 32), 4 in all (12 chunks each)",
                 "sharding_indexed(bytes(endian=little) -> zstd", "of 4 shards", "ratio", "native storage"):
        assert text in out
    assert err == ""


def test_info_json(capsys: pytest.CaptureFixture[str], sharded: Path) -> None:
    info = run_json(capsys, "info", sharded)
    on_disk = sum(f.stat().st_size for f in (sharded / "c").rglob("*") if f.is_file())
    assert info["shape"] == [64, 48, 40]
    assert info["dtype"] == "uint16"
    assert info["chunks"] == [16, 16, 16]
    assert info["shards"] == [32, 48, 32]
    assert info["codecs"][0]["name"] == "sharding_indexed"
    assert (info["stored_objects"], info["total_objects"]) == (4, 4)
    assert info["stored_bytes"] == on_disk
    assert info["nbytes"] == 64 * 48 * 40 * 2
    assert info["compression_ratio"] == pytest.approx(info["nbytes"] / on_disk)
    assert info["route"]["kind"] == "native"


def test_info_v2(capsys: pytest.CaptureFixture[str], v2: Path) -> None:
    info = run_json(capsys, "info", v2)
    assert info["zarr_format"] == 2
    assert info["shards"] is None
    assert info["codecs"]["compressor"]["id"] == "blosc"
    assert info["codecs_text"].startswith("blosc(")
    assert info["total_objects"] == 7 * 5 == info["stored_objects"]


def test_info_partial_and_empty(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    array = zarr.create_array(tmp_path / "a.zarr", shape=(40,), chunks=(10,), dtype="int32")
    info = run_json(capsys, "info", tmp_path / "a.zarr")
    assert (info["stored_objects"], info["stored_bytes"], info["compression_ratio"]) == (0, 0, None)
    array[:15] = 1
    info = run_json(capsys, "info", tmp_path / "a.zarr")
    assert (info["stored_objects"], info["total_objects"]) == (2, 4)


def test_info_route_is_the_pipelines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Python I/O and fallback routes, with the reasons our pipeline gives."""
    zipped = tmp_path / "a.zip"
    store = ZipStore(zipped, mode="w")
    zarr.create_array(store, shape=(20,), chunks=(5,), dtype="int8")[:] = 3
    store.close()
    info = run_json(capsys, "info", zipped)
    pipeline = ours(zipped)._async_array.codec_pipeline
    assert isinstance(pipeline, ZarrsCodecPipeline) and pipeline.native is not None
    assert info["route"] == {"kind": "python-io", "reason": pipeline.native.python_io}

    delta = tmp_path / "delta.zarr"
    zarr.create_array(delta, shape=(20,), chunks=(5,), dtype="i4", zarr_format=2,
                      filters=[numcodecs.Delta(dtype="i4")])[:] = 1
    info = run_json(capsys, "info", delta)
    pipeline = ours(delta)._async_array.codec_pipeline
    assert isinstance(pipeline, ZarrsCodecPipeline) and pipeline.native is None
    assert info["route"] == {"kind": "fallback", "reason": pipeline.reason}
    code, out, _ = run(capsys, "info", delta)
    assert "fallback to zarr's pipeline" in out and "delta" in out


def test_info_file_url_and_inside_zip(capsys: pytest.CaptureFixture[str], sharded: Path, tmp_path: Path) -> None:
    assert run_json(capsys, "info", f"file://{sharded}")["shape"] == [64, 48, 40]
    zipped = tmp_path / "g.zip"
    store = ZipStore(zipped, mode="w")
    zarr.create_group(store).create_array("inner", shape=(8,), dtype="u1")
    store.close()
    assert run_json(capsys, "info", zipped / "inner")["shape"] == [8]


# -- errors ----------------------------------------------------------------------------


def _errors(tmp_path: Path, sharded: Path) -> list[tuple[list[str], str]]:
    group = tmp_path / "group.zarr"
    zarr.create_group(group).create_array("x", shape=(2,), dtype="i1")
    missing = tmp_path / "missing.zarr"
    s = str(sharded)
    return [
        ([], "a command is required"),
        (["frob"], "invalid choice"),
        (["info"], "required: PATH_OR_URL"),
        (["info", str(missing)], f"no Zarr array at {missing}"),
        (["info", str(tmp_path)], "no Zarr array"),
        (["info", str(group)], "is a group, not an array; its arrays: x"),
        (["info", s, "--bogus"], "unrecognized arguments: --bogus"),
        (["info", s, "-o", "anon=true"], "--storage-option applies to URLs only"),
        (["info", s, "-o", "novalue"], "expected KEY=VALUE"),
        (["bench"], "either PATH_OR_URL or --synthetic"),
        (["bench", s, "--synthetic", "8"], "either PATH_OR_URL or --synthetic"),
        (["bench", "--synthetic", "8,x"], "expected integers"),
        (["bench", "--synthetic", "0,4"], "positive integers"),
        (["bench", "--synthetic", "8", "--dtype", "U4"], "boolean, integer or floating point"),
        (["bench", "--synthetic", "8", "--dtype", "nope"], "not a numpy data type"),
        (["bench", "--synthetic", "8", "--chunks", "4,4"], "--chunks has 2 dimensions"),
        (["bench", "--synthetic", "8", "--chunks", "3", "--shards", "4"], "cannot create the synthetic array"),
        (["bench", "--synthetic", "8", "--codec", "lzma"], "unknown codec"),
        (["bench", "--synthetic", "4096,4096", "--max-size", "1MiB"], "more than --max-size"),
        (["bench", "--synthetic", "8", "--repeat", "0"], "--repeat must be at least 1"),
        (["bench", "--synthetic", "8", "--repeat", "two"], "invalid int value"),
        (["bench", "--synthetic", "8", "--dir", str(missing)], "--dir: no directory"),
        (["bench", "--synthetic", "8", "--plot", str(missing / "x.png")], "--plot: no directory"),
        (["bench", s, "--chunks", "4,4,4"], "apply to --synthetic only"),
        (["bench", s, "--max-size", "lots"], "expected a positive size"),
        (["copy", s], "required: DST"),
        (["copy", str(missing), str(tmp_path / "o.zarr")], "no Zarr array"),
        (["copy", s, s], "SRC and DST are the same array"),
        (["copy", s, str(group)], "is a group"),
        (["copy", s, str(tmp_path / "o.zarr"), "--chunks", "8,8"], "--chunks has 2 dimensions, the array 3"),
        (["copy", s, str(tmp_path / "o.zarr"), "--chunks", "16,16,16", "--shards", "24,16,16"],
         "cannot create the destination"),
        (["copy", s, str(tmp_path / "o.zarr"), "--codec", "zstd:x"], "codec 'zstd:x'"),
        (["copy", s, str(tmp_path / "o.zarr"), "--codec", "blosc:lz4:5:sideways"], "shuffle must be one of"),
        (["copy", s, str(tmp_path / "o.zarr"), "--zarr-format", "2", "--codec", "crc32c"], "Zarr v3 codec"),
        (["copy", s, str(tmp_path / "o.zarr"), "--zarr-format", "4"], "invalid choice: 4"),
        (["copy", s, str(tmp_path / "o.zarr"), "--memory", "-1"], "expected a positive size"),
        (["copy", s, str(tmp_path / "o.zarr"), "--resume", "--overwrite"], "exclude each other"),
    ]


def test_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, sharded: Path) -> None:
    for argv, message in _errors(tmp_path, sharded):
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert out == "", argv
        assert err.startswith("zarrs-cffi: error: ") and err.count("\n") == 1, (argv, err)
        assert message in err, (argv, err)
    assert not (tmp_path / "o.zarr").exists()  # bad options fail before anything is written


def test_errors_in_a_process(tmp_path: Path) -> None:
    """As users run it: ``python -m zarrs_cffi``, no traceback."""
    result = subprocess.run([PYTHON, "-m", "zarrs_cffi", "info", str(tmp_path / "none.zarr")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"zarrs-cffi: error: no Zarr array at {tmp_path / 'none.zarr'}\n"
    assert result.stdout == ""
    result = subprocess.run([PYTHON, "-m", "zarrs_cffi", "copy", "--chunks"], capture_output=True, text=True,
                            timeout=120)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1) and "Traceback" not in result.stderr


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"zarrs-cffi {__version__}")
    for command in ("info", "bench", "copy"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and f"usage: zarrs-cffi {command}" in out


def test_script_entry_point() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"zarrs-cffi": "zarrs_cffi.cli:main"}


def test_unexpected_error_exit_1(capsys: pytest.CaptureFixture[str], sharded: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(geometry, "stored_objects", broken)
    code, out, err = run(capsys, "info", sharded)
    assert code == 1 and "unexpected RuntimeError: boom (rerun with --traceback" in err and err.count("\n") == 1
    with pytest.raises(RuntimeError):
        cli.main(["info", str(sharded), "--traceback"])


# -- bench -----------------------------------------------------------------------------


def test_bench_synthetic_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    document = run_json(capsys, "bench", "--synthetic", "64,64,32", "--chunks", "16,16,16", "--shards", "32,32,32",
                        "--codec", "zstd:3", "--repeat", "2", "--dir", tmp_path, "-q")
    assert document["shape"] == [64, 64, 32] and document["bytes"] == 64 * 64 * 32 * 2
    assert document["shards"] == [32, 32, 32] and "zstd(level=3" in document["codecs"]
    assert document["route"]["kind"] == "native"
    rows = {(r["operation"], r["implementation"]): r for r in document["results"]}
    assert {"zarr", "zarrs-cffi"} <= {name for _, name in rows}
    assert [op for op, _ in rows][:1] == ["write"]
    for (op, name), row in rows.items():
        assert row["error"] is None and len(row["times_s"]) == 2 and row["best_s"] == min(row["times_s"])
        assert row["mib_per_s"] == pytest.approx(document["bytes"] / 2**20 / row["best_s"])
    for op in ("write", "read"):
        # 4 shards per run, all native
        assert rows[op, "zarrs-cffi"]["chunks"] == {"native_storage": 4 * 2, "python_io": 0, "fallback": 0}
        assert rows[op, "zarr"]["chunks"] is None
        assert rows[op, "zarr"]["speedup_vs_zarr"] == 1
        ratio = rows[op, "zarr"]["best_s"] / rows[op, "zarrs-cffi"]["best_s"]
        assert rows[op, "zarrs-cffi"]["speedup_vs_zarr"] == pytest.approx(ratio)
    for name in ("zarrs-python", "tensorstore"):
        assert (name in document["unavailable"]) == (name not in {n for _, n in rows})
    assert list(tmp_path.iterdir()) == []  # the synthetic arrays are removed


def test_bench_array_table_and_plot(capsys: pytest.CaptureFixture[str], sharded: Path, tmp_path: Path) -> None:
    png = tmp_path / "bars.png"
    code, out, err = run(capsys, "bench", sharded, "--repeat", "1", "--plot", png)
    assert code == 0, err
    assert "best of 1" in out and "vs zarr" in out and "our route: native storage" in out
    lines = [line for line in out.splitlines() if "read" in line]
    assert any("zarrs-cffi" in line for line in lines) and any(" zarr " in line for line in lines)
    assert "write" not in out.split("best of")[1]  # reading only: the user's array is never written
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot written to {png}" in err
    assert "bench" in err or "zarrs-cffi" in err  # the progress bar, on stderr


def test_bench_reads_a_bounded_region(capsys: pytest.CaptureFixture[str], sharded: Path) -> None:
    document = run_json(capsys, "bench", sharded, "--repeat", "1", "--max-size", "100KiB", "-q")
    # 100 KiB holds one shard (32x48x32 uint16 = 96 KiB): the first one
    assert document["region"] == [[0, 32], [0, 48], [0, 32]]
    assert document["bytes"] == 32 * 48 * 32 * 2
    # One read per implementation that can run here (zarrs-python and tensorstore when
    # installed, as the benchmark environment has them), each checked against zarr's.
    names = [name for name, _ in cli_bench._implementations()[0]]
    assert [(r["operation"], r["implementation"]) for r in document["results"]] == [("read", n) for n in names]
    assert all(r["error"] is None for r in document["results"])


def test_bench_mismatch_exit_1(capsys: pytest.CaptureFixture[str], sharded: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_bench, "_check_equal", lambda got, expected: False)
    code, out, _ = run(capsys, "bench", sharded, "--repeat", "1", "--json", "-q")
    assert code == 1
    rows = {r["implementation"]: r for r in json.loads(out)["results"]}
    assert rows["zarr"]["error"] is None  # the reference
    assert rows["zarrs-cffi"]["error"] == "result differs from the reference"


def test_bench_plot_without_matplotlib(capsys: pytest.CaptureFixture[str], sharded: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    code, out, err = run(capsys, "bench", sharded, "--plot", tmp_path / "x.png")
    assert (code, out) == (2, "")
    assert err == "zarrs-cffi: error: --plot needs matplotlib: pip install matplotlib\n"


# -- copy ------------------------------------------------------------------------------


def stored(path: Path) -> dict[str, bytes]:
    return {f.relative_to(path).as_posix(): f.read_bytes() for f in path.rglob("*") if f.is_file()}


def test_copy_v2_to_sharded_v3(capsys: pytest.CaptureFixture[str], v2: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    summary = run_json(capsys, "copy", v2, out, "--chunks", "16,16", "--shards", "32,64", "--codec", "zstd:5", "-q")
    assert (summary["total"], summary["written"], summary["skipped"], summary["resumed"]) == (8, 8, 0, False)
    copied = zarr.open_array(out)
    assert copied.metadata.zarr_format == 3
    assert (copied.chunks, copied.shards) == ((16, 16), (32, 64))
    document: Any = copied.metadata.to_dict()
    inner = document["codecs"][0]["configuration"]["codecs"]
    assert inner[-1] == {"name": "zstd", "configuration": {"level": 5, "checksum": False}}
    assert dict(copied.attrs) == {"units": "m"}
    np.testing.assert_array_equal(copied[:], zarr.open_array(v2)[:])


def test_copy_keeps_layout_by_default_and_table_output(capsys: pytest.CaptureFixture[str], sharded: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "same.zarr"
    code, stdout, err = run(capsys, "copy", sharded, out)
    assert code == 0, err
    assert stdout.startswith(f"copied {sharded} -> {out}: 4 of 4 shards written in ")
    assert "native storage" in err and "copy (shards)" in err and "4/4" in err  # routes, progress bar
    copied, original = stored(out), stored(sharded)
    assert copied.keys() == original.keys() and copied["zarr.json"] == original["zarr.json"]
    np.testing.assert_array_equal(zarr.open_array(out)[:], zarr.open_array(sharded)[:])


def test_copy_unsharded_and_to_v2(capsys: pytest.CaptureFixture[str], sharded: Path, tmp_path: Path) -> None:
    expected = zarr.open_array(sharded)[:]
    summary = run_json(capsys, "copy", sharded, tmp_path / "a.zarr", "--chunks", "20,20,20", "--shards", "none",
                       "--codec", "gzip:1", "-q")
    assert summary["objects"] == "chunks" and summary["total"] == 4 * 3 * 2
    a = zarr.open_array(tmp_path / "a.zarr")
    assert a.shards is None and a.chunks == (20, 20, 20)
    np.testing.assert_array_equal(a[:], expected)
    run_json(capsys, "copy", sharded, tmp_path / "b.zarr", "--zarr-format", "2", "--codec", "blosc:lz4:3", "-q")
    b = zarr.open_array(tmp_path / "b.zarr")
    assert b.metadata.zarr_format == 2 and b.chunks == (16, 16, 16)
    document: Any = b.metadata.to_dict()
    assert document["compressor"]["cname"] == "lz4"
    np.testing.assert_array_equal(b[:], expected)
    # into a zip archive
    run_json(capsys, "copy", sharded, tmp_path / "c.zip", "-q")
    np.testing.assert_array_equal(zarr.open_array(ZipStore(tmp_path / "c.zip", mode="r"))[:], expected)


def test_copy_refuses_existing_and_overwrites(capsys: pytest.CaptureFixture[str], sharded: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    run_json(capsys, "copy", sharded, out, "-q")
    code, _, err = run(capsys, "copy", sharded, out)
    assert code == 2 and "already exists: --resume finishes an interrupted copy, --overwrite replaces it" in err
    code, _, err = run(capsys, "copy", sharded, out, "--codec", "gzip", "--resume")
    assert code == 2 and "exists with other metadata (codecs differ); cannot resume" in err
    summary = run_json(capsys, "copy", sharded, out, "--codec", "gzip", "--overwrite", "-q")
    assert summary["written"] == 4
    document: Any = zarr.open_array(out).metadata.to_dict()
    assert document["codecs"][0]["configuration"]["codecs"][-1]["name"] == "gzip"


def test_copy_memory_is_bounded_by_a_row_of_shards(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "big.zarr"
    zarr.create_array(src, shape=(128, 128, 128), chunks=(32, 32, 32), dtype="float32")[:] = data(
        (128, 128, 128), "float32")  # 8 MiB
    tracemalloc.start()
    try:
        summary = run_json(capsys, "copy", src, tmp_path / "out.zarr", "--chunks", "16,16,16",
                           "--shards", "16,64,64", "--memory", "1MiB", "-q")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary["block"] == [16, 128, 128]  # one row of shards: 1 MiB
    assert peak < 4 * 2**20, peak  # the array is 8 MiB
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "out.zarr")[:], zarr.open_array(src)[:])


def test_copy_resume_skips_present_objects(capsys: pytest.CaptureFixture[str], sharded: Path,
                                           tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    args: list[str | Path] = ["copy", sharded, out, "--chunks", "8,8,8", "--shards", "16,16,16", "-q"]
    reference = run_json(capsys, *args)
    assert reference["total"] == 4 * 3 * 3
    before = stored(out)
    # a partial block: one block holds every shard here, three of them are gone
    for key in ("c/0/0/0", "c/1/2/1", "c/3/1/2"):
        (out / key).unlink()
    summary = run_json(capsys, *args, "--resume")
    assert (summary["written"], summary["skipped"], summary["resumed"]) == (3, 33, True)
    assert stored(out) == before
    # whole blocks: one row of shards per block, rows 1 and 3 gone
    for key in list(before):
        if key.startswith(("c/1/", "c/3/")):
            (out / key).unlink()
    code, stdout, _ = run(capsys, *args, "--resume", "--memory", "32KiB")
    assert code == 0
    assert ": 18 of 36 shards written, 18 already present and skipped in " in stdout
    assert stored(out) == before


def test_copy_resume_of_a_new_destination(capsys: pytest.CaptureFixture[str], sharded: Path, tmp_path: Path) -> None:
    summary = run_json(capsys, "copy", sharded, tmp_path / "new.zarr", "--resume", "-q")
    assert (summary["written"], summary["skipped"], summary["resumed"]) == (4, 0, False)


_KILLING_DRIVER = """
import os, signal, sys
from zarrs_cffi import cli
from zarrs_cffi.cli import copy as cli_copy

copy_block = cli_copy._copy_block
calls = 0

def copy_then_die(*args):
    global calls
    copy_block(*args)
    calls += 1
    if calls == int(os.environ["KILL_AFTER_BLOCKS"]):
        os.kill(os.getpid(), signal.SIGKILL)

cli_copy._copy_block = copy_then_die
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture
def resumable(tmp_path: Path) -> tuple[Path, list[str]]:
    src = tmp_path / "src.zarr"
    zarr.create_array(src, shape=(96, 64, 64), chunks=(32, 32, 32), dtype="int32", zarr_format=2,
                      compressors=numcodecs.Zstd(level=1))[:] = data((96, 64, 64), "int32")
    # 12 rows of 4 shards, one row per block
    options = ["--chunks", "8,16,16", "--shards", "8,32,32", "--codec", "zstd:3", "--memory", "128KiB"]
    return src, options


def test_copy_killed_midway_then_resumed(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         resumable: tuple[Path, list[str]]) -> None:
    src, options = resumable
    reference = tmp_path / "reference.zarr"
    run_json(capsys, "copy", src, reference, *options, "-q")
    out = tmp_path / "out.zarr"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(_KILLING_DRIVER))
    killed = subprocess.run([PYTHON, driver, "copy", src, out, *options], capture_output=True, text=True,
                            env={**os.environ, "KILL_AFTER_BLOCKS": "5"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(list((out / "c").rglob("*"))) > 0
    shards = [k for k in stored(out) if k.startswith("c/")]
    assert len(shards) == 5 * 4  # five rows of four shards, nothing else
    summary = run_json(capsys, "copy", src, out, *options, "--resume", "-q")
    assert (summary["total"], summary["skipped"], summary["written"]) == (48, 20, 28)
    assert stored(out) == stored(reference)
    np.testing.assert_array_equal(zarr.open_array(out)[:], zarr.open_array(src)[:])


def test_copy_killed_at_any_time_then_resumed(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                              resumable: tuple[Path, list[str]]) -> None:
    """SIGKILL whenever the first shards have appeared (possibly inside a native write)."""
    src, options = resumable
    out = tmp_path / "out.zarr"
    process = subprocess.Popen([PYTHON, "-m", "zarrs_cffi", "copy", src, out, *options, "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if (out / "c").is_dir() and len(list((out / "c").rglob("*"))) >= 6:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    process.wait(timeout=60)
    assert process.stderr is not None and b"Traceback" not in process.stderr.read()
    process.stderr.close()
    # finished shards: renamed into place (a write in flight is a temporary file beside it)
    finished = [k for k in stored(out) if re.fullmatch(r"c(/\d+){3}", k)]
    summary = run_json(capsys, "copy", src, out, *options, "--resume", "-q")
    assert (summary["skipped"], summary["written"]) == (len(finished), 48 - len(finished))
    np.testing.assert_array_equal(zarr.open_array(out)[:], zarr.open_array(src)[:])


def test_copy_interrupted_says_how_to_resume(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            resumable: tuple[Path, list[str]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    src, options = resumable
    out = tmp_path / "out.zarr"
    copy_block = cli_copy._copy_block
    calls = []

    def interrupted(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        copy_block(*args)

    monkeypatch.setattr(cli_copy, "_copy_block", interrupted)
    code, out_text, err = run(capsys, "copy", src, out, *options, "-q")
    assert (code, out_text) == (130, "")
    assert err == ("zarrs-cffi: error: interrupted after 8 of 48 shards; the same command with --resume "
                   "finishes the copy\n")
    monkeypatch.setattr(cli_copy, "_copy_block", copy_block)
    summary = run_json(capsys, "copy", src, out, *options, "-q", "--resume")
    assert (summary["skipped"], summary["written"]) == (8, 40)
    np.testing.assert_array_equal(zarr.open_array(out)[:], zarr.open_array(src)[:])


@pytest.mark.parametrize("shape", [(), (0, 5)])
def test_copy_and_info_of_scalar_and_empty_arrays(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  shape: tuple[int, ...]) -> None:
    src = tmp_path / "src.zarr"
    array = zarr.create_array(src, shape=shape, dtype="float64", fill_value=-1)
    if shape == ():
        array[()] = 2.5
    info = run_json(capsys, "info", src)
    assert info["shape"] == list(shape) and info["total_objects"] == (1 if shape == () else 0)
    summary = run_json(capsys, "copy", src, tmp_path / "out.zarr", "-q")
    assert summary["total"] == summary["written"] == info["total_objects"]
    copied = zarr.open_array(tmp_path / "out.zarr")
    assert copied.fill_value == -1
    np.testing.assert_array_equal(copied[...], array[...])


def test_over_http(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A URL: fsspec's HTTP store, read natively; copied to a local directory."""
    from servers import http_server

    array = zarr.create_array(tmp_path / "web" / "a.zarr", shape=(40, 50), chunks=(5, 5), shards=(10, 25),
                              dtype="uint16")
    array[:] = data((40, 50))
    with http_server(tmp_path / "web") as url:
        info = run_json(capsys, "info", f"{url}/a.zarr")
        assert info["shape"] == [40, 50] and info["stored_objects"] == 8
        assert info["route"]["kind"] == "native"
        bench = run_json(capsys, "bench", f"{url}/a.zarr", "--repeat", "1", "-q")
        assert all(r["error"] is None for r in bench["results"])
        run_json(capsys, "copy", f"{url}/a.zarr", tmp_path / "copy.zarr", "-q")
        code, _, err = run(capsys, "copy", tmp_path / "copy.zarr", f"{url}/new.zarr")
        assert code == 2 and err.startswith(f"zarrs-cffi: error: cannot create {url}/new.zarr: ")
        code, _, err = run(capsys, "info", f"{url}/missing.zarr")
        assert (code, err) == (2, f"zarrs-cffi: error: no Zarr array at {url}/missing.zarr\n")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "copy.zarr")[:], array[:])


def test_bench_reports_fallbacks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    delta = tmp_path / "delta.zarr"
    zarr.create_array(delta, shape=(40,), chunks=(10,), dtype="i4", zarr_format=2,
                      filters=[numcodecs.Delta(dtype="i4")])[:] = 1
    document = run_json(capsys, "bench", delta, "--repeat", "1", "-q")
    assert document["route"]["kind"] == "fallback"
    ours = next(r for r in document["results"] if r["implementation"] == "zarrs-cffi")
    assert ours["chunks"] == {"native_storage": 0, "python_io": 0, "fallback": 4}
    code, out, _ = run(capsys, "bench", delta, "--repeat", "1", "-q")
    assert code == 0 and "zarrs-cffi read: 4 of 4 chunks fell back to zarr's pipeline" in out


# -- hostile metadata and sizes that cannot fit ----------------------------------------


def tree(path: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and directory under ``path``, ``path`` itself included."""
    found: dict[str, bytes | None] = {".": None}
    for entry in path.rglob("*"):
        found[entry.relative_to(path).as_posix()] = entry.read_bytes() if entry.is_file() else None
    return found


def refused(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (argv, out, err)
    assert out == "" and err.startswith("zarrs-cffi: error: ") and err.count("\n") == 1, err
    return err


def _hostile(tmp_path: Path) -> dict[str, Path]:
    def array(name: str, document: Any, filename: str = "zarr.json") -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / filename).write_text(document if isinstance(document, str) else json.dumps(document))
        return path

    base = {"zarr_format": 3, "node_type": "array", "shape": [8, 8], "data_type": "uint8",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 4]}},
            "chunk_key_encoding": {"name": "default"}, "fill_value": 0, "codecs": [{"name": "bytes"}]}
    return {
        "shape": array("shape.zarr", {**base, "shape": "abc"}),
        "nested": array("nested.zarr", "[" * 100_000 + "]" * 100_000),
        "not json": array("text.zarr", "{not json"),
        "binary": array("binary.zarr", "\x00\x01\x02 not text"),
        "data type": array("dtype.zarr", {**base, "data_type": "uint7"}),
        "codec": array("codec.zarr", {**base, "codecs": "bytes"}),
        "v2": array("v2.zarr", {"zarr_format": 2, "shape": "x", "chunks": [1], "dtype": "<u1", "compressor": None,
                                "fill_value": 0, "order": "C", "filters": None}, ".zarray"),
    }


def test_metadata_zarr_refuses_is_a_user_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for what, path in _hostile(tmp_path).items():
        for argv in (["info", path], ["bench", path, "-q"], ["copy", path, tmp_path / "out.zarr", "-q"]):
            err = refused(capsys, *argv)
            assert f"zarrs-cffi: error: {path}: zarr cannot read its metadata: " in err, (what, err)
            assert "unexpected" not in err
    assert not (tmp_path / "out.zarr").exists()


def test_metadata_errors_in_a_process(tmp_path: Path) -> None:
    path = _hostile(tmp_path)["nested"]
    result = subprocess.run([PYTHON, "-m", "zarrs_cffi", "info", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"zarrs-cffi: error: {path}: zarr cannot read its metadata: RecursionError: ")
    assert result.stderr.count("\n") == 1


@pytest.fixture
def huge_chunks(tmp_path: Path) -> Path:
    """An array of one [2^20, 2^20] uint8 chunk (1 TiB), one element written."""
    path = tmp_path / "huge.zarr"
    path.mkdir()
    (path / "zarr.json").write_text(json.dumps({
        "zarr_format": 3, "node_type": "array", "shape": [1 << 20, 1 << 20], "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1 << 20, 1 << 20]}},
        "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
        "codecs": [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 1, "checksum": False}}],
    }))
    return path


def test_bench_refuses_a_chunk_larger_than_max_size_before_running(
    capsys: pytest.CaptureFixture[str], huge_chunks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any) -> Any:
        raise AssertionError("an implementation ran")

    monkeypatch.setattr(cli_bench, "_run_bench", never)
    err = refused(capsys, "bench", huge_chunks, "-q")
    assert "one chunk of (1048576, 1048576) uint8 is 1.0 TiB, more than --max-size 1.0 GiB" in err
    # a small array whose chunks are larger than it: implementations still hold whole chunks
    err = refused(capsys, "bench", "--synthetic", "8,8", "--chunks", "65536,65536", "--dir", tmp_path, "-q")
    assert "one chunk of (65536, 65536) uint16 is 8.0 GiB, more than --max-size 1.0 GiB" in err
    err = refused(capsys, "bench", "--synthetic", "64,64", "--chunks", "8,8", "--shards", "4096,4096",
                  "--max-size", "1MiB", "--dir", tmp_path, "-q")
    assert "one shard of (4096, 4096) uint16 is 32.0 MiB, more than --max-size 1.0 MiB" in err
    assert list(tmp_path.glob("zarrs-cffi-bench-*")) == []


def test_bench_in_a_process_refuses_huge_chunks(huge_chunks: Path) -> None:
    """As the issue ran it: no implementation starts (tensorstore aborted on it)."""
    result = subprocess.run([PYTHON, "-m", "zarrs_cffi", "bench", str(huge_chunks), "-q"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "1.0 TiB, more than --max-size" in result.stderr


def test_copy_refuses_what_cannot_fit_memory_before_writing(capsys: pytest.CaptureFixture[str], huge_chunks: Path,
                                                            sharded: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    err = refused(capsys, "copy", huge_chunks, out)
    assert ("--memory 512.0 MiB cannot hold the smallest step of the copy: one destination chunk of (1048576, 1048576) "
            "is 1.0 TiB, one source chunk of (1048576, 1048576) is 1.0 TiB") in err
    # rechunked small, the source chunk is still read whole
    err = refused(capsys, "copy", huge_chunks, out, "--chunks", "1024,1024")
    assert "one destination chunk of (1024, 1024) is 1.0 MiB, one source chunk of (1048576, 1048576) is 1.0 TiB" in err
    # a destination shard larger than --memory
    err = refused(capsys, "copy", sharded, out, "--chunks", "16,16,16", "--shards", "64,48,48", "--memory", "64KiB")
    assert "one destination shard of (64, 48, 48) is 288.0 KiB, one source chunk of (16, 16, 16) is 8.0 KiB" in err
    assert not out.exists()


def test_blocks_of_an_axis_longer_than_memory_can_list() -> None:
    """A grid of 2^62 blocks along an axis: the first blocks come at once (``itertools.product``
    would first list every index of the axis: MemoryError)."""
    blocks = geometry.blocks((1 << 64, 8), (4, 4), (1, 2))
    first = next(blocks)
    assert first.region == (slice(0, 4), slice(0, 8)) and first.units == [(0, 0), (0, 1)]
    assert next(blocks).region == (slice(4, 8), slice(0, 8))
    assert [b.units for b in geometry.blocks((3, 5), (2, 2), (1, 2))] == [
        [(0, 0), (0, 1)], [(0, 2)], [(1, 0), (1, 1)], [(1, 2)]]
    assert [b.region for b in geometry.blocks((), (), ())] == [()]
    assert list(geometry.blocks((0, 5), (2, 2), (1, 1))) == []


# -- copy never deletes or mixes into what is not a Zarr node it was asked to replace ----


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--resume"]], ids=["plain", "overwrite", "resume"])
def test_copy_refuses_a_directory_holding_other_files(capsys: pytest.CaptureFixture[str], sharded: Path,
                                                      tmp_path: Path, flags: list[str]) -> None:
    dst = tmp_path / "mine"
    (dst / "notes").mkdir(parents=True)
    (dst / "user.txt").write_text("precious")
    (dst / "notes" / "a.txt").write_text("more")
    before = tree(dst)
    err = refused(capsys, "copy", sharded, dst, "-q", *flags)
    assert f"{dst} is not empty and is not a Zarr array (it holds 'notes/a.txt', 'user.txt'); nothing was written" in err
    assert tree(dst) == before


def test_copy_refuses_a_directory_holding_only_an_empty_directory(capsys: pytest.CaptureFixture[str],
                                                                 sharded: Path, tmp_path: Path) -> None:
    dst = tmp_path / "mine"
    (dst / "empty").mkdir(parents=True)
    assert "it holds 'empty'" in refused(capsys, "copy", sharded, dst, "--overwrite")
    assert tree(dst) == {".": None, "empty": None}


def test_copy_into_an_empty_directory(capsys: pytest.CaptureFixture[str], sharded: Path, tmp_path: Path) -> None:
    dst = tmp_path / "empty"
    dst.mkdir()
    assert run_json(capsys, "copy", sharded, dst, "-q")["written"] == 4
    np.testing.assert_array_equal(zarr.open_array(dst)[:], zarr.open_array(sharded)[:])


def test_copy_refuses_a_file(capsys: pytest.CaptureFixture[str], sharded: Path, tmp_path: Path) -> None:
    dst = tmp_path / "file.zarr"
    dst.write_text("precious")
    for flags in ([], ["--overwrite"]):
        assert f"{dst} exists and is not a directory; nothing was written" in refused(capsys, "copy", sharded, dst, *flags)
    assert dst.read_text() == "precious"


def test_copy_overwrite_replaces_a_zarr_array(capsys: pytest.CaptureFixture[str], sharded: Path,
                                             tmp_path: Path) -> None:
    dst = tmp_path / "old.zarr"
    zarr.create_array(dst, shape=(10, 10), chunks=(5, 5), dtype="int8")[:] = 3
    # Leftovers of killed writers are the array's own: ours and zarr's LocalStore's.
    (dst / "c" / "0" / ".1.4242-effffffc-0a1b2c3d-7.partial").write_bytes(b"x")
    (dst / "c" / "1" / f"0.{'ab' * 16}.partial").write_bytes(b"x")
    summary = run_json(capsys, "copy", sharded, dst, "--overwrite", "-q")
    assert summary["written"] == 4
    assert not any(name.endswith(".partial") for name in tree(dst))
    np.testing.assert_array_equal(zarr.open_array(dst)[:], zarr.open_array(sharded)[:])


def test_copy_overwrite_refuses_an_array_holding_other_files(capsys: pytest.CaptureFixture[str], sharded: Path,
                                                            tmp_path: Path) -> None:
    dst = tmp_path / "old.zarr"
    zarr.create_array(dst, shape=(10, 10), chunks=(5, 5), dtype="int8")[:] = 3
    (dst / "README.txt").write_text("precious")
    (dst / "c" / "0" / "backup.bin").write_bytes(b"precious")
    before = tree(dst)
    err = refused(capsys, "copy", sharded, dst, "--overwrite")
    assert f"{dst} holds files that are not its array's ('README.txt', 'c/0/backup.bin'); --overwrite would delete" in err
    assert tree(dst) == before


def test_copy_overwrite_of_a_group(capsys: pytest.CaptureFixture[str], sharded: Path, tmp_path: Path) -> None:
    """A group is replaced only when it holds nothing but its metadata: neither its arrays
    nor a user's file are deleted to make room for the copy."""
    with_array = tmp_path / "g1.zarr"
    zarr.create_group(with_array).create_array("x", shape=(2,), dtype="i1")[:] = 1
    with_file = tmp_path / "g2.zarr"
    zarr.create_group(with_file)
    (with_file / "user.txt").write_text("precious")
    for group, holds in ((with_array, "'x/c/0', 'x/zarr.json'"), (with_file, "'user.txt'")):
        before = tree(group)
        assert "is a group; give a new path" in refused(capsys, "copy", sharded, group)
        err = refused(capsys, "copy", sharded, group, "--overwrite")
        assert f"{group} is a group holding {holds}; --overwrite replaces an array or an empty group only" in err
        assert tree(group) == before
    empty = tmp_path / "g3.zarr"
    zarr.create_group(empty, zarr_format=2, attributes={"a": 1})
    assert run_json(capsys, "copy", sharded, empty, "--overwrite", "-q")["written"] == 4
    np.testing.assert_array_equal(zarr.open_array(empty)[:], zarr.open_array(sharded)[:])


def test_copy_refuses_unreadable_destination_metadata(capsys: pytest.CaptureFixture[str], sharded: Path,
                                                      tmp_path: Path) -> None:
    dst = _hostile(tmp_path)["shape"]
    before = tree(dst)
    for flags in ([], ["--overwrite"]):
        err = refused(capsys, "copy", sharded, dst, *flags)
        assert f"{dst} holds metadata zarr cannot read (" in err and "nothing was written" in err
    assert tree(dst) == before


def test_copy_refuses_a_file_named_zip_that_is_not_one(capsys: pytest.CaptureFixture[str], sharded: Path,
                                                       tmp_path: Path) -> None:
    dst = tmp_path / "notes.zip"
    dst.write_bytes(b"precious, not a zip")
    for target in (dst, dst / "inner"):
        assert f"{dst} exists and is not a zip archive; nothing was written" in refused(capsys, "copy", sharded, target)
    assert dst.read_bytes() == b"precious, not a zip"


def test_copy_refuses_a_zip_holding_other_entries(capsys: pytest.CaptureFixture[str], sharded: Path,
                                                  tmp_path: Path) -> None:
    import zipfile

    dst = tmp_path / "mine.zip"
    with zipfile.ZipFile(dst, "w") as archive:
        archive.writestr("user.txt", "precious")
    before = dst.read_bytes()
    assert "(it holds 'user.txt'); nothing was written" in refused(capsys, "copy", sharded, dst)
    assert dst.read_bytes() == before
    # A new node inside the archive's other entries is fine: they are left as they are.
    run_json(capsys, "copy", sharded, dst / "inner", "-q")
    with zipfile.ZipFile(dst) as archive:
        assert archive.read("user.txt") == b"precious"
    # An array already in the archive cannot be replaced (a zip cannot delete entries).
    err = refused(capsys, "copy", sharded, dst / "inner", "--overwrite")
    assert "a zip archive cannot delete its entries" in err


def test_copy_refuses_a_url_holding_other_files(capsys: pytest.CaptureFixture[str], sharded: Path) -> None:
    fsspec = importlib.import_module("fsspec")
    memory = fsspec.filesystem("memory")
    memory.pipe("/cli-dst/user.txt", b"precious")
    try:
        for flags in ([], ["--overwrite"]):
            err = refused(capsys, "copy", sharded, "memory://cli-dst", *flags)
            assert "memory://cli-dst is not empty and is not a Zarr array (it holds 'user.txt')" in err
        assert memory.find("/cli-dst") == ["/cli-dst/user.txt"]
    finally:
        memory.rm("/cli-dst", recursive=True)
