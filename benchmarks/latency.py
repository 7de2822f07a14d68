"""The object-storage benchmark: zarr implementations side by side over a network's latency.

Every implementation reads (and, on S3, writes) the same arrays through one latency-injecting
proxy on 127.0.0.1 (`tests/proxy.py`): each response starts ``--delay`` seconds after its
request arrived, each connection optionally capped to ``--bandwidth`` bytes/s. Behind the
proxy (one per backend): the HTTP file server of `tests/servers.py` (no delay of its own),
moto's S3 server, gcp-storage-emulator for GCS and our Azure Blob server (`tests/servers.py`
starts them all).

    python benchmarks/latency.py --dir /dev/shm [--delay 0.02] [--bandwidth B] [--rounds 5]
        [--lib LIB.so] [--lib-b OTHER.so] [--backend http s3 gcs azure] [--quick] [--json OUT.json]

Per op and implementation: the median time of ``--rounds`` interleaved rounds, and the
requests, body bytes and most requests in flight the proxy counted in that median round;
per op the floor: the rounds of requests it needs x delay (plus, when capped, its largest
object / bandwidth). Every value read is checked against the data written (a mismatch is
printed instead of a time); every write is read back once. Ours through zarr must reach
every store natively: a cell where the bytes moved through Python says so (**not native**).

Our library runs in a child process per build (``--lib``, and ``--lib-b`` for an A/B of two
builds in one run), so two builds are never loaded into one process; the peers run in this
process. ``--quick`` is the smoke test: a 64^3 array, one round.

A new backend is one more entry in ``BACKENDS``, its server started in ``run`` and, per
implementation, the store it opens there (``_zarr_store``, ``_tensorstore_kvstore``,
``_direct_url``); an implementation without one (tensorstore on Azure) prints ``n/a`` for it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

BUCKET = "bench"
GCS_TOKEN = "bench-token"
REGION = "us-east-1"
LAYOUTS = ("chunked", "sharded")
OPS = ("read all", "box", "inner chunk cold", "inner chunk warm", "oindex 16 rows", "vindex 16 points", "write all")
BATCHED = "zarr.core.codec_pipeline.BatchedCodecPipeline"


@dataclass(frozen=True)
class Geometry:
    size: int
    chunk: int
    shard: int

    def box(self) -> tuple[slice, ...]:
        # 100:160 of 256: crosses the middle shard boundary on every axis (8 shards in part).
        lo, hi = self.size * 100 // 256, self.size * 160 // 256
        return (slice(lo, hi),) * 3

    def inner(self, i: int) -> tuple[slice, ...]:
        """Inner chunk (i, 1, 1): i = 1 and 2 are in the first shard, away from its edges."""
        c = self.chunk
        return (slice(i * c, (i + 1) * c), slice(c, 2 * c), slice(c, 2 * c))

    def rows(self) -> np.ndarray:
        return np.sort(np.random.default_rng(1).choice(self.size, 16, replace=False))

    def points(self) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(2)
        return tuple(rng.integers(0, self.size, 16) for _ in range(3))


FULL = Geometry(256, 32, 128)
QUICK = Geometry(64, 8, 32)

#: Rounds of requests each op needs at least, past the array's opening (cold: with it):
#: a sharded read in part needs the shard index first, then the inner chunks; warm, the
#: index of that shard is known from the read before.
ROUNDS = {
    "chunked": {"read all": 1, "box": 1, "inner chunk cold": 2, "inner chunk warm": 1,
                "oindex 16 rows": 1, "vindex 16 points": 1, "write all": 1},
    "sharded": {"read all": 1, "box": 2, "inner chunk cold": 3, "inner chunk warm": 1,
                "oindex 16 rows": 2, "vindex 16 points": 2, "write all": 1},
}
#: Backends that serve no suffix ranges (Azure): a shard's index, read before its size is
#: known, needs a size request first, one round more.
NO_SUFFIX_RANGES = ("azure",)


def rounds(backend: str, layout: str, op: str) -> int:
    """The rounds of requests ``op`` needs at least on ``backend``."""
    needs_index = layout == "sharded" and op not in ("read all", "write all", "inner chunk warm")
    return ROUNDS[layout][op] + (1 if needs_index and backend in NO_SUFFIX_RANGES else 0)


#: Ops that move whole stored objects (chunks, or whole shards); the others move inner chunks.
WHOLE_OBJECT_OPS = ("read all", "write all")


def selection(op: str, geometry: Geometry) -> tuple[str, Any]:
    """What an op reads: ("box", slices) | ("oindex", key) | ("vindex", key)."""
    if op in ("read all", "write all"):
        return "box", (slice(None),) * 3
    if op == "box":
        return "box", geometry.box()
    if op == "inner chunk cold":
        return "box", geometry.inner(1)
    if op == "inner chunk warm":
        return "box", geometry.inner(2)
    if op == "oindex 16 rows":
        return "oindex", (geometry.rows(), slice(None), 5)
    if op == "vindex 16 points":
        return "vindex", geometry.points()
    raise ValueError(f"unknown op {op!r}")


def data_for(geometry: Geometry) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 1000, (geometry.size,) * 3, dtype="uint16")


def digest(values: np.ndarray) -> str:
    values = np.ascontiguousarray(values)
    return hashlib.blake2b(f"{values.shape}{values.dtype}".encode() + values.tobytes(), digest_size=16).hexdigest()


def expected_digest(data: np.ndarray, op: str, geometry: Geometry) -> str:
    kind, key = selection(op, geometry)
    if kind == "oindex":
        return digest(data[key[0]][:, :, key[2]])
    return digest(data[key])


# --- Backends: where an implementation finds the arrays, as plain data a child can take ---

#: name -> writable. Each has a proxy in front of it: the HTTP file server of `tests/servers.py`,
#: moto's S3 server, gcp-storage-emulator (with `tests/gcs_server.py`'s XML API) and our Azure
#: Blob server (`tests/azure_server.py`: no Azure emulator can be installed here).
BACKENDS = {"http": False, "s3": True, "gcs": True, "azure": True}


def array_path(layout: str, op: str, impl: str) -> str:
    return f"w-{impl.replace(' ', '_').replace('(', '').replace(')', '')}-{layout}.zarr" if op == "write all" else f"{layout}.zarr"


def _azure_connection_string(backend: dict[str, Any]) -> str:
    """adlfs's way to the account behind the proxy (path-style: the account in the URL)."""
    return (f"DefaultEndpointsProtocol=http;AccountName={backend['account']};AccountKey={backend['key']};"
            f"BlobEndpoint={backend['url']}/{backend['account']};")


