"""Shuffled mini-batches of rows over a network's latency: many batches in flight.

What an ML data loader does over object storage: read batches of random rows of a
(rows, columns) float32 array, several batches in flight from one thread, each batch one
gather of the chunks its rows fall in. Served by the HTTP file server of `tests/servers.py`
(with ETags) behind the latency proxy of `tests/proxy.py` (``--delay`` per request).

Per implementation and ``--in-flight`` value, the median over ``--rounds`` interleaved rounds
of the time to read ``--batches`` batches (a fresh shuffled order each round, the same for
every implementation), with the requests, most requests in flight and bytes the proxy
counted; and the floor, ``delay x ceil(batches / in_flight)``: each batch one round of
requests, ``in_flight`` of them overlapping. Implementations:

- ``direct read_async``: ``zarrs_cffi.Array.oindex`` batches through ``read_async`` on one
  event loop (``examples/minibatch_loader.py``'s loader);
- ``direct read_future``: the same through ``read_future``, from one plain thread;
- ``direct sync``: one batch after another (in flight 1 only);
- ``tensorstore``: ``store[rows, :].read()`` futures, when installed.

Every batch read is checked against the data written. Arrays: chunked (chunks of
``--chunk-rows`` rows, zstd) and sharded (16 chunks per shard, uncompressed inner chunks).

    python benchmarks/loader_latency.py --dir /dev/shm [--delay 0.02] [--rounds 5] [--quick] [--nginx]

With ``--nginx`` the files are served by nginx (from the PATH; Debian's ``nginx-light``)
instead of Python's threaded server, whose cost per request (a thread and a connection
each) is otherwise part of every figure once many requests are in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import socket
import subprocess
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

IN_FLIGHT = (1, 4, 16)
LAYOUTS = ("chunked", "sharded")


def write_arrays(directory: Path, rows: int, columns: int, chunk_rows: int) -> np.ndarray[Any, Any]:
    import zarr
    from zarr.codecs import ZstdCodec

    # Small integers as float32: compressible as measurements often are.
    data = np.random.default_rng(0).integers(0, 64, (rows, columns)).astype("float32")
    with zarr.config.set({"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
        for layout in LAYOUTS:
            sharded = layout == "sharded"
            z = zarr.create_array(
                directory / f"{layout}.zarr", shape=data.shape, dtype="float32",
                chunks=(chunk_rows, columns), shards=(16 * chunk_rows, columns) if sharded else None,
                compressors=None if sharded else ZstdCodec(level=1),
            )
            z[:] = data
    return data


@contextlib.contextmanager
def nginx(directory: str) -> Any:
    """nginx serving ``directory`` on a free port of 127.0.0.1 (ETags and ranges, as it
    serves files by default); yields its base URL."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        raise SystemExit("--nginx: no nginx on the PATH (Debian: apt-get install nginx-light)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="nginx-"))
    # Started as root, its workers would run as nobody, who cannot read a private temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(
        user + f"daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; keepalive_requests 100000; client_body_temp_path {work};\n"
        f"  proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work}; scgi_temp_path {work};\n"
        f"  server {{ listen 127.0.0.1:{port}; root {directory}; }} }}\n"
    )
    process = subprocess.Popen([binary, "-c", str(work / "nginx.conf"), "-p", str(work)])
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def batches_of(rows: int, batch: int, count: int, seed: int) -> list[np.ndarray[Any, Any]]:
    order = np.random.default_rng(seed).permutation(rows)
    return [np.sort(order[i * batch : (i + 1) * batch]) for i in range(count)]


