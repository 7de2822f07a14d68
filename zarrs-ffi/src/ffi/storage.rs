//! The `extern "C"` calls on storage handles: open (S3, GCS, Azure, HTTP, a directory,
//! memory) and free.

use std::ffi::c_char;

use crate::args;
use crate::error::ZarrsResult;
use crate::handles::ZarrsStorage;
use crate::panic::boundary;
use crate::registry;
use crate::storage::{AzureSettings, GcsSettings, S3Settings};

/// Settings of an S3-compatible object store. Every string is UTF-8 with its length in
/// bytes; a NULL pointer leaves a setting unset. Flags are `uint8_t`: 0 is false, any
/// other value true. The library copies what it needs; the caller keeps ownership of the
/// struct and its strings, which need only live for the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ZarrsS3Config {
    /// The bucket (required).
    pub bucket: *const c_char,
    pub bucket_len: usize,
    /// Key prefix inside the bucket ("" or NULL: the bucket root).
    pub prefix: *const c_char,
    pub prefix_len: usize,
    /// Endpoint URL of an S3-compatible server (NULL: AWS for `region`).
    pub endpoint: *const c_char,
    pub endpoint_len: usize,
    /// Region (NULL: `us-east-1`).
    pub region: *const c_char,
    pub region_len: usize,
    pub access_key_id: *const c_char,
    pub access_key_id_len: usize,
    pub secret_access_key: *const c_char,
    pub secret_access_key_len: usize,
    pub session_token: *const c_char,
    pub session_token_len: usize,
    /// Nonzero: send unsigned requests (public buckets); credentials are then ignored.
    pub anonymous: u8,
    /// Nonzero: address buckets as `endpoint/bucket` (as most S3-compatible servers want)
    /// rather than `bucket.endpoint`.
    pub path_style: u8,
    /// Nonzero: writes and erases fail with `ZARRS_ERROR_READ_ONLY`.
    pub read_only: u8,
}

/// Open an S3-compatible object store. Keys are stored under `prefix` in the bucket.
/// Credentials are used exactly as given (none are read from the environment). Plain
/// `http://` endpoints are allowed.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_s3(config: *const ZarrsS3Config, storage_out: *mut *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        // SAFETY: a valid config per the contract; each string addresses its length.
        let settings = unsafe {
            let config = args::read(config, "config")?;
            S3Settings {
                bucket: args::str(config.bucket, config.bucket_len, "bucket")?,
                prefix: args::optional_str(config.prefix, config.prefix_len, "prefix")?.unwrap_or(""),
                endpoint: args::optional_str(config.endpoint, config.endpoint_len, "endpoint")?,
                region: args::optional_str(config.region, config.region_len, "region")?,
                access_key_id: args::optional_str(config.access_key_id, config.access_key_id_len, "access_key_id")?,
                secret_access_key: args::optional_str(config.secret_access_key, config.secret_access_key_len, "secret_access_key")?,
                session_token: args::optional_str(config.session_token, config.session_token_len, "session_token")?,
                anonymous: config.anonymous != 0,
                path_style: config.path_style != 0,
                read_only: config.read_only != 0,
            }
        };
        let storage = ZarrsStorage::s3(&settings)?;
        // SAFETY: checked non-NULL above; a writable pointer slot per the contract.
        unsafe { args::write_out(storage_out, registry::issue(storage)) }
    })
}

/// Settings of a Google Cloud Storage bucket. Every string is UTF-8 with its length in bytes;
/// a NULL pointer leaves a setting unset. Flags are `uint8_t`: 0 is false, any other value
/// true. The library copies what it needs; the caller keeps ownership of the struct and its
/// strings, which need only live for the call.
///
/// Credentials: exactly one of `service_account_key`, `service_account_path` and
/// `bearer_token`, or `anonymous`. None are looked for elsewhere (no application default
/// credentials, metadata server or environment).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ZarrsGcsConfig {
    /// The bucket (required).
    pub bucket: *const c_char,
    pub bucket_len: usize,
    /// Key prefix inside the bucket ("" or NULL: the bucket root).
    pub prefix: *const c_char,
    pub prefix_len: usize,
    /// Base URL of the service, such as an emulator's `http://127.0.0.1:4443` (NULL:
    /// `https://storage.googleapis.com`, or the service account's `gcs_base_url`).
    pub base_url: *const c_char,
    pub base_url_len: usize,
    /// A service account key: the JSON text of its key file. Requests carry tokens the
    /// library signs with it (no token exchange).
    pub service_account_key: *const c_char,
    pub service_account_key_len: usize,
    /// The path of a service account key file, read when the store opens.
    pub service_account_path: *const c_char,
    pub service_account_path_len: usize,
    /// An OAuth 2 access token, sent as is (`Authorization: Bearer ...`) until the storage
    /// is freed: the library does not refresh it.
    pub bearer_token: *const c_char,
    pub bearer_token_len: usize,
    /// Nonzero: send unsigned requests (public buckets); credentials are then ignored.
    pub anonymous: u8,
    /// Nonzero: writes and erases fail with `ZARRS_ERROR_READ_ONLY`.
    pub read_only: u8,
}

