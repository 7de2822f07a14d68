"""Sizes, limits and seeds of the benchmark, and the operations a run selected.

Every module reads these; only ``command.main`` sets ``SELECTED_OPERATIONS`` (and
``stores.STORE``), once, before anything is measured.
"""

from __future__ import annotations

import logging
from pathlib import Path

from zarrs_cffi.cli.implementations import BATCHED

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parents[2]
CRATE = REPO / "zarrs-ffi"

FULL_SIDE = 512
QUICK_SIDE = 256
# Preflight size: one full shard of 64 chunks, enough to reach every code path.
SMOKE_SIDE = 128
SMOKE_TIMEOUT_S = 300
BUILD_TIMEOUT_S = 1800
RUST_TIMEOUT_S = 3600
MEMORY_TIMEOUT_S = 1800
CHUNK = (32, 32, 32)
SHARD = (128, 128, 128)
BOX_SIDE = 16
N_SMALL_READS = 200
N_OINDEX = 64
N_VINDEX = 10_000
SEED = 0

# threading.max_workers=None is zarr's default; set it explicitly so that an
# environment override (ZARR_THREADING__MAX_WORKERS) cannot skew one run.
REFERENCE_CONFIG = {"codec_pipeline.path": BATCHED, "threading.max_workers": None}

OPERATIONS = ("write_all", "read_all", "small_reads", "oindex", "vindex")
SECTIONS = ("layouts", "memory", "minibatch", "open", "anndata")
FULL_MB_ROWS = 1_000_000
FULL_AD_OBS = 100_000
QUICK_AD_OBS = 20_000
AD_DENSITY = 0.015
AD_EMBEDDING = 50
QUICK_MB_ROWS = 100_000
MB_CHUNKS_PER_SHARD = 16
# The operations of this run (set by main).
SELECTED_OPERATIONS: tuple[str, ...] = OPERATIONS
