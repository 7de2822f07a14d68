"""Which zarr stores map to native storage, and how.

A store maps natively when the native library can reach the same bytes itself; the
pipeline then never calls the store for chunk data. Any other store is reached through its
own Python API, and only the codecs run natively: ``storage_for`` says why, and
``codec_storage`` is the (never touched) storage such arrays are opened on. Native storage
objects are shared per store root, within a process: a forked child opens its own (a remote
storage's clients and I/O runtime belong to the process that opened it), and no lock is held
while one opens (opening a remote storage may start the library's I/O threads).
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any

from zarr.storage import LocalStore

from .._bindings import Storage

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = ["codec_storage", "storage_for"]

_lock = threading.Lock()
_cache: dict[tuple[Any, ...], Storage] = {}
_pid = os.getpid()
# Storages a forked child inherited from its parent: kept alive, never freed there (their
# clients and the I/O threads behind them belong to the parent), and never handed out.
_inherited: list[Storage] = []


def _after_fork_in_child() -> None:
    global _lock
    # A thread of the parent may have held the lock at the fork: it would never be released.
    _lock = threading.Lock()
    _forget_parent()


def _forget_parent() -> None:
    global _pid
    _inherited.extend(_cache.values())
    _cache.clear()
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def storage_for(store: Store, *, direct_io: bool = False) -> Storage | str:
    """The native storage reaching ``store``'s bytes, or the reason there is none."""
    # Exactly LocalStore: a subclass (or a mock with its spec) may override get/set, and
    # native I/O would silently bypass that Python code.
    if type(store) is LocalStore:
        return _filesystem(str(store.root), direct_io=direct_io, read_only=store.read_only)
    if isinstance(store, LocalStore):
        return f"{type(store).__name__} subclasses LocalStore and may intercept I/O in Python"
    name = type(store).__name__
    if name == "FsspecStore" and type(store).__module__.startswith("zarr."):
        return _fsspec(store, direct_io=direct_io)
    if name == "ObjectStore" and type(store).__module__.startswith("zarr."):
        return _obstore(store)
    return f"{name} has no native storage"


def _cached(key: tuple[Any, ...], open_storage: Any) -> Storage:
    """The storage for ``key`` opened in this process, opening it if needed."""
    with _lock:
        if _pid != os.getpid():  # forked without Python's fork handlers (a C-level fork)
            _forget_parent()
        storage = _cache.get(key)
    if storage is not None:
        return storage
    # Opened outside the lock: a remote storage may start threads, and a fork while the
    # lock is held elsewhere must not leave the child waiting for it. Two threads racing
    # here both open one; the first stored is shared and the other freed.
    storage = open_storage()
    with _lock:
        return _cache.setdefault(key, storage)


def _s3(
    bucket_and_prefix: str, *, endpoint: str | None, region: str | None, key: str | None, secret: str | None,
    token: str | None, anonymous: bool, path_style: bool, read_only: bool,
) -> Storage | str:
    bucket, _, prefix = bucket_and_prefix.strip("/").partition("/")
    if not bucket:
        return "S3 location without a bucket"
    if not anonymous and (key is None or secret is None):
        # The Python library resolves such credentials (environment, profiles, instance
        # metadata); only it knows which it picked.
        return "S3 credentials not given explicitly (resolved by the Python library)"
    if region is None and endpoint is None:
        return "S3 on AWS without an explicit region"
    settings = (bucket, prefix, endpoint, region, key, secret, token, anonymous, path_style, read_only)
    return _cached(
        ("s3", *settings),
        lambda: Storage.s3(
            bucket, prefix=prefix, endpoint=endpoint, region=region, access_key_id=key,
            secret_access_key=secret, session_token=token, anonymous=anonymous, path_style=path_style,
            read_only=read_only,
        ),
    )


_OBSTORE_S3_KEYS = {
    "bucket", "region", "endpoint", "access_key_id", "secret_access_key", "token", "session_token",
    "skip_signature", "virtual_hosted_style_request",
}


def _obstore(store: Any) -> Storage | str:
    """Native storage for zarr's ObjectStore over an obstore S3Store, GCSStore, AzureStore
    or HTTPStore."""
    inner = store.store
    kind = type(inner).__name__
    options = {k: str(v).lower() for k, v in (getattr(inner, "client_options", None) or {}).items()}
    if set(options) - {"allow_http"}:
        return f"obstore {kind} with client options {sorted(set(options) - {'allow_http'})}"
    if kind == "HTTPStore":
        return _cached(("http", inner.url), lambda: Storage.http(inner.url)) if store.read_only else (
            "obstore HTTPStore opened for writing"
        )
    if kind == "LocalStore" and inner.prefix is not None:
        return _filesystem(str(inner.prefix), direct_io=False, read_only=store.read_only)
    if kind == "GCSStore":
        return _obstore_gcs(inner, read_only=store.read_only)
    if kind == "AzureStore":
        return _obstore_azure(inner, read_only=store.read_only)
    if kind != "S3Store":
        return f"obstore {kind} has no native storage"
    config = dict(inner.config)
    unknown = set(config) - _OBSTORE_S3_KEYS
    if unknown:
        return f"obstore S3Store with settings {sorted(unknown)}"
    if getattr(inner, "credential_provider", None) is not None:
        return "obstore S3Store with a credential provider"
    prefix = str(inner.prefix or "")
    return _s3(
        f"{config['bucket']}/{prefix}", endpoint=config.get("endpoint"), region=config.get("region"),
        key=config.get("access_key_id"), secret=config.get("secret_access_key"),
        token=config.get("token") or config.get("session_token"),
        anonymous=str(config.get("skip_signature", "false")).lower() == "true",
        path_style=str(config.get("virtual_hosted_style_request", "false")).lower() != "true",
        read_only=store.read_only,
    )


