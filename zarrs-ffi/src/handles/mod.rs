//! The exported handles: what a C caller holds between calls.
//!
//! Each handle's implementation lives in one file: [`ZarrsStorage`] (`storage.rs`),
//! [`ZarrsArray`] (`array.rs`: geometry, planning and the batch orchestration of every data
//! call) and the result handles of the codec-only calls (`chunks.rs`). Handles hold no raw
//! pointers and read none: the `extern "C"` functions in `ffi` do that and call in here.

mod array;
mod chunks;
mod plan;
mod storage;

pub use array::ZarrsArray;
pub use chunks::{ZarrsEncodedChunks, ZarrsVariableChunks};
pub use plan::{ZarrsByteRequest, ZarrsByteRequestKind, ZarrsReadPlan};
pub use storage::ZarrsStorage;
