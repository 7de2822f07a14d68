//! Encoding shards: each inner chunk copied from the values straight to its encoder, or
//! into its place in the output when its codecs keep its size (uncompressed shards), and
//! skipped when it is all fill value; the stored ones laid out in the write order
//! ([`ZarrsSubchunkOrder`]) with the index before or after them. Per-thread buffers (one
//! inner chunk, one shard) mean a batch of shards written straight to storage allocates no
//! shard buffer after the first (`encode_with`).
//!
//! This module never reads stored bytes or decodes: a write of part of a shard is merged
//! above (`engine/mod.rs`) from the whole decoded shard. The index's byte format is
//! `index.rs`'s. Inner shards of nested sharding are encoded by zarrs' sharding codec,
//! inside the inner chain.

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::atomic::Ordering;

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, IntoParallelRefIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;
use zarrs::array::{ArrayBytes, CodecOptions, DataType, FillValue};

use super::index::MISSING;
use super::{codec_error, Grid, ShardLayout, ZarrsSubchunkOrder};
use crate::args;
use crate::error::{FfiError, FfiResult};
use crate::layout::ChunkValues;
use crate::memory;

impl Grid {
    /// Inner chunk indices (C order) in the order their bytes are written. Morton codes are
    /// compressed as zarr-python's (and Neuroglancer's): an axis stops contributing bits once
    /// its extent is covered, so non-cubic grids stay dense.
    fn write_order(&self, order: ZarrsSubchunkOrder) -> Vec<usize> {
        let mut indices: Vec<usize> = (0..self.count).collect();
        match order {
            ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_LEXICOGRAPHIC => {}
            ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_COLEXICOGRAPHIC => {
                // The first axis varies fastest: compare coordinates from the last axis.
                indices.sort_by_key(|&i| self.coords(i).into_iter().rev().collect::<Vec<_>>());
            }
            ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_MORTON => {
                let bits: Vec<u32> = self.per_shard.iter().map(|&n| u64::BITS - (n - 1).leading_zeros()).collect();
                let max_bits = bits.iter().copied().max().unwrap_or(0);
                indices.sort_by_key(|&i| {
                    let coords = self.coords(i);
                    let (mut z, mut bit) = (0u128, 0u32);
                    for coord_bit in 0..max_bits {
                        for (d, &b) in bits.iter().enumerate() {
                            if coord_bit < b {
                                z |= u128::from((coords[d] >> coord_bit) & 1) << bit;
                                bit += 1;
                            }
                        }
                    }
                    z
                });
            }
        }
        indices
    }
}

impl ShardLayout {
    pub fn set_write_order(&self, order: ZarrsSubchunkOrder) {
        self.write_order.store(order as u8, Ordering::Relaxed);
    }

    fn write_order(&self) -> ZarrsSubchunkOrder {
        match self.write_order.load(Ordering::Relaxed) {
            1 => ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_LEXICOGRAPHIC,
            2 => ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_COLEXICOGRAPHIC,
            _ => ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_MORTON,
        }
    }

    /// Encode a whole shard from its values. None: every inner chunk is the fill value and
    /// empty chunks are not stored, so the shard should be erased.
    pub fn encode(
        &self,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<Option<Vec<u8>>> {
        let mut out = Vec::new();
        let len = self.encode_into(shard_shape, shard, data_type, fill_value, options, &mut out)?;
        Ok(len.map(|len| {
            out.truncate(len);
            out
        }))
    }

    /// [`ShardLayout::encode`], handing the shard's bytes to `store` (None: erase). They sit
    /// in a buffer this thread keeps for its next shard, so writing a batch of shards
    /// allocates (and, uncompressed, zeroes) no shard buffer after the first.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_with<R>(
        &self,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
        store: impl FnOnce(Option<&[u8]>) -> FfiResult<R>,
    ) -> FfiResult<R> {
        let mut out = SHARD_OUTPUT.take();
        let result = self
            .encode_into(shard_shape, shard, data_type, fill_value, options, &mut out)
            .and_then(|len| store(len.map(|len| &out[..len])));
        if out.capacity() <= KEEP_SHARD_OUTPUT {
            SHARD_OUTPUT.set(out);
        }
        result
    }

