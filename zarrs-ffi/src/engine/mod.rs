//! The codec engine: decode, merge and encode one chunk job.
//!
//! [`ChunkCodec`] holds what an array's codecs need (the chain, bounded by `bounds.rs`, the
//! data type, the fill value and our sharding layout) and runs one job at a time: decode
//! stored bytes into the job's region of a caller's buffer, merge a write into an old chunk,
//! encode a whole chunk. Which jobs run, in parallel or not, locally or remotely, is decided
//! by the handles above. This layer never sees a handle or a caller's pointer; it reads a
//! store only through zarrs' storage traits, for partial reads.

mod encoder;
mod gather;
mod metadata;
mod shard;

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::Arc;

use zarrs::array::{
    Array, ArrayBytes, ArrayBytesDecodeIntoTarget, ArrayBytesOffsets, ArrayToBytesCodecTraits, BytesPartialDecoderTraits,
    CodecChain, CodecError, CodecOptions, CodecTraits, DataType, FillValue, StoragePartialDecoder,
};
use zarrs::storage::{ReadableStorage, ReadableWritableListableStorageTraits};

pub use shard::ZarrsSubchunkOrder;
pub(crate) use shard::ShardLayout;

use encoder::ChunkEncoder;

use crate::args;
use crate::bounds::{BoundedChain, DEFAULT_MAX_VARIABLE_CHUNK_BYTES};
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::layout::{ChunkJob, ChunkValues, Destination, PresenceTracker, Source};
use crate::memory;

/// A decoded variable-length chunk: its elements' bytes back to back and `elements + 1`
/// offsets into them.
pub type VariableChunk<'a> = (Cow<'a, [u8]>, Cow<'a, [usize]>);

/// An array's codecs, data type and fill value, ready to decode and encode chunk jobs.
pub struct ChunkCodec {
    /// The codecs, decoding within the bounds the metadata sets.
    codecs: BoundedChain,
    /// The same codecs for encoding (zstd through a reused per-thread context).
    encoder: ChunkEncoder,
    data_type: DataType,
    fill_value: FillValue,
    /// A checksum codec sits inside a sharding codec. zarrs' partial decoding of inner chunks
    /// strips such checksums without verifying them, so partial reads must decode whole
    /// shards while checksums are validated.
    inner_checksums: bool,
    /// The array-to-bytes codec is sharding.
    sharded: bool,
    /// The sharding layout, when the codecs are exactly one sharding codec: such shards are
    /// read and written by `shard/` rather than zarrs' sharding codec.
    shard: Option<ShardLayout>,
    /// The sharding layout, when the codecs are a sharding codec followed by bytes-to-bytes
    /// codecs: such shards are decoded by `shard/` once those codecs have run (within
    /// bounds), never by zarrs' sharding codec; they are encoded by zarrs' chain.
    shard_under_bytes: Option<ShardLayout>,
    /// Decoding may reach zarrs' own sharding codec: the codecs hold a sharding codec that
    /// our layout does not read. No chain `metadata.rs` accepts has one (inner shards of
    /// nested sharding are read by `shard/` too); a layout that failed to build would.
    zarrs_shards: bool,
}

impl ChunkCodec {
    /// Our sharding layout, when the codecs are exactly one sharding codec.
    pub(crate) fn shard(&self) -> Option<&ShardLayout> {
        self.shard.as_ref()
    }

    /// Whether the array-to-bytes codec is sharding (the chunks are shards).
    pub fn sharded(&self) -> bool {
        self.sharded
    }

