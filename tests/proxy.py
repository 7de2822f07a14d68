"""A latency-injecting HTTP/1.1 proxy on 127.0.0.1, for tests and the object-storage
benchmark (`benchmarks/latency.py`).

It stands in front of any HTTP server (the file server and moto's S3 server of
`tests/servers.py`, a GCS or Azure emulator) and makes loopback look like a network: every
response starts a fixed delay after its request has arrived whole, and each connection can
be capped to a number of bytes per second in each direction. Clients keep their
connections alive and send many requests on each, so the proxy reads HTTP/1.1 framing
(bodies by Content-Length or chunked) to count, per request: how many, the bytes of the
bodies each way, and the most answered at once.

It forwards bytes unchanged (the Host header included, so signed S3 requests stay valid),
with one exception: a server that closes its connection after each response (HTTP/1.0, as
Python's ``http.server`` and werkzeug do) gets a new upstream connection per request, while
the client's connection stays open: the response is relabelled HTTP/1.1 without its
``Connection`` header, and a body delimited by the close is sent with a Content-Length.
Otherwise a client would open a connection per request behind the proxy, which a real
object store's clients do not do.

It must not decide anything about what it relays: no caching, no reordering, no retries.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["LatencyProxy", "ProxyStats", "RequestRecord", "latency_proxy"]

_LINE_LIMIT = 65536
_PIECE = 65536


class ProxyError(Exception):
    """A message the proxy could not frame (the connection is then closed)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request relayed: its method and target, the response status, the body bytes
    sent each way (framing and headers not counted), the byte range it asked for (its
    ``Range`` or Azure's ``x-ms-range`` header, None for none), and when (``time.monotonic()``)
    it arrived whole and was answered (its response's last piece about to go out)."""

    method: str
    target: str
    status: int
    request_bytes: int
    response_bytes: int
    range: str | None = None
    arrived: float = 0.0
    answered: float = 0.0


@dataclass
class ProxyStats:
    """What the proxy relayed since the last ``reset``."""

    requests: list[RequestRecord] = field(default_factory=list)
    #: The most requests received whole and not yet answered whole, at one time.
    most_in_flight: int = 0

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def response_bytes(self) -> int:
        return sum(r.response_bytes for r in self.requests)

    @property
    def request_bytes(self) -> int:
        return sum(r.request_bytes for r in self.requests)

    @property
    def rounds(self) -> int:
        """The longest chain of requests each sent after the one before it was answered:
        how many round trips the requests took at least (requests sent together are one)."""
        depth: list[int] = []
        for request in self.requests:
            depth.append(1 + max((d for other, d in zip(self.requests, depth, strict=False)
                                  if other.answered <= request.arrived), default=0))
        return max(depth, default=0)

    def log(self) -> list[str]:
        """One line per request, in the order they were answered: milliseconds since the
        first arrived (arrival and answer), method, target, range and status."""
        start = min((r.arrived for r in self.requests), default=0.0)
        return [
            f"{(r.arrived - start) * 1000:7.1f} {(r.answered - start) * 1000:7.1f}  {r.method} {r.target}"
            f"{f' [{r.range}]' if r.range else ''} -> {r.status}"
            for r in self.requests
        ]


class _Throttle:
    """At most ``rate`` bytes per second through one direction of one connection: each
    piece is sent when the bytes before it would have taken that long at that rate."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.start: float | None = None
        self.sent = 0

    def send(self, sock: socket.socket, data: bytes) -> None:
        if not self.rate:
            sock.sendall(data)
            return
        # A piece of a tenth of a second's bytes keeps the rate smooth without a sleep per byte.
        step = max(1, min(_PIECE, int(self.rate / 10)))
        for offset in range(0, len(data), step):
            piece = data[offset:offset + step]
            now = time.monotonic()
            if self.start is None or now - self.start > self.sent / self.rate + 0.05:
                # Idle since the last piece (the connection waited for a request): the cap
                # limits a transfer's speed, it is not a budget saved up while idle.
                self.start, self.sent = now, 0
            wait = self.start + self.sent / self.rate - now
            if wait > 0:
                time.sleep(wait)
            sock.sendall(piece)
            self.sent += len(piece)


class _Reader:
    """Buffered reads of HTTP framing from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.closed = False

    def _fill(self) -> bool:
        data = self.sock.recv(_PIECE)
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True

    def line(self) -> bytes:
        """One line with its CRLF; b"" at a clean end of stream."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end + 1])
                del self.buffer[:end + 1]
                return line
            if len(self.buffer) > _LINE_LIMIT:
                raise ProxyError("a header line longer than 64 KiB")
            if not self._fill():
                if self.buffer:
                    raise ProxyError("the stream ended inside a line")
                return b""

    def head(self) -> list[bytes] | None:
        """A start line and its header lines, or None at a clean end of stream."""
        first = self.line()
        while first in (b"\r\n", b"\n"):  # stray CRLF between messages (RFC 9112 2.2)
            first = self.line()
        if not first:
            return None
        lines = [first]
        while True:
            line = self.line()
            if not line:
                raise ProxyError("the stream ended inside a header")
            if line in (b"\r\n", b"\n"):
                return lines
            lines.append(line)

    def some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (at least one); raises at the end of stream."""
        if not self.buffer and not self._fill():
            raise ProxyError("the stream ended inside a body")
        data = bytes(self.buffer[:limit])
        del self.buffer[:limit]
        return data

    def rest(self) -> Iterator[bytes]:
        """Everything until the peer closes."""
        if self.buffer:
            yield bytes(self.buffer)
            self.buffer.clear()
        while True:
            data = self.sock.recv(_PIECE)
            if not data:
                self.closed = True
                return
            yield data


def _headers(lines: list[bytes]) -> dict[str, str]:
    """Lower-cased names; repeated headers joined with commas."""
    out: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProxyError(f"a header line without a colon: {line!r}")
        key = name.strip().lower()
        out[key] = f"{out[key]}, {value.strip()}" if key in out else value.strip()
    return out


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",") if token.strip()}