    /// Encode a shard into `out[..len]`, returning `len` (None: nothing to store). `out`
    /// may hold anything on entry; bytes past `len` are left as they are.
    fn encode_into(
        &self,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
        out: &mut Vec<u8>,
    ) -> FfiResult<Option<usize>> {
        let grid = self.grid(shard_shape)?;
        let inner_len = args::byte_size(&self.inner_shape.iter().map(|d| d.get()).collect::<Vec<_>>(), fill_value.size())?;
        let fixed = self.inner_codecs.fixed_encoded_size(&self.inner_shape, data_type, fill_value)?;
        if fixed == Some(inner_len as u64) {
            return self.encode_in_place(&grid, shard_shape, shard, inner_len, data_type, fill_value, options, out);
        }
        let Some(encoded) = self.encode_each(&grid, shard_shape, shard, inner_len, data_type, fill_value, options)? else {
            return Ok(None);
        };
        self.assemble(&grid, &encoded, options, out).map(Some)
    }

    /// Encode each inner chunk on its own (None: all fill value, not stored), or None if
    /// none is stored.
    #[allow(clippy::too_many_arguments)]
    fn encode_each(
        &self,
        grid: &Grid,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        inner_len: usize,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> FfiResult<Option<Vec<Option<Vec<u8>>>>> {
        let encoded: Vec<Option<Vec<u8>>> = (0..grid.count)
            .into_par_iter()
            .map(|i| {
                with_scratch(inner_len, |inner| {
                    self.extract_inner(grid, shard_shape, shard, i, inner, fill_value.size());
                    if !options.store_empty_chunks() && fill_value.equals_all(inner) {
                        return Ok(None);
                    }
                    let bytes = self.inner_encoder.encode(ArrayBytes::new_flen(Cow::Borrowed(&*inner)), &self.inner_shape, data_type, fill_value, options)?;
                    Ok(Some(bytes.into_owned()))
                })
            })
            .collect::<FfiResult<_>>()?;
        if encoded.iter().all(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(encoded))
    }

    /// Copy inner chunk `i` of a shard's values into `inner`.
    fn extract_inner(&self, grid: &Grid, shard_shape: &[NonZeroU64], shard: &ChunkValues, i: usize, inner: &mut [u8], element_size: usize) {
        let shard_shape: Vec<u64> = shard_shape.iter().map(|d| d.get()).collect();
        let inner_shape: Vec<u64> = self.inner_shape.iter().map(|d| d.get()).collect();
        shard.copy_part(&shard_shape, &grid.origin(self, i), inner, &inner_shape, element_size);
    }

    /// Encode a shard whose inner chunks encode to exactly their decoded size (`bytes`
    /// alone, e.g. uncompressed shards) into `out[..len]`, returning `len` (None: nothing
    /// to store). Each inner chunk is copied straight into its place in `out`, and encoded
    /// there when the codecs change its bytes (another byte order), with no buffer per
    /// inner chunk and no copy to assemble the shard. `out` is only grown (zeroed where new),
    /// never cleared: every byte of the shard is written here.
    #[allow(clippy::too_many_arguments)]
    fn encode_in_place(
        &self,
        grid: &Grid,
        shard_shape: &[NonZeroU64],
        shard: &ChunkValues,
        inner_len: usize,
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
        out: &mut Vec<u8>,
    ) -> FfiResult<Option<usize>> {
        let index_size = self.index_size(grid)?;
        let data_start = if self.index_at_end { 0 } else { index_size };
        let data_len = inner_len
            .checked_mul(grid.count)
            .and_then(|n| n.checked_add(index_size))
            .ok_or_else(|| FfiError::invalid("the shard is too large to encode in memory"))?;
        if out.len() < data_len {
            memory::resize(out, data_len, 0, "an encoded shard")?;
        }
        let out = &mut out[..data_len];
        let order = grid.write_order(self.write_order());
        // Slot k of the data holds the k-th inner chunk of the write order.
        let stored: Vec<bool> = out[data_start..data_start + inner_len * grid.count]
            .par_chunks_mut(inner_len)
            .zip(order.par_iter())
            .map(|(slot, &i)| {
                self.extract_inner(grid, shard_shape, shard, i, slot, fill_value.size());
                if !options.store_empty_chunks() && fill_value.equals_all(slot) {
                    return Ok(false);
                }
                let encoded = self.inner_encoder.encode(ArrayBytes::new_flen(Cow::Borrowed(&*slot)), &self.inner_shape, data_type, fill_value, options)?;
                // The codecs returned the input itself (native byte order): already in place.
                let changed = match encoded {
                    Cow::Borrowed(bytes) if bytes.as_ptr() == slot.as_ptr() => None,
                    other => Some(other.into_owned()),
                };
                if let Some(bytes) = changed {
                    if bytes.len() != inner_len {
                        return Err(codec_error(format!(
                            "an inner chunk encoded to {} bytes; its codecs produce exactly {inner_len}",
                            bytes.len()
                        )));
                    }
                    slot.copy_from_slice(&bytes);
                }
                Ok(true)
            })
            .collect::<FfiResult<_>>()?;
        if !stored.contains(&true) {
            return Ok(None);
        }
        // Empty inner chunks are not stored: move the stored ones down over their slots.
        let mut entries = memory::filled(grid.count, (MISSING, MISSING), "a shard index")?;
        let mut end = data_start;
        for (k, &i) in order.iter().enumerate() {
            if stored[k] {
                let slot = data_start + k * inner_len;
                if slot != end {
                    out.copy_within(slot..slot + inner_len, end);
                }
                entries[i] = (end as u64, inner_len as u64);
                end += inner_len;
            }
        }
        let index = self.encode_index(grid, &entries, options)?;
        let at = if self.index_at_end { end } else { 0 };
        out[at..at + index_size].copy_from_slice(&index);
        Ok(Some(if self.index_at_end { end + index_size } else { end }))
    }

    /// The bytes of a shard from its encoded inner chunks (None: not stored), written to
    /// `out[..len]` (its old contents dropped), returning `len`: the inner chunks in the
    /// write order, and the encoded index before or after them.
    fn assemble(&self, grid: &Grid, encoded: &[Option<Vec<u8>>], options: &CodecOptions, out: &mut Vec<u8>) -> FfiResult<usize> {
        let index_size = self.index_size(grid)?;
        let data_len: usize = encoded.iter().flatten().map(Vec::len).sum();
        let order = grid.write_order(self.write_order());
        let mut offset = if self.index_at_end { 0 } else { index_size as u64 };
        let mut entries = memory::filled(grid.count, (MISSING, MISSING), "a shard index")?;
        for &i in &order {
            if let Some(bytes) = &encoded[i] {
                entries[i] = (offset, bytes.len() as u64);
                offset += bytes.len() as u64;
            }
        }
        let index = self.encode_index(grid, &entries, options)?;
        out.clear();
        memory::reserve(out, data_len + index.len(), "an encoded shard")?;
        if !self.index_at_end {
            out.extend_from_slice(&index);
        }
        for inner in order.iter().filter_map(|&i| encoded[i].as_ref()) {
            out.extend_from_slice(inner);
        }
        if self.index_at_end {
            out.extend_from_slice(&index);
        }
        Ok(out.len())
    }
}

/// The largest shard buffer a thread keeps for its next shard: enough for a 256^3 shard of
/// 2-byte elements; a thread that once wrote a larger shard does not hold its memory.
const KEEP_SHARD_OUTPUT: usize = 40 << 20;

thread_local! {
    /// This thread's buffer for an encoded shard on its way to storage (taken out while in
    /// use, so a nested use on the same thread gets a fresh one instead of sharing it).
    static SHARD_OUTPUT: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

thread_local! {
    /// This thread's buffer for one decoded inner chunk on its way to the encoder.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Run `f` on this thread's scratch buffer resized to `len` bytes, rather than allocating
/// and zeroing a buffer for every inner chunk. The buffer is taken out while `f` runs, so a
/// nested use on the same thread gets a fresh one instead of sharing it.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> FfiResult<R>) -> FfiResult<R> {
    let mut buffer = SCRATCH.take();
    memory::resize(&mut buffer, len, 0, "an inner chunk")?;
    let result = f(&mut buffer);
    SCRATCH.set(buffer);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ChunkJob, Destination};
    use zarrs::storage::StoreKey;

    fn layout(codecs: serde_json::Value, index_location: &str) -> ShardLayout {
        let metadata = serde_json::json!([{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [4, 6],
            "codecs": codecs,
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
            "index_location": index_location,
        }}]);
        ShardLayout::from_codecs_metadata(&metadata).unwrap()
    }

