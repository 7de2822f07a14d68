//! Decoding bounded by what the metadata allows, decided before any large allocation.
//!
//! Stored bytes are hostile. zarrs' compressors size their output from the stored bytes: a
//! zstd frame's declared content size (bulk decoding allocates it up front), a gzip stream
//! read to its end, a blosc header's `nbytes`. A 20-byte chunk can therefore ask for 64 TiB.
//! [`BoundedChain`] runs a codec chain's bytes-to-bytes stage itself, one codec at a time as
//! zarrs does, and before each compressor decodes it compares what the stored bytes declare
//! with the most that codec may produce, which the chain's size representations give
//! (exactly the chunk's byte size for a fixed-size chunk behind `bytes`). Then the rest of the
//! chain (array-to-bytes and array-to-array codecs) runs unchanged.
//!
//! Compressors whose streams do not declare their size (gzip, zlib, bz2, zstd frames without
//! a content size) are decoded here with the output capped at the bound; gdeflate streams are
//! decoded here after their header (decoded size, page table) is checked (zarrs' own decoder
//! trusts the header and panics on a stream of more than one 64 KiB page). pcodec, an array-to-bytes
//! codec, is decoded here into a buffer of exactly the chunk's element count (a pco stream
//! is a sequence of chunks, each declaring up to 2^24 numbers that may cost no bytes at all),
//! then the chain's array-to-array codecs run over it.
//!
//! A chain whose array-to-bytes codec is sharding is never decoded here past its
//! bytes-to-bytes codecs: zarrs' sharding codec trusts index entries and inner frames, so
//! shards (nested ones included) are read by the engine's shard reader, and [`BoundedChain::decode`]
//! refuses them rather than reach zarrs' decoder.
//!
//! Cost: a header read per compressor; no second decode. Each stream is decoded exactly once.
//!
//! Gathers, which read a few elements of a chunk, may decode less ([`BoundedChain::decode_needed`]):
//! a zstd chunk up to the block holding its last pick, a blosc chunk only in the blocks holding
//! picks. Only for streams that declare exactly the chunk's size and are whole (anything
//! else decodes whole, with the whole decode's errors), so the bounds are the same; what is
//! lost is the check of the part not decoded (see there).
//!
//! This module knows codecs and byte formats only; it must not know about arrays, stores or
//! jobs. Callers add the chunk key and the array to its messages.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read;
use std::num::NonZeroU64;
use std::sync::Arc;

use zarrs::array::codec::array_to_bytes::bytes::{BytesCodec, BytesDataTypeExt, Endianness};
use zarrs::array::codec::array_to_bytes::pcodec::{PcodecCodec, PcodecDataTypeExt, PcodecElementType};
use zarrs::array::codec::array_to_bytes::sharding::ShardingCodec;
use zarrs::array::codec::bytes_to_bytes::blosc::BloscCodec;
use zarrs::array::codec::bytes_to_bytes::bz2::Bz2Codec;
use zarrs::array::codec::bytes_to_bytes::gdeflate::GDeflateCodec;
use zarrs::array::codec::bytes_to_bytes::gzip::GzipCodec;
use zarrs::array::codec::bytes_to_bytes::zlib::ZlibCodec;
use zarrs::array::codec::bytes_to_bytes::zstd::ZstdCodec;
use zarrs::array::codec::{VlenBytesCodec, VlenUtf8Codec, VlenV2Codec};
use zarrs::array::{
    ArrayBytes, ArrayBytesDecodeIntoTarget, ArrayBytesRaw, ArrayToBytesCodecTraits, BytesRepresentation,
    BytesToBytesCodecTraits, CodecChain, CodecError, CodecMetadataOptions, CodecOptions, DataType, FillValue,
};
use zarrs::plugin::ZarrVersion;
use zstd::zstd_safe::{self, DCtx, InBuffer, OutBuffer, ResetDirective};

use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::memory;

/// The default cap on one decoded variable-length chunk (its element bytes and offsets as
/// stored), whose size no metadata bounds: 1 GiB.
pub const DEFAULT_MAX_VARIABLE_CHUNK_BYTES: u64 = 1 << 30;

fn corrupt(message: String) -> FfiError {
    FfiError::new(ZarrsResult::ZARRS_ERROR_CODEC, message)
}

/// A codec chain whose bytes-to-bytes codecs decode within the bounds of the representation
/// they decode to.
pub(crate) struct BoundedChain {
    full: Arc<CodecChain>,
    /// The chain without its bytes-to-bytes codecs: what runs after them.
    array_part: CodecChain,
    bytes_to_bytes: Vec<Arc<dyn BytesToBytesCodecTraits>>,
    /// For a `pcodec` chain: its array-to-array codecs over `bytes` in native order, which
    /// decode the numbers [`pcodec_capped`] produced.
    pcodec_tail: Option<CodecChain>,
    /// How the chain may decode only the part of a chunk a read uses (None: it may not).
    partial: Option<PartialChain>,
}

/// The bytes a read uses of a decoded chunk, as the `bytes` codec lays it out (C order),
/// for decoders that can stop early or skip: zstd decodes only the prefix up to the last
/// byte used, blosc only the blocks holding bytes used.
pub(crate) trait Needed {
    /// One past the last byte used.
    fn end(&self) -> usize;
    /// Set `used[b]` for every block `b` (of `block` bytes each) holding a byte used.
    fn mark_blocks(&self, block: usize, used: &mut [bool]);
}

/// The compressor that decodes a chain's array bytes (the first bytes-to-bytes codec), for
/// a chain of `bytes` and bytes-to-bytes codecs only.
#[derive(Clone, Copy)]
enum PartialKind {
    Zstd,
    Blosc,
}

/// What [`BoundedChain::decode_needed`] needs to know of a chain it can decode in part.
struct PartialChain {
    kind: PartialKind,
    /// The `bytes` codec's endianness: the decoded part goes through the data type's own
    /// `bytes` decoding (element byte order), as a whole chunk would.
    endian: Option<Endianness>,
}

impl PartialChain {
    /// For chains of `bytes` then zstd or blosc, then any bytes-to-bytes codecs (which
    /// decode whole, e.g. a crc32c over the compressed bytes). Nothing may need the whole
    /// decoded chunk after the compressor: no array-to-array codec (transpose), no shuffle
    /// or checksum over the decoded bytes (those would be the first bytes-to-bytes codec).
    fn of(chain: &CodecChain) -> Option<Self> {
        if !chain.array_to_array_codecs().is_empty() {
            return None;
        }
        let bytes = chain.array_to_bytes_codec();
        if !bytes.as_any().is::<BytesCodec>() {
            return None;
        }
        let first = chain.bytes_to_bytes_codecs().first()?.as_any();
        let kind = if first.is::<ZstdCodec>() {
            PartialKind::Zstd
        } else if first.is::<BloscCodec>() {
            PartialKind::Blosc
        } else {
            return None;
        };
        // BytesCodec keeps its endianness private: read it back from its configuration.
        let configuration = bytes.configuration(ZarrVersion::V3, &CodecMetadataOptions::default())?;
        let endian = match serde_json::to_value(&configuration).ok()?.get("endian").map(|e| e.as_str()) {
            None => None,
            Some(Some("little")) => Some(Endianness::Little),
            Some(Some("big")) => Some(Endianness::Big),
            Some(_) => return None,
        };
        Some(Self { kind, endian })
    }
}

