"""Local servers for tests and benchmarks: an S3-compatible server (moto's server mode, in
its own process), Google Cloud Storage (gcp-storage-emulator, in its own process, with the
XML API calls it lacks added by ``gcs_server.py``), Azure Blob Storage (our own small server,
``azure_server.py``: no Azure emulator can be installed here) and an HTTP file server with
byte-range support. All listen on 127.0.0.1 on a free port and stop when their context
exits."""

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
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

from azure_server import AzureBlobServer, make_server

__all__ = [
    "AzureBlobServer", "GCSServer", "S3Server", "azure_blob_server", "gcs_emulator", "http_server", "make_certificates",
    "moto_s3",
]

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


_T = TypeVar("_T")


@contextlib.contextmanager
def _launched(
    server: _T, stop: Callable[[], None], process: subprocess.Popen[bytes] | None = None, port: int = 0
) -> Iterator[_T]:
    """``server`` once it is up, and ``stop()`` on exit, also when it never came up. A
    server in a child ``process`` is up once ``port`` on 127.0.0.1 takes a connection (an
    error if the process exits first, or after 30 s); one in this process is up already."""
    try:
        if process is not None:
            _wait_for(port, process)
        yield server
    finally:
        stop()


class _ChildServer:
    """A server in a child process, listening on ``endpoint``."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Terminate the process if it is still alive (killed if it has not ended in 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class S3Server(_ChildServer):
    """A running moto S3 server. Without authentication it accepts any credentials; with
    it, only keys made by ``create_credentials`` (which replace ``key``/``secret``)."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        super().__init__(process, port)
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

    def make_public(self, bucket: str) -> None:
        """Let anyone read and list ``bucket`` (unsigned requests included), by bucket policy.
        (moto checks an unsigned HEAD against ``s3:HeadObject``, which AWS does not have.)"""
        import json

        statement = {
            "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:HeadObject", "s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        }
        policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        self._client("s3").put_bucket_policy(Bucket=bucket, Policy=policy)  # type: ignore[attr-defined]

    def create_credentials(self) -> None:
        """An IAM user allowed everything, whose key the server then requires."""
        iam = self._client("iam")
        iam.create_user(UserName="zarrs")  # type: ignore[attr-defined]
        policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
        iam.put_user_policy(UserName="zarrs", PolicyName="all", PolicyDocument=policy)  # type: ignore[attr-defined]
        key = iam.create_access_key(UserName="zarrs")["AccessKey"]  # type: ignore[attr-defined]
        self.key, self.secret = key["AccessKeyId"], key["SecretAccessKey"]

    def session_credentials(self) -> tuple[str, str, str]:
        """Temporary credentials (key, secret, session token) of a role allowed everything,
        from STS; the server checks the token with them. Needs ``create_credentials`` first."""
        iam, sts = self._client("iam"), self._client("sts")
        trust = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}'
        policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
        role = iam.create_role(RoleName="zarrs-session", AssumeRolePolicyDocument=trust)["Role"]  # type: ignore[attr-defined]
        iam.put_role_policy(RoleName="zarrs-session", PolicyName="all", PolicyDocument=policy)  # type: ignore[attr-defined]
        credentials = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="zarrs")["Credentials"]  # type: ignore[attr-defined]
        return credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]

    def revoke_credentials(self) -> None:
        """Delete the key made by ``create_credentials``: later requests are refused."""
        self._client("iam").delete_access_key(UserName="zarrs", AccessKeyId=self.key)  # type: ignore[attr-defined]

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
    with _launched(server, server.stop, process, port):
        yield server


