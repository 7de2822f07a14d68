//! Our read and write paths for sharded chunks (the `sharding_indexed` codec).
//!
//! zarrs' sharding codec moves every inner chunk through a generic strided iterator that
//! dominates its cost. Here each inner chunk is decoded (or encoded) with the inner codec
//! chain and copied run by run, in parallel across inner chunks. Partial reads fetch the
//! index and only the inner chunks they need; decoding those whole also verifies their
//! checksums (zarrs' partial decoding of inner chunks strips them unchecked).
//!
//! Used when the array's codecs are exactly one sharding codec, which is how zarr-python
//! writes sharded arrays, and to decode shards under bytes-to-bytes codecs (sharding
//! followed by e.g. zstd: those run first, within bounds, then the whole shard decodes
//! here; zarrs' chain encodes them). An array-to-array codec before sharding, at any level,
//! is refused at open (`metadata.rs`), since zarrs' sharding codec would decode its inner
//! chunks unbounded.
//!
//! Sharding nested in sharding is read here too, recursively: an inner chunk that is itself
//! a shard has its bytes-to-bytes codecs (if any) decoded within bounds, then its index
//! decoded with the same checks as the outer one (entries against the inner shard's own
//! length, checked arithmetic, its grid bounded at open), and only its inner chunks that
//! the read needs decoded, each bounded by `bounds.rs`. Read in part from storage, an inner
//! shard with no bytes-to-bytes codecs is not fetched whole: its index and the inner chunks
//! needed are byte ranges within its outer entry, each checked against that entry. zarrs'
//! sharding codec, which trusts index entries and frame headers, decodes nothing read from
//! storage; it only encodes.
//!
//! This file holds what every part shares: the layout read from the codec metadata
//! ([`ShardLayout`]), the grid of inner chunks in one shard ([`Grid`]) and how messages name
//! a shard. It knows no byte of a shard: the index format and its checks are `index.rs`'s,
//! reading `read.rs`'s, encoding `encode.rs`'s.

mod encode;
mod index;
mod read;

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;

use zarrs::array::{CodecChain, DataType, FillValue};
use zarrs::metadata::v3::MetadataV3;
use zarrs::storage::StoreKey;

use super::encoder::ChunkEncoder;
use crate::args;
use crate::bounds::BoundedChain;
use crate::error::{FfiError, FfiResult, ZarrsResult};

/// The order in which the inner chunks of a shard are laid out in its bytes. The index
/// locates every chunk, so any order reads back; this only decides the bytes written.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ZarrsSubchunkOrder {
    /// Z-order over the inner chunk grid (zarr-python 3.4's default).
    ZARRS_SUBCHUNK_ORDER_MORTON = 0,
    /// C order: the last axis varies fastest.
    ZARRS_SUBCHUNK_ORDER_LEXICOGRAPHIC = 1,
    /// Fortran order: the first axis varies fastest.
    ZARRS_SUBCHUNK_ORDER_COLEXICOGRAPHIC = 2,
}

/// The sharding configuration of an array.
pub(crate) struct ShardLayout {
    pub(crate) inner_shape: Vec<NonZeroU64>,
    /// The inner chunks' codecs, decoding within the inner chunk's bounds. For nested
    /// sharding, only their bytes-to-bytes codecs decode here (`decode_bytes`); `nested`
    /// reads the inner shard they yield.
    pub(crate) inner_codecs: BoundedChain,
    /// The layout of the inner chunks when they are shards themselves (sharding nested in
    /// sharding): read by this module, recursively, never by zarrs' sharding codec.
    nested: Option<Box<ShardLayout>>,
    /// The inner chunks' codecs for encoding.
    inner_encoder: ChunkEncoder,
    index_codecs: Arc<CodecChain>,
    pub(crate) index_at_end: bool,
    index_type: DataType,
    index_fill: FillValue,
    /// A `ZarrsSubchunkOrder`, atomic so it may change while other calls run.
    write_order: AtomicU8,
}

/// The inner chunks of one shard and where each sits in the shard.
#[derive(Clone)]
pub(crate) struct Grid {
    pub(crate) per_shard: Vec<u64>,
    pub(crate) count: usize,
}

impl Grid {
    /// The grid coordinates of inner chunk `i` (C order).
    fn coords(&self, i: usize) -> Vec<u64> {
        let mut rest = i as u64;
        let mut coords = vec![0; self.per_shard.len()];
        for d in (0..self.per_shard.len()).rev() {
            coords[d] = rest % self.per_shard[d];
            rest /= self.per_shard[d];
        }
        coords
    }

    pub(crate) fn origin(&self, layout: &ShardLayout, i: usize) -> Vec<u64> {
        self.coords(i).iter().zip(&layout.inner_shape).map(|(c, n)| c * n.get()).collect()
    }
}

fn codec_error(message: String) -> FfiError {
    FfiError::new(ZarrsResult::ZARRS_ERROR_CODEC, message)
}

/// How messages name a shard: "shard c/0/0" (or "the shard", decoded from bytes alone), and
/// an inner shard of nested sharding by where it sits: "inner shard 5 of shard c/0/0".
#[derive(Clone, Copy)]
struct ShardName<'a> {
    key: Option<&'a StoreKey>,
    within: Option<(&'a ShardName<'a>, usize)>,
}