    /// The engine for `array`, whose largest chunk has shape `largest_chunk`. Fails on
    /// metadata whose chunks could never be held in memory or whose shard index is too large.
    pub fn new(array: &Array<dyn ReadableWritableListableStorageTraits>, largest_chunk: &[u64]) -> FfiResult<Self> {
        let metadata = serde_json::to_value(array.metadata()).unwrap_or_default();
        let codecs = &metadata["codecs"];
        let inner_checksums = metadata::has_inner_checksums(codecs);
        let sharded = metadata::is_sharded(codecs);
        let shard = ShardLayout::from_codecs_metadata(codecs);
        metadata::check_chunk_sizes(array.data_type(), largest_chunk, codecs)?;
        metadata::check_sharding_supported(codecs)?;
        let shard_under_bytes = match codecs.as_array() {
            Some(list) if sharded && list.len() > 1 => ShardLayout::from_codecs_metadata(&serde_json::Value::Array(vec![list[0].clone()])),
            _ => None,
        };
        // Our layout reads its sharding codec and every one nested in it.
        let ours = shard.as_ref().or(shard_under_bytes.as_ref()).map_or(0, ShardLayout::levels);
        let zarrs_shards = metadata::sharding_codecs(codecs) > ours;
        Ok(Self {
            zarrs_shards,
            codecs: BoundedChain::new(array.codecs()),
            encoder: ChunkEncoder::new(array.codecs()),
            data_type: array.data_type().clone(),
            fill_value: array.fill_value().clone(),
            inner_checksums,
            sharded,
            shard,
            shard_under_bytes,
        })
    }

    /// Whether decoding a job may run on a caller's thread, outside our rayon pools: it then
    /// reaches rayon only through `process::try_for_each` (our shard reader), never through
    /// zarrs' sharding codec, the one zarrs codec that runs rayon's parallel iterators
    /// itself (on rayon's global pool, from such a thread). No other codec zarrs has uses
    /// rayon; blosc decodes with one thread. Nested sharding qualifies: each level of inner
    /// shards goes through `try_for_each` again, one after another on a caller alone, and
    /// shared with the call's pool inside `process::share`. (Our variable-length shard
    /// decoding uses a parallel iterator, but runs only on a pool: no job decodes it.)
    pub fn decodes_off_pool(&self) -> bool {
        !self.zarrs_shards
    }

    /// The chain as zarrs built it.
    pub fn chain(&self) -> &Arc<CodecChain> {
        self.codecs.chain()
    }

    pub fn data_type(&self) -> &DataType {
        &self.data_type
    }

    /// The size of one element; variable-length data types fail.
    pub fn element_size(&self) -> FfiResult<usize> {
        self.data_type.fixed_size().ok_or_else(|| {
            FfiError::new(
                ZarrsResult::ZARRS_ERROR_UNSUPPORTED,
                format!("data type {} has variable-length elements; buffer calls need fixed-size elements", self.data_type),
            )
        })
    }

    /// Fail unless the data type has variable-length elements.
    pub fn require_variable(&self) -> FfiResult<()> {
        if self.data_type.fixed_size().is_some() {
            return Err(FfiError::new(
                ZarrsResult::ZARRS_ERROR_UNSUPPORTED,
                format!("data type {} has fixed-size elements; use the buffer calls", self.data_type),
            ));
        }
        Ok(())
    }

    /// Choose the order of inner chunks in shards written from now on (only for codecs that
    /// are exactly one sharding codec; others write in zarrs' order).
    pub fn set_subchunk_write_order(&self, order: ZarrsSubchunkOrder) {
        if let Some(shard) = &self.shard {
            shard.set_write_order(order);
        }
    }

    /// Whether a job of part of a sharded chunk is read by byte ranges (the shard index and
    /// the inner chunks it needs) rather than by fetching the whole value.
    pub fn reads_ranges(&self, job: &ChunkJob) -> bool {
        self.shard.is_some() && !job.is_whole_chunk()
    }

    /// Whether to read the job's subset through zarrs' partial decoder: only for part of a
    /// chunk, and only if every codec of the chain reads partially (e.g. sharding, which then
    /// fetches just the inner chunks it needs). Otherwise the partial decoder would read and
    /// decode the whole chunk anyway, and on that path zarrs' checksum codecs (crc32c) strip
    /// the checksum without verifying it, so a corrupt chunk would be returned silently.
    ///
    /// Checksums inside a shard are not verified by zarrs' partial decoding of inner chunks
    /// either, so such arrays decode whole shards while checksums are validated.
    fn decodes_partially(&self, job: &ChunkJob, options: &CodecOptions) -> bool {
        !job.is_whole_chunk()
            && self.shard_under_bytes.is_none()
            && self.chain().partial_decoder_capability().partial_read
            && !(self.inner_checksums && options.validate_checksums())
    }