def _body(reader: _Reader, headers: dict[str, str]) -> Iterator[tuple[bytes, int]]:
    """A message body as it is framed, piece by piece, each with how many of its bytes
    are payload (chunk framing and trailers excluded). Nothing for no body."""
    if "chunked" in _tokens(headers.get("transfer-encoding")):
        while True:
            size_line = reader.line()
            if not size_line:
                raise ProxyError("the stream ended inside a chunked body")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise ProxyError(f"a chunk size that is not hexadecimal: {size_line!r}") from None
            yield size_line, 0
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = reader.line()
                    if not trailer:
                        raise ProxyError("the stream ended inside a chunked body's trailers")
                    yield trailer, 0
                    if trailer in (b"\r\n", b"\n"):
                        return
            done = 0  # of the chunk and its CRLF
            while done < size + 2:
                data = reader.some(size + 2 - done)
                yield data, max(0, min(size, done + len(data)) - done)
                done += len(data)
        return
    length = headers.get("content-length")
    if length is None:
        return
    try:
        remaining = int(length.split(",")[0])
    except ValueError:
        raise ProxyError(f"a Content-Length that is not a number: {length!r}") from None
    while remaining > 0:
        data = reader.some(min(remaining, _PIECE))
        remaining -= len(data)
        yield data, len(data)