impl BoundedChain {
    pub fn new(chain: Arc<CodecChain>) -> Self {
        let array_part = CodecChain::new(
            chain.array_to_array_codecs().to_vec(),
            chain.array_to_bytes_codec().clone(),
            Vec::new(),
        );
        let bytes_to_bytes = chain.bytes_to_bytes_codecs().to_vec();
        let pcodec_tail = chain.array_to_bytes_codec().as_any().is::<PcodecCodec>().then(|| {
            CodecChain::new(
                chain.array_to_array_codecs().to_vec(),
                Arc::new(BytesCodec::new(Some(Endianness::native()))),
                Vec::new(),
            )
        });
        let partial = PartialChain::of(&chain);
        Self {
            full: chain,
            array_part,
            bytes_to_bytes,
            pcodec_tail,
            partial,
        }
    }

    /// Decode a whole chunk straight into `out`, its place in the caller's buffer (the
    /// chunk's bytes in C order), with no buffer of its own and no copy, when the chain is
    /// `bytes` in native order (or of single-byte elements) then zstd alone, and the frames
    /// declare exactly `out.len()` bytes: true. Otherwise false, and the caller decodes the
    /// usual way (which also names any error: a stream that fails here may have written
    /// part of `out`, which that decode then overwrites or fails).
    ///
    /// A one-chunk read otherwise allocates the decoded chunk (1 MiB for 1024 x 256 float32)
    /// on every call, and glibc returns it to the system on every free: page faults for each
    /// read, most of its time in the direct API.
    pub fn decode_straight(&self, bytes: &[u8], out: &mut [u8]) -> bool {
        let Some(PartialChain { kind: PartialKind::Zstd, endian }) = &self.partial else {
            return false;
        };
        if self.bytes_to_bytes.len() != 1 || endian.is_some_and(|e| e != Endianness::native()) {
            return false;
        }
        if zstd_declared_size(bytes) != (out.len() as u64, false) {
            return false;
        }
        matches!(with_zstd_context(|context| context.decompress(out, bytes)), Ok(Ok(n)) if n == out.len())
    }

    /// Decode the part of a chunk of `shape` that a read uses (`needed`), when the chain
    /// allows: zstd decodes the prefix holding every byte used, blosc the blocks holding
    /// them (see [`zstd_prefix`], [`blosc_blocks`]). The result holds the chunk's decoded
    /// bytes (native order) wherever `needed` uses them: a prefix of the chunk (zstd), or
    /// the whole chunk with unused blocks zero (blosc), or the whole chunk decoded as
    /// [`Self::decode`] would when the stream does not allow a part (then with the same
    /// errors). None: the chain never decodes in part; decode the whole chunk.
    ///
    /// Bounds as for a whole chunk: the compressor's output never exceeds the chunk's size,
    /// and a stream that does not declare exactly the chunk's size is decoded whole.
    /// Corruption in the part not decoded goes unseen (a whole decode may have failed on it),
    /// and a zstd frame checksum cannot be verified without the whole frame: such frames
    /// decode whole while checksums are validated.
    pub fn decode_needed(
        &self,
        bytes: ArrayBytesRaw<'_>,
        shape: &[NonZeroU64],
        data_type: &DataType,
        fill_value: &FillValue,
        needed: &dyn Needed,
        options: &CodecOptions,
    ) -> FfiResult<Option<Vec<u8>>> {
        let Some(partial) = &self.partial else {
            return Ok(None);
        };
        if data_type.is_optional() || data_type.fixed_size().is_none() {
            return Ok(None);
        }
        let representations = self.representations(shape, data_type, fill_value)?;
        let Some(&BytesRepresentation::FixedSize(size)) = representations.first() else {
            return Ok(None);
        };
        // The codecs after the compressor (outermost first) decode whole, each bounded.
        let mut bytes = bytes;
        for j in (1..self.bytes_to_bytes.len()).rev() {
            let (max, exact) = bound_of(&representations[j], DEFAULT_MAX_VARIABLE_CHUNK_BYTES);
            bytes = decode_bounded(self.bytes_to_bytes[j].as_ref(), bytes, &representations[j], max, exact, options)?;
        }
        let chunk = usize::try_from(size).map_err(|_| corrupt(format!("chunk size {size} exceeds memory")))?;
        let part = match partial.kind {
            // A chunk of one block at most gains nothing: skip computing the picks' end.
            PartialKind::Zstd if chunk <= ZSTD_BLOCK => None,
            PartialKind::Zstd => zstd_prefix(&bytes, chunk, needed.end().min(chunk), options.validate_checksums()),
            PartialKind::Blosc => blosc_blocks(&bytes, chunk, needed),
        };
        let Some(part) = part else {
            // The whole chunk, as `decode` would: the compressor bounded, then `bytes`.
            let decoded = decode_bounded(self.bytes_to_bytes[0].as_ref(), bytes, &representations[0], size, true, options)?;
            let chunk = self.array_part.decode(decoded, shape, data_type, fill_value, options)?;
            return Ok(Some(chunk.into_fixed().map_err(CodecError::from)?.into_owned()));
        };
        let decoded = data_type
            .codec_bytes()
            .map_err(|e| corrupt(format!("bytes codec: {e}")))?
            .decode(Cow::Owned(part), partial.endian)
            .map_err(|e| corrupt(format!("bytes codec: {e}")))?;
        Ok(Some(decoded.into_owned()))
    }

    /// The chain as zarrs built it (encoding, partial decoders, representations).
    pub fn chain(&self) -> &Arc<CodecChain> {
        &self.full
    }

    /// The shape and data type the array-to-bytes codec encodes (after the array-to-array
    /// codecs).
    fn array_to_bytes_input(&self, shape: &[NonZeroU64], data_type: &DataType, fill_value: &FillValue) -> FfiResult<(Vec<NonZeroU64>, DataType)> {
        let (mut shape, mut data_type, mut fill_value) = (shape.to_vec(), data_type.clone(), fill_value.clone());
        for codec in self.full.array_to_array_codecs() {
            (shape, data_type, fill_value) = codec.encoded_representation(&shape, &data_type, &fill_value)?;
        }
        Ok((shape, data_type))
    }

    /// The size representation of the bytes the array-to-bytes codec produces, and then of
    /// each bytes-to-bytes codec's output in order (the last one is what is stored).
    fn representations(&self, shape: &[NonZeroU64], data_type: &DataType, fill_value: &FillValue) -> FfiResult<Vec<BytesRepresentation>> {
        let (mut shape, mut data_type, mut fill_value) = (shape.to_vec(), data_type.clone(), fill_value.clone());
        for codec in self.full.array_to_array_codecs() {
            (shape, data_type, fill_value) = codec.encoded_representation(&shape, &data_type, &fill_value)?;
        }
        let mut representations = vec![self.full.array_to_bytes_codec().encoded_representation(&shape, &data_type, &fill_value)?];
        for codec in &self.bytes_to_bytes {
            let last = representations.last().expect("one representation at least");
            representations.push(codec.encoded_representation(last));
        }
        Ok(representations)
    }

    /// The most bytes a stored chunk of this shape can hold (None: no bound).
    pub fn max_encoded_size(&self, shape: &[NonZeroU64], data_type: &DataType, fill_value: &FillValue) -> FfiResult<Option<u64>> {
        Ok(self.representations(shape, data_type, fill_value)?.last().and_then(BytesRepresentation::size))
    }

    /// The exact stored size of a chunk of this shape, if the chain fixes it (no
    /// compressor: e.g. `bytes` alone, or with `crc32c`).
    pub fn fixed_encoded_size(&self, shape: &[NonZeroU64], data_type: &DataType, fill_value: &FillValue) -> FfiResult<Option<u64>> {
        Ok(match self.representations(shape, data_type, fill_value)?.last() {
            Some(BytesRepresentation::FixedSize(n)) => Some(*n),
            _ => None,
        })
    }

