//! Version, options and storage: the calls that need no array.

use super::*;

#[test]
fn version_is_the_crate_version() {
    // SAFETY: a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(zarrs_ffi_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(zarrs_ffi_version(), zarrs_ffi_version(), "the string is static");
}

#[test]
fn keep_warm_is_set_read_back_bounded_and_checked() {
    let mut window = u64::MAX;
    check(zarrs_set_keep_warm(5_000));
    check(zarrs_keep_warm(&mut window));
    assert_eq!(window, if cfg!(target_os = "linux") { 5_000 } else { 0 });
    check(zarrs_set_keep_warm(u64::MAX));
    check(zarrs_keep_warm(&mut window));
    assert_eq!(window, if cfg!(target_os = "linux") { 1_000_000 } else { 0 }, "at most one second");
    check(zarrs_set_keep_warm(0));
    check(zarrs_keep_warm(&mut window));
    assert_eq!(window, 0);
}

#[test]
fn options_default_values() {
    let mut options = ZarrsOptions {
        num_threads: 99,
        chunk_concurrent_minimum: 99,
        chunk_concurrent_maximum: 99,
        validate_checksums: 0,
        store_empty_chunks: 1,
        max_variable_chunk_bytes: 7,
        fsync: 1,
    };
    check(zarrs_options_default(&mut options));
    assert_eq!(
        options,
        ZarrsOptions {
            num_threads: 0,
            chunk_concurrent_minimum: 0,
            chunk_concurrent_maximum: 0,
            validate_checksums: 1,
            store_empty_chunks: 0,
            max_variable_chunk_bytes: 1 << 30,
            fsync: 0,
        }
    );
}