def _gcsfs_options(backend: dict[str, Any]) -> dict[str, Any]:
    """gcsfs's way to the emulator behind the proxy, with its bearer token."""
    from google.oauth2.credentials import Credentials

    return {"endpoint_url": backend["url"], "token": Credentials(token=backend["token"])}


def _zarr_store(backend: dict[str, Any], path: str, flavour: str, *, writable: bool) -> Any:
    """A zarr store on ``path`` through the proxy: fsspec's or obstore's."""
    from zarr.storage import FsspecStore, ObjectStore

    name = backend["name"]
    if flavour == "fsspec":
        if name == "http":
            return FsspecStore.from_url(f"{backend['url']}/{path}", read_only=True,
                                        storage_options={"skip_instance_cache": True})
        if name == "s3":
            options = {"key": backend["key"], "secret": backend["secret"], "endpoint_url": backend["url"],
                       "client_kwargs": {"region_name": REGION}, "skip_instance_cache": True}
            return FsspecStore.from_url(f"s3://{BUCKET}/{path}", storage_options=options, read_only=not writable)
        if name == "gcs":
            options = {**_gcsfs_options(backend), "skip_instance_cache": True}
            return FsspecStore.from_url(f"gs://{BUCKET}/{path}", storage_options=options, read_only=not writable)
        if name == "azure":
            options = {"connection_string": _azure_connection_string(backend), "skip_instance_cache": True}
            return FsspecStore.from_url(f"az://{BUCKET}/{path}", storage_options=options, read_only=not writable)
    else:
        from obstore.store import AzureStore, GCSStore, HTTPStore, S3Store

        client_options = {"allow_http": True}
        if name == "http":
            return ObjectStore(HTTPStore.from_url(f"{backend['url']}/{path}", client_options=client_options),
                               read_only=True)
        if name == "s3":
            store = S3Store(BUCKET, prefix=path, endpoint=backend["url"], access_key_id=backend["key"],
                            secret_access_key=backend["secret"], region=REGION, client_options=client_options)
            return ObjectStore(store, read_only=not writable)
        if name == "gcs":
            store = GCSStore(BUCKET, prefix=path, base_url=backend["url"], bearer_token=backend["token"],
                             client_options=client_options)
            return ObjectStore(store, read_only=not writable)
        if name == "azure":
            store = AzureStore(BUCKET, prefix=path, account_name=backend["account"], account_key=backend["key"],
                               endpoint=f"{backend['url']}/{backend['account']}", client_options=client_options)
            return ObjectStore(store, read_only=not writable)
    raise NotImplementedError(f"no {flavour} store for {name}")