    /// Run the bytes-to-bytes codecs, outermost first, each bounded by the size of the
    /// representation it decodes to; `unbounded_cap` stands in where that size is unbounded
    /// (variable-length data). Alone, this yields the encoded bytes of the array-to-bytes
    /// codec (for sharding: the shard, for our shard reader).
    pub fn decode_bytes<'a>(
        &self,
        mut bytes: ArrayBytesRaw<'a>,
        shape: &[NonZeroU64],
        data_type: &DataType,
        fill_value: &FillValue,
        unbounded_cap: u64,
        options: &CodecOptions,
    ) -> FfiResult<ArrayBytesRaw<'a>> {
        if self.bytes_to_bytes.is_empty() {
            return Ok(bytes);
        }
        let representations = self.representations(shape, data_type, fill_value)?;
        for (codec, decoded) in self.bytes_to_bytes.iter().rev().zip(representations.iter().rev().skip(1)) {
            let (max, exact) = bound_of(decoded, unbounded_cap);
            bytes = decode_bounded(codec.as_ref(), bytes, decoded, max, exact, options).map_err(|mut e| {
                if matches!(decoded, BytesRepresentation::UnboundedSize) && e.code == ZarrsResult::ZARRS_ERROR_CODEC {
                    // No metadata bounds this size: say which setting did.
                    e.message.push_str(&format!(
                        " (variable-length chunks are capped at max_variable_chunk_bytes = {unbounded_cap})"
                    ));
                }
                e
            })?;
        }
        Ok(bytes)
    }

    /// Fail if the array-to-bytes codec is sharding: zarrs' sharding codec sizes and slices
    /// by the stored index and inner frames, unchecked. Shards decode through the engine's
    /// shard reader (`engine/shard/read.rs`), which runs [`Self::decode_bytes`] and reads the
    /// shard itself; a path reaching here with a shard is a bug, not a slow path.
    fn refuse_sharding(&self) -> FfiResult<()> {
        if self.full.array_to_bytes_codec().as_any().is::<ShardingCodec>() {
            return Err(FfiError::new(
                ZarrsResult::ZARRS_ERROR_UNSUPPORTED,
                "a shard is decoded by the shard reader only, never by zarrs' sharding codec".to_string(),
            ));
        }
        Ok(())
    }

    /// Decode a whole chunk, as `CodecChain::decode`, within bounds.
    pub fn decode<'a>(
        &self,
        bytes: ArrayBytesRaw<'a>,
        shape: &[NonZeroU64],
        data_type: &DataType,
        fill_value: &FillValue,
        unbounded_cap: u64,
        options: &CodecOptions,
    ) -> FfiResult<ArrayBytes<'a>> {
        self.refuse_sharding()?;
        let bytes = self.decode_bytes(bytes, shape, data_type, fill_value, unbounded_cap, options)?;
        if let Some(tail) = &self.pcodec_tail {
            let (inner_shape, inner_type) = self.array_to_bytes_input(shape, data_type, fill_value)?;
            let numbers = pcodec_capped(&bytes, &inner_shape, &inner_type)?;
            return Ok(tail.decode(Cow::Owned(numbers), shape, data_type, fill_value, options)?);
        }
        self.check_array_to_bytes_input(&bytes, shape, data_type, fill_value)?;
        Ok(self.array_part.decode(bytes, shape, data_type, fill_value, options)?)
    }

    /// Check what the array-to-bytes codec is about to decode where zarrs trusts it: the
    /// `vlen-utf8` / `vlen-bytes` (numcodecs VLen) layout, whose element lengths zarrs
    /// slices by unchecked (a panic on a length past the end).
    fn check_array_to_bytes_input(&self, bytes: &[u8], shape: &[NonZeroU64], data_type: &DataType, fill_value: &FillValue) -> FfiResult<()> {
        let codec = self.full.array_to_bytes_codec().as_any();
        if !(codec.is::<VlenUtf8Codec>() || codec.is::<VlenBytesCodec>() || codec.is::<VlenV2Codec>()) {
            return Ok(());
        }
        let (shape, _) = self.array_to_bytes_input(shape, data_type, fill_value)?;
        let elements = shape.iter().try_fold(1u64, |n, d| n.checked_mul(d.get()));
        check_vlen_layout(bytes, elements)
    }

    /// Decode a whole chunk into `target`, as `CodecChain::decode_into`, within bounds.
    pub fn decode_into(
        &self,
        bytes: ArrayBytesRaw<'_>,
        shape: &[NonZeroU64],
        data_type: &DataType,
        fill_value: &FillValue,
        target: ArrayBytesDecodeIntoTarget<'_>,
        options: &CodecOptions,
    ) -> FfiResult<()> {
        self.refuse_sharding()?;
        let bytes = self.decode_bytes(bytes, shape, data_type, fill_value, u64::MAX, options)?;
        if let Some(tail) = &self.pcodec_tail {
            let (inner_shape, inner_type) = self.array_to_bytes_input(shape, data_type, fill_value)?;
            let numbers = pcodec_capped(&bytes, &inner_shape, &inner_type)?;
            return Ok(tail.decode_into(Cow::Owned(numbers), shape, data_type, fill_value, target, options)?);
        }
        Ok(self.array_part.decode_into(bytes, shape, data_type, fill_value, target, options)?)
    }
}

/// The most bytes a codec may decode to (`unbounded_cap` where no metadata bounds it), and
/// whether it must produce exactly that many.
fn bound_of(decoded: &BytesRepresentation, unbounded_cap: u64) -> (u64, bool) {
    match decoded {
        BytesRepresentation::FixedSize(n) => (*n, true),
        BytesRepresentation::BoundedSize(n) => (*n, false),
        BytesRepresentation::UnboundedSize => (unbounded_cap, false),
    }
}