def _gcs(
    bucket_and_prefix: str, *, base_url: str | None, service_account_key: str | None,
    service_account_path: str | None, token: str | None, anonymous: bool, read_only: bool,
) -> Storage | str:
    bucket, _, prefix = bucket_and_prefix.strip("/").partition("/")
    if not bucket:
        return "GCS location without a bucket"
    if not anonymous and service_account_key is None and service_account_path is None and token is None:
        return "GCS credentials not given explicitly (resolved by the Python library)"
    settings = (bucket, prefix, base_url, service_account_key, service_account_path, token, anonymous, read_only)
    return _cached(
        ("gcs", *settings),
        lambda: Storage.gcs(
            bucket, prefix=prefix, base_url=base_url, service_account_key=service_account_key,
            service_account_path=service_account_path, bearer_token=token, anonymous=anonymous,
            read_only=read_only,
        ),
    )


def _azure(
    account: str, container_and_prefix: str, *, endpoint: str | None, access_key: str | None,
    sas_token: str | None, token: str | None, anonymous: bool, read_only: bool,
) -> Storage | str:
    container, _, prefix = container_and_prefix.strip("/").partition("/")
    if not account or not container:
        return "Azure location without an account or a container"
    if not anonymous and access_key is None and sas_token is None and token is None:
        return "Azure credentials not given explicitly (resolved by the Python library)"
    settings = (account, container, prefix, endpoint, access_key, sas_token, token, anonymous, read_only)
    return _cached(
        ("azure", *settings),
        lambda: Storage.azure(
            account, container, prefix=prefix, endpoint=endpoint, access_key=access_key,
            sas_token=sas_token, bearer_token=token, anonymous=anonymous, read_only=read_only,
        ),
    )


def _true(value: object) -> bool:
    return str(value).lower() == "true"


_OBSTORE_GCS_KEYS = {"bucket", "base_url", "service_account", "service_account_key", "bearer_token", "skip_signature"}


def _obstore_gcs(inner: Any, *, read_only: bool) -> Storage | str:
    """Native storage for an obstore GCSStore whose settings are all explicit."""
    config = dict(inner.config)
    unknown = set(config) - _OBSTORE_GCS_KEYS
    if unknown:
        return f"obstore GCSStore with settings {sorted(unknown)}"
    if getattr(inner, "credential_provider", None) is not None:
        return "obstore GCSStore with a credential provider"
    return _gcs(
        f"{config['bucket']}/{inner.prefix or ''}", base_url=config.get("base_url"),
        service_account_key=config.get("service_account_key"), service_account_path=config.get("service_account"),
        token=config.get("bearer_token"), anonymous=_true(config.get("skip_signature")), read_only=read_only,
    )


_OBSTORE_AZURE_KEYS = {
    "account_name", "container_name", "account_key", "access_key", "sas_key", "token", "bearer_token",
    "endpoint", "skip_signature", "use_emulator",
}
# Azurite's account and key, which obstore uses with `use_emulator` unless told otherwise
# (Microsoft publishes both: they are the emulator's, not a secret).
_EMULATOR_ACCOUNT = "devstoreaccount1"
_EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _obstore_azure(inner: Any, *, read_only: bool) -> Storage | str:
    """Native storage for an obstore AzureStore whose settings are all explicit."""
    config = dict(inner.config)
    unknown = set(config) - _OBSTORE_AZURE_KEYS
    if unknown:
        return f"obstore AzureStore with settings {sorted(unknown)}"
    if getattr(inner, "credential_provider", None) is not None:
        return "obstore AzureStore with a credential provider"
    account = config.get("account_name")
    key = config.get("account_key") or config.get("access_key")
    endpoint = config.get("endpoint")
    sas, token = config.get("sas_key"), config.get("token") or config.get("bearer_token")
    if _true(config.get("use_emulator")):
        # object_store's emulator mode: the account in the path, Azurite's account and key
        # unless others are given, the address from AZURITE_BLOB_STORAGE_URL or Azurite's.
        account = account or _EMULATOR_ACCOUNT
        base = os.environ.get("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:10000").rstrip("/")
        endpoint = f"{base}/{account}"
        if key is None and sas is None and token is None:
            key = _EMULATOR_KEY
    return _azure(
        account or "", f"{config.get('container_name', '')}/{inner.prefix or ''}", endpoint=endpoint,
        access_key=key, sas_token=sas, token=token, anonymous=_true(config.get("skip_signature")),
        read_only=read_only,
    )