def _tensorstore_kvstore(backend: dict[str, Any], path: str) -> dict[str, Any]:
    if backend["name"] == "http":
        return {"driver": "http", "base_url": backend["url"], "path": f"/{path}/"}
    if backend["name"] == "s3":
        return {"driver": "s3", "bucket": BUCKET, "path": f"{path}/", "endpoint": backend["url"],
                "aws_region": REGION, "aws_credentials": {"type": "environment"}}
    if backend["name"] == "gcs":
        # tensorstore's gcs driver takes its server from the environment only (read once per
        # process, so one GCS backend per run) and a fixed token for it (the emulator takes any).
        if os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", backend["url"]) != backend["url"]:
            raise NotImplementedError("tensorstore reads TENSORSTORE_GCS_HTTP_URL once: set to another server")
        os.environ.setdefault("GOOGLE_AUTH_TOKEN_FOR_TESTING", backend["token"])
        os.environ.setdefault("TENSORSTORE_GCS_HTTP_VERSION", "1.1")
        return {"driver": "gcs", "bucket": BUCKET, "path": f"{path}/"}
    raise NotImplementedError(f"tensorstore has no {backend['name']} kvstore")


def _direct_url(backend: dict[str, Any], path: str) -> tuple[str, dict[str, Any] | None]:
    name = backend["name"]
    if name == "http":
        return f"{backend['url']}/{path}", None
    if name == "s3":
        return f"s3://{BUCKET}/{path}", {"key": backend["key"], "secret": backend["secret"],
                                        "endpoint_url": backend["url"], "client_kwargs": {"region_name": REGION}}
    if name == "gcs":
        return f"gs://{BUCKET}/{path}", _gcsfs_options(backend)
    if name == "azure":
        return f"az://{BUCKET}/{path}", {"connection_string": _azure_connection_string(backend)}
    raise NotImplementedError(f"the direct API has no URL for {name}")


# --- Implementations: open, read a selection, write all ---


class Impl:
    key: str
    label: str

    def open(self, backend: dict[str, Any], path: str, *, writable: bool) -> Any:
        raise NotImplementedError

    def read(self, handle: Any, kind: str, key: Any) -> np.ndarray:
        return np.asarray(getattr(handle, kind)[key] if kind != "box" else handle[key])

    def write(self, handle: Any, data: np.ndarray) -> None:
        handle[:, :, :] = data

    def python_io(self, handle: Any) -> str | None:
        """Why ours moved the bytes through Python rather than natively (None: natively, or
        not ours)."""
        return None