/// Check the numcodecs VLen layout (`vlen-utf8`, `vlen-bytes`): a u32 little-endian element
/// count equal to `elements`, then per element a u32 little-endian length and that many
/// bytes, all within `bytes`.
pub(crate) fn check_vlen_layout(bytes: &[u8], elements: Option<u64>) -> FfiResult<()> {
    const U32: usize = size_of::<u32>();
    let read_u32 = |at: usize| -> Option<u64> {
        let end = at.checked_add(U32)?;
        bytes.get(at..end).map(|b| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes"))))
    };
    let count = read_u32(0)
        .ok_or_else(|| corrupt(format!("variable-length chunk of {} bytes is too short for its element count", bytes.len())))?;
    match elements {
        Some(expected) if expected == count => {}
        Some(expected) => {
            return Err(corrupt(format!("variable-length chunk declares {count} elements, the chunk holds {expected}")));
        }
        None => return Err(corrupt("variable-length chunk has too many elements".to_string())),
    }
    let mut at = U32;
    for element in 0..count {
        let length = read_u32(at).ok_or_else(|| {
            corrupt(format!(
                "variable-length chunk of {} bytes ends before the length of element {element} of {count}",
                bytes.len()
            ))
        })?;
        at += U32;
        let remaining = (bytes.len() - at) as u64;
        if length > remaining {
            return Err(corrupt(format!(
                "variable-length chunk: element {element} of {count} declares {length} bytes, {remaining} remain"
            )));
        }
        // length <= remaining, so this stays within the buffer.
        at += length as usize;
    }
    // Bytes after the last element are ignored, as zarrs and numcodecs do.
    Ok(())
}

/// Decode `bytes` with one bytes-to-bytes codec, never producing (or allocating for) more
/// than `max` bytes; `exact`: the output must be exactly `max` bytes.
fn decode_bounded<'a>(
    codec: &dyn BytesToBytesCodecTraits,
    bytes: ArrayBytesRaw<'a>,
    decoded: &BytesRepresentation,
    max: u64,
    exact: bool,
    options: &CodecOptions,
) -> FfiResult<ArrayBytesRaw<'a>> {
    let holds = if exact { format!("chunk holds {max}") } else { format!("chunk holds at most {max}") };
    let any = codec.as_any();
    if any.is::<ZstdCodec>() {
        let (declared, undeclared) = zstd_declared_size(&bytes);
        if declared > max {
            return Err(corrupt(format!("zstd frame declares {declared} bytes, {holds}")));
        }
        if undeclared {
            // A streaming frame: zarrs would size its buffer from block counts or grow it
            // without limit. Decode here, capped.
            return zstd_capped(&bytes, max).map(Cow::Owned);
        }
        // Every frame zstd can reach declares its size and they fit (zstd itself refuses a
        // frame that decodes past its declared size), so a buffer of `declared` bytes holds
        // the output; bytes that stop parsing fail with zstd's own error. Decoded here, as
        // zarrs would, but through a context reused per thread: zarrs creates one per chunk,
        // a tenth of the CPU time of reading 64 KiB chunks. A stream that does not decode
        // goes on to zarrs' decoder, within the same bound, whose error says why.
        match zstd_declared(&bytes, declared) {
            Ok(decoded) => return Ok(Cow::Owned(decoded)),
            Err(e) if e.code == ZarrsResult::ZARRS_ERROR_OUT_OF_MEMORY => return Err(e),
            Err(_) => {}
        }
    } else if any.is::<GzipCodec>() {
        return gzip_capped(&bytes, max).map(Cow::Owned);
    } else if any.is::<ZlibCodec>() {
        return zlib_capped(&bytes, max).map(Cow::Owned);
    } else if any.is::<Bz2Codec>() {
        return bz2_capped(&bytes, max).map(Cow::Owned);
    } else if any.is::<GDeflateCodec>() {
        return gdeflate_capped(&bytes, max, exact).map(Cow::Owned);
    } else if any.is::<BloscCodec>() {
        // blosc header: version, versionlz, flags, typesize, then nbytes (u32 LE).
        if let Some(nbytes) = bytes.get(4..8).map(|b| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")))) {
            if nbytes > max {
                return Err(corrupt(format!("blosc header declares {nbytes} bytes, {holds}")));
            }
            // zarrs allocates the declared size itself.
            memory::probe(nbytes, "a blosc chunk")?;
        }
    }
    // Other codecs (crc32c and the like) never produce more than they are given.
    Ok(codec.decode(bytes, decoded, options)?)
}

/// The total content size the zstd frames in `data` declare (saturating), and whether a
/// frame that does not declare it was met. Parsing stops at such a frame or at the first
/// bytes that are not a whole frame (where any decoder stops too).
fn zstd_declared_size(data: &[u8]) -> (u64, bool) {
    use zstd::zstd_safe;
    let mut total = 0u64;
    let mut rest = data;
    while !rest.is_empty() {
        match zstd_safe::get_frame_content_size(rest) {
            Ok(Some(size)) => total = total.saturating_add(size),
            Ok(None) => return (total, true),
            Err(_) => return (total, false),
        }
        match zstd_safe::find_frame_compressed_size(rest) {
            Ok(frame) if frame > 0 && frame <= rest.len() => rest = &rest[frame..],
            _ => return (total, false),
        }
    }
    (total, false)
}

/// Decode zstd frames into a buffer of `max` bytes; output that does not fit is an error.
fn zstd_capped(data: &[u8], max: u64) -> FfiResult<Vec<u8>> {
    let capacity = usize::try_from(max).map_err(|_| memory::out_of_memory(usize::MAX, "a zstd stream's output"))?;
    let mut out = memory::with_capacity(capacity, "a zstd stream's output")?;
    zstd::bulk::Decompressor::new()
        .and_then(|mut decompressor| decompressor.decompress_to_buffer(data, &mut out))
        .map_err(|e| corrupt(format!("zstd stream does not decode within the chunk's {max} bytes: {e}")))?;
    Ok(out)
}

thread_local! {
    /// This thread's zstd decompression context, created on first use and reused (for
    /// whole frames and for prefixes).
    static ZSTD_DECODER: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// Run `f` with this thread's zstd context (a fresh one if it is in use: a nested use on
/// this thread, none today, gets its own rather than a panic).
fn with_zstd_context<R>(f: impl FnOnce(&mut DCtx<'static>) -> R) -> FfiResult<R> {
    let unavailable = || FfiError::new(ZarrsResult::ZARRS_ERROR_CODEC, "zstd: cannot allocate a decompression context".to_string());
    ZSTD_DECODER.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return Ok(f(&mut DCtx::try_create().ok_or_else(unavailable)?));
        };
        if slot.is_none() {
            *slot = Some(DCtx::try_create().ok_or_else(unavailable)?);
        }
        Ok(f(slot.as_mut().expect("created above")))
    })
}

/// Decode zstd frames declaring `declared` bytes in all (at most the chunk's bound) into a
/// buffer of that size, through this thread's reused context.
fn zstd_declared(data: &[u8], declared: u64) -> FfiResult<Vec<u8>> {
    let capacity = usize::try_from(declared).map_err(|_| memory::out_of_memory(usize::MAX, "a zstd frame's content"))?;
    let mut out = memory::with_capacity(capacity, "a zstd frame's content")?;
    with_zstd_context(|context| {
        context
            .decompress(&mut out, data)
            .map_err(|code| corrupt(format!("zstd stream does not decode: {}", zstd_safe::get_error_name(code))))?;
        Ok(out)
    })?
}

/// Below this share of a chunk, a prefix is decoded by streaming; above it the whole chunk
/// is decoded in one shot, which is faster per byte (no copy out of zstd's window).
const PREFIX_SHARE: (usize, usize) = (7, 8);

/// The most content one zstd block holds: streaming stops after the block holding the
/// prefix's last byte, so a prefix saves nothing unless a whole block lies past it.
const ZSTD_BLOCK: usize = 128 * 1024;

/// Decode the first `end` bytes of the `size` bytes the zstd frames in `data` hold, or None
/// where only a whole decode may decide: frames that are not all complete, that do not
/// declare sizes adding up to exactly `size` (so a truncated or lying frame decodes whole,
/// and fails as it would), that carry a content checksum while checksums are validated
/// (zstd verifies it only at the frame's end), a stream that fails in the prefix (the whole
/// decode names the error), or a prefix so long that a whole decode is cheaper (most of the
/// chunk, or no whole block after it: chunks of at most 128 KiB are one block).
///
/// Streaming decompression stops once the output buffer of `end` bytes is full: after the
/// zstd block (at most 128 KiB) holding byte `end - 1`. zstd sizes its window buffer from the
/// frame's declared content size, checked against `size` here first.
fn zstd_prefix(data: &[u8], size: usize, end: usize, verify_checksums: bool) -> Option<Vec<u8>> {
    const MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();
    const CHECKSUM_FLAG: u8 = 0x04;
    if end == 0 || end >= size / PREFIX_SHARE.1 * PREFIX_SHARE.0 || end.next_multiple_of(ZSTD_BLOCK) >= size {
        return None;
    }
    let mut total = 0u64;
    let mut rest = data;
    while !rest.is_empty() {
        let declared = zstd_safe::get_frame_content_size(rest).ok()??;
        if verify_checksums && rest.starts_with(&MAGIC) && rest.get(4).is_some_and(|d| d & CHECKSUM_FLAG != 0) {
            return None;
        }
        let frame = zstd_safe::find_frame_compressed_size(rest).ok().filter(|&n| n > 0 && n <= rest.len())?;
        total = total.checked_add(declared)?;
        rest = &rest[frame..];
    }
    if total != size as u64 {
        return None;
    }
    with_zstd_context(|context| {
        let prefix = zstd_stream_prefix(context, data, end);
        // Leave the context at the start of a frame, whatever happened.
        let reset = context.reset(ResetDirective::SessionOnly);
        prefix.filter(|_| reset.is_ok())
    })
    .ok()
    .flatten()
}

