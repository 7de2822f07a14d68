"""gcp-storage-emulator (from PyPI) for the tests, with what it lacks for object_store.

The emulator serves GCS's JSON API (what gcsfs uses) and, of the XML API that object_store's
GCS client (the native library's, and obstore's) uses, only GET and PUT of an object. This
launcher runs the emulator's own request handling and storage, in memory, and adds on top:
the XML API's HEAD and DELETE of an object, its object listing (``GET /BUCKET?list-type=2``),
GETs of one byte range in every form (``bytes=a-b``, ``a-``, ``-n``; the JSON API's
downloads too) answered with the ETag and Last-Modified headers object_store requires, and a backlog deep enough for 64 requests at
once. With ``--token`` given (any number of times), every request must carry
``Authorization: Bearer TOKEN`` with one of them, else it is ``401``, as GCS answers; a
bucket named with ``--public`` is readable without one.

Run as ``python gcs_server.py PORT [--token T ...] [--public BUCKET ...]``; ``servers.py``
starts it in a child process on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import json
import re
import threading
import time
from email.utils import formatdate
from functools import partial
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from urllib.parse import unquote
from xml.sax.saxutils import escape

from gcp_storage_emulator import server as emulator
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.storage import Storage

HEAD = "HEAD"
_XML_OBJECT = r"^/(?P<bucket_name>[-.\w]+)/(?P<object_id>.*[^/]+)$"
_XML_BUCKET = r"^/(?P<bucket_name>[-.\w]+)$"


def _etag(obj: dict[str, str]) -> str:
    return f'"{obj.get("md5Hash") or hashlib.md5(b"").hexdigest()}"'


def _modified(obj: dict[str, str]) -> str:
    updated = obj.get("updated") or obj.get("timeCreated")
    seconds = calendar.timegm(time.strptime(updated[:19], "%Y-%m-%dT%H:%M:%S")) if updated else time.time()
    return formatdate(seconds, usegmt=True)


def _object_headers(response: emulator.Response, obj: dict[str, str]) -> None:
    response["ETag"] = _etag(obj)
    response["Last-Modified"] = _modified(obj)
    response["x-goog-generation"] = str(obj.get("generation", "1"))


def xml_get(request, response, storage):  # type: ignore[no-untyped-def]
    bucket, name = request.params["bucket_name"], request.params["object_id"]
    try:
        data = storage.get_file(bucket, name)
        obj = storage.get_file_obj(bucket, name)
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    _object_headers(response, obj)
    spec = request.get_header("range")
    if spec:
        match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", spec)
        if match is None or match.groups() == ("", ""):
            response.status = HTTPStatus.BAD_REQUEST
            return
        first, last = match.groups()
        size = len(data)
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            response.status = HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
            return
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response.status = HTTPStatus.PARTIAL_CONTENT
        data = data[start:end + 1]
    else:
        response["x-goog-hash"] = f"crc32c={obj['crc32c']},md5={obj['md5Hash']}"
    response.write_file(data, content_type=obj.get("contentType") or "application/octet-stream")


def xml_put(request, response, storage):  # type: ignore[no-untyped-def]
    emulator.objects.xml_upload(request, response, storage)
    if response.status == HTTPStatus.OK:
        _object_headers(response, storage.get_file_obj(request.params["bucket_name"], request.params["object_id"]))


def xml_delete(request, response, storage):  # type: ignore[no-untyped-def]
    try:
        storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        storage.delete_file(request.params["bucket_name"], request.params["object_id"])
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    response.status = HTTPStatus.NO_CONTENT


def xml_list(request, response, storage):  # type: ignore[no-untyped-def]
    query = {k: v[0] for k, v in request.query.items()}
    prefix = query.get("prefix") or None
    delimiter = query.get("delimiter") or None
    try:
        objects, prefixes = storage.get_file_list(request.params["bucket_name"], prefix, delimiter)
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    after = query.get("start-after") or query.get("continuation-token") or ""
    contents = "".join(
        f"<Contents><Key>{escape(o['name'])}</Key><Size>{o.get('size', 0)}</Size>"
        f"<LastModified>{o.get('updated') or o.get('timeCreated')}</LastModified><ETag>{escape(_etag(o))}</ETag></Contents>"
        for o in objects if o["name"] > after
    )
    common = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes)
    response["Content-Type"] = "application/xml"
    response.write(
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
        f"<Name>{escape(request.params['bucket_name'])}</Name>{contents}{common}</ListBucketResult>"
    )


def _read_data(request_handler, query):  # type: ignore[no-untyped-def]
    """The emulator's request body reader, with multipart uploads (gcsfs's for small
    objects) split at their boundary byte for byte: the emulator's email parser drops a
    content's last byte when it is a carriage return (gcsfs's line breaks are LF alone)."""
    content_type = request_handler.headers.get("Content-Type") or ""
    match = re.match(r'multipart/related;.*boundary="?([^";]+)"?', content_type)
    if match is None:
        return _original_read_data(request_handler, query)
    raw = emulator._decode_raw_data(emulator._read_raw_data(request_handler), request_handler)
    # "--B EOL head EOL EOL body EOL --B ... --B--", the line break before each delimiter its
    # own. gcsfs ends lines with LF alone, not CRLF: the first line after "--B" says which.
    pieces = raw.split(b"--" + match.group(1).encode())[1:-1]
    eol = b"\r\n" if pieces and pieces[0].startswith(b"\r\n") else b"\n"
    (meta_head, meta), (content_head, content) = (
        piece.removeprefix(eol).removesuffix(eol).split(eol + eol, 1) for piece in pieces[:2]
    )
    kind = re.search(rb"(?im)^content-type:\s*([^;\r\n]+)", content_head)
    return {
        "meta": json.loads(meta),
        "content": content,
        "content-type": kind.group(1).decode().strip() if kind else "application/octet-stream",
    }


_original_read_data = emulator._read_data


def _extend_routes() -> None:
    # The JSON API's downloads (gcsfs's reads) get the same ranges: the emulator's own
    # ignores a suffix range (`bytes=-n`, how a shard index is read) and sends everything.
    original = emulator.objects.download
    emulator.objects.download = xml_get
    handlers = []
    for regex, methods in emulator.HANDLERS:
        methods = {method: xml_get if handler is original else handler for method, handler in methods.items()}
        if regex == _XML_OBJECT:
            methods = {**methods, emulator.GET: xml_get, emulator.PUT: xml_put, emulator.DELETE: xml_delete}
        handlers.append((regex, methods))
    handlers.append((_XML_BUCKET, {emulator.GET: xml_list}))
    emulator.HANDLERS = tuple(handlers)
    emulator._read_data = _read_data


class _Handler(emulator.RequestHandler):
    lock = threading.Lock()
    tokens: frozenset[str] = frozenset()
    public: frozenset[str] = frozenset()

    def _allowed(self) -> bool:
        if not self.tokens:
            return True
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Bearer ") and authorization[len("Bearer "):] in self.tokens:
            return True
        bucket = self.path.lstrip("/").split("/")[0].split("?")[0]
        named = re.search(r"/b/([-.\w]+)", self.path)
        return self.command in ("GET", HEAD) and (bucket in self.public or (named is not None and named.group(1) in self.public))

    def _route(self, method: str) -> None:
        # object_store percent-encodes every character of the bucket name but letters and
        # digits (`zarrs%2Dcloud`); the emulator's routes match bucket names as written.
        path, separator, query = self.path.partition("?")
        bucket, slash, rest = path.lstrip("/").partition("/")
        self.path = f"/{unquote(bucket)}{slash}{rest}{separator}{query}"
        if not self._allowed():
            body = b'{"error": {"code": 401, "message": "Invalid Credentials"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method != HEAD:
                self.wfile.write(body)
            return
        with self.lock:  # the emulator's storage is not made for concurrent requests
            if method == HEAD:
                self._head()
            else:
                emulator.Router(self).handle(method)

    def _head(self) -> None:
        # The emulator's responses always carry their body's length: a HEAD is answered here.
        match = re.fullmatch(_XML_OBJECT, self.path.split("?")[0])
        obj = None
        if match is not None:
            try:
                obj = self.storage.get_file_obj(unquote(match.group("bucket_name")), unquote(match.group("object_id")))
            except NotFound:
                pass
        self.send_response(200 if obj is not None else 404)
        if obj is not None:
            self.send_header("ETag", _etag(obj))
            self.send_header("Last-Modified", _modified(obj))
            self.send_header("Content-Type", obj.get("contentType") or "application/octet-stream")
        self.send_header("Content-Length", str(obj.get("size", 0)) if obj is not None else "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._route(emulator.GET)

    def do_HEAD(self) -> None:
        self._route(HEAD)

    def do_POST(self) -> None:
        self._route(emulator.POST)

    def do_PUT(self) -> None:
        self._route(emulator.PUT)

    def do_DELETE(self) -> None:
        self._route(emulator.DELETE)

    def do_PATCH(self) -> None:
        self._route(emulator.PATCH)


class _Server(ThreadingHTTPServer):
    # Native batches send up to 64 requests at once; the default backlog of 5 drops connections.
    request_queue_size = 128
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--token", action="append", default=[])
    parser.add_argument("--public", action="append", default=[])
    args = parser.parse_args()
    _extend_routes()
    storage = Storage(use_memory_fs=True)
    handler = type("Handler", (_Handler,), {"tokens": frozenset(args.token), "public": frozenset(args.public)})
    _Server(("127.0.0.1", args.port), partial(handler, storage)).serve_forever()


if __name__ == "__main__":
    main()