#[test]
fn storage_open_arguments() {
    let dir = TempDir::new("storage");
    // The directory need not exist yet.
    let missing = dir.0.join("not/yet/there");
    let storage = Storage::open(&missing, false);
    drop(storage);

    let path = path_str(&dir.0);
    let mut storage = null_mut();
    expect_err(zarrs_storage_open_filesystem(null(), 0, 0, 0, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "empty");
    let bad = b"/tmp/zarrs-\xff\xfe";
    expect_err(
        zarrs_storage_open_filesystem(bad.as_ptr().cast(), bad.len(), 0, 0, &mut storage),
        ZARRS_ERROR_INVALID_ARGUMENT,
        "UTF-8",
    );
    assert!(storage.is_null(), "out-parameters are written only on success");

    // The path is taken by length, not NUL-terminated: trailing bytes beyond it are ignored.
    let padded = format!("{path}GARBAGE");
    check(zarrs_storage_open_filesystem(padded.as_ptr().cast(), path.len(), 0, 0, &mut storage));
    let storage = Storage(storage);
    let array = Array::create(&storage, "/a", &metadata([4, 4], [2, 2], &codecs_zstd()));
    drop(array);
    assert!(dir.0.join("a/zarr.json").is_file());
}

#[test]
fn free_null_is_a_no_op() {
    check(zarrs_storage_free(null_mut()));
    check(zarrs_array_free(null_mut()));
    check(zarrs_encoded_chunks_free(null_mut()));
}

/// A base64 access key (Azure checks the encoding when the store opens).
const AZURE_KEY: &str = "a2V5LWZvci10ZXN0cw==";

#[test]
fn gcs_and_azure_storage_bad_arguments() {
    let mut storage = null_mut();
    // Settings: a name is required, and exactly one kind of credentials (or anonymous).
    let bad_gcs = [
        (gcs_config("", None, None, Some("t")), "bucket"),
        (gcs_config("b", None, None, None), "credentials need one of"),
        (gcs_config("b", None, Some("/nonexistent/key.json"), Some("t")), "not `service_account_path` and `bearer_token`"),
        (gcs_config("b", Some("{not json"), None, None), "invalid remote store settings"),
        (gcs_config("b", None, Some("/nonexistent/key.json"), None), "invalid remote store settings"),
    ];
    for (config, mentions) in &bad_gcs {
        expect_err(zarrs_storage_open_gcs(config, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, mentions);
    }
    let bad_azure = [
        (azure_config("", None, None, Some("t")), "container"),
        (azure_config("c", None, None, None), "credentials need one of"),
        (azure_config("c", Some(AZURE_KEY), Some("sv=1&sig=x"), None), "not `access_key` and `sas_token`"),
        (azure_config("c", Some("not base64!"), None, None), "invalid remote store settings"),
    ];
    for (config, mentions) in &bad_azure {
        expect_err(zarrs_storage_open_azure(config, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, mentions);
    }
    let mut no_account = azure_config("c", None, None, Some("t"));
    no_account.account_len = 0;
    expect_err(zarrs_storage_open_azure(&no_account, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "account");
    // Strings are UTF-8 with their length; a NULL required string is a NULL pointer error.
    let mut bad_utf8 = gcs_config("b", None, None, Some("t"));
    bad_utf8.bearer_token = b"\xff".as_ptr().cast();
    bad_utf8.bearer_token_len = 1;
    expect_err(zarrs_storage_open_gcs(&bad_utf8, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "`bearer_token` is not UTF-8");
    let mut no_container = azure_config("c", None, None, Some("t"));
    no_container.container = null();
    expect_err(zarrs_storage_open_azure(&no_container, &mut storage), ZARRS_ERROR_NULL_POINTER, "`container`");
    assert!(storage.is_null(), "no handle on failure");

    // Each kind of credentials opens without I/O; the first read of a server that is not
    // there is a storage error within the bounded retries, for GCS and for Azure.
    let json = metadata([4, 4], [4, 4], &codecs_zstd());
    let mut anonymous = gcs_config("b", None, None, None);
    anonymous.anonymous = 1;
    let mut anonymous_azure = azure_config("c", None, None, None);
    anonymous_azure.anonymous = 1;
    let mut opened = Vec::new();
    for config in [gcs_config("b", None, None, Some("t")), anonymous] {
        check(zarrs_storage_open_gcs(&config, &mut storage));
        opened.push(Storage(std::mem::replace(&mut storage, null_mut())));
    }
    for config in [azure_config("c", Some(AZURE_KEY), None, None), azure_config("c", None, Some("?sv=1&sig=x"), None), azure_config("c", None, None, Some("t")), anonymous_azure] {
        check(zarrs_storage_open_azure(&config, &mut storage));
        opened.push(Storage(std::mem::replace(&mut storage, null_mut())));
    }
    for storage in [&opened[0], &opened[2]] {
        let mut handle = null_mut();
        check(zarrs_array_open_with_metadata(storage.0, b"/a".as_ptr().cast(), 2, json.as_ptr().cast(), json.len(), &mut handle));
        let array = Array(handle);
        let started = std::time::Instant::now();
        assert_eq!(array.try_retrieve(None, &[0, 0], &[4, 4]), Err(ZARRS_ERROR_STORAGE));
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    }
    // Read-only: a write is refused before any request.
    let mut read_only = azure_config("c", None, None, Some("t"));
    read_only.read_only = 1;
    check(zarrs_storage_open_azure(&read_only, &mut storage));
    let read_only = Storage(storage);
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(read_only.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    let code = zarrs_array_store_subset(array.ptr(), null(), [0u64, 0].as_ptr(), [4u64, 4].as_ptr(), 2, [0u16; 16].as_ptr().cast(), 32);
    expect_err(code, ZARRS_ERROR_READ_ONLY, "read");
}

#[test]
fn remote_storage_bad_arguments() {
    let mut storage = null_mut();
    let good = s3_config("bucket", Some("k"), Some("s"));
    expect_err(zarrs_storage_open_s3(&s3_config("", Some("k"), Some("s")), &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "bucket");
    expect_err(zarrs_storage_open_s3(&s3_config("b", Some("k"), None), &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "credentials");
    assert!(storage.is_null(), "no handle on failure");

    // Opening does no I/O: a store on an address where nothing listens opens, and its first
    // read fails with a storage error within the bounded retries rather than hanging.
    check(zarrs_storage_open_s3(&good, &mut storage));
    let storage = Storage(storage);
    let json = metadata([4, 4], [4, 4], &codecs_zstd());
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(storage.0, b"/a".as_ptr().cast(), 2, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    let started = std::time::Instant::now();
    assert_eq!(array.try_retrieve(None, &[0, 0], &[4, 4]), Err(ZARRS_ERROR_STORAGE));
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    // Writes to a read-only HTTP store are refused before any request.
    let (url, url_len) = text("http://127.0.0.1:9/data");
    let mut http = null_mut();
    check(zarrs_storage_open_http(url, url_len, &mut http));
    let http = Storage(http);
    let mut handle = null_mut();
    check(zarrs_array_open_with_metadata(http.0, b"/".as_ptr().cast(), 1, json.as_ptr().cast(), json.len(), &mut handle));
    let array = Array(handle);
    let code = zarrs_array_store_subset(array.ptr(), null(), [0u64, 0].as_ptr(), [4u64, 4].as_ptr(), 2, [0u16; 16].as_ptr().cast(), 32);
    expect_err(code, ZARRS_ERROR_READ_ONLY, "read");
}