def _gcsfs(store: Any, inner: Any) -> Storage | str:
    """Native storage for an FsspecStore over gcsfs, with the credentials gcsfs resolved."""
    if inner.requester_pays or inner.session_kwargs or inner.version_aware:
        return "FsspecStore over GCS with client settings the native store does not map"
    resolved = inner.credentials
    given, google = resolved.token, resolved.credentials
    key = path = token = None
    anonymous = resolved.method == "anon"
    if not anonymous:
        kind = f"{type(google).__module__}.{type(google).__name__}"
        if kind == "google.oauth2.service_account.Credentials" and isinstance(given, str) and os.path.isfile(given):
            path = given
        elif kind == "google.oauth2.service_account.Credentials" and isinstance(given, dict):
            key = json.dumps(given)
        elif kind == "google.oauth2.credentials.Credentials" and google.refresh_token is None and google.token:
            # An access token alone, which gcsfs cannot refresh either: sent as it is.
            token = google.token
        else:
            return "GCS credentials resolved by the Python library (default, cached, metadata server or refreshable)"
    return _gcs(
        str(store.path), base_url=str(inner._location), service_account_key=key, service_account_path=path,
        token=token, anonymous=anonymous, read_only=store.read_only,
    )


def _adlfs(store: Any, inner: Any) -> Storage | str:
    """Native storage for an FsspecStore over adlfs, with the credentials its Azure client
    resolved (from the arguments, a connection string or the environment)."""
    if inner.version_aware or inner.location_mode != "primary":
        return "FsspecStore over Azure with client settings the native store does not map"
    client = inner.service_client
    policy = client.credential
    key = sas = None
    if policy is not None:
        if type(policy).__name__ != "SharedKeyCredentialPolicy":
            return "Azure credentials resolved by the Python library (a token credential)"
        key = policy.account_key
    elif client._query_str:
        sas = client._query_str.lstrip("?")
    return _azure(
        client.account_name or "", str(store.path), endpoint=f"{client.scheme}://{client.primary_hostname}",
        access_key=key, sas_token=sas, token=None, anonymous=policy is None and sas is None,
        read_only=store.read_only,
    )


def _filesystem(root: str, *, direct_io: bool, read_only: bool) -> Storage:
    return _cached(
        ("filesystem", root, direct_io, read_only),
        lambda: Storage.filesystem(root, direct_io=direct_io, read_only=read_only),
    )


def _fsspec(store: Any, *, direct_io: bool) -> Storage | str:
    """Native storage for a zarr FsspecStore whose filesystem we can reach ourselves."""
    fs = store.fs
    # zarr wraps synchronous filesystems (such as the local one) in an async wrapper.
    inner = getattr(fs, "sync_fs", fs)
    protocols = inner.protocol if isinstance(inner.protocol, tuple) else (inner.protocol,)
    kind = type(inner).__name__
    if kind == "LocalFileSystem" and "file" in protocols:
        return _filesystem(str(store.path), direct_io=direct_io, read_only=store.read_only)
    if kind == "HTTPFileSystem":
        if not store.read_only:
            return "FsspecStore over HTTP opened for writing"
        if getattr(inner, "client_kwargs", None) or getattr(inner, "kwargs", None):
            return "FsspecStore over HTTP with client settings (headers, auth)"
        url = str(store.path)
        return _cached(("http", url), lambda: Storage.http(url))
    if kind == "S3FileSystem":
        client = dict(getattr(inner, "client_kwargs", None) or {})
        endpoint = client.pop("endpoint_url", None) or getattr(inner, "endpoint_url", None)
        region = client.pop("region_name", None) or (None if endpoint is None else "us-east-1")
        if client or getattr(inner, "config_kwargs", None) or getattr(inner, "requester_pays", False):
            return "FsspecStore over S3 with client settings the native store does not map"
        return _s3(
            str(store.path), endpoint=endpoint, region=region, key=inner.key, secret=inner.secret,
            token=inner.token, anonymous=bool(inner.anon), path_style=endpoint is not None,
            read_only=store.read_only,
        )
    if kind in ("GCSFileSystem", "ExtendedGcsFileSystem") and type(inner).__module__.startswith("gcsfs."):
        return _gcsfs(store, inner)
    if kind == "AzureBlobFileSystem" and type(inner).__module__.startswith("adlfs."):
        return _adlfs(store, inner)
    return f"FsspecStore over {protocols[0]!r} has no native storage"


def codec_storage() -> Storage:
    """The storage of arrays whose bytes move through Python: in memory, and never used."""
    global _codec_storage
    with _lock:
        if _codec_storage is None:
            _codec_storage = Storage.memory()
        return _codec_storage


_codec_storage: Storage | None = None