class LatencyProxy:
    """A running proxy: ``url`` is its base URL, ``endpoint`` what an S3 or GCS client
    takes. ``delay`` and ``bandwidth`` can be changed while it runs; ``stats()`` and
    ``reset()`` read and clear its counts."""

    def __init__(self, upstream: tuple[str, int], *, delay: float = 0.0, bandwidth: float | None = None) -> None:
        if delay < 0:
            raise ValueError(f"delay must be at least 0 seconds, not {delay}")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError(f"bandwidth must be a positive number of bytes per second, not {bandwidth}")
        self.upstream = upstream
        self.delay = delay
        self.bandwidth = bandwidth
        self._lock = threading.Lock()
        self._stats = ProxyStats()
        self._in_flight = 0
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoint = self.url
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="latency-proxy", daemon=True)
        self._thread.start()

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(list(self._stats.requests), self._stats.most_in_flight)

    def reset(self) -> ProxyStats:
        """The counts so far, then zero (a request being answered counts in the next ones)."""
        with self._lock:
            stats, self._stats = self._stats, ProxyStats(most_in_flight=self._in_flight)
            return stats

    def close(self) -> None:
        self._stopping.set()
        # Closing alone does not wake a thread blocked in accept(); shutting it down does (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="latency-proxy-connection", daemon=True).start()

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(sock)

    def _serve(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._track(client, True)
        upstream: list[socket.socket | _Reader | None] = [None, None]
        up_throttle, down_throttle = _Throttle(self.bandwidth), _Throttle(self.bandwidth)
        reader = _Reader(client)
        try:
            while not self._stopping.is_set():
                if not self._relay(client, reader, upstream, up_throttle, down_throttle):
                    break
        except (OSError, ProxyError):
            pass  # a peer went away or sent what HTTP cannot frame: drop this connection
        finally:
            for sock in (client, upstream[0]):
                if isinstance(sock, socket.socket):
                    self._track(sock, False)
                    sock.close()

    def _connect(self, upstream: list[socket.socket | _Reader | None]) -> tuple[socket.socket, _Reader]:
        if upstream[0] is None:
            sock = socket.create_connection(self.upstream)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(sock, True)
            upstream[0], upstream[1] = sock, _Reader(sock)
        return upstream[0], upstream[1]  # type: ignore[return-value]

    def _drop_upstream(self, upstream: list[socket.socket | _Reader | None]) -> None:
        sock = upstream[0]
        if isinstance(sock, socket.socket):
            self._track(sock, False)
            sock.close()
        upstream[0] = upstream[1] = None

    def _relay(
        self, client: socket.socket, reader: _Reader, upstream: list[socket.socket | _Reader | None],
        up_throttle: _Throttle, down_throttle: _Throttle,
    ) -> bool:
        """One request and its response; False when the client's connection is done."""
        head = reader.head()
        if head is None:
            return False
        method, target, _version = (head[0].decode("latin-1").split(" ", 2) + ["", ""])[:3]
        headers = _headers(head)
        client_closes = "close" in _tokens(headers.get("connection"))
        forwarded = [line for line in head if not line.lower().startswith(b"expect:")]
        if "100-continue" in _tokens(headers.get("expect")):
            # Answered here, not by the server: the body follows at once and goes upstream with
            # the head, so one request is one round trip through the delay, as on a network
            # whose store answers 100 Continue itself.
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock, up_reader = self._connect(upstream)
        request_bytes = 0
        try:
            sock.sendall(b"".join(forwarded) + b"\r\n")
            for data, payload in _body(reader, headers):
                up_throttle.send(sock, data)
                request_bytes += payload
        except OSError:
            raise ProxyError("the server closed its connection before the request was sent") from None
        arrived = time.monotonic()
        with self._lock:
            self._in_flight += 1
            self._stats.most_in_flight = max(self._stats.most_in_flight, self._in_flight)
        counted = False
        try:
            while True:
                status_head = up_reader.head()
                if status_head is None:
                    raise ProxyError("the server closed its connection without a response")
                version, code = (status_head[0].decode("latin-1").split(" ", 2) + [""])[:2]
                if not code.isdigit():
                    raise ProxyError(f"a status line without a status: {status_head[0]!r}")
                status = int(code)
                if status >= 200:
                    break  # interim responses (1xx) are dropped: the client had its 100 already
            response_headers = _headers(status_head)
            server_closes = version == "HTTP/1.0" and "keep-alive" not in _tokens(response_headers.get("connection"))
            server_closes = server_closes or "close" in _tokens(response_headers.get("connection"))
            no_body = method == "HEAD" or status in (204, 304)
            framed = "chunked" in _tokens(response_headers.get("transfer-encoding")) or "content-length" in response_headers
            lines = [b"HTTP/1.1 " + status_head[0].split(b" ", 1)[1]]
            lines += [line for line in status_head[1:] if not line.lower().startswith((b"connection:", b"keep-alive:"))]
            if no_body or framed:
                body: Iterator[tuple[bytes, int]] = iter(()) if no_body else _body(up_reader, response_headers)
            else:
                # Delimited by the server's close: read it whole to send it with a length.
                whole = b"".join(up_reader.rest())
                lines.append(f"Content-Length: {len(whole)}\r\n".encode())
                body = iter([(whole, len(whole))])
                server_closes = True
            if client_closes:
                lines.append(b"Connection: close\r\n")
            wait = arrived + self.delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            # The request is counted before its last bytes go out, so a client that has its
            # whole response always finds it in the counts; hence one piece held back.
            held = b"".join(lines) + b"\r\n"
            first = True
            response_bytes = 0
            for data, payload in body:
                client.sendall(held) if first else down_throttle.send(client, held)
                held, first = data, False
                response_bytes += payload
            counted = True
            with self._lock:
                self._in_flight -= 1
                self._stats.requests.append(RequestRecord(
                    method, target, status, request_bytes, response_bytes,
                    headers.get("x-ms-range") or headers.get("range"), arrived, time.monotonic(),
                ))
            client.sendall(held) if first else down_throttle.send(client, held)
        finally:
            if not counted:
                with self._lock:
                    self._in_flight -= 1
        if server_closes:
            self._drop_upstream(upstream)
        return not client_closes


@contextlib.contextmanager
def latency_proxy(
    upstream: str | tuple[str, int], *, delay: float = 0.0, bandwidth: float | None = None
) -> Iterator[LatencyProxy]:
    """A proxy in front of ``upstream`` (``"http://127.0.0.1:PORT"`` or a (host, port)),
    closed on exit. Every response starts ``delay`` seconds after its request arrived whole;
    ``bandwidth`` caps each connection's bytes per second, each way."""
    if isinstance(upstream, str):
        scheme, _, rest = upstream.partition("://")
        if scheme != "http" or not rest:
            raise ValueError(f"the proxy fronts plain http:// servers, not {upstream!r}")
        host, _, port = rest.split("/", 1)[0].rpartition(":")
        if not port.isdigit():
            raise ValueError(f"no port in {upstream!r}")
        upstream = (host, int(port))
    proxy = LatencyProxy(upstream, delay=delay, bandwidth=bandwidth)
    try:
        yield proxy
    finally:
        proxy.close()
