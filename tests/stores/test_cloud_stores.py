"""Google Cloud Storage and Azure Blob Storage against servers on 127.0.0.1: GCS is
gcp-storage-emulator (``gcs_server.py``), Azure is our own small server (``azure_server.py``,
not Azurite: no Azure emulator can be installed here). Each store is reached through fsspec
(gcsfs, adlfs) and through obstore (GCSStore, AzureStore).

Written and read through our pipeline and through zarr's: same values, same keys, and the
native library moves every chunk's bytes itself. Credentials the Python library resolved
(explicit keys, tokens, SAS, anonymous, emulator endpoints) are what the native store uses;
credentials it cannot take stay in Python, saying why. Wrong credentials and missing buckets
are clear errors. The direct API opens ``gs://``, ``az://`` and ``abfs://`` URLs.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any

# gcsfs's default class first asks GCS's control plane (over gRPC, TLS) what kind of bucket
# it has; the emulator has no such service, so every first use would wait a minute for it.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import numpy as np
import pytest
import zarr
from conftest import ZARR_PIPELINE, ZARRS_PIPELINE, assert_read_route, assert_route, assert_same, make_data, python_io_reason
from servers import azure_blob_server, gcs_emulator
from zarr.storage import FsspecStore, ObjectStore

import zarrs_cffi
from zarrs_cffi import Array
from zarrs_cffi._bindings import ArrayHandle, Storage
from zarrs_cffi._core.metadata import metadata_json
from zarrs_cffi._pipeline.stores import storage_for

pytest.importorskip("gcsfs")
pytest.importorskip("adlfs")
pytest.importorskip("obstore")
pytest.importorskip("gcp_storage_emulator")

BUCKET = "zarrs-cloud"
PUBLIC = "zarrs-public"
SHAPE = (40, 50)
TOKEN = "test-token"


@pytest.fixture(scope="module")
def gcs():
    with gcs_emulator(tokens=(TOKEN,), public=(PUBLIC,)) as server:
        server.create_bucket(BUCKET)
        server.create_bucket(PUBLIC)
        yield server


@pytest.fixture(scope="module")
def azure():
    with azure_blob_server() as server:
        server.create_container(BUCKET)
        server.create_container(PUBLIC, public=True)
        yield server


def _gcsfs(server: Any, prefix: str, bucket: str = BUCKET, **options: Any) -> FsspecStore:
    return FsspecStore.from_url(f"gs://{bucket}/{prefix}", storage_options=server.gcsfs_options(**options))


def _gcs_obstore(server: Any, prefix: str, bucket: str = BUCKET, **config: Any) -> ObjectStore:
    return ObjectStore(server.obstore(bucket, prefix=prefix, **config))


def _adlfs(server: Any, prefix: str, container: str = BUCKET, **options: Any) -> FsspecStore:
    options = options or {"connection_string": server.connection_string()}
    return FsspecStore.from_url(f"az://{container}/{prefix}", storage_options=options)


def _azure_obstore(server: Any, prefix: str, container: str = BUCKET, **config: Any) -> ObjectStore:
    from obstore.store import AzureStore

    config = config or {"account_key": server.key}
    inner = AzureStore(
        container, prefix=prefix, account_name=server.account, endpoint=server.endpoint,
        client_options={"allow_http": True}, **config,
    )
    return ObjectStore(inner)


STORES = {
    "gcsfs": ("gcs", _gcsfs),
    "gcs-obstore": ("gcs", _gcs_obstore),
    "adlfs": ("azure", _adlfs),
    "azure-obstore": ("azure", _azure_obstore),
}


def _server(request: pytest.FixtureRequest, kind: str) -> Any:
    return request.getfixturevalue(STORES[kind][0])


def _keys(store: Any) -> set[str]:
    async def collect() -> set[str]:
        return {key async for key in store.list()}

    return zarr.core.sync.sync(collect())


def _exercise(store: Any, pipeline: str, data: np.ndarray[Any, Any], **kwargs: Any) -> tuple[Any, ...]:
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        arr = zarr.create_array(store, shape=SHAPE, dtype=data.dtype, fill_value=0, **kwargs)
        if pipeline == ZARRS_PIPELINE:
            assert python_io_reason(arr) is None  # the library reaches the store itself
        arr[:] = data
        arr[5:33, 7:9] = 1
        arr[30:, :20] = 0  # whole chunks back to the fill value: deleted
        arr.vindex[[0, 39], [0, 49]] = 5
        return arr[:], arr[3:21, 10:45], arr.oindex[[39, 2], ::3]


@pytest.mark.parametrize("sharded", [False, True], ids=["chunked", "sharded"])
@pytest.mark.parametrize("kind", list(STORES))
def test_cloud_store_matches_zarr_natively(request, kind, sharded):
    server, make = _server(request, kind), STORES[kind][1]
    kwargs: dict[str, Any] = {"chunks": (10, 10)} if not sharded else {"chunks": (5, 5), "shards": (10, 25)}
    data = make_data("float32", SHAPE, seed=60)
    run = uuid.uuid4().hex
    ours_store = make(server, f"{run}/ours")
    zarrs_cffi.reset_stats()
    ours = _exercise(ours_store, ZARRS_PIPELINE, data, **kwargs)
    s = zarrs_cffi.stats()
    theirs_store = make(server, f"{run}/theirs")
    if sharded and STORES[kind][0] == "azure":
        # zarr's pipeline reads a shard's index as a suffix range, which neither Python
        # library can ask Azure for (adlfs sends `bytes=-n-m`, object_store refuses): its
        # reference runs in memory. (The native store reads it as a HEAD and a bounded range.)
        from zarr.storage import MemoryStore

        theirs_store = MemoryStore()
    theirs = _exercise(theirs_store, ZARR_PIPELINE, data, **kwargs)
    for got, expected in zip(ours, theirs, strict=True):
        assert_same(got, expected)
    assert _keys(ours_store) == _keys(theirs_store)
    assert_route(s, native_io=True)


@pytest.mark.parametrize("kind", list(STORES))
def test_concurrent_multi_chunk_writes_are_native_and_complete(request, kind):
    # Eight threads each write a band of rows spanning many chunks and shards at once; every
    # value lands, as zarr's own pipeline writes them.
    server, make = _server(request, kind), STORES[kind][1]
    shape = (64, 60)
    data = make_data("int32", shape, seed=61)
    store = make(server, uuid.uuid4().hex)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(store, shape=shape, chunks=(4, 6), shards=(8, 30), dtype="int32", fill_value=-1)
        assert python_io_reason(arr) is None
        zarrs_cffi.reset_stats()
        errors: list[BaseException] = []

        def write(band: int) -> None:
            try:
                arr[band * 8:(band + 1) * 8, :] = data[band * 8:(band + 1) * 8, :]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(band,)) for band in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        assert_same(arr[:], data)
    assert_route(zarrs_cffi.stats(), native_io=True)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        assert_same(zarr.open_array(store, mode="r")[:], data)


# --- credentials ---------------------------------------------------------------------------


def _native_read(storage: Storage, arr: zarr.Array) -> np.ndarray[Any, Any]:
    native = ArrayHandle.open_with_metadata(storage, metadata_json(arr.metadata))
    out = np.empty(arr.shape, dtype=arr.dtype)
    native.retrieve_subset(zarrs_cffi.Options(), (0,) * len(arr.shape), out)
    return out


def _written(store: Any, data: np.ndarray[Any, Any]) -> zarr.Array:
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(store, shape=data.shape, chunks=(10, 10), dtype=data.dtype)
        arr[:] = data
    return arr


def test_gcs_bearer_token_is_sent_and_a_wrong_one_is_refused(gcs):
    prefix = uuid.uuid4().hex
    data = make_data("uint16", SHAPE, seed=62)
    arr = _written(_gcsfs(gcs, prefix), data)
    right = Storage.gcs(BUCKET, prefix=prefix, base_url=gcs.endpoint, bearer_token=TOKEN)
    assert_same(_native_read(right, arr), data)
    wrong = Storage.gcs(BUCKET, prefix=prefix, base_url=gcs.endpoint, bearer_token="wrong")
    with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)401|authentication|credentials") as info:
        _native_read(wrong, arr)
    assert isinstance(info.value, OSError)
    # Through zarr: gcsfs's and obstore's wrong token, natively refused on write.
    for store in (_gcsfs(gcs, prefix, token="wrong"), _gcs_obstore(gcs, prefix, bearer_token="wrong")):
        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
            opened = zarr.open_array(_gcsfs(gcs, prefix), mode="r+")  # metadata with the right token
            zarrs_cffi.reset_stats()
            native = ArrayHandle.open_with_metadata(
                storage_for(store), metadata_json(opened.metadata)
            )
            with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)401|authentication|credentials"):
                native.store_subset(zarrs_cffi.Options(), (0, 0), np.zeros((10, 10), dtype="uint16"))


@pytest.mark.parametrize("credentials", ["access_key", "sas_token", "bearer_token"])
def test_azure_credentials_are_used_and_wrong_ones_refused(azure, credentials):
    prefix = uuid.uuid4().hex
    data = make_data("int16", SHAPE, seed=63)
    arr = _written(_adlfs(azure, prefix), data)
    right = {"access_key": azure.key, "sas_token": azure.issue_sas(), "bearer_token": azure.issue_token()}[credentials]
    wrong = {"access_key": "d3Jvbmcga2V5", "sas_token": "sv=2021-08-06&sig=d3Jvbmc%3D", "bearer_token": "wrong"}[credentials]
    storage = Storage.azure(azure.account, BUCKET, prefix=prefix, endpoint=azure.endpoint, **{credentials: right})
    assert_same(_native_read(storage, arr), data)
    storage = Storage.azure(azure.account, BUCKET, prefix=prefix, endpoint=azure.endpoint, **{credentials: wrong})
    with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)40[13]|authenticat|privileges|credentials") as info:
        _native_read(storage, arr)
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize("kind", ["adlfs-key", "adlfs-sas", "obstore-sas", "obstore-token"])
def test_azure_credentials_the_python_library_resolved_stay_native(azure, kind):
    prefix = uuid.uuid4().hex
    data = make_data("float64", SHAPE, seed=64)
    if kind == "adlfs-key":
        store = _adlfs(azure, prefix, account_name=azure.account, account_key=azure.key,
                       account_host=azure.endpoint.removeprefix("http://"))
        # adlfs builds an https URL from account_host; the emulator speaks http: the
        # connection string is how adlfs reaches it, so this one is only mapped, not used.
        reason = storage_for(store)
        assert isinstance(reason, Storage), reason
        assert reason.description.startswith("az:https://127.0.0.1")
        return
    if kind == "adlfs-sas":
        sas = azure.issue_sas()
        store = _adlfs(azure, prefix, connection_string=f"BlobEndpoint={azure.endpoint};SharedAccessSignature={sas}")
    elif kind == "obstore-sas":
        store = _azure_obstore(azure, prefix, sas_key=azure.issue_sas())
    else:
        store = _azure_obstore(azure, prefix, token=azure.issue_token())
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(store, shape=SHAPE, chunks=(10, 10), dtype="float64")
        assert python_io_reason(arr) is None
        zarrs_cffi.reset_stats()
        arr[:] = data
        assert_same(arr[:], data)
    assert_route(zarrs_cffi.stats(), native_io=True)


def _service_account(directory: Any) -> tuple[str, str]:
    """A service account key (its JSON text, and a file holding it) with a fresh RSA key: the
    emulator checks no signature, but the native store must parse it and sign with it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    text = json.dumps({
        "type": "service_account", "project_id": "test", "private_key_id": "k1", "private_key": pem.decode(),
        "client_email": "zarrs@test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    })
    path = os.path.join(directory, "service-account.json")
    with open(path, "w") as f:
        f.write(text)
    return text, path


@pytest.mark.parametrize("given", ["key", "path"])
def test_gcs_service_account_is_native(tmp_path, given):
    text, path = _service_account(tmp_path)
    data = make_data("int8", SHAPE, seed=65)
    with gcs_emulator() as server:
        server.create_bucket(BUCKET)
        config = {"service_account_key": text} if given == "key" else {"service_account": path}
        store = _gcs_obstore(server, "sa", **config)
        with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
            arr = zarr.create_array(store, shape=SHAPE, chunks=(10, 10), dtype="int8")
            assert python_io_reason(arr) is None
            zarrs_cffi.reset_stats()
            arr[:] = data
            assert_same(arr[:], data)
        assert_route(zarrs_cffi.stats(), native_io=True)
        # gcsfs given the same file maps to it too (gcsfs itself would exchange it for a token
        # at the key's token URI, which is not served here).
        mapped = storage_for(
            FsspecStore.from_url(f"gs://{BUCKET}/sa", storage_options={"endpoint_url": server.endpoint, "token": path})
        )
        assert isinstance(mapped, Storage), mapped
    with pytest.raises(zarrs_cffi.ZarrsValueError, match="invalid remote store settings"):
        Storage.gcs(BUCKET, service_account_key='{"type": "service_account"}')


@pytest.mark.parametrize("service", ["gcs", "azure"])
@pytest.mark.parametrize("kind", ["fsspec", "obstore"])
def test_anonymous_reads_of_a_public_bucket_are_native(request, service, kind):
    server = request.getfixturevalue(service)
    prefix = uuid.uuid4().hex
    data = make_data("uint8", SHAPE, seed=66)
    writer = _gcsfs(server, prefix, PUBLIC) if service == "gcs" else _adlfs(server, prefix, PUBLIC)
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        zarr.create_array(writer, shape=SHAPE, chunks=(10, 10), dtype="uint8")[:] = data
    if service == "gcs":
        store = (FsspecStore.from_url(f"gs://{PUBLIC}/{prefix}", read_only=True,
                                      storage_options={"endpoint_url": server.endpoint, "token": "anon"})
                 if kind == "fsspec" else ObjectStore(server.obstore(PUBLIC, prefix=prefix, skip_signature=True), read_only=True))
    elif kind == "fsspec":
        store = FsspecStore.from_url(
            f"az://{PUBLIC}/{prefix}", read_only=True,
            storage_options={"connection_string": f"BlobEndpoint={server.endpoint};"},
        )
    else:
        store = ObjectStore(_azure_obstore(server, prefix, PUBLIC, skip_signature=True).store, read_only=True)
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.open_array(store, mode="r")
        assert python_io_reason(arr) is None
        zarrs_cffi.reset_stats()
        assert_same(arr[:], data)
        assert_same(arr[7:33, 1:49], data[7:33, 1:49])
    assert_read_route(zarrs_cffi.stats(), native_io=True)
    # The same unsigned requests on a private bucket are refused.
    private = (Storage.gcs(BUCKET, base_url=server.endpoint, anonymous=True) if service == "gcs"
               else Storage.azure(server.account, BUCKET, endpoint=server.endpoint, anonymous=True))
    native = ArrayHandle.open_with_metadata(private, metadata_json(arr.metadata), "/" + prefix)
    with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)40[13]|authenticat|credentials|privileges"):
        native.retrieve_subset(zarrs_cffi.Options(), (0, 0), np.empty(SHAPE, dtype="uint8"))


def test_credentials_only_python_can_use_stay_in_python_saying_why(gcs, azure):
    from google.oauth2.credentials import Credentials
    from obstore.store import AzureStore, GCSStore

    data = make_data("int32", SHAPE, seed=67)
    prefix = uuid.uuid4().hex
    # A refreshable user credential: only google-auth can refresh it.
    refreshable = Credentials(token=TOKEN, refresh_token="r", client_id="c", client_secret="s",
                              token_uri="http://127.0.0.1:9/token")
    gcsfs_store = FsspecStore.from_url(
        f"gs://{BUCKET}/{prefix}", storage_options={"endpoint_url": gcs.endpoint, "token": refreshable}
    )
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        arr = zarr.create_array(gcsfs_store, shape=SHAPE, chunks=(10, 10), dtype="int32")
        assert python_io_reason(arr) == (
            "GCS credentials resolved by the Python library (default, cached, metadata server or refreshable)"
        )
        zarrs_cffi.reset_stats()
        arr[:] = data
        assert_same(arr[:], data)  # through gcsfs, zarrs decoding
    assert_route(zarrs_cffi.stats(), native_io=False)

    def provider() -> dict[str, Any]:
        return {"token": TOKEN, "expires_at": None}

    gcs_store = ObjectStore(GCSStore(BUCKET, base_url=gcs.endpoint, credential_provider=provider,
                                     client_options={"allow_http": True}))
    assert storage_for(gcs_store) == "obstore GCSStore with a credential provider"
    azure_store = ObjectStore(AzureStore(BUCKET, account_name=azure.account, endpoint=azure.endpoint,
                                         client_id="c", tenant_id="t", client_secret="s"))
    assert storage_for(azure_store) == (
        "obstore AzureStore with settings ['client_id', 'client_secret', 'tenant_id']"
    )


# --- missing buckets -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(STORES))
def test_missing_bucket_or_container_is_a_clear_error(request, kind):
    server, make = _server(request, kind), STORES[kind][1]
    bucket, prefix = f"gone-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    with zarr.config.set({"codec_pipeline.path": ZARRS_PIPELINE}):
        # A real bucket's metadata, then the chunks pointed at one that does not exist.
        arr = zarr.create_array(make(server, prefix), shape=(4,), chunks=(2,), dtype="int8", fill_value=-1)
    store = make(server, prefix, bucket)
    storage = storage_for(store)
    assert isinstance(storage, Storage), storage
    native = ArrayHandle.open_with_metadata(storage, metadata_json(arr.metadata))
    with pytest.raises(zarrs_cffi.ZarrsStorageError, match="(?i)bucket|container|404|not ?found") as info:
        native.store_subset(zarrs_cffi.Options(), (0,), np.ones(4, dtype="int8"))
    assert isinstance(info.value, OSError)


# --- the direct API ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["gs", "az", "abfs"])
def test_direct_api_opens_cloud_urls(request, scheme):
    server = request.getfixturevalue("gcs" if scheme == "gs" else "azure")
    options = server.gcsfs_options() if scheme == "gs" else {"connection_string": server.connection_string()}
    url = f"{scheme}://{BUCKET}/{uuid.uuid4().hex}"
    data = make_data("float32", (40, 30), seed=68)
    # Sharded on GCS; on Azure zarr's own pipeline (the reference here) cannot read shards
    # through adlfs (it asks for a suffix range as `bytes=-n-m`).
    layout: dict[str, Any] = {"chunks": (8, 10), "shards": (16, 30)} if scheme == "gs" else {"chunks": (8, 10)}
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        store = FsspecStore.from_url(url, storage_options=options)
        zarr.create_array(store, name="grp/arr", shape=data.shape, dtype="float32", **layout)[...] = data
    direct = Array.open(url, "grp/arr", storage_options=options)
    np.testing.assert_array_equal(direct[:], data)
    np.testing.assert_array_equal(direct.oindex[[39, 0, 17], [1, 29]], data[np.ix_([39, 0, 17], [1, 29])])
    direct[8:16, :] = -1
    data[8:16, :] = -1
    with zarr.config.set({"codec_pipeline.path": ZARR_PIPELINE}):
        theirs = zarr.open_array(FsspecStore.from_url(url, storage_options=options), path="grp/arr", mode="r")
        np.testing.assert_array_equal(theirs[:], data)


def test_direct_api_says_why_a_cloud_url_is_not_reachable(gcs):
    from google.oauth2.credentials import Credentials

    refreshable = Credentials(token=TOKEN, refresh_token="r", client_id="c", client_secret="s",
                              token_uri="http://127.0.0.1:9/token")
    with pytest.raises(zarrs_cffi.ZarrsUnsupportedError, match="cannot reach .* GCS credentials"):
        Array.open(f"gs://{BUCKET}/x", "a", storage_options={"endpoint_url": gcs.endpoint, "token": refreshable})