    /// Decode `encoded` (None: the chunk is missing) into the job's region of `destination`.
    /// Returns whether the chunk was present.
    pub fn decode_job(
        &self,
        job: &ChunkJob,
        encoded: Option<Cow<'_, [u8]>>,
        destination: &Destination,
        options: &CodecOptions,
    ) -> FfiResult<bool> {
        let (data_type, fill_value) = (&self.data_type, &self.fill_value);
        let Some(encoded) = encoded else {
            destination.fill(job, fill_value.as_ne_bytes())?;
            return Ok(false);
        };
        if let Some(shard) = &self.shard {
            shard.decode_into(job, &encoded, destination, data_type, fill_value, options)?;
            return Ok(true);
        }
        if let Some(shard) = &self.shard_under_bytes {
            if !job.is_whole_chunk() {
                // The whole shard is decompressed anyway: decode every inner chunk, as zarr's
                // pipeline does for such chains, so a corrupt one fails the read either way.
                let chunk = self.decode_whole(job, Some(encoded), options)?;
                destination.place(job, &chunk)?;
                return Ok(true);
            }
            let cap = DEFAULT_MAX_VARIABLE_CHUNK_BYTES; // fixed-size shards are bounded by their metadata
            let encoded = self.codecs.decode_bytes(encoded, &job.chunk_shape, data_type, fill_value, cap, options)?;
            shard.decode_into(job, &encoded, destination, data_type, fill_value, options)?;
            return Ok(true);
        }
        if self.sharded && job.is_whole_chunk() {
            // The sharding codec decodes each inner chunk straight into its place.
            let mut view = destination.view(job)?;
            let target = ArrayBytesDecodeIntoTarget::Fixed(&mut view);
            self.codecs.decode_into(encoded, &job.chunk_shape, data_type, fill_value, target, options)?;
        } else if self.decodes_partially(job, options) {
            self.check_stored_size(job, Some(encoded.len() as u64))?;
            let mut view = destination.view(job)?;
            let input: Arc<dyn BytesPartialDecoderTraits> = Arc::new(encoded.into_owned());
            self.chain()
                .clone()
                .partial_decoder(input, &job.chunk_shape, data_type, fill_value, options)?
                .partial_decode_into(&job.subset, ArrayBytesDecodeIntoTarget::Fixed(&mut view), options)?;
        } else {
            // A whole chunk landing as one run of the buffer decodes straight into it, where
            // the chain allows (`bytes` then zstd).
            if job.is_whole_chunk() {
                if let Some(out) = destination.contiguous(job) {
                    if self.codecs.decode_straight(&encoded, out) {
                        return Ok(true);
                    }
                }
            }
            // Decode the whole chunk (verifying any checksum) and place the subset with our
            // run copy, which is several times faster than zarrs' generic strided iterator.
            let chunk = self.decode_whole(job, Some(encoded), options)?;
            destination.place(job, &chunk)?;
        }
        Ok(true)
    }

    /// Read one job from `storage` into its region of `destination`. Returns whether the
    /// chunk was present (false: the region holds the fill value).
    pub fn read_job(
        &self,
        storage: &ReadableStorage,
        job: &ChunkJob,
        destination: &Destination,
        options: &CodecOptions,
    ) -> FfiResult<bool> {
        let (data_type, fill_value) = (&self.data_type, &self.fill_value);
        if let (Some(shard), false) = (&self.shard, job.is_whole_chunk()) {
            return shard.read_partial(storage.as_ref(), job, destination, data_type, fill_value, options);
        }
        if !self.decodes_partially(job, options) {
            let encoded = storage.get(&job.key)?;
            return self.decode_job(job, encoded.as_deref().map(Cow::Borrowed), destination, options);
        }
        if self.codecs.fixed_encoded_size(&job.chunk_shape, data_type, fill_value)?.is_some() {
            // Reading a range of an uncompressed chunk cannot tell a truncated (or extended)
            // chunk from an intact one: compare the stored size first (one stat or HEAD).
            let size = storage.size_key(&job.key)?;
            if size.is_none() {
                destination.fill(job, fill_value.as_ne_bytes())?;
                return Ok(false);
            }
            self.check_stored_size(job, size)?;
        }
        let mut view = destination.view(job)?;
        let target = ArrayBytesDecodeIntoTarget::Fixed(&mut view);
        // Partial: let the codecs ask the store for just the byte ranges they need (the shard
        // index and the inner chunks, for sharding).
        let readable: ReadableStorage = storage.clone();
        let input = Arc::new(PresenceTracker::new(StoragePartialDecoder::new(readable, job.key.clone())));
        self.chain()
            .clone()
            .partial_decoder(input.clone(), &job.chunk_shape, data_type, fill_value, options)?
            .partial_decode_into(&job.subset, target, options)?;
        Ok(input.found())
    }

