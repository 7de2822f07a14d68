"""Side-by-side benchmark of zarr codec pipelines and tensorstore.

Compares, in one run and on the same data:

* zarr's ``BatchedCodecPipeline`` (zarr's default) and ``FusedCodecPipeline``,
* zarrs-python's ``zarrs.ZarrsCodecPipeline``,
* this project's ``zarrs_cffi.ZarrsCodecPipeline``,
* tensorstore through its own API,
* this project's direct API, ``zarrs_cffi.Array`` ("ours (direct)"),
* zarrs itself, called from Rust ("zarrs (Rust)"): the cargo example
  ``zarrs-ffi/examples/bench_zarrs.rs``, built here with ``cargo build --release
  --example bench_zarrs`` (or given with ``--zarrs-bin``), timed inside the binary
  and reporting JSON; its read results go through a file so they are checked here.
  (It reuses the dependency builds of ``scripts/setup``'s library; it leaves
  ``target/release/libzarrs_ffi.so`` as it was.)

on four layouts of a 512^3 uint16 array (chunked zstd, sharded zstd, chunked
blosc-lz4, sharded uncompressed) for five operations: ``write_all``,
``read_all``, ``small_reads`` (200 random 16^3 boxes), ``oindex`` (64 random
sorted indices along the first axis, every element of the other two) and
``vindex`` (10,000 random points), on one store: ``--store local`` (default),
``memory``, ``zip`` or ``s3`` (an S3-compatible moto server on 127.0.0.1,
reached through s3fs). The direct API and the Rust binary reach local files only.

Further sections (``--section``, all by default):

* ``memory``: peak RSS of a write-then-read roundtrip of each layout's array above
  the RSS once the source array is loaded, in a fresh process per implementation
  and layout, as a multiple of the array's bytes;
* ``minibatch``: a training-style loader, batches of 256 sorted random rows of a
  (1,000,000, 256) float32 array (chunks of 1024 rows, zstd, chunked and sharded)
  read with ``oindex``, by one reader and by 4 reader threads (``--mb-*`` flags
  size it; ``--quick`` uses 100,000 rows);
* ``open``: opening 300 small arrays one after another;
* ``anndata``: an AnnData of 100,000 cells x 2,000 genes (sparse float32 X, a dense
  embedding, obs/var frames with categoricals and strings) written with
  ``write_zarr`` (under --dir, whatever --store says), read back with ``read_zarr``, and
  opened with anndata's lazy reader from a MemoryStore copy, then one obs column and
  one block of X rows read (``--ad-*`` flags size it). Zarr codec pipelines only; needs
  ``anndata`` (benchmarks/requirements.txt), else reported unavailable.

Every implementation is optional: one that cannot be imported, or that crashes
in a small smoke run, is reported as "unavailable: <reason>", and one that
raises during a measurement is reported as an error in that cell. Every result
is checked against the source data; a mismatch is reported instead of a time.

Usage (install the project first, e.g. ``pip install -e .``, plus
``pip install -r benchmarks/requirements.txt``)::

    python benchmarks/bench.py                 # full run, 512^3
    python benchmarks/bench.py --quick         # 256^3 smoke run
    python benchmarks/bench.py --impl batched ours --layout zstd --out result.md
    python benchmarks/bench.py --store memory --quick
    python benchmarks/bench.py --quick --section minibatch --mb-rows 20000 --mb-batches 8

Progress goes to stderr; the markdown report goes to stdout (and to --out).
The exit status is 1 if any result differed from the source data.

This script is the entry point; the harness is the package ``bench_lib/`` beside it (one
module per section), and the implementations come from the list ``zarrs-cffi bench`` runs
too (``zarrs_cffi/cli/implementations.py``).

All arrays live in a fresh temporary directory (under --dir) that is removed
at the end. Reads hit the OS page cache, as every array was just written, but
writes pay for the filesystem: on a VM disk, writing the 4096 files of a
chunked layout can cost more than encoding them. ``--dir /dev/shm`` (tmpfs)
measures the codec pipelines without that; the report names the filesystem.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this directory is on sys.path already; loaded from a file (the tests,
# another tree's benchmark) it is not.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lib.anndata_rows import anndata_pipeline_as_configured, anndata_unavailable
from bench_lib.cells import Cell
from bench_lib.command import main
from bench_lib.data import LAYOUTS, Layout, fancy_selections, make_data, random_boxes, same
from bench_lib.impls import IMPLS
from bench_lib.report import render_report

__all__ = ["IMPLS", "LAYOUTS", "Cell", "Layout", "anndata_pipeline_as_configured", "anndata_unavailable",
           "fancy_selections", "main", "make_data", "random_boxes", "render_report", "same"]

if __name__ == "__main__":
    sys.exit(main())
