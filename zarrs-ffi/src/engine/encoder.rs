//! Encoding with an array's codecs, zstd through one reused context per thread.
//!
//! zarrs' zstd codec creates a compression context for every chunk it encodes, allocating
//! and clearing its tables each time (about 6% of a zstd write). [`ChunkEncoder`] runs the
//! same chain, but each zstd codec in it compresses through a context kept per thread and
//! reused, with the same level and checksum flag. zstd's output depends only on its
//! parameters and input, so the bytes are exactly zarrs' (a test compares them).
//!
//! Only encoding lives here: decoding stays with `bounds.rs`, which caps every output by
//! what the metadata allows.

use std::borrow::Cow;
use std::cell::Cell;
use std::num::NonZeroU64;
use std::sync::Arc;

use zarrs::array::codec::ZstdCodec;
use zarrs::plugin::ZarrVersion;
use zarrs::array::{
    ArrayBytes, ArrayToBytesCodecTraits, BytesToBytesCodecTraits, CodecChain, CodecError, CodecMetadataOptions,
    CodecOptions, DataType, FillValue,
};

/// One bytes-to-bytes step of an encoding.
#[derive(Debug)]
enum Step {
    /// zstd at `level`, with a content checksum or not: our reused per-thread context.
    Zstd { level: i32, checksum: bool },
    /// Any other codec, run by zarrs.
    Codec(Arc<dyn BytesToBytesCodecTraits>),
}

/// A codec chain for encoding, whose zstd codecs reuse a per-thread context.
#[derive(Debug)]
pub(crate) struct ChunkEncoder {
    full: Arc<CodecChain>,
    /// With a zstd codec: the chain up to its bytes (no bytes-to-bytes codecs) and the
    /// bytes-to-bytes steps after it. None: `full` encodes unchanged.
    split: Option<(CodecChain, Vec<Step>)>,
}

/// The level and checksum flag of a zarrs zstd codec, read from its configuration (the
/// codec keeps them private).
fn zstd_settings(codec: &Arc<dyn BytesToBytesCodecTraits>) -> Option<(i32, bool)> {
    codec.as_any().downcast_ref::<ZstdCodec>()?;
    let configuration = codec.configuration(ZarrVersion::V3, &CodecMetadataOptions::default())?;
    let configuration = serde_json::to_value(configuration).ok()?;
    let level = i32::try_from(configuration["level"].as_i64()?).ok()?;
    let checksum = configuration["checksum"].as_bool().unwrap_or(false);
    Some((level, checksum))
}

impl ChunkEncoder {
    pub fn new(chain: Arc<CodecChain>) -> Self {
        let steps: Vec<Step> = chain
            .bytes_to_bytes_codecs()
            .iter()
            .map(|codec| match zstd_settings(codec) {
                Some((level, checksum)) => Step::Zstd { level, checksum },
                None => Step::Codec(codec.clone()),
            })
            .collect();
        let split = steps.iter().any(|step| matches!(step, Step::Zstd { .. })).then(|| {
            let array_part = CodecChain::new(chain.array_to_array_codecs().to_vec(), chain.array_to_bytes_codec().clone(), Vec::new());
            (array_part, steps)
        });
        Self { full: chain, split }
    }

    /// Encode a chunk, as `CodecChain::encode` does.
    pub fn encode<'a>(
        &self,
        bytes: ArrayBytes<'a>,
        shape: &[NonZeroU64],
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
    ) -> Result<Cow<'a, [u8]>, CodecError> {
        let Some((array_part, steps)) = &self.split else {
            return self.full.encode(bytes, shape, data_type, fill_value, options);
        };
        let mut encoded = array_part.encode(bytes, shape, data_type, fill_value, options)?;
        for step in steps {
            encoded = step.encode(encoded, options)?;
        }
        Ok(encoded)
    }

    /// Encode a chunk as [`ChunkEncoder::encode`] does and hand the bytes to `f`. A last zstd
    /// step compresses into a buffer this thread keeps for its next chunk, so a batch of
    /// chunks written straight to storage allocates no output per chunk.
    pub fn encode_with<R>(
        &self,
        bytes: ArrayBytes<'_>,
        shape: &[NonZeroU64],
        data_type: &DataType,
        fill_value: &FillValue,
        options: &CodecOptions,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, CodecError> {
        let Some((array_part, steps)) = &self.split else {
            return Ok(f(&self.full.encode(bytes, shape, data_type, fill_value, options)?));
        };
        let (last, before) = steps.split_last().expect("a split chain has a zstd step");
        let mut encoded = array_part.encode(bytes, shape, data_type, fill_value, options)?;
        for step in before {
            encoded = step.encode(encoded, options)?;
        }
        match last {
            Step::Zstd { level, checksum } => {
                let mut output = OUTPUT.take();
                let compressed = zstd_compress_into(&encoded, *level, *checksum, &mut output);
                let result = compressed.map(|()| f(&output));
                if output.capacity() <= KEEP_OUTPUT {
                    OUTPUT.set(output);
                }
                result
            }
            Step::Codec(_) => Ok(f(&last.encode(encoded, options)?)),
        }
    }
}