/// Stream `data` through `context` until `end` bytes are out; None on an error or a stream
/// that stops short.
fn zstd_stream_prefix(context: &mut DCtx<'static>, data: &[u8], end: usize) -> Option<Vec<u8>> {
    context.reset(ResetDirective::SessionOnly).ok()?;
    // No memory for the prefix: the whole decode reports it.
    let mut out: Vec<u8> = memory::with_capacity(end, "a zstd prefix").ok()?;
    let mut input = InBuffer::around(data);
    {
        // Each step sets `out`'s length to what zstd has written.
        let mut output = OutBuffer::around(&mut out);
        while output.pos() < end {
            let before = (input.pos(), output.pos());
            context.decompress_stream(&mut output, &mut input).ok()?;
            if (input.pos(), output.pos()) == before {
                return None; // no progress: the input ended before `end` bytes came out
            }
        }
    }
    out.truncate(end);
    Some(out)
}

/// Decode only the blocks of a blosc1 buffer that hold bytes `needed` uses, into a buffer of
/// the chunk's `size` bytes (the other blocks left zero), or None where a whole decode
/// should decide: a header that does not match what a whole decode accepts (its declared
/// size exactly `size`, its compressed size exactly the stream's), a stored copy
/// (`memcpyed`), a chunk of one block, a read that needs most blocks, or a block that
/// fails to decode (the whole decode then names the error).
///
/// c-blosc's `blosc_getitem` decodes the blocks holding a range of items. It trusts the
/// header's compressed size, so that is checked against the stream first; it checks the
/// block table and every block's offsets and lengths against that size itself (c-blosc
/// 1.21's `blosc_getitem` and `blosc_d`), and the items asked for against the declared size.
fn blosc_blocks(data: &[u8], size: usize, needed: &dyn Needed) -> Option<Vec<u8>> {
    use std::ffi::{c_int, c_void};
    const HEADER: usize = 16;
    let header = data.get(..HEADER)?;
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes")) as usize;
    let (version, flags, typesize) = (u32::from(header[0]), u32::from(header[2]), usize::from(header[3]));
    let (nbytes, blocksize, cbytes) = (word(4), word(8), word(12));
    if version != blosc_src::BLOSC_VERSION_FORMAT
        || flags & blosc_src::BLOSC_MEMCPYED != 0
        || nbytes != size
        || c_int::try_from(size).is_err()
        || cbytes != data.len()
        || typesize == 0
        || blocksize == 0
        || blocksize > size
        || !blocksize.is_multiple_of(typesize)
        || !size.is_multiple_of(typesize)
    {
        return None;
    }
    let blocks = size.div_ceil(blocksize);
    if blocks < 2 {
        return None;
    }
    let mut used = vec![false; blocks];
    needed.mark_blocks(blocksize, &mut used);
    let count = used.iter().filter(|&&u| u).count();
    if count == 0 || count * BLOCK_SHARE.1 > blocks * BLOCK_SHARE.0 {
        return None;
    }
    // No memory for the chunk: the whole decode reports it.
    let mut out = memory::zeroed(size, "a blosc chunk").ok()?;
    let mut b = 0;
    while b < blocks {
        if !used[b] {
            b += 1;
            continue;
        }
        let first = b;
        while b < blocks && used[b] {
            b += 1;
        }
        // Blocks `first..b`: whole items, as blocksize and size are multiples of typesize;
        // within `size`, which fits a c_int (both checked above).
        let (start, stop) = (first * blocksize, (b * blocksize).min(size));
        let (item, items) = ((start / typesize) as c_int, ((stop - start) / typesize) as c_int);
        let target = &mut out[start..stop];
        // SAFETY: `data` holds the whole stream, whose header declares `data.len()` compressed
        // bytes (checked above), and blosc_getitem reads no byte past that many (it checks the
        // block table and each block's offset and length against it); it writes exactly
        // `items * typesize` bytes (the items asked for, within the declared `size`) to
        // `target`, which holds that many. It keeps no pointer after returning.
        let written = unsafe { blosc_src::blosc_getitem(data.as_ptr().cast::<c_void>(), item, items, target.as_mut_ptr().cast::<c_void>()) };
        if usize::try_from(written).ok() != Some(stop - start) {
            return None;
        }
    }
    Some(out)
}

/// Past this share of a chunk's blocks, blosc decodes the whole chunk in one call instead.
const BLOCK_SHARE: (usize, usize) = (3, 4);

/// Decode a gzip stream, stopping with an error once it produces more than `max` bytes.
///
/// As Python's `gzip` (zarr-python, numcodecs) reads it: every member of a multi-member
/// stream (RFC 1952) is decoded, zero bytes after a member are padding, and any other
/// bytes after a member must start a further valid member.
fn gzip_capped(data: &[u8], max: u64) -> FfiResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let budget = (max + 1).saturating_sub(out.len() as u64);
        // The bufread decoder consumes exactly one member, header to trailer, from `rest`.
        let mut member = flate2::bufread::GzDecoder::new(rest);
        (&mut member)
            .take(budget)
            .read_to_end(&mut out)
            .map_err(|e| corrupt(format!("gzip stream is corrupt at byte {}: {e}", data.len() - rest.len())))?;
        if out.len() as u64 > max {
            return Err(corrupt(format!("gzip stream decodes to more than the chunk's {max} bytes")));
        }
        rest = member.into_inner();
        let padding = rest.iter().take_while(|&&b| b == 0).count();
        rest = &rest[padding..];
        if rest.is_empty() {
            return Ok(out);
        }
        if !rest.starts_with(&[0x1f, 0x8b]) {
            return Err(corrupt(format!(
                "gzip stream has {} bytes after its last member that are not a gzip member",
                rest.len()
            )));
        }
    }
}

/// Read `reader` to its end into a buffer, failing once it produces more than `max` bytes.
fn read_capped(mut reader: impl Read, max: u64, what: &str) -> FfiResult<Vec<u8>> {
    let mut out = Vec::new();
    (&mut reader)
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("{what} stream is corrupt: {e}")))?;
    if out.len() as u64 > max {
        return Err(corrupt(format!("{what} stream decodes to more than the chunk's {max} bytes")));
    }
    Ok(out)
}

/// Decode a zlib stream (RFC 1950) within `max` bytes. As zarrs and Python's `zlib`: bytes
/// after the end of the stream are ignored.
fn zlib_capped(data: &[u8], max: u64) -> FfiResult<Vec<u8>> {
    read_capped(flate2::bufread::ZlibDecoder::new(data), max, "zlib")
}

/// Decode a bzip2 stream within `max` bytes. Every stream of a multi-stream file is
/// decoded, as Python's `bz2` (numcodecs) does.
fn bz2_capped(data: &[u8], max: u64) -> FfiResult<Vec<u8>> {
    read_capped(bzip2::bufread::MultiBzDecoder::new(data), max, "bz2")
}

