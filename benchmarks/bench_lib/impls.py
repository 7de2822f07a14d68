"""How the benchmark drives each implementation of the shared list
(``zarrs_cffi.cli.implementations``, the one ``zarrs-cffi bench`` runs too): a zarr codec
pipeline, tensorstore, our direct API, or zarrs from Rust through the ``bench_zarrs`` binary.

Nothing here imports an implementation at module level: ``load`` does, in the preflight
child first, so one that crashes is reported unavailable instead of ending the run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.registry import get_pipeline_class

from zarrs_cffi.cli.implementations import IMPLEMENTATIONS, Implementation, tensorstore_spec

from . import stores
from .cells import NotApplicable, describe
from .data import Layout
from .settings import BUILD_TIMEOUT_S, CRATE, REFERENCE_CONFIG, RUST_TIMEOUT_S, log


class ZarrPipelineImpl:
    """A zarr-python codec pipeline, selected through ``codec_pipeline.path``."""

    def __init__(
        self,
        key: str,
        label: str,
        path: str,
        extra_config: dict[str, Any] | None = None,
    ):
        self.key, self.label, self.path = key, label, path
        self.config = {
            **REFERENCE_CONFIG,
            "codec_pipeline.path": path,
            **(extra_config or {}),
        }

    def load(self) -> None:
        module, _, name = self.path.rpartition(".")
        getattr(importlib.import_module(module), name)
        # zarr resolves codec_pipeline.path through its registry, filled from
        # the `zarr.codec_pipeline` entry points, not by importing the path.
        with zarr.config.set(self.config):
            get_pipeline_class()

    def session(self) -> contextlib.AbstractContextManager[Any]:
        # The pipeline is chosen when an array is opened, but keep the config in
        # force for every operation in case a pipeline reads it lazily.
        return zarr.config.set(self.config)

    def create(
        self, path: Path, layout: Layout, shape: tuple[int, ...], metadata: dict
    ) -> Any:
        return stores.create_zarr_array(path, layout, shape)

    def open(self, path: Path) -> Any:
        return zarr.open_array(stores.STORE.reader(path), mode="r")

    def write_all(self, array: Any, data: np.ndarray) -> None:
        array[:] = data
        stores.STORE.finish(array.store)

    def read_all(self, array: Any) -> Any:
        return array[:]

    def read_box(self, array: Any, box: tuple[slice, ...]) -> Any:
        return array[box]

    def read_oindex(self, array: Any, rows: np.ndarray) -> Any:
        return array.oindex[(rows,) + (slice(None),) * (array.ndim - 1)]

    def read_vindex(self, array: Any, points: tuple[np.ndarray, ...]) -> Any:
        return array.vindex[points]


class TensorstoreImpl:
    """tensorstore's zarr3 driver on a local file kvstore, with its default context."""

    def __init__(self, spec: Implementation) -> None:
        self.key, self.label = spec.key, spec.label
        self.ts: Any = None

    def load(self) -> None:
        if not stores.STORE.tensorstore:
            raise NotImplementedError(f"not benchmarked on {stores.STORE.describe()} (no equivalent tensorstore kvstore)")
        self.ts = importlib.import_module("tensorstore")

    def session(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    @staticmethod
    def _spec(path: Path) -> dict[str, Any]:
        return tensorstore_spec(str(path))

    def create(
        self, path: Path, layout: Layout, shape: tuple[int, ...], metadata: dict
    ) -> Any:
        # `metadata` is the zarr.json that zarr wrote for the reference array, so
        # tensorstore writes exactly the same codec chain.
        spec = {**self._spec(path), "metadata": metadata}
        return self.ts.open(spec, create=True, delete_existing=True).result()

    def open(self, path: Path) -> Any:
        return self.ts.open(self._spec(path), open=True, read=True).result()

    def write_all(self, array: Any, data: np.ndarray) -> None:
        array.write(data).result()

    def read_all(self, array: Any) -> Any:
        return array.read().result()

    def read_box(self, array: Any, box: tuple[slice, ...]) -> Any:
        return array[box].read().result()

    def read_oindex(self, array: Any, rows: np.ndarray) -> Any:
        return array.oindex[(rows,) + (slice(None),) * (array.rank - 1)].read().result()

    def read_vindex(self, array: Any, points: tuple[np.ndarray, ...]) -> Any:
        return array.vindex[points].read().result()


class DirectImpl:
    """This project's direct API, ``zarrs_cffi.Array``: one native call per region, no zarr.

    It reads regions (step-1 slices) only, so ``oindex`` is read as a zarrs user would
    with regions: per block of rows (the inner chunks' extent on axis 0), the slab from its
    first to its last selected row, then the selected rows. ``vindex`` has no region
    equivalent and is not run.
    """

    def __init__(self, spec: Implementation) -> None:
        self.key, self.label = spec.key, spec.label
        self.array_class: Any = None

    def load(self) -> None:
        if stores.STORE.name != "local":
            raise NotImplementedError(f"not benchmarked on {stores.STORE.describe()} (the direct API opens directories)")
        self.array_class = importlib.import_module("zarrs_cffi").Array

    def session(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def create(self, path: Path, layout: Layout, shape: tuple[int, ...], metadata: dict) -> Any:
        return self.array_class.create(path, metadata)

    def open(self, path: Path) -> Any:
        return self.array_class.open(path, read_only=True)

    def write_all(self, array: Any, data: np.ndarray) -> None:
        array[...] = data

    def read_all(self, array: Any) -> Any:
        return array[...]

    def read_box(self, array: Any, box: tuple[slice, ...]) -> Any:
        return array[box]

    def read_oindex(self, array: Any, rows: np.ndarray) -> Any:
        return read_rows_by_block(array.read, rows, row_block(array.metadata))

    def read_vindex(self, array: Any, points: tuple[np.ndarray, ...]) -> Any:
        raise NotApplicable("the direct API reads regions only (use zarr for vindex)")


def row_block(metadata: dict) -> int:
    """Rows per decodable unit on axis 0: the inner chunk of a sharded array, else the chunk."""
    chunk = metadata["chunk_grid"]["configuration"]["chunk_shape"][0]
    codecs = metadata.get("codecs") or []
    if codecs and codecs[0].get("name") == "sharding_indexed":
        return int(codecs[0]["configuration"]["chunk_shape"][0])
    return int(chunk)


def read_rows_by_block(read: Callable[[tuple[slice, ...]], np.ndarray], rows: np.ndarray, block: int) -> np.ndarray:
    """``array[rows]`` for sorted ``rows`` through region reads: per block of ``block`` rows,
    the slab from its first to its last selected row."""
    parts = []
    blocks = rows // block
    bounds = np.flatnonzero(np.diff(blocks)) + 1
    for group in np.split(rows, bounds):
        first = int(group[0])
        slab = read((slice(first, int(group[-1]) + 1),))
        parts.append(slab[group - first])
    return np.concatenate(parts)



class RustImpl:
    """zarrs itself, called from Rust: ``zarrs-ffi/examples/bench_zarrs.rs``.

    Each layout is one run of the binary, which times every operation inside itself and
    writes each read's result to a file; this process then checks those results (and the
    written array, read back with zarr's pipeline) like every other implementation's.
    """

    # Set by --zarrs-bin; otherwise the binary cargo builds.
    binary_override: str | None = None

    def __init__(self, spec: Implementation) -> None:
        self.key, self.label = spec.key, spec.label
        self.binary: Path | None = None
        self.build_error: str | None = None
        self.zarrs_version = "unknown"

    @staticmethod
    def default_binary() -> Path:
        return CRATE / "target" / "release" / "examples" / "bench_zarrs"

    def prepare(self) -> None:
        """Build the example (a no-op when up to date), in the main process, once."""
        if self.binary_override:
            return
        cargo = shutil.which("cargo")
        if cargo is None:
            if not self.default_binary().exists():
                self.build_error = "cargo not found and no built zarrs-ffi/target/release/examples/bench_zarrs"
            return
        log.info("building zarrs-ffi example bench_zarrs (cargo build --release --example bench_zarrs) ...")
        try:
            build = subprocess.run(
                [cargo, "build", "--release", "--example", "bench_zarrs"],
                cwd=CRATE,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.build_error = f"cargo build failed: {describe(exc)}"
            return
        if build.returncode != 0:
            errors = [line for line in build.stderr.splitlines() if line.startswith("error")]
            self.build_error = "cargo build failed: " + (errors[0] if errors else f"exit code {build.returncode}")

    def load(self) -> None:
        if stores.STORE.name != "local":
            raise NotImplementedError(f"not benchmarked on {stores.STORE.describe()} (the binary uses zarrs' FilesystemStore)")
        if self.build_error:
            raise RuntimeError(self.build_error)
        binary = Path(self.binary_override) if self.binary_override else self.default_binary()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"no executable {binary}")
        self.binary = binary

    def run(self, job: dict[str, Any], workdir: Path) -> dict[str, Any]:
        """Run the binary on `job`; its JSON report (raises if it failed as a whole)."""
        assert self.binary is not None
        job = {"threads": os.cpu_count() or 0, **job}
        job_path = workdir / "bench_zarrs_job.json"
        job_path.write_text(json.dumps(job))
        done = subprocess.run([str(self.binary), str(job_path)], capture_output=True, text=True, timeout=RUST_TIMEOUT_S)
        try:
            report = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            how = f"signal {signal.Signals(-done.returncode).name}" if done.returncode < 0 else f"exit code {done.returncode}"
            raise RuntimeError(f"bench_zarrs gave no report ({how}): {done.stderr.strip()[-300:]}") from None
        if "fatal" in report:
            raise RuntimeError(f"bench_zarrs: {report['fatal']}")
        self.zarrs_version = report.get("zarrs_version", self.zarrs_version)
        return report


# Implementations driven from this process, and all of them.
PyImpl = ZarrPipelineImpl | TensorstoreImpl | DirectImpl
Impl = PyImpl | RustImpl

# The shared list says which run with `codec_pipeline.strict` (and why).
_STRICT = {"codec_pipeline.strict": True}
_HARNESSES: dict[str, Callable[[Implementation], Impl]] = {
    "tensorstore": TensorstoreImpl, "direct": DirectImpl, "rust": RustImpl,
}


def _harness(spec: Implementation) -> Impl:
    if spec.kind == "pipeline":
        assert spec.pipeline is not None
        return ZarrPipelineImpl(spec.key, spec.label, spec.pipeline, _STRICT if spec.strict else None)
    return _HARNESSES[spec.kind](spec)


IMPLS: dict[str, Impl] = {spec.key: _harness(spec) for spec in IMPLEMENTATIONS}
