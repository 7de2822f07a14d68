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
use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::StoreKey;

use super::{codec_error, Grid, ShardLayout, ShardName};
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::memory;

/// Marks an inner chunk that is not stored (all fill value).
pub(super) const MISSING: u64 = u64::MAX;

/// How a shard's bytes divide into its index and its inner chunks: from its layout and its
/// length when known ([`ShardLayout::shard_bytes`]). An outer shard read in part is the whole
/// value at its key, its length not asked for; an inner shard of nested sharding is the byte
/// range its outer shard's index gives, its length known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShardBytes {
    len: Option<u64>,
    index_size: u64,
    index_at_end: bool,
}

impl ShardBytes {
    /// The index's (offset, size) in the value stored at the key when the shard starts at
    /// `at` in it, or None when it is at the end of a shard of unknown length (then it is the
    /// value's last `index_size` bytes: [`Self::index_request`]).
    fn index_at(&self, at: u64) -> Option<(u64, u64)> {
        match (self.index_at_end, self.len) {
            (false, _) => Some((at, self.index_size)),
            // shard_bytes() checked len >= index_size; `at + len` is an entry's checked end.
            (true, Some(len)) => Some((at + len - self.index_size, self.index_size)),
            (true, None) => None,
        }
    }

    /// The request for the index of the shard starting at `at` in the value at its key.
    pub(crate) fn index_request(&self, at: u64) -> ByteRange {
        match self.index_at(at) {
            Some((offset, size)) => ByteRange::FromStart(offset, Some(size)),
            None => ByteRange::Suffix(self.index_size),
        }
    }

    /// The encoded index's size.
    pub(crate) fn index_size(&self) -> u64 {
        self.index_size
    }

    /// The bytes [first, last) of the shard that inner chunks may occupy: all but its index
    /// (up to the largest u64 when the length is unknown).
    fn chunk_bytes(&self) -> (u64, u64) {
        match (self.index_at_end, self.len) {
            (false, len) => (self.index_size, len.unwrap_or(u64::MAX)),
            (true, Some(len)) => (0, len - self.index_size),
            (true, None) => (0, u64::MAX),
        }
    }
}

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

    /// Where the index of a shard of `len` bytes (None: not known, the whole value stored at
    /// a key) over `grid` sits, and so where its inner chunks may lie. A known length shorter
    /// than the index is an error naming the shard `name`: it is truncated.
    pub(super) fn shard_bytes(&self, grid: &Grid, len: Option<u64>, name: &ShardName<'_>) -> FfiResult<ShardBytes> {
        let index_size = self.index_size(grid)? as u64;
        if let Some(len) = len.filter(|&len| len < index_size) {
            return Err(codec_error(format!(
                "{name} has {len} bytes, fewer than its {index_size}-byte index: the shard is truncated"
            )));
        }
        Ok(ShardBytes { len, index_size, index_at_end: self.index_at_end })
    }

    /// The request for the index of a shard of shape `shard_shape` stored at a key: the
    /// range the shard-index cache keeps (`storage/index_cache.rs`).
    pub(crate) fn index_request(&self, shard_shape: &[NonZeroU64]) -> FfiResult<ByteRange> {
        Ok(self.value_bytes(&self.grid(shard_shape)?)?.index_request(0))
    }

    /// How the bytes of a shard stored at a key divide, its length not known (a shard read in
    /// part: its index is the value's first or last bytes).
    pub(crate) fn value_bytes(&self, grid: &Grid) -> FfiResult<ShardBytes> {
        self.shard_bytes(grid, None, &ShardName::unnamed())
    }

    /// The byte range of inner chunk `i` of the shard at `key`, or None if it is not stored.
    pub(crate) fn inner_range(index: &[u64], i: usize, bytes: &ShardBytes, key: &StoreKey) -> FfiResult<Option<(u64, u64)>> {
        Self::entry(index, i, bytes, &ShardName::key(key))
    }

    /// The byte range (offset, size) of inner chunk `i` in the shard `name`, laid out as
    /// `bytes` says, from its decoded `index`, or None if it is not stored. Entries are
    /// hostile: one that overflows, reaches past the shard's end (when known) or into its
    /// index is an error, so the range always slices the shard's bytes outside its index.
    /// (Entries may overlap each other: each is read and decoded on its own, bounded.)
    pub(super) fn entry(index: &[u64], i: usize, bytes: &ShardBytes, name: &ShardName<'_>) -> FfiResult<Option<(u64, u64)>> {
        let (offset, size) = (index[2 * i], index[2 * i + 1]);
        if offset == MISSING && size == MISSING {
            return Ok(None);
        }
        let data_len = bytes.len.unwrap_or(u64::MAX);
        let end = match offset.checked_add(size) {
            Some(end) if end <= data_len => end,
            _ => {
                return Err(codec_error(format!(
                    "the index of {name} references bytes {offset}+{size} outside its {data_len} bytes: the shard is corrupt"
                )))
            }
        };
        let (first, last) = bytes.chunk_bytes();
        if offset < first || end > last {
            return Err(codec_error(format!(
                "the index of {name} references bytes {offset}+{size}, which overlap its {}-byte index: the shard is corrupt",
                bytes.index_size
            )));
        }
        Ok(Some((offset, size)))
    }

    /// The decoded index of the encoded shard `shard` (named `name` in messages) over `grid`,
    /// checked to fit: the shard holds the whole index. Also how its bytes are laid out.
    pub(super) fn index_of(&self, shard: &[u8], grid: &Grid, name: &ShardName<'_>, options: &CodecOptions) -> FfiResult<(Vec<u64>, ShardBytes)> {
        let bytes = self.shard_bytes(grid, Some(shard.len() as u64), name)?;
        let (start, size) = bytes.index_at(0).expect("the shard's length is known");
        // shard_bytes() checked that the shard holds its index.
        let index = self.decode_index(&shard[start as usize..(start + size) as usize], grid, options)?;
        Ok((index, bytes))
    }

    /// The encoded shard index of `entries` (offset, size), `MISSING` for chunks not stored:
    /// exactly [`ShardLayout::index_size`] bytes.
    pub(super) fn encode_index(&self, grid: &Grid, entries: &[(u64, u64)], options: &CodecOptions) -> FfiResult<Vec<u8>> {
        let mut index = memory::with_capacity(grid.count * 16, "a shard index")?;
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