/// Check a gdeflate stream's header (zarrs' format: decoded size and page count as u64 LE,
/// a u64 LE compressed size per page, then the pages): the decoded size within `max`
/// (exactly `max` if `exact`), one page per 64 KiB of it, the page table and pages within
/// the stream. Returns the decoded size and each page's bytes.
fn gdeflate_check(data: &[u8], max: u64, exact: bool) -> FfiResult<(u64, Vec<&[u8]>)> {
    const PAGE: u64 = 65536;
    const HEADER: u64 = 16;
    let word = |at: u64| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        data.get(at..at.checked_add(8)?).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let (Some(decoded), Some(pages)) = (word(0), word(8)) else {
        return Err(corrupt(format!("gdeflate stream of {} bytes is shorter than its 16-byte header", data.len())));
    };
    if decoded > max || (exact && decoded != max) {
        let holds = if exact { format!("chunk holds {max}") } else { format!("chunk holds at most {max}") };
        return Err(corrupt(format!("gdeflate header declares {decoded} bytes, {holds}")));
    }
    if pages != decoded.div_ceil(PAGE) {
        return Err(corrupt(format!("gdeflate header declares {pages} pages for {decoded} bytes")));
    }
    // pages <= max / 64 KiB + 1, so none of this overflows.
    let mut end = HEADER + 8 * pages;
    let mut sizes = Vec::new();
    for page in 0..pages {
        let size = word(HEADER + 8 * page).ok_or_else(|| corrupt(format!("gdeflate page table of {pages} pages is truncated")))?;
        sizes.push(size);
        end = end.saturating_add(size);
    }
    if end > data.len() as u64 {
        return Err(corrupt(format!("gdeflate pages end at byte {end}, the stream has {}", data.len())));
    }
    // Every page lies within `data` (checked above), so these conversions and slices hold.
    let mut at = (HEADER + 8 * pages) as usize;
    let pages = sizes
        .into_iter()
        .map(|size| {
            let page = &data[at..at + size as usize];
            at += size as usize;
            page
        })
        .collect();
    Ok((decoded, pages))
}

/// Decode a gdeflate stream into exactly the size its checked header declares.
fn gdeflate_capped(data: &[u8], max: u64, exact: bool) -> FfiResult<Vec<u8>> {
    use gdeflate_sys::{
        libdeflate_alloc_gdeflate_decompressor, libdeflate_free_gdeflate_decompressor, libdeflate_gdeflate_decompress,
        libdeflate_gdeflate_decompressor, libdeflate_gdeflate_in_page, libdeflate_result_LIBDEFLATE_SUCCESS,
    };
    struct Decompressor(*mut libdeflate_gdeflate_decompressor);
    impl Drop for Decompressor {
        fn drop(&mut self) {
            // SAFETY: the pointer came from libdeflate_alloc_gdeflate_decompressor, is not
            // null (checked at construction) and is freed exactly once, here.
            unsafe { libdeflate_free_gdeflate_decompressor(self.0) }
        }
    }

    let (decoded, pages) = gdeflate_check(data, max, exact)?;
    // decoded <= max, which the metadata bounds (a chunk's byte size).
    let decoded_len = usize::try_from(decoded).map_err(|_| memory::out_of_memory(usize::MAX, "a gdeflate stream's output"))?;
    let mut out = memory::zeroed(decoded_len, "a gdeflate stream's output")?;
    if pages.is_empty() {
        return Ok(out); // decoded == 0
    }
    let mut in_pages: Vec<libdeflate_gdeflate_in_page> = pages
        .iter()
        .map(|page| libdeflate_gdeflate_in_page { data: page.as_ptr().cast(), nbytes: page.len() })
        .collect();
    // SAFETY: allocation has no preconditions; a null result is handled below.
    let decompressor = Decompressor(unsafe { libdeflate_alloc_gdeflate_decompressor() });
    if decompressor.0.is_null() {
        return Err(FfiError::new(ZarrsResult::ZARRS_ERROR_CODEC, "gdeflate: cannot allocate a decompressor".to_string()));
    }
    let mut written = 0usize;
    // SAFETY: the decompressor is valid; each in_page points at `nbytes` readable bytes of
    // `data`, which outlives the call; `out` is writable for `out.len()` bytes and libdeflate
    // writes at most that many (it fails with INSUFFICIENT_SPACE otherwise); `written` is
    // a valid usize it adds to.
    let result = unsafe {
        libdeflate_gdeflate_decompress(
            decompressor.0,
            in_pages.as_mut_ptr(),
            in_pages.len(),
            out.as_mut_ptr().cast(),
            out.len(),
            &raw mut written,
        )
    };
    if result != libdeflate_result_LIBDEFLATE_SUCCESS {
        return Err(corrupt(format!("gdeflate stream is corrupt (libdeflate result {result})")));
    }
    if written != out.len() {
        return Err(corrupt(format!("gdeflate stream decodes to {written} bytes, its header declares {decoded}")));
    }
    Ok(out)
}

/// Decode a pcodec stream of `shape` elements of `data_type` into exactly their bytes
/// (native order); a stream of more or fewer numbers is an error, found before decoding
/// the chunk of the stream that would overflow.
fn pcodec_capped(data: &[u8], shape: &[NonZeroU64], data_type: &DataType) -> FfiResult<Vec<u8>> {
    let pcodec = data_type.codec_pcodec().map_err(|e| corrupt(format!("pcodec: {e}")))?;
    let per_element = pcodec.pcodec_elements_per_element() as u64;
    let numbers = shape
        .iter()
        .try_fold(per_element, |n, d| n.checked_mul(d.get()))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| corrupt("pcodec: the chunk's number count exceeds memory".to_string()))?;
    match pcodec.pcodec_element_type() {
        PcodecElementType::U16 => pco_numbers::<u16>(data, numbers),
        PcodecElementType::U32 => pco_numbers::<u32>(data, numbers),
        PcodecElementType::U64 => pco_numbers::<u64>(data, numbers),
        PcodecElementType::I16 => pco_numbers::<i16>(data, numbers),
        PcodecElementType::I32 => pco_numbers::<i32>(data, numbers),
        PcodecElementType::I64 => pco_numbers::<i64>(data, numbers),
        PcodecElementType::F16 => pco_numbers::<half::f16>(data, numbers),
        PcodecElementType::F32 => pco_numbers::<f32>(data, numbers),
        PcodecElementType::F64 => pco_numbers::<f64>(data, numbers),
    }
}