class ZarrImpl(Impl):
    """zarr.Array over a store, with a codec pipeline chosen while it is opened and used."""

    def __init__(self, key: str, label: str, pipeline: str, flavour: str) -> None:
        self.key, self.label, self.pipeline, self.flavour = key, label, pipeline, flavour
        self.fresh = True

    def _config(self) -> Any:
        import zarr

        settings: dict[str, Any] = {"codec_pipeline.path": self.pipeline}
        if self.fresh and self.pipeline.startswith("zarrs_cffi."):
            # Our arrays opened again in one process share one native handle, and so its
            # shard-index cache: a fresh open empties it, as a fresh process would have it.
            settings["codec_pipeline.shard_index_cache_bytes"] = 0
        return zarr.config.set(settings)

    def open(self, backend: dict[str, Any], path: str, *, writable: bool) -> Any:
        import zarr

        if self.pipeline == "zarrs.ZarrsCodecPipeline" and backend["name"] == "gcs":
            # It builds its own object_store client from the store's settings.
            raise NotImplementedError("zarrs-python takes no GCS base_url or bearer_token: it cannot reach the emulator")
        with self._config():
            store = _zarr_store(backend, path, self.flavour, writable=writable)
            return zarr.open_array(store, mode="r+" if writable else "r", zarr_format=3)

    def read(self, handle: Any, kind: str, key: Any) -> np.ndarray:
        with self._config():
            return super().read(handle, kind, key)

    def write(self, handle: Any, data: np.ndarray) -> None:
        with self._config():
            handle[:, :, :] = data

    def python_io(self, handle: Any) -> str | None:
        if not self.pipeline.startswith("zarrs_cffi."):
            return None
        pipeline = handle.async_array.codec_pipeline
        native = pipeline.native
        if native is None:
            return f"not native at all: {pipeline.reason}"
        return None if native.python_io is None else f"the bytes moved through Python: {native.python_io}"


class TensorstoreImpl(Impl):
    key, label = "tensorstore", "tensorstore"

    def open(self, backend: dict[str, Any], path: str, *, writable: bool) -> Any:
        import tensorstore as ts

        # A context of its own: a fresh open shares no cached metadata or connections.
        spec = {"driver": "zarr3", "kvstore": _tensorstore_kvstore(backend, path)}
        return ts.open(spec, read=True, write=writable, context=ts.Context()).result()

    def read(self, handle: Any, kind: str, key: Any) -> np.ndarray:
        view = handle[key] if kind == "box" else getattr(handle, kind)[key]
        return np.asarray(view.read().result())

    def write(self, handle: Any, data: np.ndarray) -> None:
        handle.write(data).result()


class DirectImpl(Impl):
    def __init__(self, key: str, label: str) -> None:
        self.key, self.label = key, label

    def open(self, backend: dict[str, Any], path: str, *, writable: bool) -> Any:
        import zarrs_cffi

        url, options = _direct_url(backend, path)
        return zarrs_cffi.Array.open(url, read_only=not writable, storage_options=options)


def peer_impls() -> list[Impl]:
    impls: list[Impl] = [
        ZarrImpl("zarr-fsspec", "zarr + fsspec", BATCHED, "fsspec"),
        ZarrImpl("zarr-obstore", "zarr + obstore", BATCHED, "obstore"),
        ZarrImpl("zarrs-python", "zarrs-python (obstore)", "zarrs.ZarrsCodecPipeline", "obstore"),
        TensorstoreImpl(),
    ]
    return impls


def our_impls(suffix: str) -> list[Impl]:
    return [
        ZarrImpl(f"ours{suffix}", f"ours{suffix} (zarr + obstore)", "zarrs_cffi.ZarrsCodecPipeline", "obstore"),
        DirectImpl(f"direct{suffix}", f"ours{suffix} (direct)"),
    ]


class Runner:
    """Runs one round of one op of one implementation in two steps, so that the proxy's
    counts can be cleared between them: ``prepare`` (open, and for the warm op the read
    before) and ``timed`` (cold: the open too)."""

    def __init__(self, impls: list[Impl]) -> None:
        self.impls = {impl.key: impl for impl in impls}
        self.pending: Any = None

    def prepare(self, impl_key: str, backend: dict[str, Any], layout: str, op: str, geometry: Geometry) -> None:
        impl = self.impls[impl_key]
        path = array_path(layout, op, impl_key)
        writable = op == "write all"
        if isinstance(impl, ZarrImpl):
            impl.fresh = op != "inner chunk warm"
        if op == "inner chunk cold":
            self.pending = (backend, path)
            return
        if op == "inner chunk warm":
            handle = impl.open(backend, path, writable=False)
            impl.read(handle, "box", geometry.inner(1))
        else:
            # Opened afresh for every round: nothing an earlier op read (a shard index an
            # implementation keeps) may spare this one a request.
            handle = impl.open(backend, path, writable=writable)
        self.pending = handle

    def timed(
        self, impl_key: str, op: str, geometry: Geometry, data: np.ndarray | None
    ) -> tuple[float, str | None, str | None]:
        """The seconds, the digest of the values read, and why ours moved bytes through
        Python (None: natively)."""
        impl = self.impls[impl_key]
        kind, key = selection(op, geometry)
        start = time.perf_counter()
        if op == "inner chunk cold":
            backend, path = self.pending
            handle = impl.open(backend, path, writable=False)
            values = impl.read(handle, kind, key)
        elif op == "write all":
            assert data is not None
            handle = self.pending
            impl.write(handle, data)
            values = None
        else:
            handle = self.pending
            values = impl.read(handle, kind, key)
        seconds = time.perf_counter() - start
        self.pending = None
        return seconds, None if values is None else digest(values), impl.python_io(handle)


