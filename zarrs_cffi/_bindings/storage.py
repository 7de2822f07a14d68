"""``Storage``: the native stores an array is opened on (``ffi/storage.rs``).

Opening only: every read and write goes through an array handle.
"""

from __future__ import annotations

from typing import Any

from .convert import _str, lib
from .library import check, ffi

__all__ = ["Storage"]


def _config(struct: str, strings: dict[str, str | None], **flags: bool) -> tuple[Any, list[Any]]:
    """A settings struct: each string as pointer and length (NULL when None), each flag 0 or
    1; and the buffers the struct points into, which must outlive the call."""
    keep: list[Any] = []
    config = ffi.new(f"{struct} *")
    for name, value in strings.items():
        if value is None:
            setattr(config, name, ffi.NULL)
            setattr(config, f"{name}_len", 0)
            continue
        data = value.encode("utf-8")
        buffer = ffi.new("char[]", data)
        keep.append(buffer)
        setattr(config, name, buffer)
        setattr(config, f"{name}_len", len(data))
    for name, flag in flags.items():
        setattr(config, name, int(bool(flag)))
    return config, keep


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
        config, keep = _config("ZarrsS3Config", {
            "bucket": bucket, "prefix": prefix, "endpoint": endpoint, "region": region,
            "access_key_id": access_key_id, "secret_access_key": secret_access_key,
            "session_token": session_token,
        }, anonymous=anonymous, path_style=path_style, read_only=read_only)
        out = ffi.new("ZarrsStorage **")
        check(lib().zarrs_storage_open_s3(config, out))
        del keep  # the strings only need to live for the call
        where = f"{endpoint or 'aws'}/{bucket}/{prefix}".rstrip("/")
        return cls(out[0], f"s3:{where}")

    @classmethod
    def gcs(
        cls,
        bucket: str,
        *,
        prefix: str = "",
        base_url: str | None = None,
        service_account_key: str | None = None,
        service_account_path: str | None = None,
        bearer_token: str | None = None,
        anonymous: bool = False,
        read_only: bool = False,
    ) -> Storage:
        """Open a Google Cloud Storage bucket with exactly one kind of credentials (a service
        account key's JSON text, its file, a bearer token) or ``anonymous``; none are looked
        for elsewhere."""
        config, keep = _config("ZarrsGcsConfig", {
            "bucket": bucket, "prefix": prefix, "base_url": base_url,
            "service_account_key": service_account_key, "service_account_path": service_account_path,
            "bearer_token": bearer_token,
        }, anonymous=anonymous, read_only=read_only)
        out = ffi.new("ZarrsStorage **")
        check(lib().zarrs_storage_open_gcs(config, out))
        del keep
        where = f"{base_url or 'gcs'}/{bucket}/{prefix}".rstrip("/")
        return cls(out[0], f"gs:{where}")

    @classmethod
    def azure(
        cls,
        account: str,
        container: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        access_key: str | None = None,
        sas_token: str | None = None,
        bearer_token: str | None = None,
        anonymous: bool = False,
        read_only: bool = False,
    ) -> Storage:
        """Open an Azure Blob Storage container with exactly one kind of credentials (the
        account's key, a shared access signature, a bearer token) or ``anonymous``; none are
        looked for elsewhere. ``endpoint``: the account's blob URL (an emulator's ends with
        the account name)."""
        config, keep = _config("ZarrsAzureConfig", {
            "account": account, "container": container, "prefix": prefix, "endpoint": endpoint,
            "access_key": access_key, "sas_token": sas_token, "bearer_token": bearer_token,
        }, anonymous=anonymous, read_only=read_only)
        out = ffi.new("ZarrsStorage **")
        check(lib().zarrs_storage_open_azure(config, out))
        del keep
        where = f"{endpoint or account}/{container}/{prefix}".rstrip("/")
        return cls(out[0], f"az:{where}")

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