    /// For chains that fix a chunk's stored size (no compressor), fail unless the stored
    /// chunk has exactly that size: a partial read would otherwise return values from a
    /// truncated chunk.
    fn check_stored_size(&self, job: &ChunkJob, stored: Option<u64>) -> FfiResult<()> {
        let fixed = self.codecs.fixed_encoded_size(&job.chunk_shape, &self.data_type, &self.fill_value)?;
        let (Some(stored), Some(fixed)) = (stored, fixed) else {
            return Ok(());
        };
        if stored != fixed {
            return Err(FfiError::new(
                ZarrsResult::ZARRS_ERROR_CODEC,
                format!("the stored chunk has {stored} bytes; its codecs produce exactly {fixed}: the chunk is truncated or corrupt"),
            ));
        }
        Ok(())
    }

    /// Encode a whole chunk. `None` means every element is the fill value and empty chunks
    /// are not stored, so the key should be erased instead.
    pub fn encode_chunk(&self, chunk_shape: &[NonZeroU64], values: ChunkValues<'_>, options: &CodecOptions) -> FfiResult<Option<Vec<u8>>> {
        if let Some(shard) = &self.shard {
            // Each inner chunk is copied from the values straight to its encoder (and
            // skipped when it is all fill value): the shard is never assembled decoded.
            return shard.encode(chunk_shape, &values, &self.data_type, &self.fill_value, options);
        }
        let shape: Vec<u64> = chunk_shape.iter().map(|d| d.get()).collect();
        values.with_bytes(&shape, self.element_size()?, |bytes| {
            if !options.store_empty_chunks() && self.fill_value.equals_all(bytes) {
                return Ok(None);
            }
            // The encoders allocate their output (about the chunk's size) themselves.
            memory::probe(bytes.len() as u64, "an encoded chunk")?;
            let encoded = self
                .encoder
                .encode(ArrayBytes::new_flen(Cow::Borrowed(bytes)), chunk_shape, &self.data_type, &self.fill_value, options)?;
            Ok(Some(encoded.into_owned()))
        })?
    }

    /// Encode a whole chunk as [`ChunkCodec::encode_chunk`] does and hand its bytes to
    /// `store` (None: erase). The bytes sit in a buffer this thread keeps for its next chunk
    /// (zstd's output, a shard), so a batch written straight to storage allocates none per
    /// chunk.
    pub fn encode_chunk_with<R>(
        &self,
        chunk_shape: &[NonZeroU64],
        values: ChunkValues<'_>,
        options: &CodecOptions,
        store: impl FnOnce(Option<&[u8]>) -> FfiResult<R>,
    ) -> FfiResult<R> {
        if let Some(shard) = &self.shard {
            return shard.encode_with(chunk_shape, &values, &self.data_type, &self.fill_value, options, store);
        }
        let shape: Vec<u64> = chunk_shape.iter().map(|d| d.get()).collect();
        values.with_bytes(&shape, self.element_size()?, |bytes| {
            if !options.store_empty_chunks() && self.fill_value.equals_all(bytes) {
                return store(None);
            }
            memory::probe(bytes.len() as u64, "an encoded chunk")?;
            let chunk = ArrayBytes::new_flen(Cow::Borrowed(bytes));
            self.encoder.encode_with(chunk, chunk_shape, &self.data_type, &self.fill_value, options, |encoded| store(Some(encoded)))?
        })?
    }