def _impls(group: str, keys: list[str]) -> list[Impl]:
    """The implementations of a child: "peers" (those in ``keys``, or all), or ours with a
    suffix ("ours", "ours B")."""
    if group == "peers":
        return [impl for impl in peer_impls() if impl.key in keys or not keys]
    return our_impls(group[len("ours"):])


def _worker(connection: Any, lib: str | None, group: str, keys: list[str], geometry: Geometry) -> None:
    """A child process running some implementations (ours: with one build of the library)."""
    version = ""
    if group != "peers":
        if lib:
            import zarrs_cffi._bindings.library as library

            library.library_path = lambda: Path(lib).resolve()  # type: ignore[assignment]
        import zarrs_cffi

        version = zarrs_cffi.__version__
    runner = Runner(_impls(group, keys))
    data = data_for(geometry)
    connection.send(("ready", version))
    while True:
        message = connection.recv()
        if message is None:
            return
        step, args = message
        try:
            if step == "prepare":
                runner.prepare(*args, geometry)
                connection.send(("ok", None))
            else:
                impl_key, op = args
                connection.send(("ok", runner.timed(impl_key, op, geometry, data if op == "write all" else None)))
        except NotImplementedError as error:
            connection.send(("n/a", str(error)))
        except Exception as error:  # noqa: BLE001 - reported as the cell's problem, the run goes on
            connection.send(("error", f"{type(error).__name__}: {error}"))


class Child:
    """Implementations in a child process: the peers in one, ours in one per build.

    Every implementation runs outside the process of the proxy and the HTTP server: a
    pipeline that holds the GIL while it waits for its I/O (zarrs-python does) would
    otherwise stop the servers it waits for."""

    def __init__(self, lib: str | None, group: str, keys: list[str], geometry: Geometry) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=_worker, args=(theirs, lib, group, keys, geometry), daemon=True)
        self.process.start()
        status, self.version = self.connection.recv()
        self.impls = _impls(group, keys)
        self.group = group
        self.lib = lib

    def call(self, step: str, *args: Any) -> Any:
        self.connection.send((step, args))
        status, value = self.connection.recv()
        if status == "n/a":
            raise NotImplementedError(value)
        if status == "error":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.connection.send(None)
        self.process.join(30)


# --- Setting up the arrays and the servers ---


def write_arrays(directory: Path, geometry: Geometry, data: np.ndarray) -> None:
    import zarr
    from zarr.codecs import ZstdCodec

    with zarr.config.set({"codec_pipeline.path": BATCHED}):
        for layout in LAYOUTS:
            shards = (geometry.shard,) * 3 if layout == "sharded" else None
            array = zarr.create_array(directory / f"{layout}.zarr", shape=data.shape, chunks=(geometry.chunk,) * 3,
                                      shards=shards, dtype="uint16", compressors=[ZstdCodec()])
            array[:] = data


def largest_objects(directory: Path) -> dict[str, int]:
    """Per layout, the largest stored chunk or shard; "inner": the largest chunk (an inner
    chunk of the sharded layout encodes as the chunked layout's chunk of the same place)."""
    sizes = {layout: max(p.stat().st_size for p in (directory / f"{layout}.zarr" / "c").rglob("*") if p.is_file())
             for layout in LAYOUTS}
    sizes["inner"] = sizes["chunked"]
    return sizes