fn pco_numbers<T: pco::data_types::Number + bytemuck::Pod>(data: &[u8], expected: usize) -> FfiResult<Vec<u8>> {
    use pco::standalone::{DecompressorItem, FileDecompressor};
    let error = |e: pco::errors::PcoError| corrupt(format!("pcodec stream is corrupt: {e}"));
    let (file, mut rest) = FileDecompressor::new(data).map_err(error)?;
    let mut numbers = memory::filled(expected, T::default(), "a pcodec chunk's numbers")?;
    let mut filled = 0usize;
    loop {
        match file.chunk_decompressor::<T, &[u8]>(rest).map_err(error)? {
            DecompressorItem::EndOfData(_) => break,
            DecompressorItem::Chunk(mut chunk) => {
                let n = chunk.n();
                if n > expected - filled {
                    return Err(corrupt(format!("pcodec stream holds more than the chunk's {expected} numbers")));
                }
                let progress = chunk.read(&mut numbers[filled..filled + n]).map_err(error)?;
                if progress.n_processed != n || !progress.finished {
                    return Err(corrupt(format!("pcodec chunk declares {n} numbers, decodes {}", progress.n_processed)));
                }
                filled += n;
                rest = chunk.into_src();
            }
        }
    }
    if filled != expected {
        return Err(corrupt(format!("pcodec stream holds {filled} numbers, the chunk holds {expected}")));
    }
    let bytes: &[u8] = bytemuck::cast_slice(&numbers);
    let mut out = memory::with_capacity(bytes.len(), "a pcodec chunk")?;
    out.extend_from_slice(bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn bytes_then_zstd_decodes_straight_into_its_place() {
        let data: Vec<u8> = (0..4096u32).flat_map(|v| (v % 251).to_le_bytes()).collect();
        let frame = zstd::bulk::compress(&data, 3).unwrap();
        let chain = |endian, compressors: Vec<Arc<dyn BytesToBytesCodecTraits>>| {
            BoundedChain::new(Arc::new(CodecChain::new(vec![], Arc::new(BytesCodec::new(endian)), compressors)))
        };
        let zstd: Arc<dyn BytesToBytesCodecTraits> = Arc::new(ZstdCodec::new(3, false));
        let straight = chain(Some(Endianness::native()), vec![zstd.clone()]);
        let mut out = vec![0u8; data.len()];
        assert!(straight.decode_straight(&frame, &mut out));
        assert_eq!(out, data);
        // A frame declaring another size, bytes that are not a frame: decoded the usual way.
        assert!(!straight.decode_straight(&frame, &mut vec![0u8; data.len() - 1]));
        assert!(!straight.decode_straight(&frame[..frame.len() / 2], &mut out));
        assert!(!straight.decode_straight(b"not zstd at all", &mut out));
        // Chains whose decoded bytes need more than zstd: foreign byte order, two codecs.
        let foreign = if Endianness::native() == Endianness::Little { Endianness::Big } else { Endianness::Little };
        assert!(!chain(Some(foreign), vec![zstd.clone()]).decode_straight(&frame, &mut out));
        let crc: Arc<dyn BytesToBytesCodecTraits> = Arc::new(zarrs::array::codec::bytes_to_bytes::crc32c::Crc32cCodec::new());
        assert!(!chain(Some(Endianness::native()), vec![zstd, crc]).decode_straight(&frame, &mut out));
    }

    #[test]
    fn gzip_members_padding_and_trailing_bytes() {
        let one = gzip(b"hello ");
        let two = gzip(b"world");
        assert_eq!(gzip_capped(&one, 64).unwrap(), b"hello ");
        // Every member is decoded (the first one alone used to be).
        assert_eq!(gzip_capped(&[one.clone(), two.clone()].concat(), 64).unwrap(), b"hello world");
        // Zero padding after a member is ignored, as Python's gzip does.
        assert_eq!(gzip_capped(&[one.clone(), vec![0; 7]].concat(), 64).unwrap(), b"hello ");
        // Other trailing bytes are an error (they used to be ignored).
        let err = gzip_capped(&[one.clone(), b"garbage".to_vec()].concat(), 64).unwrap_err();
        assert!(err.message.contains("7 bytes after its last member"), "{}", err.message);
        assert!(gzip_capped(&[one.clone(), vec![0x1f, 0x8b, 8]].concat(), 64).is_err());
        // The cap covers all members together.
        assert!(gzip_capped(&[one.clone(), two].concat(), 8).unwrap_err().message.contains("more than"));
        assert!(gzip_capped(&one, 5).is_err());
        assert_eq!(gzip_capped(&one, 6).unwrap(), b"hello ");
    }

    #[test]
    fn zlib_and_bz2_are_capped() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&data).unwrap();
        let zlib = encoder.finish().unwrap();
        assert_eq!(zlib_capped(&zlib, 5000).unwrap(), data);
        // Bytes after the stream are ignored, as zarrs and Python's zlib do.
        assert_eq!(zlib_capped(&[zlib.clone(), b"xx".to_vec()].concat(), 5000).unwrap(), data);
        assert!(zlib_capped(&zlib, 4999).unwrap_err().message.contains("more than the chunk's 4999 bytes"));
        assert!(zlib_capped(&zlib[..zlib.len() - 3], 5000).is_err());

        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        encoder.write_all(&data).unwrap();
        let bz2 = encoder.finish().unwrap();
        assert_eq!(bz2_capped(&bz2, 5000).unwrap(), data);
        // Every stream is decoded, as Python's bz2 does, and the cap covers them all.
        assert_eq!(bz2_capped(&[bz2.clone(), bz2.clone()].concat(), 10000).unwrap(), [data.clone(), data].concat());
        assert!(bz2_capped(&[bz2.clone(), bz2.clone()].concat(), 9999).unwrap_err().message.contains("more than"));
        assert!(bz2_capped(&bz2[..bz2.len() - 3], 5000).is_err());
    }

    fn gdeflate(data: &[u8]) -> Vec<u8> {
        let codec = GDeflateCodec::new(5).unwrap();
        codec.encode(Cow::Borrowed(data), &CodecOptions::default()).unwrap().into_owned()
    }

    #[test]
    fn gdeflate_header_is_checked() {
        let data: Vec<u8> = (0..3 * 65536 + 17u32).map(|i| (i % 251) as u8).collect();
        let stream = gdeflate(&data);
        let n = data.len() as u64;
        assert!(gdeflate_check(&stream, n, true).is_ok());
        assert!(gdeflate_check(&stream, n + 1, false).is_ok());
        let err = |bytes: &[u8], max: u64, exact: bool| gdeflate_check(bytes, max, exact).unwrap_err().message;
        assert!(err(&stream, n + 1, true).contains(&format!("declares {n} bytes, chunk holds {}", n + 1)));
        assert!(err(&stream, n - 1, false).contains("chunk holds at most"));
        assert!(err(&stream[..15], n, true).contains("shorter than its 16-byte header"));
        let forge = |at: usize, value: u64| {
            let mut bytes = stream.clone();
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            bytes
        };
        assert!(err(&forge(0, 1 << 40), n, true).contains("declares 1099511627776 bytes"));
        assert!(err(&forge(8, 1 << 60), n, true).contains("pages for"));
        assert!(err(&forge(16, u64::MAX), n, true).contains("pages end at byte"));
        assert!(err(&stream[..stream.len() - 1], n, true).contains("pages end at byte"));
        // Several pages decode (zarrs' own decoder panics on them) to what was encoded.
        assert_eq!(gdeflate_capped(&stream, n, true).unwrap(), data);
        let one_page = gdeflate(&data[..1000]);
        assert_eq!(gdeflate_capped(&one_page, 1000, true).unwrap(), &data[..1000]);
        // A corrupt page is an error, not a panic.
        let mut bad = stream.clone();
        let first_page = 16 + 8 * 4;
        bad[first_page + 20..first_page + 70].fill(0xff);
        assert!(gdeflate_capped(&bad, n, true).is_err());
    }

    /// Byte ranges a read uses (`Needed` for these tests).
    struct Ranges(Vec<std::ops::Range<usize>>);

    impl Needed for Ranges {
        fn end(&self) -> usize {
            self.0.iter().map(|r| r.end).max().unwrap_or(0)
        }
        fn mark_blocks(&self, block: usize, used: &mut [bool]) {
            for r in &self.0 {
                used[r.start / block..=(r.end - 1) / block].fill(true);
            }
        }
    }

    /// 1 MiB of compressible bytes that still need several zstd blocks.
    fn megabyte() -> Vec<u8> {
        (0..1u32 << 20).map(|i| ((i / 3) ^ (i.wrapping_mul(2_654_435_761) >> 29)) as u8).collect()
    }

    fn zstd_frame(data: &[u8], checksum: bool) -> Vec<u8> {
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        encoder.include_checksum(checksum).unwrap();
        encoder.set_pledged_src_size(Some(data.len() as u64)).unwrap();
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn zstd_prefix_decodes_the_prefix_or_leaves_it_to_a_whole_decode() {
        let data = megabyte();
        let n = data.len();
        let frame = zstd_frame(&data, false);
        for end in [1, 4, 1000, 128 * 1024, 128 * 1024 + 1, 500_000, n / 8 * 7 - 1] {
            assert_eq!(zstd_prefix(&frame, n, end, true).as_deref(), Some(&data[..end]), "end {end}");
        }
        // The context is left ready for the next frame, whole or not.
        assert_eq!(zstd_declared(&frame, n as u64).unwrap(), data);
        assert_eq!(zstd_prefix(&frame, n, 10, true).as_deref(), Some(&data[..10]));
        // Most of the chunk: one whole decode is cheaper.
        assert_eq!(zstd_prefix(&frame, n, n / 8 * 7, true), None);
        assert_eq!(zstd_prefix(&frame, n, n, true), None);
        // A truncated frame decodes whole (and fails there), even where its prefix is intact.
        assert_eq!(zstd_prefix(&frame[..frame.len() - 1], n, 10, true), None);
        assert_eq!(zstd_prefix(&frame[..frame.len() / 2], n, 10, true), None);
        assert_eq!(zstd_prefix(&frame[..3], n, 1, true), None);
        // Bytes after the last frame are not a frame: whole.
        assert_eq!(zstd_prefix(&[frame.clone(), vec![0; 5]].concat(), n, 10, true), None);
        // A frame declaring another size than the chunk's decodes whole (and fails there).
        assert_eq!(zstd_prefix(&frame, n + 1, 10, true), None);
        assert_eq!(zstd_prefix(&frame, n - 1, 10, true), None);
        let short = zstd_frame(&data[..n - 8], false);
        assert_eq!(zstd_prefix(&short, n, 10, true), None);
        // Frames adding up to the chunk's size decode across their boundary.
        let two = [zstd_frame(&data[..300_000], false), zstd_frame(&data[300_000..], false)].concat();
        assert_eq!(zstd_prefix(&two, n, 400_000, true).as_deref(), Some(&data[..400_000]));
        // A frame that lies about its size in its header: its sizes no longer add up, or the
        // stream ends before the prefix does; either way no prefix, no panic.
        let mut forged = frame.clone();
        let fcs_at = 5 + usize::from(forged[4] & 0x20 == 0); // after the window byte, if any
        assert_eq!(forged[4] >> 6, 2, "a 4-byte content size field");
        forged[fcs_at..fcs_at + 4].copy_from_slice(&(n as u32 * 2).to_le_bytes());
        assert_eq!(zstd_prefix(&forged, n, 10, true), None);
        assert_eq!(zstd_prefix(&forged, 2 * n, 2 * n / 8 * 7 - 1, true), None);
        // A content checksum is verified at the frame's end only: whole while checksums are
        // validated, a prefix otherwise.
        let checked = zstd_frame(&data, true);
        assert_eq!(zstd_prefix(&checked, n, 10, true), None);
        assert_eq!(zstd_prefix(&checked, n, 10, false).as_deref(), Some(&data[..10]));
    }

    fn blosc(data: &[u8], typesize: usize, blocksize: usize) -> Vec<u8> {
        use zarrs::array::codec::bytes_to_bytes::blosc::{blosc_compress_bytes, BloscCompressor, BloscShuffleMode};
        let level = 5u8.try_into().unwrap();
        blosc_compress_bytes(data, level, BloscShuffleMode::Shuffle, typesize, BloscCompressor::LZ4, blocksize, 1).unwrap()
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // a list of byte ranges, here of one
    fn blosc_blocks_decode_the_blocks_used_or_leave_it_to_a_whole_decode() {
        let data = megabyte();
        let n = data.len();
        // c-blosc enlarges a forced block size for split codecs: read what it chose.
        let stream = blosc(&data, 4, 16 * 1024);
        let bs = u32::from_le_bytes(stream[8..12].try_into().unwrap()) as usize;
        let blocks = n.div_ceil(bs);
        assert!(blocks >= 8, "{blocks} blocks of {bs} bytes");
        let used = Ranges(vec![4..8, 3 * bs + 100..3 * bs + 104, n - 4..n]);
        let out = blosc_blocks(&stream, n, &used).unwrap();
        for (b, block) in out.chunks(bs).enumerate() {
            let expected = if [0, 3, blocks - 1].contains(&b) { data[b * bs..(b * bs + bs).min(n)].to_vec() } else { vec![0u8; block.len()] };
            assert!(block == expected, "block {b}");
        }
        // A last block shorter than the others.
        let odd = &data[..n - 4000];
        let stream_odd = blosc(odd, 4, 16 * 1024);
        let bs_odd = u32::from_le_bytes(stream_odd[8..12].try_into().unwrap()) as usize;
        let out = blosc_blocks(&stream_odd, odd.len(), &Ranges(vec![odd.len() - 4..odd.len()])).unwrap();
        let last = odd.len() / bs_odd * bs_odd;
        assert!(last < odd.len());
        assert_eq!(&out[last..], &odd[last..]);
        assert!(out[..last].iter().all(|&b| b == 0));
        // Most blocks, or one block: one whole decode.
        assert_eq!(blosc_blocks(&stream, n, &Ranges(vec![0..n])), None);
        assert_eq!(blosc_blocks(&blosc(&data[..60_000], 4, 0), 60_000, &Ranges(vec![0..4])), None);
        // Headers a whole decode would refuse: the whole decode decides (and fails).
        let forge = |at: usize, value: u32| {
            let mut bytes = stream.clone();
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            bytes
        };
        assert_eq!(blosc_blocks(&stream, n + 4, &used), None); // declared size is not the chunk's
        assert_eq!(blosc_blocks(&forge(12, stream.len() as u32 + 1), n, &used), None); // compressed size lies
        assert_eq!(blosc_blocks(&stream[..stream.len() - 1], n, &used), None); // truncated
        assert_eq!(blosc_blocks(&forge(8, 3), n, &used), None); // blocks not whole items
        assert_eq!(blosc_blocks(&forge(8, 0), n, &used), None);
        assert_eq!(blosc_blocks(&stream[..10], n, &used), None);
        // A block table entry pointing past the stream, or at the table itself: c-blosc
        // checks each against the compressed size and fails; no read past the stream.
        let block3 = Ranges(vec![3 * bs..3 * bs + 4]);
        for offset in [stream.len() as u32, stream.len() as u32 - 2, u32::MAX, 0, 16] {
            assert_eq!(blosc_blocks(&forge(16 + 3 * 4, offset), n, &block3), None, "offset {offset}");
        }
        // A forged block length inside the block (its first split's compressed size).
        let start = u32::from_le_bytes(stream[28..32].try_into().unwrap()) as usize;
        assert_eq!(blosc_blocks(&forge(start, u32::MAX / 2), n, &block3), None);
        assert_eq!(blosc_blocks(&forge(start, 1), n, &block3), None);
    }

    #[test]
    fn vlen_layout() {
        let ok = [2u32.to_le_bytes(), 1u32.to_le_bytes()].concat();
        let ok = [ok, b"a".to_vec(), 0u32.to_le_bytes().to_vec()].concat();
        assert!(check_vlen_layout(&ok, Some(2)).is_ok());
        assert!(check_vlen_layout(&ok, Some(3)).is_err());
        assert!(check_vlen_layout(&ok[..ok.len() - 1], Some(2)).is_err());
        assert!(check_vlen_layout(&[], Some(0)).is_err());
    }
}
