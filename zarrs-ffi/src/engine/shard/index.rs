//! The shard index: its encoded size, decoding and encoding it, and the checks that make
//! its entries safe to slice by.
//!
//! Index bytes come from storage and are hostile. Every entry is checked here before
//! anyone slices or fetches by it: the missing-chunk marker, `offset + size` without
//! overflow and within the shard's length, a shard shorter than its own index. This is the
//! only place that knows the entry layout (`offset`, `size` pairs of `u64` in C order of
//! the inner chunk grid, `u64::MAX` twice for a chunk not stored); readers get checked byte
//! ranges, the encoder hands in (offset, size) pairs.
//!
//! It must not know inner chunks' codecs, jobs, or where the bytes come from (memory, a
//! file, a remote store): callers pass the index bytes and the shard's length.

use std::borrow::Cow;
use std::num::NonZeroU64;

use zarrs::array::{ArrayBytes, ArrayToBytesCodecTraits, CodecError, CodecOptions};
use zarrs::storage::StoreKey;

use super::{codec_error, Grid, ShardLayout, ShardName};
use crate::error::{FfiError, FfiResult, ZarrsResult};

/// Marks an inner chunk that is not stored (all fill value).
pub(super) const MISSING: u64 = u64::MAX;

impl ShardLayout {
    fn index_shape(grid: &Grid) -> Vec<NonZeroU64> {
        grid.per_shard
            .iter()
            .chain(&[2])
            .map(|&d| NonZeroU64::new(d).expect("shard grids have no zero extent"))
            .collect()
    }

    /// The encoded size of the index, which must be fixed.
    pub(crate) fn index_size(&self, grid: &Grid) -> FfiResult<usize> {
        self.index_codecs
            .encoded_representation(&Self::index_shape(grid), &self.index_type, &self.index_fill)?
            .size()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| FfiError::new(ZarrsResult::ZARRS_ERROR_UNSUPPORTED, "shard index codecs without a fixed size"))
    }

    pub(crate) fn decode_index(&self, encoded: &[u8], grid: &Grid, options: &CodecOptions) -> FfiResult<Vec<u64>> {
        let decoded = self
            .index_codecs
            .decode(Cow::Borrowed(encoded), &Self::index_shape(grid), &self.index_type, &self.index_fill, options)?
            .into_fixed()
            .map_err(CodecError::from)?;
        if decoded.len() != grid.count * 16 {
            return Err(codec_error(format!("shard index decoded to {} bytes, expected {}", decoded.len(), grid.count * 16)));
        }
        Ok(decoded
            .chunks_exact(8)
            .map(|b| u64::from_ne_bytes(b.try_into().expect("8-byte chunks")))
            .collect())
    }

    /// The byte range of inner chunk `i` within the data, or None if it is not stored.
    pub(crate) fn inner_range(index: &[u64], i: usize, data_len: u64, key: &StoreKey) -> FfiResult<Option<(u64, u64)>> {
        Self::entry(index, i, data_len, &ShardName::key(key))
    }

    /// The byte range of inner chunk `i` in the `data_len` bytes of shard `name` from its
    /// decoded `index`, or None if it is not stored. Entries are hostile: one that overflows
    /// or reaches past the data is an error, so the range always slices `data_len` bytes.
    pub(super) fn entry(index: &[u64], i: usize, data_len: u64, name: &ShardName<'_>) -> FfiResult<Option<(u64, u64)>> {
        let (offset, size) = (index[2 * i], index[2 * i + 1]);
        if offset == MISSING && size == MISSING {
            return Ok(None);
        }
        match offset.checked_add(size) {
            Some(end) if end <= data_len => Ok(Some((offset, size))),
            _ => Err(codec_error(format!(
                "the index of {name} references bytes {offset}+{size} outside its {data_len} bytes: the shard is corrupt"
            ))),
        }
    }

    /// The decoded index of the encoded shard `shard` (named `name` in messages) over `grid`,
    /// checked to fit: the shard holds the whole index.
    pub(super) fn index_of(&self, shard: &[u8], grid: &Grid, name: &ShardName<'_>, options: &CodecOptions) -> FfiResult<Vec<u64>> {
        let index_size = self.index_size(grid)?;
        if shard.len() < index_size {
            return Err(codec_error(format!(
                "{name} has {} bytes, fewer than its {index_size}-byte index: the shard is truncated",
                shard.len()
            )));
        }
        let index_bytes = if self.index_at_end { &shard[shard.len() - index_size..] } else { &shard[..index_size] };
        self.decode_index(index_bytes, grid, options)
    }

    /// The encoded shard index of `entries` (offset, size), `MISSING` for chunks not stored:
    /// exactly [`ShardLayout::index_size`] bytes.
    pub(super) fn encode_index(&self, grid: &Grid, entries: &[(u64, u64)], options: &CodecOptions) -> FfiResult<Vec<u8>> {
        let mut index = Vec::with_capacity(grid.count * 16);
        for (o, n) in entries {
            index.extend_from_slice(&o.to_ne_bytes());
            index.extend_from_slice(&n.to_ne_bytes());
        }
        let index = self
            .index_codecs
            .encode(ArrayBytes::new_flen(index), &Self::index_shape(grid), &self.index_type, &self.index_fill, options)?
            .into_owned();
        let expected = self.index_size(grid)?;
        if index.len() != expected {
            return Err(codec_error(format!("the shard index encoded to {} bytes; its codecs produce exactly {expected}", index.len())));
        }
        Ok(index)
    }
}