/// Open a Google Cloud Storage bucket. Keys are stored under `prefix` in the bucket.
/// Plain `http://` base URLs (emulators) are allowed. Bad settings (a missing bucket name,
/// no credentials or more than one kind, a key that does not parse) are
/// `ZARRS_ERROR_INVALID_ARGUMENT`; opening sends no request.
///
/// - `storage_out`: receives a new handle on success; free it with [`zarrs_storage_free`].
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_gcs(config: *const ZarrsGcsConfig, storage_out: *mut *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        // SAFETY: a valid config per the contract; each string addresses its length.
        let settings = unsafe {
            let config = args::read(config, "config")?;
            GcsSettings {
                bucket: args::str(config.bucket, config.bucket_len, "bucket")?,
                prefix: args::optional_str(config.prefix, config.prefix_len, "prefix")?.unwrap_or(""),
                base_url: args::optional_str(config.base_url, config.base_url_len, "base_url")?,
                service_account_key: args::optional_str(config.service_account_key, config.service_account_key_len, "service_account_key")?,
                service_account_path: args::optional_str(config.service_account_path, config.service_account_path_len, "service_account_path")?,
                bearer_token: args::optional_str(config.bearer_token, config.bearer_token_len, "bearer_token")?,
                anonymous: config.anonymous != 0,
                read_only: config.read_only != 0,
            }
        };
        let storage = ZarrsStorage::gcs(&settings)?;
        // SAFETY: checked non-NULL above; a writable pointer slot per the contract.
        unsafe { args::write_out(storage_out, registry::issue(storage)) }
    })
}

/// Settings of an Azure Blob Storage container. Every string is UTF-8 with its length in
/// bytes; a NULL pointer leaves a setting unset. Flags are `uint8_t`: 0 is false, any other
/// value true. The library copies what it needs; the caller keeps ownership of the struct
/// and its strings, which need only live for the call.
///
/// Credentials: exactly one of `access_key`, `sas_token` and `bearer_token`, or
/// `anonymous`. None are looked for elsewhere (no managed identity, Azure CLI or
/// environment).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ZarrsAzureConfig {
    /// The storage account (required).
    pub account: *const c_char,
    pub account_len: usize,
    /// The container (required).
    pub container: *const c_char,
    pub container_len: usize,
    /// Key prefix inside the container ("" or NULL: the container root).
    pub prefix: *const c_char,
    pub prefix_len: usize,
    /// The account's blob service URL (NULL: `https://{account}.blob.core.windows.net`). An
    /// emulator's includes the account: `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: *const c_char,
    pub endpoint_len: usize,
    /// The account's shared key (base64), which signs every request.
    pub access_key: *const c_char,
    pub access_key_len: usize,
    /// A shared access signature: its query string (`sv=...&sig=...`, a leading `?` allowed).
    pub sas_token: *const c_char,
    pub sas_token_len: usize,
    /// A Microsoft Entra ID access token, sent as is (`Authorization: Bearer ...`) until the
    /// storage is freed: the library does not refresh it.
    pub bearer_token: *const c_char,
    pub bearer_token_len: usize,
    /// Nonzero: send unsigned requests (public containers); credentials are then ignored.
    pub anonymous: u8,
    /// Nonzero: writes and erases fail with `ZARRS_ERROR_READ_ONLY`.
    pub read_only: u8,
}

