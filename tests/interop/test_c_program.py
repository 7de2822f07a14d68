"""A C program built against the committed header reads an array that zarr wrote.

``zarrs-ffi/tests/c/read_array.c`` is compiled with gcc (C11, warnings as errors) against
``zarrs-ffi/include/zarrs_ffi.h`` and linked to the packaged cdylib. zarr-python writes the
array with its own default pipeline, so this checks the C ABI end to end: the header matches
the library, and data written by zarr reads back exactly through C.

The program also runs under valgrind (definite leaks and memory errors fail the test);
``ZARRS_FFI_VALGRIND=0`` opts out on a machine without it. A missing C compiler or valgrind
is a failure, not a skip: ``scripts/test`` installs both where they are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from zarrs_cffi import __version__
from zarrs_cffi._bindings.library import library_path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "zarrs-ffi" / "tests" / "c" / "read_array.c"
INCLUDE = ROOT / "zarrs-ffi" / "include"

GCC = shutil.which("gcc")

# Not a multiple of the chunk shape in either dimension, so edge chunks are partial.
SHAPE = (100, 75)
CHUNKS = (16, 32)


def _expected(shape: tuple[int, ...]) -> np.ndarray:
    """The values read_array.c checks: element i (C order) is i % 65521."""
    return (np.arange(int(np.prod(shape)), dtype=np.int64) % 65521).astype("uint16").reshape(shape)


def _write_array(path: Path, shape: tuple[int, ...] = SHAPE) -> zarr.Array:
    array = zarr.create_array(LocalStore(path), shape=shape, chunks=CHUNKS, dtype="uint16", compressors=ZstdCodec(level=3))
    array[...] = _expected(shape)
    return array


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """read_array.c built against the header and the packaged library."""
    assert GCC is not None, "gcc is not installed: cannot build the C program (scripts/test installs it)"
    library = library_path()
    exe = tmp_path_factory.mktemp("c-program") / "read_array"
    command = [
        str(GCC),
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wpedantic",
        f"-I{INCLUDE}",
        str(SOURCE),
        "-o",
        str(exe),
        f"-L{library.parent}",
        # The packaged file has a Python extension suffix, so name it exactly.
        f"-l:{library.name}",
        f"-Wl,-rpath,{library.parent}",
    ]
    built = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, f"gcc failed:\n{built.stderr}"
    return exe


def _run(program: Path, array_dir: Path, shape: tuple[int, ...], *prefix: str) -> subprocess.CompletedProcess[str]:
    args = [*prefix, str(program), str(array_dir), *(str(d) for d in shape)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_c_program_reads_what_zarr_wrote(tmp_path, zarr_pipeline, program):
    array_dir = tmp_path / "array"
    _write_array(array_dir)
    # zarr's own pipeline wrote zstd chunks, including the partial edge chunks.
    assert '"zstd"' in (array_dir / "zarr.json").read_text()
    assert (array_dir / "c" / "6" / "2").is_file()

    result = _run(program, array_dir, SHAPE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"read_array: OK: 7500 uint16 elements of shape [100, 75] equal i % 65521 (zarrs-ffi {__version__})\n"
    )
    assert result.stderr == ""


def test_c_program_detects_wrong_values_and_shapes(tmp_path, zarr_pipeline, program):
    # The program's checks can fail: one changed element, and a wrong expected shape.
    array_dir = tmp_path / "array"
    array = _write_array(array_dir)
    array[99, 74] = 1
    result = _run(program, array_dir, SHAPE)
    assert result.returncode == 1
    assert "element 7499 is 1, expected 7499" in result.stderr

    result = _run(program, array_dir, (100, 74))
    assert result.returncode == 1
    assert "dimension 1 has extent 75, expected 74" in result.stderr

    result = _run(program, tmp_path / "no-array-here", SHAPE)
    assert result.returncode == 1
    assert "zarrs_array_open" in result.stderr
    assert "code 5" in result.stderr  # ZARRS_ERROR_INVALID_METADATA: no metadata


@pytest.mark.skipif(os.environ.get("ZARRS_FFI_VALGRIND") == "0", reason="ZARRS_FFI_VALGRIND=0 opts out")
def test_c_program_under_valgrind(tmp_path, zarr_pipeline, program):
    valgrind = shutil.which("valgrind")
    assert valgrind is not None, "valgrind is not installed (scripts/test installs it; ZARRS_FFI_VALGRIND=0 opts out)"
    array_dir = tmp_path / "array"
    shape = (40, 33)  # small: valgrind is slow
    _write_array(array_dir, shape)
    result = _run(
        program,
        array_dir,
        shape,
        valgrind,
        "--error-exitcode=99",
        "--leak-check=full",
        # Thread-locals and the global thread pool live until exit: only definite leaks count.
        "--errors-for-leak-kinds=definite",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("read_array: OK: 1320 uint16 elements of shape [40, 33]")
    assert "ERROR SUMMARY: 0 errors" in result.stderr
