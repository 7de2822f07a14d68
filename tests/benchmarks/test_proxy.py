"""The latency proxy of the object-storage benchmark (tests/proxy.py): what it counts, the
delay it adds to every request, its bandwidth cap.

Times here are only lower bounds (a sleep never ends early, a capped transfer never runs
ahead of its rate), so a loaded machine cannot fail them."""

from __future__ import annotations

import contextlib
import http.client
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy import LatencyProxy, latency_proxy  # noqa: E402
from servers import http_server  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "a.bin").write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    (tmp_path / "b.bin").write_bytes(b"x" * 100_000)
    return tmp_path


def _connection(proxy: LatencyProxy) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)


def test_counts_every_request_of_a_keep_alive_connection_and_its_body_bytes(files: Path) -> None:
    with http_server(files) as url, latency_proxy(url) as proxy:
        connection = _connection(proxy)
        bodies = []
        for method, path, headers in [("GET", "/a.bin", {}), ("GET", "/a.bin", {"Range": "bytes=100-199"}),
                                      ("HEAD", "/b.bin", {}), ("GET", "/missing", {}), ("GET", "/b.bin", {})]:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            bodies.append((response.status, len(response.read())))
        # One client connection carried all five, though the server closes after each
        # response (HTTP/1.0): the proxy reconnected upstream, the client never had to.
        assert connection.sock is not None
        connection.close()
        stats = proxy.stats()
    assert [s for s, _ in bodies] == [200, 206, 200, 404, 200]
    assert [(r.method, r.target, r.status) for r in stats.requests] == [
        ("GET", "/a.bin", 200), ("GET", "/a.bin", 206), ("HEAD", "/b.bin", 200),
        ("GET", "/missing", 404), ("GET", "/b.bin", 200),
    ]
    assert [r.response_bytes for r in stats.requests] == [n for _, n in bodies]
    assert [r.response_bytes for r in stats.requests][:3] == [10240, 100, 0]
    assert stats.response_bytes == sum(n for _, n in bodies) and stats.request_bytes == 0
    assert len(url.requests) == 5  # the server saw each request once
    assert stats.most_in_flight == 1