def _direct_async(array: Any, batches: list[np.ndarray[Any, Any]], in_flight: int) -> list[np.ndarray[Any, Any]]:
    async def run() -> list[np.ndarray[Any, Any]]:
        gate = asyncio.Semaphore(in_flight)

        async def one(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            async with gate:
                return await array.read_async((rows, slice(None)))

        return list(await asyncio.gather(*(one(rows) for rows in batches)))

    return asyncio.run(run())


def _in_windows(start: Callable[[np.ndarray[Any, Any]], Any], wait: Callable[[Any], np.ndarray[Any, Any]],
                batches: list[np.ndarray[Any, Any]], in_flight: int) -> list[np.ndarray[Any, Any]]:
    """Keep ``in_flight`` reads started, collecting them in order."""
    pending: list[Any] = []
    done: list[np.ndarray[Any, Any]] = []
    for rows in batches:
        pending.append(start(rows))
        if len(pending) >= in_flight:
            done.append(wait(pending.pop(0)))
    done.extend(wait(p) for p in pending)
    return done


def readers(url: str, layout: str) -> dict[str, Callable[[list[np.ndarray[Any, Any]], int], list[np.ndarray[Any, Any]]]]:
    from zarrs_cffi import Array

    location = f"{url}/{layout}.zarr"
    direct = Array.open(location, read_only=True)
    found: dict[str, Callable[[list[np.ndarray[Any, Any]], int], list[np.ndarray[Any, Any]]]] = {
        "direct read_async": lambda batches, n: _direct_async(direct, batches, n),
        "direct read_future": lambda batches, n: _in_windows(
            lambda rows: direct.read_future((rows, slice(None))), lambda f: f.result(), batches, n),
        "direct sync": lambda batches, n: [direct.oindex[rows, :] for rows in batches],
    }
    try:
        import tensorstore as ts
    except ImportError:
        return found
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "http", "base_url": location}}).result()
    found["tensorstore"] = lambda batches, n: _in_windows(
        lambda rows: store[rows, :].read(), lambda f: f.result(), batches, n)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per request (default 0.02)")
    parser.add_argument("--rows", type=int, default=1 << 17)
    parser.add_argument("--columns", type=int, default=64)
    parser.add_argument("--chunk-rows", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16, help="rows per batch (default 16)")
    parser.add_argument("--batches", type=int, default=32, help="batches per round (default 32)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a small array, one round (a smoke test)")
    parser.add_argument("--nginx", action="store_true", help="serve the files with nginx instead of Python's server")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.chunk_rows, args.batches, args.rounds = 1 << 13, 256, 8, 1

    from proxy import latency_proxy
    from servers import http_server

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, contextlib.ExitStack() as stack:
        data = write_arrays(Path(tmp), args.rows, args.columns, args.chunk_rows)
        upstream = stack.enter_context(nginx(tmp) if args.nginx else http_server(tmp, etags=True))
        proxy = stack.enter_context(latency_proxy(upstream, delay=args.delay))
        print(f"{args.rows} x {args.columns} float32, chunks of {args.chunk_rows} rows; {args.batches} batches of "
              f"{args.batch} random rows per round; {args.delay * 1e3:.0f} ms per request; median of {args.rounds} rounds; "
              f"served by {'nginx' if args.nginx else 'Python'}\n")
        for layout in LAYOUTS:
            impls = readers(proxy.url, layout)
            # Warm: metadata read, connections open, shard indexes cached where that applies.
            for read in impls.values():
                read(batches_of(args.rows, args.batch, 2, seed=99), 2)
            samples: dict[tuple[str, int], list[tuple[float, int, int, int]]] = {}
            for round_index in range(args.rounds):
                batches = batches_of(args.rows, args.batch, args.batches, seed=round_index)
                for in_flight in IN_FLIGHT:
                    for name, read in impls.items():
                        if name == "direct sync" and in_flight != 1:
                            continue
                        proxy.reset()
                        start = time.perf_counter()
                        got = read(batches, in_flight)
                        seconds = time.perf_counter() - start
                        stats = proxy.reset()
                        for rows, values in zip(batches, got, strict=True):
                            if not np.array_equal(values, data[rows]):
                                raise SystemExit(f"{name}: a batch differs from the data written")
                        samples.setdefault((name, in_flight), []).append(
                            (seconds, stats.count, stats.most_in_flight, stats.response_bytes))
            print(f"### {layout}\n")
            print("| in flight | implementation | time ms | vs tensorstore | vs floor | requests | most in flight | MiB |")
            print("|---|---|---|---|---|---|---|---|")
            for in_flight in IN_FLIGHT:
                floor = args.delay * math.ceil(args.batches / in_flight)
                peer = samples.get(("tensorstore", in_flight))
                peer_time = statistics.median(s[0] for s in peer) if peer else None
                for name in impls:
                    runs = samples.get((name, in_flight))
                    if not runs:
                        continue
                    middle = sorted(runs)[len(runs) // 2]
                    seconds = statistics.median(s[0] for s in runs)
                    ratio = f"{seconds / peer_time:.2f}x" if peer_time else ""
                    over = f"{seconds / floor:.2f}x" if floor else ""
                    print(f"| {in_flight} | {name} | {seconds * 1e3:.0f} | {ratio} | {over} | "
                          f"{middle[1]} | {middle[2]} | {middle[3] / 2**20:.1f} |")
            print(f"\nfloor: {args.delay * 1e3:.0f} ms x ceil({args.batches} / in flight)\n")


if __name__ == "__main__":
    main()
