"""The keep-warm window: one native thread spins (nice 19, no work) for a while after each
data call, so the next call's thread wake-ups do not wait for a halted CPU.

Off unless set: by ``zarrs_cffi.keep_warm``, zarr's config
``codec_pipeline.keep_warm_us`` or ``ZARRS_FFI_KEEP_WARM_US``. Process-wide state, so every case runs in a fresh interpreter.
What it saves is measured by benchmarks, not here; these tests check what it does: it starts
only when asked, spins within the window and at nice 19, parks after it at no CPU cost, and
a forked child gets a thread of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="keeping warm is Linux only")


PRELUDE = r"""
import json, os, sys, time
import numpy as np
import zarr
import zarrs_cffi


def warm_thread():
    # (CPU ticks so far, nice) of the thread named zarrs-ffi-warm, or None.
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() != "zarrs-ffi-warm":
                    continue
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        return int(fields[11]) + int(fields[12]), int(fields[16])
    return None


def settled_warm_thread():
    # warm_thread() once a thread started by the last call has had time to name itself.
    for _ in range(200):
        found = warm_thread()
        if found is not None:
            return found
        time.sleep(0.01)
    return None


def small_array(path):
    zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline", "codec_pipeline.strict": True})
    data = np.arange(32 * 32, dtype="uint16").reshape(32, 32)
    a = zarr.create_array(path, shape=data.shape, chunks=(8, 8), dtype=data.dtype)
    a[...] = data
    return zarr.open_array(path), data
"""


def _run(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> dict[str, object]:
    script = PRELUDE + textwrap.dedent(body)
    child_env = {k: v for k, v in os.environ.items() if k != "ZARRS_FFI_KEEP_WARM_US"}
    child_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "a.zarr")],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


READS = """
a, data = small_array(sys.argv[1])
for _ in range(20):
    assert (a[3:20, 5:9] == data[3:20, 5:9]).all()
thread = settled_warm_thread()
print(json.dumps({"window": zarrs_cffi.keep_warm(), "nice": thread and thread[1]}))
"""


def test_off_by_default_and_no_thread_is_started(tmp_path: Path) -> None:
    # It costs CPU time nobody asked for: off unless set, even on a VM whose CPUs halt at once.
    assert _run(tmp_path, READS) == {"window": 0, "nice": None}


def test_off_no_thread_is_ever_started(tmp_path: Path) -> None:
    assert _run(tmp_path, READS, env={"ZARRS_FFI_KEEP_WARM_US": "0"}) == {"window": 0, "nice": None}


def test_the_environment_sets_it_before_the_first_call(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        'print(json.dumps({"window": zarrs_cffi.keep_warm()}))',
        env={"ZARRS_FFI_KEEP_WARM_US": "1234"},
    )
    assert result == {"window": 1234}


def test_arguments_are_checked_and_the_window_is_bounded(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        """
        errors = []
        for bad in (-1, True, "10", 1.5):
            try:
                zarrs_cffi.keep_warm(bad)
            except zarrs_cffi.ZarrsValueError as exc:
                errors.append(str(exc))
        print(json.dumps({"errors": errors, "clamped": zarrs_cffi.keep_warm(5_000_000)}))
        """,
    )
    errors = result["errors"]
    assert isinstance(errors, list) and len(errors) == 4
    assert all("keep_warm" in e for e in errors)
    assert result["clamped"] == 1_000_000


def test_zarr_config_turns_it_on_it_spins_at_nice_19_then_parks(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        """
        zarr.config.set({"codec_pipeline.keep_warm_us": 300_000})
        a, data = small_array(sys.argv[1])
        assert (a[...] == data).all()  # the first native use applies the config
        window = zarrs_cffi.keep_warm()
        ticks0, nice = settled_warm_thread()
        time.sleep(0.2)  # within the window: it spins (Python sleeps, a CPU is free)
        ticks1, _ = warm_thread()
        time.sleep(0.4)  # past the window: parked
        ticks2, _ = warm_thread()
        time.sleep(0.3)
        ticks3, _ = warm_thread()
        print(json.dumps({"window": window, "nice": nice, "spun": ticks1 - ticks0, "parked": ticks3 - ticks2}))
        """,
    )
    assert result["window"] == 300_000
    assert result["nice"] == 19
    spun = result["spun"]
    assert isinstance(spun, int) and spun >= 5, result  # ticks of 10 ms: at least 50 of the 200
    assert result["parked"] == 0, result


def test_a_bad_config_value_names_the_key(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        """
        zarr.config.set({"codec_pipeline.keep_warm_us": "soon"})
        try:
            small_array(sys.argv[1])
            message = None
        except zarrs_cffi.ZarrsValueError as exc:
            message = str(exc)
        print(json.dumps({"message": message}))
        """,
    )
    message = result["message"]
    assert isinstance(message, str) and "codec_pipeline.keep_warm_us" in message and "soon" in message


def test_a_forked_child_gets_a_thread_of_its_own(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        """
        zarrs_cffi.keep_warm(200_000)
        a, data = small_array(sys.argv[1])
        assert (a[...] == data).all()
        assert settled_warm_thread() is not None
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            before = warm_thread()  # the parent's thread did not survive the fork
            ok = bool((a[1:30, 2:7] == data[1:30, 2:7]).all())
            after = settled_warm_thread()
            os.write(write, json.dumps({"before": before, "after": after is not None, "ok": ok}).encode())
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        child = json.loads(os.read(read, 4096))
        print(json.dumps({"status": status, **child}))
        """,
    )
    assert result == {"status": 0, "before": None, "after": True, "ok": True}


def test_the_direct_array_api_does_not_start_it(tmp_path: Path) -> None:
    # Region and chunk calls hand nothing to other threads; a spinning thread beside them made
    # back-to-back direct reads slower, so only the pipeline's calls start it.
    result = _run(
        tmp_path,
        """
        data = np.arange(32 * 32, dtype="uint16").reshape(32, 32)
        zarr.create_array(sys.argv[1], shape=data.shape, chunks=(8, 8), dtype=data.dtype)[...] = data  # zarr's pipeline
        direct = zarrs_cffi.Array.open(sys.argv[1])
        for _ in range(50):
            assert (direct[3:20, 5:9] == data[3:20, 5:9]).all()
        direct[0:8, 0:8] = data[0:8, 0:8]
        print(json.dumps({"window": zarrs_cffi.keep_warm(), "thread": settled_warm_thread()}))
        """,
        env={"ZARRS_FFI_KEEP_WARM_US": "1000"},
    )
    assert result == {"window": 1000, "thread": None}