    /// The decoded bytes of a whole chunk, or the fill value if it is missing.
    fn decode_whole(&self, job: &ChunkJob, encoded: Option<Cow<'_, [u8]>>, options: &CodecOptions) -> FfiResult<Vec<u8>> {
        let element_size = self.element_size()?;
        let len = args::byte_size(&job.chunk_shape_u64(), element_size)?;
        let what = || format!("a decoded chunk of shape {:?}", job.chunk_shape_u64());
        match encoded {
            None => memory::repeat(self.fill_value.as_ne_bytes(), len / element_size, what()),
            Some(encoded) if self.shard.is_some() || self.shard_under_bytes.is_some() => {
                let mut chunk = memory::zeroed(len, what())?;
                let shape = job.chunk_shape_u64();
                let whole = ChunkJob::whole(job.key.clone(), job.chunk_shape.clone());
                let destination = Destination::new(&mut chunk, &shape, element_size, "chunk")?;
                self.decode_job(&whole, Some(encoded), &destination, options)?;
                Ok(chunk)
            }
            Some(encoded) => {
                // zarrs' array-to-bytes codecs may allocate the chunk themselves.
                memory::probe(len as u64, what())?;
                let decoded = self
                    .codecs
                    .decode(encoded, &job.chunk_shape, &self.data_type, &self.fill_value, DEFAULT_MAX_VARIABLE_CHUNK_BYTES, options)?
                    .into_fixed()
                    .map_err(CodecError::from)?;
                if decoded.len() != len {
                    return Err(FfiError::new(
                        ZarrsResult::ZARRS_ERROR_CODEC,
                        format!("chunk {} decoded to {} bytes, expected {len}", job.key, decoded.len()),
                    ));
                }
                Ok(decoded.into_owned())
            }
        }
    }

    /// The new values of a chunk after a write of `source` over the job's subset; partial
    /// writes read and decode the old chunk first (`old` fetches its encoded bytes).
    pub fn merge_job<'s, 'o>(
        &self,
        job: &ChunkJob,
        source: &Source<'s>,
        old: impl FnOnce() -> FfiResult<Option<Cow<'o, [u8]>>>,
        options: &CodecOptions,
    ) -> FfiResult<ChunkValues<'s>> {
        source.check(job)?;
        let element_size = self.element_size()?;
        if job.is_whole_chunk() {
            return source.whole_chunk(job, element_size);
        }
        let mut chunk = self.decode_whole(job, old()?, options)?;
        source.write_into(job, &mut chunk, element_size);
        Ok(ChunkValues::Bytes(Cow::Owned(chunk)))
    }

    /// Decode a whole chunk of a variable-length data type into its elements' bytes and
    /// `elements + 1` offsets, each compressor's output capped at `cap` bytes.
    pub fn decode_variable<'a>(
        &self,
        bytes: &'a [u8],
        shape: &[NonZeroU64],
        cap: u64,
        options: &CodecOptions,
    ) -> FfiResult<VariableChunk<'a>> {
        if let Some(shard) = &self.shard {
            // Our shard reader, not zarrs' sharding codec: inner chunks decode within bounds
            // and their layouts are checked.
            let (bytes, offsets) = shard.decode_variable(bytes, shape, &self.data_type, &self.fill_value, cap, options)?;
            return Ok((Cow::Owned(bytes), Cow::Owned(offsets)));
        }
        if let Some(shard) = &self.shard_under_bytes {
            let shard_bytes = self.codecs.decode_bytes(Cow::Borrowed(bytes), shape, &self.data_type, &self.fill_value, cap, options)?;
            let (bytes, offsets) = shard.decode_variable(&shard_bytes, shape, &self.data_type, &self.fill_value, cap, options)?;
            return Ok((Cow::Owned(bytes), Cow::Owned(offsets)));
        }
        let decoded = self
            .codecs
            .decode(Cow::Borrowed(bytes), shape, &self.data_type, &self.fill_value, cap, options)?
            .into_variable()
            .map_err(CodecError::from)?;
        let (bytes, offsets) = decoded.into_parts();
        Ok((bytes, Cow::Owned(offsets.to_vec())))
    }

    /// Encode a whole chunk of a variable-length data type from its elements' bytes and
    /// `elements + 1` offsets into them.
    pub fn encode_variable(&self, bytes: &[u8], offsets: Vec<usize>, shape: &[NonZeroU64], options: &CodecOptions) -> FfiResult<Vec<u8>> {
        let offsets = ArrayBytesOffsets::new(offsets).map_err(|e| FfiError::invalid(e.to_string()))?;
        let chunk = ArrayBytes::new_vlen(bytes, offsets).map_err(|e| FfiError::invalid(e.to_string()))?;
        let encoded = self.encoder.encode(chunk, shape, &self.data_type, &self.fill_value, options)?;
        Ok(encoded.into_owned())
    }
}
