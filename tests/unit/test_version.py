"""One version everywhere, and importing the package does not load the native library."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import zarrs_cffi
from zarrs_cffi._bindings import native_version

ROOT = Path(__file__).resolve().parents[2]


def test_versions_agree():
    cargo = tomllib.loads((ROOT / "zarrs-ffi" / "Cargo.toml").read_text())["package"]["version"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert native_version() == zarrs_cffi.__version__ == cargo == pyproject


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_does_not_load_the_native_library():
    code = (
        "import zarrs_cffi, zarrs_cffi._bindings.library as f, zarr\n"
        "print(f._lib is None)\n"
        # zarr's registry (which imports every pipeline plugin) must not load it either.
        "from zarr.registry import get_pipeline_class\n"
        "with zarr.config.set({'codec_pipeline.path': 'zarrs_cffi.ZarrsCodecPipeline'}):\n"
        "    assert get_pipeline_class() is zarrs_cffi.ZarrsCodecPipeline\n"
        "print(f._lib is None)\n"
        "zarrs_cffi._bindings.native_version()\n"
        "print(f._lib is None)\n"
    )
    assert _run(code).split() == ["True", "True", "False"]


def test_the_pipeline_is_registered_with_zarr():
    code = (
        "import zarr\n"
        "from zarr.registry import get_pipeline_class\n"
        "with zarr.config.set({'codec_pipeline.path': 'zarrs_cffi.ZarrsCodecPipeline'}):\n"
        "    print(get_pipeline_class().__module__, get_pipeline_class().__qualname__)\n"
    )
    assert _run(code) == "zarrs_cffi ZarrsCodecPipeline"
