//! Result handles of the codec-only calls: encoded chunks and decoded variable-length chunks.

use crate::error::{FfiError, FfiResult};

/// Encoded chunks produced by [`zarrs_array_encode_chunks`]. Read with
/// [`zarrs_encoded_chunks_get`]; free with [`zarrs_encoded_chunks_free`].
///
/// Thread safety: read-only after creation; may be read from many threads.
pub struct ZarrsEncodedChunks {
    chunks: Vec<Option<Vec<u8>>>,
}

impl ZarrsEncodedChunks {
    pub fn new(chunks: Vec<Option<Vec<u8>>>) -> Self {
        Self { chunks }
    }

    /// The number of chunks held.
    pub fn count(&self) -> usize {
        self.chunks.len()
    }

    /// Chunk `index`'s bytes (None: all fill value, to be deleted).
    pub fn get(&self, index: usize) -> FfiResult<Option<&[u8]>> {
        let chunk = self.chunks.get(index).ok_or_else(|| {
            FfiError::invalid(format!("index {index} is out of range for {} chunks", self.chunks.len()))
        })?;
        Ok(chunk.as_deref())
    }
}

/// Decoded variable-length chunks from [`zarrs_array_decode_variable_chunks`]. Read with
/// [`zarrs_variable_chunks_get`]; free with [`zarrs_variable_chunks_free`].
///
/// Thread safety: read-only after creation; may be read from many threads.
pub struct ZarrsVariableChunks {
    chunks: Vec<(Vec<u8>, Vec<u64>)>,
}

impl ZarrsVariableChunks {
    pub fn new(chunks: Vec<(Vec<u8>, Vec<u64>)>) -> Self {
        Self { chunks }
    }

    /// Chunk `index`'s element bytes and `elements + 1` offsets into them.
    pub fn get(&self, index: usize) -> FfiResult<(&[u8], &[u64])> {
        let (bytes, offsets) = self.chunks.get(index).ok_or_else(|| {
            FfiError::invalid(format!("index {index} is out of range for {} chunks", self.chunks.len()))
        })?;
        Ok((bytes, offsets))
    }
}

impl crate::registry::Handle for ZarrsEncodedChunks {
    const NAME: &'static str = "ZarrsEncodedChunks";
}

impl crate::registry::Handle for ZarrsVariableChunks {
    const NAME: &'static str = "ZarrsVariableChunks";
}
