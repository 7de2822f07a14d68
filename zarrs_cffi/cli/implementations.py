"""The implementations our pipeline is measured against: the one list that both
``zarrs-cffi bench`` and ``benchmarks/bench.py`` run from.

Each entry says what an implementation is called, how it is reached (a zarr codec pipeline
named by ``codec_pipeline.path``, tensorstore's own API, our direct API, or zarrs from Rust)
and which optional distribution it needs. How to time it is each harness's business: the
command line reads one region of a user's array, the benchmark runs every operation on
its own arrays. This module imports the standard library only: knowing the list never
imports an implementation (the benchmark's preflight does that, in a child process).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["BATCHED", "FUSED", "IMPLEMENTATIONS", "OURS", "ZARRS_PYTHON", "Implementation", "for_cli",
           "installed", "tensorstore_spec"]

BATCHED = "zarr.core.codec_pipeline.BatchedCodecPipeline"
FUSED = "zarr.core.codec_pipeline.FusedCodecPipeline"
ZARRS_PYTHON = "zarrs.ZarrsCodecPipeline"
OURS = "zarrs_cffi.ZarrsCodecPipeline"


@dataclass(frozen=True)
class Implementation:
    """One implementation, as both harnesses name and reach it."""

    key: str
    """Its name in ``benchmarks/bench.py --impl``."""
    label: str
    """Its column in the benchmark's report."""
    kind: Literal["pipeline", "tensorstore", "direct", "rust"]
    pipeline: str | None = None
    """The ``codec_pipeline.path`` of a zarr codec pipeline (kind ``pipeline``)."""
    requires: str | None = None
    """The optional module it cannot run without (the CLI reports it "not installed")."""
    strict: bool = False
    """Run with ``codec_pipeline.strict``: zarrs-python's switch that turns its silent fallback
    to zarr's pipeline into an error, so an unsupported case is not timed as zarr's pipeline
    under its name. It changes no tuning; our pipeline honours the same key."""
    cli_name: str | None = None
    """Its name in ``zarrs-cffi bench``; None when the command line does not run it (it
    reads a user's array through zarr, or tensorstore, only)."""


IMPLEMENTATIONS: tuple[Implementation, ...] = (
    Implementation("batched", "zarr Batched", "pipeline", BATCHED, cli_name="zarr"),
    Implementation("fused", "zarr Fused", "pipeline", FUSED),
    Implementation("zarrs-python", "zarrs-python", "pipeline", ZARRS_PYTHON, requires="zarrs", strict=True,
                   cli_name="zarrs-python"),
    Implementation("ours", "ours (zarrs_cffi)", "pipeline", OURS, strict=True, cli_name="zarrs-cffi"),
    Implementation("tensorstore", "tensorstore", "tensorstore", requires="tensorstore", cli_name="tensorstore"),
    Implementation("ours-direct", "ours (direct)", "direct"),
    Implementation("zarrs-rust", "zarrs (Rust)", "rust"),
)


def for_cli() -> list[Implementation]:
    """What ``zarrs-cffi bench`` runs, in its order: zarr's pipeline first (every speed-up is
    over it, and its read is the reference the others are checked against), ours next, then
    the peers in the list's order."""
    chosen = [impl for impl in IMPLEMENTATIONS if impl.cli_name is not None]
    first = {BATCHED: 0, OURS: 1}
    return sorted(chosen, key=lambda impl: first.get(impl.pipeline or "", 2))


def installed(impl: Implementation) -> bool:
    """Whether the module ``impl`` needs can be imported (looked up, not imported)."""
    return impl.requires is None or importlib.util.find_spec(impl.requires) is not None


def tensorstore_spec(path: str, zarr_format: int = 3) -> dict[str, Any]:
    """tensorstore's spec for the array in the local directory ``path``."""
    return {"driver": "zarr3" if zarr_format == 3 else "zarr", "kvstore": {"driver": "file", "path": path}}
