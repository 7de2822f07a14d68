"""The wheel: one ``py3-none-manylinux`` wheel that installs and runs without Rust.

``scripts/wheel`` builds it from this checkout as ``pip install .`` would (PEP 517, isolated
build environment; the same cargo target dir and flags as ``scripts/setup``'s editable
install, so the library is not rebuilt), or ``ZARRS_CFFI_WHEEL`` names one built so before
(scripts/test builds it before the interop tier).
Each test Python gets a fresh venv with no Rust toolchain anywhere it can see; pip installs
the wheel and its dependencies as binaries only, and a zarr roundtrip with our pipeline runs
there, with zero fallbacks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

import zarrs_cffi

ROOT = Path(__file__).resolve().parents[2]
WHEEL_ENV = "ZARRS_CFFI_WHEEL"

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.uname().machine != "x86_64",
    reason="scripts/wheel builds manylinux x86_64 wheels",
)

# pip install into a fresh venv (dependencies from PyPI or pip's cache) and a roundtrip.
TIMEOUT = 600

# What the wheel holds, besides zarrs_cffi/*.py: nothing from tests/, benchmarks/, scripts/,
# the crate or the build scripts; py.typed present.
EXTRA_FILES = {"zarrs_cffi/py.typed", "zarrs_cffi/libzarrs_ffi.so"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get(WHEEL_ENV)
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("wheelhouse")
    start = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "scripts" / "wheel"), str(out)],
        capture_output=True, text=True, check=False, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    print(f"scripts/wheel: {time.monotonic() - start:.1f} s")
    return Path(result.stdout.strip().splitlines()[-1])


def test_wheel_is_py3_none_manylinux(wheel: Path) -> None:
    name, version, python, abi, platforms = wheel.name.removesuffix(".whl").split("-")
    assert (name, version, python, abi) == ("zarrs_cffi", zarrs_cffi.__version__, "py3", "none")
    assert all(re.fullmatch(r"manylinux(_\d+_\d+|\d+)_x86_64", p) for p in platforms.split("."))
    with zipfile.ZipFile(wheel) as archive:
        wheel_file = archive.read(f"zarrs_cffi-{version}.dist-info/WHEEL").decode()
    tags = re.findall(r"^Tag: (.+)$", wheel_file, re.MULTILINE)
    assert tags and all(t.startswith("py3-none-manylinux") for t in tags), wheel_file
    assert "Root-Is-Purelib: false" in wheel_file


def test_wheel_holds_the_package_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if not n.endswith("/")}
        library = archive.read("zarrs_cffi/libzarrs_ffi.so")
    dist_info = {n for n in names if n.startswith("zarrs_cffi-") and ".dist-info/" in n}
    package = names - dist_info
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "zarrs_cffi").rglob("*.py")}
    # The cffi module is generated as Python (ABI mode), never a compiled extension.
    sources.add("zarrs_cffi/_zarrs_cffi_ffi.py")
    # auditwheel would add zarrs_cffi.libs/ only if the library needed a non-manylinux one.
    assert package == sources | EXTRA_FILES, sorted(package ^ (sources | EXTRA_FILES))
    # The library is a plain C ABI: no Python ABI tag in its name, no libpython in its needs.
    assert b"libpython" not in library
    assert library[:4] == b"\x7fELF"


def _pythons() -> dict[str, str]:
    """This Python, and every other CPython 3.12+ found on PATH or under pyenv: version -> path."""
    found = {f"{sys.version_info.major}.{sys.version_info.minor}": sys.executable}
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for minor in range(12, 20):
        version = f"3.{minor}"
        if version in found:
            continue
        candidates = [shutil.which(f"python{version}")]
        candidates += [str(p) for p in sorted(pyenv_root.glob(f"versions/{version}*/bin/python{version}"))]
        for candidate in filter(None, candidates):
            check = subprocess.run([candidate, "-c", "import venv, ensurepip"], capture_output=True, check=False)
            if check.returncode == 0:
                found[version] = candidate
                break
    return found


PYTHONS = _pythons()


def _without_rust(venv: Path) -> dict[str, str]:
    """The environment of a machine with no Rust toolchain, around ``venv``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CARGO", "RUSTUP", "RUSTC", "PYTHON", "VIRTUAL_ENV"))
    }
    path = [
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any((Path(d) / tool).exists() for tool in ("cargo", "rustc", "rustup"))
    ]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    # Anything that still looked for a toolchain would find none.
    env.update(CARGO="/nonexistent", RUSTC="/nonexistent", CARGO_HOME="/nonexistent",
               RUSTUP_HOME="/nonexistent", VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1")
    # Honour the test suite's break switch (tests/conformance/zarrs_cffi_gate.py) there too.
    if "ZARRS_CFFI_BREAK" in os.environ:
        env["ZARRS_CFFI_BREAK"] = os.environ["ZARRS_CFFI_BREAK"]
    return env


ROUNDTRIP = """
import json, shutil, sys
import numpy as np, zarr
if len(sys.argv) > 2:  # the test suite's break switch, when set
    sys.path.insert(0, sys.argv[2])
    import zarrs_cffi_gate
    zarrs_cffi_gate.apply_break_switch()
import zarrs_cffi
from zarrs_cffi._bindings import library as _ffi

zarr.config.set({"codec_pipeline.path": "zarrs_cffi.ZarrsCodecPipeline"})
zarrs_cffi.reset_stats()
data = np.arange(120 * 90, dtype="uint16").reshape(120, 90)
z = zarr.create_array(sys.argv[1], shape=data.shape, chunks=(20, 30), shards=(40, 90), dtype=data.dtype)
z[:] = data
z[5:7, 3] = 7
data[5:7, 3] = 7
back = zarr.open_array(sys.argv[1], mode="r")[:]
assert np.array_equal(back, data)
stats = zarrs_cffi.stats()
print(json.dumps({
    "cargo": shutil.which("cargo"), "rustc": shutil.which("rustc"),
    "package": zarrs_cffi.__file__, "library": str(_ffi.library_path()),
    "version": zarrs_cffi.__version__,
    "native_version": _ffi.ffi.string(_ffi.lib().zarrs_ffi_version()).decode(),
    "ffi_module": sys.modules["zarrs_cffi._zarrs_cffi_ffi"].__file__,
    "native_reads": stats.native_reads, "native_writes": stats.native_writes,
    "fallbacks": stats.fallbacks, "fallback_reasons": dict(stats.fallback_reasons),
}))
"""


@pytest.mark.parametrize("python", list(PYTHONS.values()), ids=list(PYTHONS))
def test_wheel_installs_and_runs_without_rust(wheel: Path, python: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=TIMEOUT)
    env = _without_rust(venv)
    assert shutil.which("cargo", path=env["PATH"]) is None
    assert shutil.which("rustc", path=env["PATH"]) is None
    # Binaries only: pip may build nothing, so nothing could have needed a compiler or cargo.
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--only-binary", ":all:",
         "-c", str(ROOT / "constraints.txt"), str(wheel)],
        env, tmp_path,
    )
    report = _roundtrip(venv, env, tmp_path)
    assert (report["cargo"], report["rustc"]) == (None, None)


