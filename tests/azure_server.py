"""A small Azure Blob Storage server for the tests: ours, not Azurite.

Azurite (Microsoft's emulator) comes from npm, which CI cannot reach, and neither PyPI nor
Debian has an Azure Blob emulator; so the tests run against this one, written from the REST
API's documentation (https://learn.microsoft.com/rest/api/storageservices/blob-service-rest-api)
for what zarr, adlfs, obstore and the native library send: Create Container, Get Container
Properties, List Blobs (prefix, delimiter, marker, maxresults), Put Blob (with
``If-None-Match: *``), Get Blob (whole, or one range: ``Range`` or ``x-ms-range``), Get Blob
Properties, Delete Blob, and Blob Batch of deletes (object_store deletes through it, one blob
or many). Blobs live in memory. Addresses are path-style, as Azurite's:
``http://127.0.0.1:PORT/ACCOUNT/CONTAINER/BLOB``.

Requests are authorised as Azure does, so wrong credentials fail the way they do there:
Shared Key signatures are recomputed and compared (``Authorization: SharedKey
account:signature``); bearer tokens must be one of ``tokens``; a shared access signature
must be one this server issued (``issue_sas``: its ``sig`` is compared, not recomputed); a
request without any is allowed to read a container created ``public``. Anything else is
``403 AuthenticationFailed`` (a bad signature or SAS) or ``401`` (a bad token). It listens
on 127.0.0.1 on a free port; ``servers.azure_blob_server`` runs it and stops it when its
context exits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

__all__ = ["ACCOUNT", "AzureBlobServer", "make_server"]

ACCOUNT = "devstoreaccount1"

# The request headers, in order, that Shared Key's string-to-sign takes by value.
_SIGNED_HEADERS = (
    "Content-Encoding", "Content-Language", "Content-Length", "Content-MD5", "Content-Type", "Date",
    "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range",
)


class _Blob:
    __slots__ = ("data", "etag", "metadata", "modified")

    def __init__(self, data: bytes, metadata: dict[str, str]) -> None:
        self.data = data
        self.metadata = metadata
        self.modified = time.time()
        self.etag = f'"0x{secrets.token_hex(8).upper()}"'


class _Container:
    __slots__ = ("blobs", "public")

    def __init__(self, public: bool) -> None:
        self.blobs: dict[str, _Blob] = {}
        self.public = public


class AzureBlobServer:
    """A running server: its account URL (``endpoint``), account name and key, and the
    credentials it accepts. Every request is appended to ``requests`` as (method, path)."""

    def __init__(self, port: int) -> None:
        self.account = ACCOUNT
        self.key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
        self.tokens: set[str] = set()
        self.sas_signatures: set[str] = set()
        self.containers: dict[str, _Container] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def create_container(self, name: str, *, public: bool = False) -> None:
        with self.lock:
            self.containers.setdefault(name, _Container(public))

    def issue_token(self) -> str:
        """A bearer token the server accepts from now on."""
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return token

    def issue_sas(self) -> str:
        """A shared access signature (its query string) the server accepts from now on."""
        signature = base64.b64encode(secrets.token_bytes(32)).decode()
        self.sas_signatures.add(signature)
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        fields = {"sv": "2021-08-06", "ss": "b", "srt": "sco", "sp": "rwdlac", "se": expiry, "sig": signature}
        from urllib.parse import urlencode

        return urlencode(fields)

    def connection_string(self, key: str | None = None) -> str:
        """A connection string for adlfs and the Azure SDK (``key``: another account key)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={key or self.key};"
            f"BlobEndpoint={self.endpoint};"
        )

    def obstore(self, container: str, prefix: str | None = None, **config: object) -> object:
        """An obstore ``AzureStore`` on ``container`` (with an optional key prefix), signed
        with the account key unless ``config`` gives other credentials."""
        from obstore.store import AzureStore

        config = config or {"account_key": self.key}
        return AzureStore(container, prefix=prefix, account_name=self.account, endpoint=self.endpoint,
                          client_options={"allow_http": True}, **config)

    def blob_names(self, container: str) -> set[str]:
        with self.lock:
            return set(self.containers[container].blobs)

    # --- authorisation -------------------------------------------------------------------

    def _string_to_sign(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> str:
        values = []
        for name in _SIGNED_HEADERS:
            value = headers.get(name.lower(), "")
            if name == "Content-Length" and value == "0":
                value = ""
            values.append(value)
        canonical_headers = "".join(
            f"{name}:{headers[name].strip()}\n" for name in sorted(h for h in headers if h.startswith("x-ms-"))
        )
        resource = f"/{self.account}{path}"
        grouped: dict[str, list[str]] = {}
        for name, value in query:
            grouped.setdefault(name.lower(), []).append(value)
        for name in sorted(grouped):
            resource += f"\n{name}:{','.join(sorted(grouped[name]))}"
        return "\n".join([method, *values]) + "\n" + canonical_headers + resource

    def authorised(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> int:
        """0 if the request is allowed, 1 if it carries no credentials, else its HTTP status."""
        authorization = headers.get("authorization")
        if authorization is not None:
            if authorization.startswith("Bearer "):
                return 0 if authorization[len("Bearer "):] in self.tokens else 401
            prefix = f"SharedKey {self.account}:"
            if not authorization.startswith(prefix):
                return 403
            digest = hmac.new(
                base64.b64decode(self.key), self._string_to_sign(method, path, query, headers).encode(), hashlib.sha256
            ).digest()
            return 0 if hmac.compare_digest(base64.b64encode(digest).decode(), authorization[len(prefix):]) else 403
        signature = dict(query).get("sig")
        if signature is not None:
            return 0 if signature in self.sas_signatures else 403
        return 1


def _http_date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: AzureBlobServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    # --- responses -------------------------------------------------------------------------

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("x-ms-version", "2021-08-06")
        self.send_header("x-ms-request-id", secrets.token_hex(8))
        self.send_header("Date", _http_date(time.time()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        body = b"" if self.command == "HEAD" else (
            f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error>"
        ).encode()
        self._send(status, body, {"x-ms-error-code": code, "Content-Type": "application/xml"})

    def _blob_headers(self, blob: _Blob) -> dict[str, str]:
        headers = {
            "ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
            "x-ms-creation-time": _http_date(blob.modified), "x-ms-blob-type": "BlockBlob",
            "x-ms-lease-state": "available", "x-ms-lease-status": "unlocked", "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream", "x-ms-server-encrypted": "true",
        }
        headers.update({f"x-ms-meta-{k}": v for k, v in blob.metadata.items()})
        return headers

    # --- dispatch ----------------------------------------------------------------------------

    def _handle(self) -> None:
        state = self.server_state
        split = urlsplit(self.path)
        query = parse_qsl(split.query, keep_blank_values=True)
        params = dict(query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        state.requests.append((self.command, self.path))
        parts = split.path.lstrip("/").split("/", 2)
        if parts[0] != state.account:
            return self._error(400, "InvalidUri", f"no account {parts[0]!r} here")
        container_name = unquote(parts[1]) if len(parts) > 1 else ""
        blob_name = unquote(parts[2]) if len(parts) > 2 else ""
        access = state.authorised(self.command, split.path, query, headers)
        with state.lock:
            container = state.containers.get(container_name)
        anonymous_read = access == 1 and container is not None and container.public and self.command in ("GET", "HEAD")
        if access == 401:
            return self._error(401, "InvalidAuthenticationInfo", "the bearer token is not valid")
        if access == 403 or (access == 1 and not anonymous_read):
            return self._error(403, "AuthenticationFailed" if access == 403 else "NoAuthenticationInformation",
                               "the request is not authorised")
        if not container_name:
            return self._error(400, "InvalidUri", "no container named")
        if params.get("restype") == "container" and not blob_name and params.get("comp") == "batch":
            if container is None:
                return self._error(404, "ContainerNotFound", f"the container {container_name!r} does not exist")
            return self._batch(container, headers.get("content-type", ""), body)
        if params.get("restype") == "container" and not blob_name:
            return self._container(container_name, container, params)
        if container is None:
            return self._error(404, "ContainerNotFound", f"the container {container_name!r} does not exist")
        if not blob_name:
            return self._error(400, "InvalidUri", "no blob named")
        with state.lock:
            blob = container.blobs.get(blob_name)
        if self.command == "PUT":
            if headers.get("if-none-match") == "*" and blob is not None:
                return self._error(409, "BlobAlreadyExists", f"the blob {blob_name!r} exists")
            if "if-match" in headers and (blob is None or headers["if-match"] != blob.etag):
                return self._error(412, "ConditionNotMet", "the condition is not met")
            metadata = {k[len("x-ms-meta-"):]: v for k, v in headers.items() if k.startswith("x-ms-meta-")}
            blob = _Blob(body, metadata)
            with state.lock:
                container.blobs[blob_name] = blob
            return self._send(201, b"", {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
                                         "x-ms-request-server-encrypted": "true"})
        if blob is None:
            return self._error(404, "BlobNotFound", f"the blob {blob_name!r} does not exist")
        if self.command == "DELETE":
            with state.lock:
                container.blobs.pop(blob_name, None)
            return self._send(202)
        if self.command == "HEAD":
            return self._send(200, b"", {**self._blob_headers(blob), "Content-Length": str(len(blob.data))})
        # GET: the whole blob, or one range.
        spec = headers.get("x-ms-range") or headers.get("range")
        if spec is None:
            return self._send(200, blob.data, self._blob_headers(blob))
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
        if match is None:
            return self._error(400, "InvalidRange", f"unsupported range {spec!r}")
        size = len(blob.data)
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
        if start >= size or start > end:
            return self._error(416, "InvalidRange", "the range cannot be satisfied")
        headers_out = {**self._blob_headers(blob), "Content-Range": f"bytes {start}-{end}/{size}"}
        return self._send(206, blob.data[start:end + 1], headers_out)

    def _batch(self, container: _Container, content_type: str, body: bytes) -> None:
        """Blob Batch: each part a ``DELETE`` with its own authorisation, each answered in
        a part of the multipart response, in order."""
        state = self.server_state
        match = re.search(r"boundary=([^;]+)", content_type)
        if match is None:
            return self._error(400, "InvalidInput", "a batch without a multipart boundary")
        answers = []
        for part in body.split(b"--" + match.group(1).strip().encode())[1:]:
            if part.startswith(b"--"):
                break
            part_headers, _, request = part.strip(b"\r\n").partition(b"\r\n\r\n")
            content_id = re.search(rb"(?im)^content-id:\s*(\S+)", part_headers)
            line, *header_lines = request.decode().split("\r\n")
            method, target, _ = line.split(" ", 2)
            sub_headers = {}
            for header in header_lines:
                if ":" in header:
                    name, value = header.split(":", 1)
                    sub_headers[name.strip().lower()] = value.strip()
            split = urlsplit(target)
            path = split.path if split.path.startswith(f"/{state.account}/") else f"/{state.account}{split.path}"
            query = parse_qsl(split.query, keep_blank_values=True)
            blob_name = unquote(path.split("/", 3)[3]) if path.count("/") >= 3 else ""
            access = state.authorised(method, path, query, sub_headers)
            if method != "DELETE":
                status, reason = 400, "Only deletes are batched here"
            elif access != 0:
                status, reason = 403, "Server failed to authenticate the request"
            else:
                with state.lock:
                    found = container.blobs.pop(blob_name, None)
                status, reason = (202, "Accepted") if found is not None else (404, "The specified blob does not exist.")
            answers.append((content_id.group(1).decode() if content_id else str(len(answers)), status, reason))
        boundary = f"batchresponse_{secrets.token_hex(8)}"
        out = "".join(
            f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {content_id}\r\n\r\n"
            f"HTTP/1.1 {status} {reason}\r\nx-ms-delete-type-permanent: true\r\nx-ms-version: 2021-08-06\r\n"
            f"Content-Length: 0\r\n\r\n"
            for content_id, status, reason in answers
        ) + f"--{boundary}--\r\n"
        self._send(202, out.encode(), {"Content-Type": f"multipart/mixed; boundary={boundary}"})

    def _container(self, name: str, container: _Container | None, params: dict[str, str]) -> None:
        state = self.server_state
        if self.command == "PUT":
            if container is not None:
                return self._error(409, "ContainerAlreadyExists", f"the container {name!r} exists")
            state.create_container(name)
            return self._send(201, b"", {"ETag": '"0x1"', "Last-Modified": _http_date(time.time())})
        if container is None:
            return self._error(404, "ContainerNotFound", f"the container {name!r} does not exist")
        if params.get("comp") == "list" and self.command == "GET":
            return self._list(name, container, params)
        if self.command in ("GET", "HEAD"):
            return self._send(200, b"", {"ETag": '"0x1"', "Last-Modified": _http_date(time.time()),
                                         "x-ms-lease-state": "available", "x-ms-lease-status": "unlocked"})
        return self._error(400, "UnsupportedHttpVerb", f"{self.command} of a container")

    def _list(self, name: str, container: _Container, params: dict[str, str]) -> None:
        prefix = params.get("prefix", "")
        delimiter = params.get("delimiter", "")
        marker = params.get("marker", "")
        limit = int(params.get("maxresults") or 5000)
        with self.server_state.lock:
            names = sorted(n for n in container.blobs if n.startswith(prefix))
            blobs = {n: container.blobs[n] for n in names}
        entries: list[tuple[str, _Blob | None]] = []
        seen_prefixes: set[str] = set()
        for blob_name in names:
            if delimiter:
                cut = blob_name.find(delimiter, len(prefix))
                if cut >= 0:
                    common = blob_name[:cut + len(delimiter)]
                    if common not in seen_prefixes:
                        seen_prefixes.add(common)
                        entries.append((common, None))
                    continue
            entries.append((blob_name, blobs[blob_name]))
        entries = [e for e in entries if e[0] >= marker]
        page, rest = entries[:limit], entries[limit:]
        items = []
        for entry_name, blob in page:
            if blob is None:
                items.append(f"<BlobPrefix><Name>{escape(entry_name)}</Name></BlobPrefix>")
                continue
            metadata = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in blob.metadata.items())
            items.append(
                f"<Blob><Name>{escape(entry_name)}</Name><Properties>"
                f"<Creation-Time>{_http_date(blob.modified)}</Creation-Time>"
                f"<Last-Modified>{_http_date(blob.modified)}</Last-Modified><Etag>{escape(blob.etag)}</Etag>"
                f"<Content-Length>{len(blob.data)}</Content-Length>"
                f"<Content-Type>application/octet-stream</Content-Type><BlobType>BlockBlob</BlobType>"
                f"<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
                f"<ServerEncrypted>true</ServerEncrypted></Properties><Metadata>{metadata}</Metadata></Blob>"
            )
        next_marker = escape(rest[0][0]) if rest else ""
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
            f'ServiceEndpoint="{escape(self.server_state.endpoint)}/" ContainerName="{escape(name)}">'
            f"<Prefix>{escape(prefix)}</Prefix><Marker>{escape(marker)}</Marker><MaxResults>{limit}</MaxResults>"
            f"<Delimiter>{escape(delimiter)}</Delimiter><Blobs>{''.join(items)}</Blobs>"
            f"<NextMarker>{next_marker}</NextMarker></EnumerationResults>"
        ).encode()
        self._send(200, body, {"Content-Type": "application/xml"})

    do_GET = do_HEAD = do_PUT = do_DELETE = do_POST = _handle  # noqa: N815 - BaseHTTPRequestHandler's names


class _BackloggedServer(ThreadingHTTPServer):
    # Native batches send up to 64 requests at once; the default backlog of 5 drops connections.
    request_queue_size = 128
    daemon_threads = True


def make_server() -> tuple[ThreadingHTTPServer, AzureBlobServer]:
    """Our Azure Blob server bound to a free port on 127.0.0.1, not yet serving, and its state
    (``servers.azure_blob_server`` serves it in a thread and stops it)."""
    httpd = _BackloggedServer(("127.0.0.1", 0), _Handler)
    state = AzureBlobServer(int(httpd.server_address[1]))
    httpd.RequestHandlerClass = type("Handler", (_Handler,), {"server_state": state})
    return httpd, state