    #[test]
    fn shards_encoded_in_place_equal_shards_assembled() {
        let shape: Vec<NonZeroU64> = [12u64, 18].iter().map(|&d| NonZeroU64::new(d).unwrap()).collect();
        let (data_type, fill_value) = (zarrs::array::data_type::uint16(), FillValue::from(0u16));
        let mut values: Vec<u16> = (0..12 * 18).map(|i| (i % 97 + 1) as u16).collect();
        // Empty inner chunks (all fill value) first, inside and last in every write order.
        for (row, col) in [(0, 0), (4, 6), (4, 12), (8, 12)] {
            for r in row..row + 4 {
                values[r * 18 + col..r * 18 + col + 6].fill(0);
            }
        }
        let shard: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let empty = vec![0u8; shard.len()];
        let mut store_empty = CodecOptions::default();
        store_empty.set_store_empty_chunks(true);
        for endian in ["little", "big"] {
            for location in ["start", "end"] {
                let layout = layout(serde_json::json!([{"name": "bytes", "configuration": {"endian": endian}}]), location);
                let grid = layout.grid(&shape).unwrap();
                for order in [0, 1, 2] {
                    layout.write_order.store(order, Ordering::Relaxed);
                    for options in [CodecOptions::default(), store_empty] {
                        for data in [&shard, &empty] {
                            let data = ChunkValues::Bytes(Cow::Borrowed(data));
                            let in_place = layout.encode(&shape, &data, &data_type, &fill_value, &options).unwrap();
                            let each = layout.encode_each(&grid, &shape, &data, 48, &data_type, &fill_value, &options).unwrap();
                            let each = each.map(|encoded| {
                                let mut out = vec![7u8; 3];
                                let len = layout.assemble(&grid, &encoded, &options, &mut out).unwrap();
                                out.truncate(len);
                                out
                            });
                            assert_eq!(in_place, each, "{endian} endian, index at {location}, order {order}");
                            // Into a buffer holding another shard's bytes: the same bytes.
                            let mut reused = vec![0xa5u8; 5000];
                            let len = layout.encode_into(&shape, &data, &data_type, &fill_value, &options, &mut reused).unwrap();
                            assert_eq!(len.map(|len| reused[..len].to_vec()), each, "reused buffer: {endian} endian, index at {location}, order {order}");
                        }
                    }
                }
                // And it reads back.
                let values = ChunkValues::Bytes(Cow::Borrowed(&shard));
                let encoded = layout.encode(&shape, &values, &data_type, &fill_value, &CodecOptions::default()).unwrap().unwrap();
                let key = StoreKey::new("c/0").unwrap();
                let job = ChunkJob::whole(key, shape.clone());
                let mut decoded = vec![1u8; shard.len()];
                let destination = Destination::new(&mut decoded, &[12, 18], 2, "shard").unwrap();
                layout.decode_into(&job, &encoded, &destination, &data_type, &fill_value, &CodecOptions::default()).unwrap();
                assert_eq!(decoded, shard);
            }
        }
    }
}