class GCSServer(_ChildServer):
    """A running GCS emulator: its base URL, and the bearer tokens it requires (none: any
    request is allowed)."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, tokens: tuple[str, ...]) -> None:
        super().__init__(process, port)
        self.tokens = tokens

    def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if self.tokens:
            headers["Authorization"] = f"Bearer {self.tokens[0]}"
        request = urllib.request.Request(self.endpoint + path, data=body, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())

    def create_bucket(self, name: str) -> None:
        import json

        self._request("POST", "/storage/v1/b", json.dumps({"name": name}).encode())

    def object_names(self, bucket: str, prefix: str = "") -> set[str]:
        import json
        from urllib.parse import quote

        listing = json.loads(self._request("GET", f"/storage/v1/b/{bucket}/o?prefix={quote(prefix)}"))
        return {item["name"] for item in listing.get("items", [])}

    def gcsfs_options(self, token: str | None = None, **extra: object) -> dict[str, object]:
        """``storage_options`` for ``FsspecStore.from_url("gs://...")``: a bearer token (the
        server's first, or ``token``) as google-auth credentials, else anonymous."""
        token = token or (self.tokens[0] if self.tokens else None)
        if token is None:
            return {"endpoint_url": self.endpoint, "token": "anon", **extra}
        from google.oauth2.credentials import Credentials

        return {"endpoint_url": self.endpoint, "token": Credentials(token=token), **extra}

    def obstore(self, bucket: str, prefix: str | None = None, **config: object) -> object:
        """An obstore ``GCSStore`` on ``bucket``: the server's first token, else unsigned."""
        from obstore.store import GCSStore

        if "bearer_token" not in config and "skip_signature" not in config:
            config = {**config, **({"bearer_token": self.tokens[0]} if self.tokens else {"skip_signature": True})}
        return GCSStore(bucket, prefix=prefix, base_url=self.endpoint, client_options={"allow_http": True}, **config)


@contextlib.contextmanager
def gcs_emulator(*, tokens: tuple[str, ...] = (), public: tuple[str, ...] = ()) -> Iterator[GCSServer]:
    """gcp-storage-emulator in a child process, stopped (if still alive) on exit. With
    ``tokens``, every request must carry one of them as a bearer token, except reads of the
    buckets named in ``public``."""
    port = _free_port()
    command = [sys.executable, os.path.join(os.path.dirname(__file__), "gcs_server.py"), str(port)]
    for token in tokens:
        command += ["--token", token]
    for bucket in public:
        command += ["--public", bucket]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = GCSServer(process, port, tokens)
    with _launched(server, server.stop, process, port):
        yield server


@contextlib.contextmanager
def azure_blob_server() -> Iterator[AzureBlobServer]:
    """Our Azure Blob server (``azure_server.py``) on 127.0.0.1, in a thread of this
    process; stopped on exit."""
    httpd, state = make_server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

    with _launched(state, stop):
        yield state


class _RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single byte ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``).
    Every request is appended to ``requests`` as (method, path, Range header or None), and
    its headers to ``headers``. Paths for which ``hang`` is true are never answered: the
    handler waits until the server stops. Each request waits ``delay`` seconds before it is
    answered (a network's latency), and ``in_flight`` counts those being answered at once.

    With ``etags``, files carry a strong ETag (of their inode, size and modification time, as
    nginx's are of size and time) and ``If-Match`` is honoured (412 when it does not match)
    unless ``if_match`` is false: a server that ignores the condition."""

    requests: list[tuple[str, str, str | None]]
    headers_seen: list[dict[str, str]]
    hang: Callable[[str], bool] | None
    stopping: threading.Event
    delay: float
    in_flight: list[int]  # [now, most at once]
    lock: threading.Lock
    etags: bool
    if_match: bool

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def _answer(self, method: Callable[[], None]) -> None:
        with self.lock:
            self.in_flight[0] += 1
            self.in_flight[1] = max(self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            method()
        finally:
            with self.lock:
                self.in_flight[0] -= 1

    def do_GET(self) -> None:
        self._answer(super().do_GET)

    def do_HEAD(self) -> None:
        self._answer(super().do_HEAD)

    def send_head(self):  # type: ignore[no-untyped-def]
        self.requests.append((self.command, self.path, self.headers.get("Range")))
        self.headers_seen.append(dict(self.headers.items()))
        if self.hang is not None and self.hang(self.path):
            self.stopping.wait()
            self.close_connection = True
            return None
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        self._etag = None
        if self.etags and os.path.isfile(path):
            stat = os.stat(path)
            self._etag = f'"{stat.st_ino:x}-{stat.st_size:x}-{stat.st_mtime_ns:x}"'
            wanted = self.headers.get("If-Match")
            if self.if_match and wanted is not None and wanted.strip() not in ("*", self._etag):
                self.send_error(412)
                return None
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
        if self._etag is not None:
            self.send_header("ETag", self._etag)
        self.end_headers()
        self._remaining = end - start + 1
        return handle

    def end_headers(self) -> None:
        # Whole-file responses (SimpleHTTPRequestHandler's own) carry the ETag too.
        if getattr(self, "_etag", None) is not None and self.command in ("GET", "HEAD") and not self._sent_etag():
            self.send_header("ETag", self._etag)
        super().end_headers()

    def _sent_etag(self) -> bool:
        return any(line.lower().startswith(b"etag:") for line in getattr(self, "_headers_buffer", []))

    def copyfile(self, source, outputfile):  # type: ignore[no-untyped-def]
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        outputfile.write(source.read(remaining))
        return None


class _BackloggedServer(ThreadingHTTPServer):
    # Native reads send up to 64 requests at once; the default backlog of 5 drops connections.
    request_queue_size = 128


class HTTPServer(str):
    """The base URL of a running HTTP server, with the requests it has served (and their
    headers, in the same order)."""

    requests: list[tuple[str, str, str | None]]
    headers: list[dict[str, str]]
    #: [requests being answered now, the most answered at once].
    in_flight: list[int]


@contextlib.contextmanager
def http_server(
    directory: str | os.PathLike[str],
    *,
    tls: tuple[str, str] | None = None,
    hang: Callable[[str], bool] | None = None,
    delay: float = 0.0,
    etags: bool = False,
    if_match: bool = True,
) -> Iterator[HTTPServer]:
    """Serve ``directory`` over HTTP; yields the base URL (with ``.requests``). With ``tls``
    (a certificate and key file) it serves HTTPS; request paths for which ``hang`` is true
    are accepted and never answered; every request is answered after ``delay`` seconds; with
    ``etags`` files have ETags and ``If-Match`` is honoured (ignored if ``if_match`` is false)."""
    requests: list[tuple[str, str, str | None]] = []
    headers: list[dict[str, str]] = []
    stopping = threading.Event()
    in_flight = [0, 0]
    attributes = {"requests": requests, "headers_seen": headers, "hang": staticmethod(hang) if hang else None,
                  "stopping": stopping, "delay": delay, "in_flight": in_flight, "lock": threading.Lock(),
                  "etags": etags, "if_match": if_match}
    handler = type("Handler", (_RangeHandler,), attributes)
    server = _BackloggedServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    scheme = "http"
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = HTTPServer(f"{scheme}://127.0.0.1:{server.server_address[1]}")
    url.requests = requests
    url.headers = headers
    url.in_flight = in_flight
    try:
        yield url
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()


def make_certificates(directory: str | os.PathLike[str]) -> tuple[str, str, str]:
    """A throw-away certificate authority and a server certificate it signed for 127.0.0.1:
    the paths of three PEM files written to ``directory`` (the authority's certificate, the
    server's certificate and its key). Clients trust the server by trusting the first."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, issuer: str, public_key: object, signing_key: object, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signing_key, hashes.SHA256())  # type: ignore[arg-type]

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("zarrs-cffi test CA", "zarrs-cffi test CA", ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = build("127.0.0.1", "zarrs-cffi test CA", key.public_key(), ca_key, ca=False)
    paths = tuple(os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key"))
    pem = serialization.Encoding.PEM
    contents = (
        ca.public_bytes(pem),
        server.public_bytes(pem),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    for path, content in zip(paths, contents, strict=True):
        with open(path, "wb") as f:
            f.write(content)
    return paths  # type: ignore[return-value]
