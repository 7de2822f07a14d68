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
//! This module knows codecs and byte formats only; it must not know about arrays, stores or
//! jobs. Callers add the chunk key and the array to its messages.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read;
use std::num::NonZeroU64;
use std::sync::Arc;

use zarrs::array::codec::array_to_bytes::bytes::{BytesCodec, Endianness};
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
    BytesToBytesCodecTraits, CodecChain, CodecOptions, DataType, FillValue,
};

use crate::error::{FfiError, FfiResult, ZarrsResult};

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
        Self {
            full: chain,
            array_part,
            bytes_to_bytes,
            pcodec_tail,
        }
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
            let (max, exact) = match decoded {
                BytesRepresentation::FixedSize(n) => (*n, true),
                BytesRepresentation::BoundedSize(n) => (*n, false),
                BytesRepresentation::UnboundedSize => (unbounded_cap, false),
            };
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
    /// shard reader (`engine/shard.rs`), which runs [`Self::decode_bytes`] and reads the
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
        if let Ok(decoded) = zstd_declared(&bytes, declared) {
            return Ok(Cow::Owned(decoded));
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
    let capacity = usize::try_from(max).map_err(|_| corrupt(format!("zstd output bound {max} exceeds memory")))?;
    zstd::bulk::decompress(data, capacity)
        .map_err(|e| corrupt(format!("zstd stream does not decode within the chunk's {max} bytes: {e}")))
}

thread_local! {
    /// This thread's zstd decompression context, created on first use and reused.
    static ZSTD_DECODER: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Decode zstd frames declaring `declared` bytes in all (at most the chunk's bound) into a
/// buffer of that size, through this thread's reused context.
fn zstd_declared(data: &[u8], declared: u64) -> FfiResult<Vec<u8>> {
    let capacity = usize::try_from(declared).map_err(|_| corrupt(format!("zstd frame size {declared} exceeds memory")))?;
    let failed = |e: std::io::Error| corrupt(format!("zstd stream does not decode: {e}"));
    ZSTD_DECODER.with(|cell| {
        // A nested use on this thread (none today) would find the context borrowed: it gets
        // a fresh one rather than a panic.
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return zstd::bulk::Decompressor::new().and_then(|mut d| d.decompress(data, capacity)).map_err(failed);
        };
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(failed)?);
        }
        let decoder = slot.as_mut().expect("created above");
        decoder.decompress(data, capacity).map_err(failed)
    })
}

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
    let mut out = vec![0u8; usize::try_from(decoded).map_err(|_| corrupt(format!("gdeflate size {decoded} exceeds memory")))?];
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
    let mut numbers = vec![T::default(); expected];
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
    Ok(bytemuck::cast_slice(&numbers).to_vec())
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