impl<'a> ShardName<'a> {
    fn key(key: &'a StoreKey) -> Self {
        Self { key: Some(key), within: None }
    }

    fn unnamed() -> Self {
        Self { key: None, within: None }
    }

    /// Inner chunk `i` of this shard, itself a shard.
    fn inner(&'a self, i: usize) -> Self {
        Self { key: self.key, within: Some((self, i)) }
    }
}

impl fmt::Display for ShardName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.within, self.key) {
            (Some((outer, i)), _) => write!(f, "inner shard {i} of {outer}"),
            (None, Some(key)) => write!(f, "shard {key}"),
            (None, None) => f.write_str("the shard"),
        }
    }
}

impl ShardLayout {
    /// The layout if `codecs` (Zarr v3 codec metadata) is exactly one sharding codec.
    pub fn from_codecs_metadata(codecs: &serde_json::Value) -> Option<Self> {
        let [codec] = codecs.as_array()?.as_slice() else {
            return None;
        };
        Self::from_codec_metadata(codec)
    }

    /// The layout of one sharding codec (Zarr v3 metadata). None if it is not one, or if a
    /// sharding codec inside it follows another codec (`metadata.rs` refuses those chains):
    /// every inner shard must be one this module reads.
    fn from_codec_metadata(codec: &serde_json::Value) -> Option<Self> {
        if codec["name"] != "sharding_indexed" {
            return None;
        }
        let config = &codec["configuration"];
        let inner_shape = config["chunk_shape"]
            .as_array()?
            .iter()
            .map(|v| v.as_u64().and_then(NonZeroU64::new))
            .collect::<Option<Vec<_>>>()?;
        let chain = |value: &serde_json::Value| -> Option<Arc<CodecChain>> {
            let metadata: Vec<MetadataV3> = serde_json::from_value(value.clone()).ok()?;
            CodecChain::from_metadata(&metadata).ok().map(Arc::new)
        };
        let inner_list = config["codecs"].as_array()?;
        let nested = match inner_list.iter().position(|c| c["name"] == "sharding_indexed") {
            None => None,
            Some(0) => Some(Box::new(Self::from_codec_metadata(&inner_list[0])?)),
            Some(_) => return None,
        };
        let inner_chain = chain(&config["codecs"])?;
        Some(Self {
            inner_shape,
            inner_encoder: ChunkEncoder::new(inner_chain.clone()),
            inner_codecs: BoundedChain::new(inner_chain),
            nested,
            index_codecs: chain(&config["index_codecs"])?,
            index_at_end: config["index_location"].as_str() != Some("start"),
            index_type: zarrs::array::data_type::uint64(),
            index_fill: FillValue::from(index::MISSING),
            write_order: AtomicU8::new(ZarrsSubchunkOrder::ZARRS_SUBCHUNK_ORDER_MORTON as u8),
        })
    }

    /// How many sharding codecs this layout reads: its own and those of its inner shards,
    /// nested to any depth.
    pub(crate) fn levels(&self) -> usize {
        1 + self.nested.as_ref().map_or(0, |nested| nested.levels())
    }

    /// The layout whose inner chunks are the ones decoded: this one, or for nested sharding
    /// that of the deepest inner shards.
    pub(crate) fn innermost(&self) -> &ShardLayout {
        self.nested.as_deref().map_or(self, ShardLayout::innermost)
    }

    pub(crate) fn grid(&self, shard_shape: &[NonZeroU64]) -> FfiResult<Grid> {
        if shard_shape.len() != self.inner_shape.len() {
            return Err(FfiError::invalid("shard and inner chunk dimensionality differ"));
        }
        let per_shard: Vec<u64> = shard_shape
            .iter()
            .zip(&self.inner_shape)
            .map(|(s, i)| {
                if s.get() % i.get() == 0 {
                    Ok(s.get() / i.get())
                } else {
                    Err(FfiError::invalid(format!(
                        "shard shape {shard_shape:?} is not a multiple of the inner chunk shape {:?}",
                        self.inner_shape
                    )))
                }
            })
            .collect::<FfiResult<_>>()?;
        let count = usize::try_from(args::num_elements(&per_shard)?)
            .map_err(|_| FfiError::invalid("too many inner chunks"))?;
        Ok(Grid { per_shard, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharding_codec_after_another_inner_codec_is_not_read_here() {
        let bytes = serde_json::json!({"name": "bytes", "configuration": {"endian": "little"}});
        let inner = serde_json::json!({"name": "sharding_indexed", "configuration": {
            "chunk_shape": [2], "codecs": [bytes], "index_codecs": [bytes], "index_location": "end"}});
        let outer = |codecs: serde_json::Value| serde_json::json!([{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [4], "codecs": codecs, "index_codecs": [bytes], "index_location": "end"}}]);
        let three = ShardLayout::from_codecs_metadata(&outer(serde_json::json!([outer(serde_json::json!([inner]))[0]]))).unwrap();
        assert!(three.nested.as_ref().is_some_and(|n| n.nested.is_some()));
        assert_eq!(three.levels(), 3);
        assert_eq!(three.innermost().inner_shape, [NonZeroU64::new(2).unwrap()]);
        let transposed = serde_json::json!([{"name": "transpose", "configuration": {"order": [0]}}, inner]);
        assert!(ShardLayout::from_codecs_metadata(&outer(transposed)).is_none());
    }
}