def _roundtrip(venv: Path, env: dict[str, str], work: Path) -> dict[str, Any]:
    """Run ROUNDTRIP with ``venv``'s Python and check what the package there did."""
    args = [str(venv / "bin" / "python"), "-I", "-c", ROUNDTRIP, str(work / "data.zarr")]
    if "ZARRS_CFFI_BREAK" in env:
        args.append(str(ROOT / "tests" / "conformance"))
    report: dict[str, Any] = json.loads(_run(args, env, work).stdout.strip().splitlines()[-1])
    site = venv / "lib"
    assert Path(report["package"]).is_relative_to(site)  # the installed copy, not this checkout
    assert Path(report["library"]).name == "libzarrs_ffi.so"
    assert Path(report["library"]).is_relative_to(site)
    assert Path(report["ffi_module"]).suffix == ".py"
    assert report["version"] == report["native_version"] == zarrs_cffi.__version__
    assert report["native_reads"] > 0 and report["native_writes"] > 0
    assert (report["fallbacks"], report["fallback_reasons"]) == (0, {})
    return report


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=TIMEOUT)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_library_path_prefers_the_plain_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older build's ``libzarrs_ffi.cpython-*.so`` is used only while no plain-named one exists."""
    from zarrs_cffi._bindings import library as _ffi

    # The library sits in the package directory, one above the bindings module.
    monkeypatch.setattr(_ffi, "__file__", str(tmp_path / "_bindings" / "library.py"))
    with pytest.raises(zarrs_cffi.ZarrsError, match="libzarrs_ffi.so is not in"):
        _ffi.library_path()
    (tmp_path / "libzarrs_ffi.cpython-312-x86_64-linux-gnu.so").touch()
    assert _ffi.library_path() == tmp_path / "libzarrs_ffi.cpython-312-x86_64-linux-gnu.so"
    (tmp_path / "libzarrs_ffi.so").touch()
    assert _ffi.library_path() == tmp_path / "libzarrs_ffi.so"