def test_the_log_gives_each_request_its_range_times_and_round(files: Path) -> None:
    with http_server(files) as url, latency_proxy(url, delay=0.05) as proxy:
        # Two requests one after the other, then two at once: three rounds.
        connection = _connection(proxy)
        for headers in ({"Range": "bytes=-10"}, {"x-ms-range": "bytes=0-9"}):
            connection.request("GET", "/a.bin", headers=headers)
            connection.getresponse().read()

        def fetch(path: str) -> None:
            other = _connection(proxy)
            other.request("GET", path)
            other.getresponse().read()
            other.close()

        threads = [threading.Thread(target=fetch, args=(path,)) for path in ("/a.bin", "/b.bin")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        connection.close()
        stats = proxy.stats()
    assert [r.range for r in stats.requests] == ["bytes=-10", "bytes=0-9", None, None]
    first, second = stats.requests[:2]
    assert first.answered - first.arrived >= 0.05 and second.arrived >= first.answered
    assert stats.rounds == 3
    log = stats.log()
    assert len(log) == 4 and log[0].endswith("GET /a.bin [bytes=-10] -> 206") and log[2].endswith("-> 200"), log
    assert float(log[0].split()[0]) == 0.0


def test_reset_returns_the_counts_and_starts_again(files: Path) -> None:
    with http_server(files) as url, latency_proxy(url) as proxy:
        connection = _connection(proxy)
        connection.request("GET", "/a.bin")
        connection.getresponse().read()
        first = proxy.reset()
        connection.request("GET", "/a.bin", headers={"Range": "bytes=0-9"})
        connection.getresponse().read()
        second = proxy.stats()
    assert (first.count, first.response_bytes) == (1, 10240)
    assert (second.count, second.response_bytes) == (1, 10)


class _ChunkedHandler(BaseHTTPRequestHandler):
    """Echoes a request body (Content-Length or chunked) back as a chunked response, in
    pieces of 3 bytes; HTTP/1.1, so the connection stays open."""

    protocol_version = "HTTP/1.1"
    seen: list[bytes]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_PUT(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(body)
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for offset in range(0, len(body), 3):
            piece = body[offset:offset + 3]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")


@contextlib.contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def echo() -> Iterator[tuple[str, list[bytes]]]:
    seen: list[bytes] = []
    handler = type("Echo", (_ChunkedHandler,), {"seen": seen})
    with _serve(handler) as url:
        yield url, seen


def test_chunked_bodies_each_way_are_relayed_whole_and_counted_without_their_framing(
    echo: tuple[str, list[bytes]],
) -> None:
    url, seen = echo
    with latency_proxy(url) as proxy:
        connection = _connection(proxy)
        connection.request("PUT", "/x", body=iter([b"hello ", b"chunked ", b"world"]), encode_chunked=True)
        response = connection.getresponse()
        assert response.read() == b"hello chunked world"
        connection.request("PUT", "/y", body=b"0123456789", headers={"Expect": "100-continue"})
        response = connection.getresponse()
        assert response.read() == b"0123456789"
        stats = proxy.stats()
    assert seen == [b"hello chunked world", b"0123456789"]
    assert [(r.request_bytes, r.response_bytes) for r in stats.requests] == [(19, 19), (10, 10)]


def test_most_in_flight_counts_requests_answered_at_once() -> None:
    barrier = threading.Barrier(4, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            barrier.wait()  # no request is answered until four are waiting at the server
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    with _serve(Handler) as url, latency_proxy(url) as proxy:
        def fetch() -> None:
            connection = _connection(proxy)
            connection.request("GET", "/")
            assert connection.getresponse().read() == b"ok"
            connection.close()

        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = proxy.stats()
        assert (stats.count, stats.most_in_flight) == (4, 4)
        assert proxy.reset().most_in_flight == 4 and proxy.stats().most_in_flight == 0


def test_every_request_waits_the_delay_before_its_response_starts(files: Path) -> None:
    delay = 0.15
    with http_server(files) as url, latency_proxy(url, delay=delay) as proxy:
        connection = _connection(proxy)
        waits = []
        for _ in range(3):
            start = time.monotonic()
            connection.request("GET", "/a.bin", headers={"Range": "bytes=0-0"})
            response = connection.getresponse()
            waits.append(time.monotonic() - start)
            response.read()
        proxy.delay = 0.0  # changed while running: the next request is not held
        connection.request("GET", "/a.bin")
        connection.getresponse().read()
    assert all(wait >= delay for wait in waits), waits
    assert proxy.stats().count == 4


def test_the_bandwidth_cap_limits_each_connection_each_way(files: Path, echo: tuple[str, list[bytes]]) -> None:
    rate = 200_000.0  # 100,000 bytes: half a second at the cap
    step = rate / 10  # the first piece goes at once
    with http_server(files) as url, latency_proxy(url, bandwidth=rate) as proxy:
        connection = _connection(proxy)
        start = time.monotonic()
        connection.request("GET", "/b.bin")
        assert len(connection.getresponse().read()) == 100_000
        down = time.monotonic() - start
    echo_url, _ = echo
    with latency_proxy(echo_url, bandwidth=rate) as proxy:
        connection = _connection(proxy)
        start = time.monotonic()
        connection.request("PUT", "/x", body=b"y" * 50_000)
        assert len(connection.getresponse().read()) == 50_000
        both = time.monotonic() - start
    assert down >= (100_000 - step) / rate, down
    # 50,000 bytes up, then (as chunks with their framing) 50,000 down.
    assert both >= 2 * (50_000 - step) / rate, both


def test_bad_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="delay"):
        LatencyProxy(("127.0.0.1", 1), delay=-1)
    with pytest.raises(ValueError, match="bandwidth"):
        LatencyProxy(("127.0.0.1", 1), bandwidth=0)
    with pytest.raises(ValueError, match="https://"), latency_proxy("https://127.0.0.1:1"):
        pass


def test_a_server_that_goes_away_closes_only_that_client_connection() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def close_at_once() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=close_at_once)
    thread.start()
    with latency_proxy(("127.0.0.1", port)) as proxy:
        connection = _connection(proxy)
        connection.request("GET", "/")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            connection.getresponse()
        assert proxy.stats().count == 0
    thread.join()
    listener.close()