def upload(directory: Path, server: Any, impls: list[Impl], geometry: Geometry) -> None:
    """The arrays' files into the bucket, and an empty array per writer (straight to the
    server, not through the proxy)."""
    import obstore
    import zarr
    from zarr.codecs import ZstdCodec
    from zarr.storage import ObjectStore

    # Azure's buckets are containers.
    (getattr(server, "create_container", None) or server.create_bucket)(BUCKET)
    store = server.obstore(BUCKET)
    for layout in LAYOUTS:
        for path in (directory / f"{layout}.zarr").rglob("*"):
            if path.is_file():
                obstore.put(store, str(path.relative_to(directory)), path.read_bytes())
    with zarr.config.set({"codec_pipeline.path": BATCHED}):
        for layout in LAYOUTS:
            for impl in impls:
                shards = (geometry.shard,) * 3 if layout == "sharded" else None
                zarr.create_array(ObjectStore(server.obstore(BUCKET, array_path(layout, "write all", impl.key))),
                                  shape=(geometry.size,) * 3, chunks=(geometry.chunk,) * 3, shards=shards,
                                  dtype="uint16", compressors=[ZstdCodec()], overwrite=True)


def read_back(server: Any, path: str) -> str:
    import zarr
    from zarr.storage import ObjectStore

    with zarr.config.set({"codec_pipeline.path": BATCHED}):
        return digest(zarr.open_array(ObjectStore(server.obstore(BUCKET, path), read_only=True), mode="r")[:])


# --- Running and reporting ---


@dataclass
class Sample:
    seconds: float
    requests: int
    bytes: int
    in_flight: int


