"""``Storage``: the native stores an array is opened on (``ffi/storage.rs``).

Opening only: every read and write goes through an array handle.
"""

from __future__ import annotations

from typing import Any

from .convert import _str, lib
from .library import check, ffi

__all__ = ["Storage"]


class Storage:
    """An open native storage (``ZarrsStorage``)."""

    __slots__ = ("_handle", "description")

    def __init__(self, handle: Any, description: str) -> None:
        self._handle = ffi.gc(handle, lib().zarrs_storage_free)
        self.description = description

    @classmethod
    def filesystem(cls, path: str, *, direct_io: bool = False, read_only: bool = False) -> Storage:
        """Open a local directory; it is created on first write."""
        out = ffi.new("ZarrsStorage **")
        data, size = _str(path)
        check(lib().zarrs_storage_open_filesystem(data, size, int(bool(direct_io)), int(bool(read_only)), out))
        return cls(out[0], f"filesystem:{path}")

    @classmethod
    def s3(
        cls,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        anonymous: bool = False,
        path_style: bool = True,
        read_only: bool = False,
    ) -> Storage:
        """Open an S3-compatible bucket (credentials exactly as given, none from the
        environment)."""
        keep: list[Any] = []

        def text(value: str | None) -> tuple[Any, int]:
            if value is None:
                return ffi.NULL, 0
            data = ffi.new("char[]", value.encode("utf-8"))
            keep.append(data)
            return data, len(value.encode("utf-8"))

        config = ffi.new("ZarrsS3Config *")
        for name, value in (
            ("bucket", bucket), ("prefix", prefix), ("endpoint", endpoint), ("region", region),
            ("access_key_id", access_key_id), ("secret_access_key", secret_access_key),
            ("session_token", session_token),
        ):
            pointer, size = text(value)
            setattr(config, name, pointer)
            setattr(config, f"{name}_len", size)
        config.anonymous = int(bool(anonymous))
        config.path_style = int(bool(path_style))
        config.read_only = int(bool(read_only))
        out = ffi.new("ZarrsStorage **")
        check(lib().zarrs_storage_open_s3(config, out))
        where = f"{endpoint or 'aws'}/{bucket}/{prefix}".rstrip("/")
        return cls(out[0], f"s3:{where}")

    @classmethod
    def http(cls, url: str) -> Storage:
        """Open a read-only HTTP(S) location; keys are fetched from ``url/key``."""
        out = ffi.new("ZarrsStorage **")
        data, size = _str(url)
        check(lib().zarrs_storage_open_http(data, size, out))
        return cls(out[0], f"http:{url}")

    @classmethod
    def memory(cls) -> Storage:
        """Open an empty in-memory storage, for arrays that only encode and decode."""
        out = ffi.new("ZarrsStorage **")
        check(lib().zarrs_storage_open_memory(out))
        return cls(out[0], "memory")

    def __repr__(self) -> str:
        return f"Storage({self.description!r})"
