"""Local servers for tests and benchmarks: an S3-compatible server (moto's server mode, in
its own process) and an HTTP file server with byte-range support. Both listen on
127.0.0.1 on a free port and stop when their context exits."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["S3Server", "http_server", "moto_s3"]

# moto accepts any credentials; these are what the tests pass.
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no server on 127.0.0.1:{port} after {timeout} s")


class S3Server:
    """A running moto S3 server. Without authentication it accepts any credentials; with
    it, only keys made by ``create_credentials`` (which replace ``key``/``secret``)."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.endpoint = f"http://127.0.0.1:{port}"
        self.key = ACCESS_KEY
        self.secret = SECRET_KEY

    def _client(self, service: str) -> object:
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint, aws_access_key_id=self.key,
            aws_secret_access_key=self.secret, region_name=REGION,
        )

    def create_bucket(self, name: str) -> None:
        self._client("s3").create_bucket(Bucket=name)  # type: ignore[attr-defined]

    def create_credentials(self) -> None:
        """An IAM user allowed everything, whose key the server then requires."""
        iam = self._client("iam")
        iam.create_user(UserName="zarrs")  # type: ignore[attr-defined]
        policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
        iam.put_user_policy(UserName="zarrs", PolicyName="all", PolicyDocument=policy)  # type: ignore[attr-defined]
        key = iam.create_access_key(UserName="zarrs")["AccessKey"]  # type: ignore[attr-defined]
        self.key, self.secret = key["AccessKeyId"], key["SecretAccessKey"]

    def revoke_credentials(self) -> None:
        """Delete the key made by ``create_credentials``: later requests are refused."""
        self._client("iam").delete_access_key(UserName="zarrs", AccessKeyId=self.key)  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def s3fs_options(self, **extra: object) -> dict[str, object]:
        """``storage_options`` for ``FsspecStore.from_url("s3://...")``."""
        return {
            "key": self.key, "secret": self.secret, "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": REGION}, **extra,
        }

    def obstore(self, bucket: str, prefix: str | None = None, **config: object) -> object:
        """An obstore ``S3Store`` on ``bucket`` (with an optional key prefix)."""
        from obstore.store import S3Store

        return S3Store(
            bucket, prefix=prefix, endpoint=self.endpoint, access_key_id=self.key,
            secret_access_key=self.secret, region=REGION,
            client_options={"allow_http": True}, **config,
        )


@contextlib.contextmanager
def moto_s3(*, authenticate: bool = False) -> Iterator[S3Server]:
    """An S3-compatible server in a child process, stopped (if still alive) on exit. With
    ``authenticate``, requests need credentials from ``create_credentials`` (the three
    requests that make them are the only ones allowed without)."""
    port = _free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "True"}
    if authenticate:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    server = S3Server(process, port)
    try:
        _wait_for(port, process)
        yield server
    finally:
        server.stop()


class _RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single byte ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``).
    Every request is appended to ``requests`` as (method, path, Range header or None)."""

    requests: list[tuple[str, str, str | None]]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        self.requests.append((self.command, self.path, self.headers.get("Range")))
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if match is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        first, last = match.groups()
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            self.send_error(416)
            return None
        handle = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self._remaining = end - start + 1
        return handle

    def copyfile(self, source, outputfile):  # type: ignore[no-untyped-def]
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        outputfile.write(source.read(remaining))
        return None


class HTTPServer(str):
    """The base URL of a running HTTP server, with the requests it has served."""

    requests: list[tuple[str, str, str | None]]


@contextlib.contextmanager
def http_server(directory: str | os.PathLike[str]) -> Iterator[HTTPServer]:
    """Serve ``directory`` over HTTP; yields the base URL (with ``.requests``)."""
    requests: list[tuple[str, str, str | None]] = []
    handler = type("Handler", (_RangeHandler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = HTTPServer(f"http://127.0.0.1:{server.server_address[1]}")
    url.requests = requests
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