@dataclass
class Cell:
    status: str  # "ok", "n/a", "error", "MISMATCH"
    samples: list[Sample]
    detail: str = ""
    #: Set when ours moved bytes through Python where it should have reached the store itself.
    warning: str = ""

    def median(self) -> Sample | None:
        if self.status != "ok" or not self.samples:
            return None
        ordered = sorted(self.samples, key=lambda s: s.seconds)
        middle = ordered[(len(ordered) - 1) // 2]
        return Sample(statistics.median(s.seconds for s in self.samples), middle.requests, middle.bytes, middle.in_flight)


def floor_seconds(
    backend: str, layout: str, op: str, delay: float, bandwidth: float | None, largest: dict[str, int]
) -> float:
    seconds = rounds(backend, layout, op) * delay
    if bandwidth:
        seconds += largest[layout if op in WHOLE_OBJECT_OPS else "inner"] / bandwidth
    return seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    from proxy import latency_proxy
    from servers import azure_blob_server, gcs_emulator, http_server, moto_s3

    geometry = QUICK if args.quick else FULL
    data = data_for(geometry)
    expected = {op: expected_digest(data, op, geometry) for op in OPS if op != "write all"}
    expected["write all"] = digest(data)
    # tensorstore's "environment" credentials (moto accepts any), set before the children start.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    # gcsfs first asks GCS's control plane (gRPC, TLS) what kind of bucket it has: the
    # emulator has none, and every first use would wait for it.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    peers = Child(None, "peers", args.impl, geometry)
    children = [Child(args.lib, "ours", [], geometry)]
    if args.lib_b:
        children.append(Child(args.lib_b, "ours B", [], geometry))
    impls = [(impl, child) for child in (peers, *children) for impl in child.impls]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        write_arrays(directory, geometry, data)
        largest = largest_objects(directory)
        for backend_name in args.backend:
            if backend_name == "http":
                server = None
                # With ETags, as nginx and object stores serve files (Python's own server
                # gives none, and our shard-index cache caches nothing without one).
                upstream = stack.enter_context(http_server(directory, etags=True))
                info: dict[str, Any] = {"name": "http"}
            elif backend_name == "s3":
                server = stack.enter_context(moto_s3())
                upload(directory, server, [impl for impl, _ in impls], geometry)
                upstream = server.endpoint
                info = {"name": "s3", "key": server.key, "secret": server.secret}
            elif backend_name == "gcs":
                # Every request signed with a bearer token, which the emulator checks.
                server = stack.enter_context(gcs_emulator(tokens=(GCS_TOKEN,)))
                upload(directory, server, [impl for impl, _ in impls], geometry)
                upstream = server.endpoint
                info = {"name": "gcs", "token": GCS_TOKEN}
            elif backend_name == "azure":
                server = stack.enter_context(azure_blob_server())
                upload(directory, server, [impl for impl, _ in impls], geometry)
                # The proxy fronts the server, not the account: the account stays in the path.
                upstream = server.endpoint.rsplit("/", 1)[0]
                info = {"name": "azure", "account": server.account, "key": server.key}
            else:
                raise SystemExit(f"unknown backend {backend_name!r}: one of {', '.join(BACKENDS)}")
            proxy = stack.enter_context(latency_proxy(upstream, delay=args.delay, bandwidth=args.bandwidth))
            info["url"] = proxy.url
            for layout in LAYOUTS:
                for op in OPS:
                    if op == "write all" and not BACKENDS[backend_name]:
                        continue
                    cells = {impl.key: Cell("ok", []) for impl, _ in impls}
                    for round_index in range(args.rounds):
                        # Interleaved, and each round starting one implementation later.
                        order = impls[round_index % len(impls):] + impls[:round_index % len(impls)]
                        for impl, child in order:
                            cell = cells[impl.key]
                            if cell.status != "ok":
                                continue
                            try:
                                child.call("prepare", impl.key, info, layout, op)
                                proxy.reset()
                                seconds, values, python_io = child.call("timed", impl.key, op)
                                stats = proxy.reset()
                            except NotImplementedError as error:
                                cell.status, cell.detail = "n/a", str(error)
                                continue
                            except Exception as error:  # noqa: BLE001 - the cell says what failed
                                cell.status, cell.detail = "error", f"{type(error).__name__}: {error}".splitlines()[0][:300]
                                if args.verbose:
                                    traceback.print_exc()
                                continue
                            if op == "write all" and round_index == 0:
                                try:
                                    values = read_back(server, array_path(layout, op, impl.key))
                                except Exception as error:  # noqa: BLE001 - the cell says what failed
                                    cell.status = "error"
                                    cell.detail = f"reading the write back: {type(error).__name__}: {error}"[:300]
                                    continue
                            if python_io:
                                cell.warning = python_io
                            if values is not None and values != expected[op]:
                                cell.status, cell.detail = "MISMATCH", "the values differ from the data written"
                            cell.samples.append(Sample(seconds, stats.count, stats.request_bytes + stats.response_bytes,
                                                       stats.most_in_flight))
                    results[f"{backend_name}/{layout}/{op}"] = {
                        "floor": floor_seconds(backend_name, layout, op, args.delay, args.bandwidth, largest),
                        "cells": cells,
                    }
                    if args.verbose:
                        print(f"done {backend_name}/{layout}/{op}", file=sys.stderr)
    for child in (peers, *children):
        child.close()
    return {"impls": impls, "children": children, "results": results, "geometry": geometry, "largest": largest}


def render(args: argparse.Namespace, outcome: dict[str, Any]) -> str:
    import zarr

    impls: list[tuple[Impl, Child]] = outcome["impls"]
    geometry: Geometry = outcome["geometry"]
    notes: list[str] = []

    def problem(cell: Cell, where: str) -> str:
        if cell.status == "n/a":
            return "n/a"
        notes.append(f"[{len(notes) + 1}] {where}: {cell.detail}")
        return f"{'**MISMATCH**' if cell.status == 'MISMATCH' else cell.status} [{len(notes)}]"

    cap = f", each connection capped at {args.bandwidth:.0f} B/s" if args.bandwidth else ""
    lines = [
        "# Object storage over a network's latency",
        "",
        f"{geometry.size}^3 uint16, {geometry.chunk}^3 zstd chunks, unsharded (`chunked`) and in "
        f"{geometry.shard}^3 shards (`sharded`); every request through a proxy answering after "
        f"{args.delay * 1000:g} ms{cap}; median of {args.rounds} interleaved rounds. Load average at the end: "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores.",
        "",
        "Implementations:",
        "",
    ]
    versions = {"zarr": zarr.__version__}
    for module in ("tensorstore", "zarrs", "obstore", "fsspec", "s3fs", "gcsfs", "adlfs"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for child in outcome["children"]:
        lines.append(f"- {child.group}: zarrs_cffi {child.version}, library {child.lib or 'the package`s own'} "
                     "(a child process of its own)")
    lines.append("- the peers run in one child process, ours in one per build; the proxies and the HTTP and Azure "
                 "servers in the parent (moto and the GCS emulator in children of their own)")
    lines.append("- zarrs-python has no native oindex/vindex: those cells time its fallback to zarr's pipeline")
    by_section: dict[tuple[str, str], list[str]] = {}
    for name in outcome["results"]:
        backend, layout, op = name.split("/")
        by_section.setdefault((backend, layout), []).append(op)
    labels = [impl.label for impl, _ in impls]
    for (backend, layout), ops in by_section.items():
        time_rows, count_rows = [], []
        for op in ops:
            entry = outcome["results"][f"{backend}/{layout}/{op}"]
            cells: dict[str, Cell] = entry["cells"]
            peer = cells.get("tensorstore")
            peer_median = peer.median() if peer else None
            times, counts = [], []
            for impl, _ in impls:
                cell = cells[impl.key]
                median = cell.median()
                if median is None:
                    text = problem(cell, f"{backend} / {layout} / {op} / {impl.label}")
                    times.append(text)
                    counts.append(text)
                    continue
                ratio = f" ({median.seconds / peer_median.seconds:.2f}x)" if peer_median else ""
                if cell.warning:
                    notes.append(f"[{len(notes) + 1}] WARNING {backend} / {layout} / {op} / {impl.label}: "
                                 f"{cell.warning}")
                    ratio += f" **not native** [{len(notes)}]"
                times.append(f"{median.seconds * 1000:.0f}{ratio}")
                counts.append(f"{median.requests} / {median.bytes / 1024:.0f} / {median.in_flight}")
            floor = f"{entry['floor'] * 1000:.0f}"
            time_rows.append([op, f"{rounds(backend, layout, op)}", floor, *times])
            count_rows.append([op, *counts])
        lines += ["", f"## {backend}, {layout}: ms (ratio to tensorstore; lower is faster)", ""]
        lines += _table(["op", "rounds", "floor ms", *labels], time_rows)
        lines += ["", f"### {backend}, {layout}: requests / KiB of bodies / most in flight (of the median round)", ""]
        lines += _table(["op", *labels], count_rows)
    if notes:
        lines += ["", "## Problems", "", *notes]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def as_json(outcome: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"impls": {impl.key: impl.label for impl, _ in outcome["impls"]}, "results": {}}
    for name, entry in outcome["results"].items():
        cells = {}
        for key, cell in entry["cells"].items():
            median = cell.median()
            cells[key] = {"status": cell.status, "detail": cell.detail, "warning": cell.warning,
                          **({"seconds": median.seconds, "requests": median.requests, "bytes": median.bytes,
                              "in_flight": median.in_flight} if median else {})}
        out["results"][name] = {"floor": entry["floor"], "cells": cells}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", default=None, help="where the arrays are written (a tmpfs, e.g. /dev/shm)")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds before each response starts")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/s per connection, each way")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lib", default=None, help="the native library to load instead of the package's")
    parser.add_argument("--lib-b", default=None, help="a second build, run as rows of its own")
    parser.add_argument("--backend", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--impl", nargs="*", default=[], help="peers to run (default all): "
                        + ", ".join(impl.key for impl in peer_impls()))
    parser.add_argument("--quick", action="store_true", help="a 64^3 array, one round: a smoke test")
    parser.add_argument("--json", default=None, help="also write the medians to this file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    if args.delay < 0:
        parser.error(f"--delay must be at least 0, not {args.delay}")
    if args.bandwidth is not None and args.bandwidth <= 0:
        parser.error(f"--bandwidth must be a positive number of bytes per second, not {args.bandwidth}")
    for name in (args.lib, args.lib_b):
        if name and not Path(name).is_file():
            parser.error(f"no library file at {name}")
    known = {impl.key for impl in peer_impls()}
    if set(args.impl) - known:
        parser.error(f"unknown --impl {sorted(set(args.impl) - known)}: known are {sorted(known)}")
    outcome = run(args)
    print(render(args, outcome), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(outcome), indent=1))


if __name__ == "__main__":
    main()