/// Open an Azure Blob Storage container. Keys are stored under `prefix` in the container.
/// Plain `http://` endpoints (emulators) are allowed. Bad settings (a missing account or
/// container, no credentials or more than one kind, an access key that is not base64) are
/// `ZARRS_ERROR_INVALID_ARGUMENT`; opening sends no request.
///
/// - `storage_out`: receives a new handle on success; free it with [`zarrs_storage_free`].
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_azure(config: *const ZarrsAzureConfig, storage_out: *mut *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        // SAFETY: a valid config per the contract; each string addresses its length.
        let settings = unsafe {
            let config = args::read(config, "config")?;
            AzureSettings {
                account: args::str(config.account, config.account_len, "account")?,
                container: args::str(config.container, config.container_len, "container")?,
                prefix: args::optional_str(config.prefix, config.prefix_len, "prefix")?.unwrap_or(""),
                endpoint: args::optional_str(config.endpoint, config.endpoint_len, "endpoint")?,
                access_key: args::optional_str(config.access_key, config.access_key_len, "access_key")?,
                sas_token: args::optional_str(config.sas_token, config.sas_token_len, "sas_token")?,
                bearer_token: args::optional_str(config.bearer_token, config.bearer_token_len, "bearer_token")?,
                anonymous: config.anonymous != 0,
                read_only: config.read_only != 0,
            }
        };
        let storage = ZarrsStorage::azure(&settings)?;
        // SAFETY: checked non-NULL above; a writable pointer slot per the contract.
        unsafe { args::write_out(storage_out, registry::issue(storage)) }
    })
}

/// Open a read-only HTTP(S) store: keys are fetched from `url/key` (byte ranges for partial
/// reads). Every write or erase fails with `ZARRS_ERROR_READ_ONLY`.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_http(url: *const c_char, url_len: usize, storage_out: *mut *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        // SAFETY: `url_len` readable bytes at `url` per the contract.
        let url = unsafe { args::str(url, url_len, "url")? };
        let storage = ZarrsStorage::http(url)?;
        // SAFETY: checked non-NULL above; a writable pointer slot per the contract.
        unsafe { args::write_out(storage_out, registry::issue(storage)) }
    })
}

/// Open a directory as storage. Keys map to paths below `path`; the directory need not
/// exist yet (it is created on the first write).
///
/// - `path`, `path_len`: the directory, UTF-8, not NUL-terminated.
/// - `direct_io`: nonzero to read with `O_DIRECT` (Linux; the filesystem must support it).
/// - `read_only`: nonzero to make every write or erase fail with `ZARRS_ERROR_READ_ONLY`.
/// - `storage_out`: receives a new handle on success; free it with [`zarrs_storage_free`].
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_filesystem(
    path: *const c_char,
    path_len: usize,
    direct_io: u8,
    read_only: u8,
    storage_out: *mut *mut ZarrsStorage,
) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        // SAFETY: the caller passes `path_len` readable bytes at `path` for this call.
        let path = unsafe { args::str(path, path_len, "path")? };
        let storage = ZarrsStorage::filesystem(path, direct_io != 0, read_only != 0)?;
        // SAFETY: checked non-NULL above; the caller provides a writable pointer slot.
        unsafe { args::write_out(storage_out, registry::issue(storage)) }
    })
}

/// Open an empty in-memory storage. Arrays opened on it serve the codec-only calls
/// (`zarrs_array_decode_chunks`, `zarrs_array_encode_chunks`) for callers that move chunk
/// bytes themselves; data written to it lives until the last handle using it is freed.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_open_memory(storage_out: *mut *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        args::require_out(storage_out, "storage_out")?;
        let storage = ZarrsStorage::memory();
        // SAFETY: checked non-NULL above; the caller provides a writable pointer slot.
        unsafe { args::write_out(storage_out, registry::issue(storage)) }
    })
}

/// Free a storage handle. NULL is a no-op. A handle freed already, of
/// another kind, or not from this library is `ZARRS_ERROR_INVALID_ARGUMENT` and nothing is
/// freed. Arrays opened on the storage stay usable.
///
/// Thread safety: the handle must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_storage_free(storage: *mut ZarrsStorage) -> ZarrsResult {
    boundary(|| {
        drop(registry::retire(storage, "storage")?);
        Ok(())
    })
}
