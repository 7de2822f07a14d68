//! Storage: where chunk bytes live, behind zarrs' storage traits.
//!
//! [`LocalStore`] (a directory, written atomically) and [`RemoteStore`] (object stores and
//! HTTP, with concurrent batch I/O, read in rounds: `rounds.rs`, shard indexes kept across
//! reads: `index_cache.rs`). Both refuse writes the same way when opened read-only.
//! This layer knows keys and bytes only: no arrays, codecs or handles.

pub mod index_cache;
mod local;
mod remote;
pub mod rounds;

use std::sync::Arc;

use zarrs::storage::StorageError;

pub use local::LocalStore;
pub use remote::{AzureSettings, GcsSettings, RemoteStore, S3Settings};

/// Fail with `ReadOnly` (`ZARRS_ERROR_READ_ONLY`) on a write to a store opened read-only.
fn check_writable(read_only: bool) -> Result<(), StorageError> {
    if read_only {
        Err(StorageError::ReadOnly)
    } else {
        Ok(())
    }
}

fn io_error(err: std::io::Error) -> StorageError {
    StorageError::IOError(Arc::new(err))
}
