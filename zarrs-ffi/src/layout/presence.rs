//! Presence tracking for partial decodes: whether a chunk existed, without asking the store.

use std::sync::atomic::{AtomicBool, Ordering};

use zarrs::array::{ArrayBytesRaw, BytesPartialDecoderTraits, CodecError, CodecOptions, StoragePartialDecoder};
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::StorageError;

/// Reports whether any read through it found the stored value, so a partial decode can say
/// if the chunk existed without an extra request to the store.
pub struct PresenceTracker {
    inner: StoragePartialDecoder,
    found: AtomicBool,
}

impl PresenceTracker {
    pub fn new(inner: StoragePartialDecoder) -> Self {
        Self { inner, found: AtomicBool::new(false) }
    }

    /// Whether any read through this tracker found the stored value.
    pub fn found(&self) -> bool {
        self.found.load(Ordering::Relaxed)
    }
}

impl BytesPartialDecoderTraits for PresenceTracker {
    fn exists(&self) -> Result<bool, StorageError> {
        let exists = self.inner.exists()?;
        if exists {
            self.found.store(true, Ordering::Relaxed);
        }
        Ok(exists)
    }

    fn size_held(&self) -> usize {
        self.inner.size_held()
    }

    fn partial_decode_many(
        &self,
        decoded_regions: ByteRangeIterator,
        options: &CodecOptions,
    ) -> Result<Option<Vec<ArrayBytesRaw<'_>>>, CodecError> {
        let bytes = self.inner.partial_decode_many(decoded_regions, options)?;
        if bytes.is_some() {
            self.found.store(true, Ordering::Relaxed);
        }
        Ok(bytes)
    }

    fn supports_partial_decode(&self) -> bool {
        self.inner.supports_partial_decode()
    }
}
