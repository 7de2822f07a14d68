"""The peak-memory section: peak RSS of a write-then-read roundtrip of each layout's array,
above the RSS once the source is loaded, one fresh process per measurement (the binary
itself for Rust), so no earlier allocation is counted."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np

from . import stores
from .cells import Cell, NotApplicable, describe
from .data import LAYOUTS, Layout, same, source_file
from .impls import IMPLS, Impl, RustImpl
from .settings import MEMORY_TIMEOUT_S


def proc_status_bytes(name: str) -> int | None:
    """``VmRSS`` or ``VmHWM`` of this process in bytes (None off Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return None


def _memory_child(impl_key: str, layout_name: str, store: str, source: str, shape: tuple[int, ...], path: str, metadata: dict, conn: Any) -> None:
    """Child body of measure_memory(): baseline once the source is loaded, then the roundtrip."""
    stores.STORE = stores.STORE_KINDS[store]()
    impl = IMPLS[impl_key]
    assert not isinstance(impl, RustImpl)  # measured by the binary itself
    try:
        impl.load()
        data = np.fromfile(source, dtype=np.uint16).reshape(shape)
        gc.collect()
        baseline = proc_status_bytes("VmRSS")
        try:
            # "5" resets the peak (VmHWM) to the current RSS (Linux 4.0+).
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # then the peak may include a higher one from before (imports)
        with impl.session():
            array = impl.create(Path(path), LAYOUTS[layout_name], shape, metadata)
            impl.write_all(array, data)
            del array
            result = impl.read_all(impl.open(Path(path)))
        peak = proc_status_bytes("VmHWM")
        if baseline is None or peak is None:
            raise NotImplementedError("needs /proc/self/status (Linux)")
        read_ok = same(result, data)
        del result
        # Checked here: a MemoryStore's array lives in this process only.
        written_ok = same(stores.read_with_reference(Path(path)), data)
        stores.STORE.remove(Path(path))
        conn.send((baseline, peak, read_ok, written_ok, None))
    except Exception as exc:  # reported as the cell
        conn.send((None, None, None, None, describe(exc)))


def measure_memory(impl: Impl, layout: Layout, data: np.ndarray, workdir: Path, metadata: dict) -> Cell:
    """Peak RSS of writing then reading the whole array, above the RSS once the source is
    loaded, as a multiple of the array's bytes; in a fresh process (the binary, for Rust).
    For a MemoryStore the peak includes the stored (encoded) array, which lives in that
    process."""
    if stores.STORE.name == "s3":
        raise NotApplicable("not measured on S3 (each process would need its own server)")
    path = workdir / f"{layout.name}-{impl.key}-memory"
    source = source_file(data, workdir)
    if isinstance(impl, RustImpl):
        report = impl.run({"mode": "memory", "source": str(source), "target": str(path), "metadata": metadata}, workdir)
        baseline, peak, read_ok = report["baseline_bytes"], report["peak_bytes"], report["read_matches_source"]
        written_ok = same(stores.read_with_reference(path), data)
        stores.STORE.remove(path)
    else:
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=_memory_child,
            args=(impl.key, layout.name, stores.STORE.name, str(source), data.shape, str(path), metadata, sender),
        )
        child.start()
        sender.close()
        try:
            if not receiver.poll(MEMORY_TIMEOUT_S):
                raise TimeoutError(f"no result within {MEMORY_TIMEOUT_S} s")
            baseline, peak, read_ok, written_ok, error = receiver.recv()
        except EOFError:
            raise RuntimeError(f"the measuring process died (exit code {child.exitcode})") from None
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()
        if error:
            raise RuntimeError(error)
    if not (read_ok and written_ok):
        what = "array read back with BatchedCodecPipeline" if not written_ok else "read of its own array"
        return Cell("MISMATCH", detail=f"{what} differs from source")
    return Cell("ok", (peak - baseline) / data.nbytes)