impl Step {
    fn encode<'a>(&self, bytes: Cow<'a, [u8]>, options: &CodecOptions) -> Result<Cow<'a, [u8]>, CodecError> {
        match self {
            Step::Zstd { level, checksum } => Ok(Cow::Owned(zstd_compress(&bytes, *level, *checksum)?)),
            Step::Codec(codec) => codec.encode(bytes, options),
        }
    }
}

/// The largest output buffer a thread keeps for its next chunk (see `KEEP_CHUNK_BUFFER` in
/// `layout/view.rs`: a huge chunk's memory is not held for the life of the process).
const KEEP_OUTPUT: usize = 16 << 20;

thread_local! {
    /// This thread's buffer for compressed bytes on their way to storage (taken out while in
    /// use, so a nested use on the same thread gets a fresh one instead of sharing it).
    static OUTPUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A thread's zstd context and the settings it was made with.
struct Context {
    level: i32,
    checksum: bool,
    compressor: zstd::bulk::Compressor<'static>,
}

thread_local! {
    /// This thread's zstd context, taken out while it compresses (so a nested use on the
    /// same thread, e.g. a rayon task run while waiting, makes its own instead of sharing).
    static CONTEXT: Cell<Option<Context>> = const { Cell::new(None) };
}

/// Compress `data` like zarrs' zstd codec (a one-shot frame with the content size, `level`,
/// a checksum if asked), through this thread's context.
fn zstd_compress(data: &[u8], level: i32, checksum: bool) -> Result<Vec<u8>, CodecError> {
    let mut output = Vec::new();
    zstd_compress_into(data, level, checksum, &mut output)?;
    Ok(output)
}

/// [`zstd_compress`] into `output` (its old contents replaced), grown to zstd's bound for
/// `data` first: a one-shot compression never runs out of room.
fn zstd_compress_into(data: &[u8], level: i32, checksum: bool, output: &mut Vec<u8>) -> Result<(), CodecError> {
    output.clear();
    output.reserve(zstd::zstd_safe::compress_bound(data.len()));
    let mut context = match CONTEXT.take() {
        Some(context) if context.level == level && context.checksum == checksum => context,
        _ => {
            #[cfg(test)]
            tests::CONTEXTS_MADE.with(|n| n.set(n.get() + 1));
            let mut compressor = zstd::bulk::Compressor::new(level)?;
            compressor.include_checksum(checksum)?;
            Context { level, checksum, compressor }
        }
    };
    let compressed = context.compressor.compress_to_buffer(data, output);
    CONTEXT.set(Some(context));
    compressed?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use zarrs::array::codec::{BytesCodec, Crc32cCodec, ShuffleCodec};
    use zarrs::metadata::v3::MetadataV3;

    use super::*;

    thread_local! {
        /// zstd contexts this thread has made.
        pub(super) static CONTEXTS_MADE: Cell<usize> = const { Cell::new(0) };
    }

    fn chain(codecs: serde_json::Value) -> Arc<CodecChain> {
        let metadata: Vec<MetadataV3> = serde_json::from_value(codecs).unwrap();
        Arc::new(CodecChain::from_metadata(&metadata).unwrap())
    }

    /// Compressible uint16 values with some noise, like the benchmark's.
    fn chunk(seed: u16, elements: usize) -> Vec<u8> {
        (0..elements as u32)
            .flat_map(|i| (((i as u16).wrapping_mul(3).wrapping_add(seed) % 4096) ^ (i.wrapping_mul(2_654_435_761) >> 30) as u16).to_ne_bytes())
            .collect()
    }

    fn encode_both(codecs: serde_json::Value, shape: &[u64], data: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let chain = chain(codecs);
        let shape: Vec<NonZeroU64> = shape.iter().map(|&d| NonZeroU64::new(d).unwrap()).collect();
        let (data_type, fill_value) = (zarrs::array::data_type::uint16(), FillValue::from(0u16));
        let options = CodecOptions::default();
        let theirs = chain
            .encode(ArrayBytes::new_flen(Cow::Borrowed(data)), &shape, &data_type, &fill_value, &options)
            .unwrap()
            .into_owned();
        let encoder = ChunkEncoder::new(chain);
        let ours = encoder
            .encode(ArrayBytes::new_flen(Cow::Borrowed(data)), &shape, &data_type, &fill_value, &options)
            .unwrap()
            .into_owned();
        // Through the reused output buffer, twice (the second time over the first's bytes).
        for _ in 0..2 {
            let with = encoder
                .encode_with(ArrayBytes::new_flen(Cow::Borrowed(data)), &shape, &data_type, &fill_value, &options, <[u8]>::to_vec)
                .unwrap();
            assert_eq!(with, ours);
        }
        (ours, theirs)
    }

    #[test]
    fn zstd_bytes_are_zarrs_bytes() {
        // Levels (negative, default, higher), checksums, a codec after zstd, and contexts
        // reused across settings and sizes on one thread: every output is zarrs' own.
        for (round, level) in [1, 3, -5, 9, 1, 22, 3].into_iter().enumerate() {
            for checksum in [false, true] {
                for (side, crc) in [(32u64, false), (7, true), (64, false)] {
                    let mut codecs = vec![
                        serde_json::json!({"name": "bytes", "configuration": {"endian": "little"}}),
                        serde_json::json!({"name": "zstd", "configuration": {"level": level, "checksum": checksum}}),
                    ];
                    if crc {
                        codecs.push(serde_json::json!({"name": "crc32c"}));
                    }
                    let shape = [side, side, 2];
                    let data = chunk(round as u16, (side * side * 2) as usize);
                    let (ours, theirs) = encode_both(serde_json::Value::from(codecs), &shape, &data);
                    assert_eq!(ours, theirs, "level {level}, checksum {checksum}, side {side}, crc32c {crc}");
                }
            }
        }
    }

    #[test]
    fn one_zstd_context_per_thread_and_settings() {
        let codecs = serde_json::json!([{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "zstd", "configuration": {"level": 4, "checksum": false}}]);
        let encoder = ChunkEncoder::new(chain(codecs));
        let shape = [NonZeroU64::new(4096).unwrap()];
        let (data_type, fill_value) = (zarrs::array::data_type::uint16(), FillValue::from(0u16));
        let before = CONTEXTS_MADE.with(Cell::get);
        for seed in 0..20 {
            let data = chunk(seed, 4096);
            encoder
                .encode(ArrayBytes::new_flen(Cow::Owned(data)), &shape, &data_type, &fill_value, &CodecOptions::default())
                .unwrap();
        }
        // zarrs' codec makes a context per chunk: 20 here.
        assert_eq!(CONTEXTS_MADE.with(Cell::get) - before, 1);
    }

    #[test]
    fn chains_without_zstd_are_left_to_zarrs() {
        let chain = chain(serde_json::json!([{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]));
        assert!(ChunkEncoder::new(chain).split.is_none());
        // Only zarrs' zstd codec is replaced; its neighbours run as they are.
        let chain = chain_of(vec![Arc::new(ShuffleCodec::new(2)), Arc::new(ZstdCodec::new(2, true)), Arc::new(Crc32cCodec::new())]);
        let encoder = ChunkEncoder::new(chain);
        let (_, steps) = encoder.split.as_ref().unwrap();
        assert!(matches!(steps.as_slice(), [Step::Codec(_), Step::Zstd { level: 2, checksum: true }, Step::Codec(_)]), "{steps:?}");
    }

    fn chain_of(bytes_to_bytes: Vec<Arc<dyn BytesToBytesCodecTraits>>) -> Arc<CodecChain> {
        Arc::new(CodecChain::new(vec![], Arc::new(BytesCodec::little()), bytes_to_bytes))
    }
}
