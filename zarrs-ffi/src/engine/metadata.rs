//! What the engine reads from an array's metadata: sharding, nested checksums, and the limits
//! that make an array unreadable before its first read.

use zarrs::array::DataType;

use crate::error::{FfiError, FfiResult, ZarrsResult};

/// The most inner chunks one shard may have: its index (16 bytes each) is read whole, so
/// this bounds that read at 1 GiB. Zarr writers stay far below (a 10^4 x 10^4 shard of
/// 10 x 10 chunks has 10^6).
const MAX_INNER_CHUNKS: u64 = 1 << 26;

fn invalid_metadata(message: String) -> FfiError {
    FfiError::new(ZarrsResult::ZARRS_ERROR_INVALID_METADATA, message)
}

/// Refuse metadata whose chunks could never be held in memory, or whose shards have an
/// index too large to read: such arrays would fail (or abort) on their first read, after
/// allocating on the stored bytes' say-so. `largest` is the shape of the grid's largest
/// chunk; `codecs` the Zarr v3 codec metadata.
pub fn check_chunk_sizes(data_type: &DataType, largest: &[u64], codecs: &serde_json::Value) -> FfiResult<()> {
    let elements = largest
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| invalid_metadata(format!("chunk shape {largest:?}: the number of elements overflows")))?;
    // Fixed-size elements, or at least an 8-byte offset each for variable-length ones.
    let element_size = data_type.fixed_size().unwrap_or(8) as u64;
    if elements.checked_mul(element_size).is_none_or(|bytes| isize::try_from(bytes).is_err()) {
        return Err(invalid_metadata(format!(
            "chunk shape {largest:?} has {elements} elements of {element_size} bytes, more than fits in memory"
        )));
    }
    check_inner_grids(largest, codecs)
}

/// Refuse shards of shape `shard` whose index would describe more than `MAX_INNER_CHUNKS`
/// inner chunks, for every sharding codec of `codecs` and, recursively, every sharding codec
/// nested inside one (whose shards are the inner chunks of the one around it).
fn check_inner_grids(shard: &[u64], codecs: &serde_json::Value) -> FfiResult<()> {
    for codec in codecs.as_array().into_iter().flatten() {
        if codec["name"] != "sharding_indexed" {
            continue;
        }
        let inner: Option<Vec<u64>> = codec["configuration"]["chunk_shape"]
            .as_array()
            .and_then(|inner| inner.iter().map(serde_json::Value::as_u64).collect());
        let Some(inner) = inner.filter(|inner| inner.len() == shard.len() && !inner.contains(&0)) else {
            continue; // zarrs has validated the configuration; nothing to bound here
        };
        let count = shard.iter().zip(&inner).try_fold(1u64, |n, (&s, &i)| n.checked_mul(s.div_ceil(i)));
        if count.is_none_or(|count| count > MAX_INNER_CHUNKS) {
            return Err(invalid_metadata(format!(
                "shards of shape {shard:?} with inner chunk shape {inner:?} have {} inner chunks, more than the {MAX_INNER_CHUNKS} a shard index may describe",
                count.map_or_else(|| "too many".to_string(), |c| c.to_string())
            )));
        }
        check_inner_grids(&inner, &codec["configuration"]["codecs"])?;
    }
    Ok(())
}

/// Refuse sharded chains our shard reader (`shard/`) cannot read: an array-to-array codec
/// before sharding (`transpose`), in the array's codecs or inside a sharding codec before a
/// nested one. The reader bounds every inner chunk by the metadata (`bounds.rs`) under any
/// bytes-to-bytes codecs (decoded within bounds first), and reads inner shards of nested
/// sharding itself, recursively; such chains would decode their inner chunks with zarrs'
/// own sharding codec, whose decoders size their output from the stored bytes (a forged
/// zstd frame or index entry could then allocate without bound or abort). zarr-python
/// writes filters inside the shard, so these chains come only from explicit codec lists;
/// the Python pipeline reads them with zarr's own (a counted fallback).
pub fn check_sharding_supported(codecs: &serde_json::Value) -> FfiResult<()> {
    check_chain(codecs, "codecs")
}

/// [`check_sharding_supported`] for one chain, named `what` in messages, and the chains
/// nested in its sharding codec.
fn check_chain(codecs: &serde_json::Value, what: &str) -> FfiResult<()> {
    let Some(list) = codecs.as_array() else {
        return Ok(());
    };
    // A codec without configuration may be written as its bare name.
    let names: Vec<&str> = list.iter().map(|c| c.as_str().or(c["name"].as_str()).unwrap_or("?")).collect();
    let Some(at) = names.iter().position(|&name| name == "sharding_indexed") else {
        return Ok(());
    };
    if at != 0 {
        return Err(FfiError::new(
            ZarrsResult::ZARRS_ERROR_UNSUPPORTED,
            format!(
                "{what} [{}]: codecs before the sharding codec; sharding is read within the bounds its metadata sets only as the first codec",
                names.join(", ")
            ),
        ));
    }
    check_chain(&list[0]["configuration"]["codecs"], "codecs inside sharding_indexed")
}

/// Whether any codec of `codecs` (Zarr v3 metadata) is a sharding codec.
pub fn is_sharded(codecs: &serde_json::Value) -> bool {
    codecs
        .as_array()
        .is_some_and(|codecs| codecs.iter().any(|c| c["name"] == "sharding_indexed"))
}

/// How many sharding codecs `codecs` (Zarr v3 metadata) holds, nested ones included.
pub fn sharding_codecs(codecs: &serde_json::Value) -> usize {
    codecs.as_array().map_or(0, |codecs| {
        codecs
            .iter()
            .map(|codec| {
                if codec.as_str() == Some("sharding_indexed") {
                    return 1;
                }
                if codec["name"] != "sharding_indexed" {
                    return 0;
                }
                let configuration = &codec["configuration"];
                1 + sharding_codecs(&configuration["codecs"]) + sharding_codecs(&configuration["index_codecs"])
            })
            .sum()
    })
}

/// Whether any codec nested inside a sharding codec of `codecs` (Zarr v3 metadata) is a
/// checksum codec.
pub fn has_inner_checksums(codecs: &serde_json::Value) -> bool {
    fn walk(codecs: &serde_json::Value, inside_shard: bool) -> bool {
        codecs.as_array().is_some_and(|codecs| {
            codecs.iter().any(|codec| match codec.get("name").and_then(serde_json::Value::as_str) {
                Some("crc32c") => inside_shard,
                Some("sharding_indexed") => codec
                    .get("configuration")
                    .and_then(|c| c.get("codecs"))
                    .is_some_and(|inner| walk(inner, true)),
                _ => false,
            })
        })
    }
    walk(codecs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharding(inner: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"name": "sharding_indexed", "configuration": {
            "chunk_shape": [4], "codecs": inner,
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}], "index_location": "end"}})
    }

    #[test]
    fn sharding_is_supported_as_the_first_codec() {
        let bytes = serde_json::json!({"name": "bytes", "configuration": {"endian": "little"}});
        let zstd = serde_json::json!({"name": "zstd", "configuration": {"level": 1, "checksum": false}});
        let transpose = serde_json::json!({"name": "transpose", "configuration": {"order": [0]}});
        let plain = sharding(serde_json::json!([bytes, zstd]));
        for ok in [
            serde_json::json!([bytes, zstd]),
            serde_json::json!([plain]),
            serde_json::json!([plain, "crc32c", zstd]),
            serde_json::json!([sharding(serde_json::json!([plain]))]),
        ] {
            assert!(check_sharding_supported(&ok).is_ok(), "{ok}");
        }
        assert_eq!(sharding_codecs(&serde_json::json!([bytes, zstd])), 0);
        assert_eq!(sharding_codecs(&serde_json::json!([plain, "crc32c"])), 1);
        assert_eq!(sharding_codecs(&serde_json::json!([sharding(serde_json::json!([plain]))])), 2);
        for (codecs, why) in [
            (serde_json::json!([transpose, plain]), "codecs [transpose, sharding_indexed]: codecs before the sharding codec"),
            (serde_json::json!([transpose, plain, "crc32c"]), "codecs [transpose, sharding_indexed, crc32c]: codecs before"),
            // Nested sharding is read by shard/ only when the inner sharding codec is first too.
            (
                serde_json::json!([sharding(serde_json::json!([transpose, plain]))]),
                "codecs inside sharding_indexed [transpose, sharding_indexed]: codecs before",
            ),
            (
                serde_json::json!([sharding(serde_json::json!([sharding(serde_json::json!([transpose, plain]))]))]),
                "codecs inside sharding_indexed [transpose, sharding_indexed]: codecs before",
            ),
        ] {
            let err = check_sharding_supported(&codecs).unwrap_err();
            assert_eq!(err.code, ZarrsResult::ZARRS_ERROR_UNSUPPORTED);
            assert!(err.message.contains(why), "{}", err.message);
        }
    }

    #[test]
    fn nested_shard_grids_are_bounded_at_open() {
        let bytes = serde_json::json!({"name": "bytes", "configuration": {"endian": "little"}});
        let sharding = |shape: serde_json::Value, inner: serde_json::Value| {
            serde_json::json!({"name": "sharding_indexed", "configuration": {
                "chunk_shape": shape, "codecs": inner, "index_codecs": [bytes], "index_location": "end"}})
        };
        let uint16 = zarrs::array::data_type::uint16();
        let nested = |outer: [u64; 2], inner: [u64; 2]| {
            serde_json::json!([sharding(serde_json::json!(outer), serde_json::json!([sharding(serde_json::json!(inner), serde_json::json!([bytes]))]))])
        };
        let largest = [8192, 16384];
        // 8 inner shards of 4096 x 4096, each of 2^24 inner chunks of 1 x 1: within bounds.
        assert!(check_chunk_sizes(&uint16, &largest, &nested([4096, 4096], [1, 1])).is_ok());
        // One inner shard of 2^27 inner chunks: its grid is too large although the outer
        // one is a single inner chunk.
        let err = check_chunk_sizes(&uint16, &largest, &nested([8192, 16384], [1, 1])).unwrap_err();
        assert_eq!(err.code, ZarrsResult::ZARRS_ERROR_INVALID_METADATA);
        assert!(
            err.message.contains("shards of shape [8192, 16384] with inner chunk shape [1, 1] have 134217728 inner chunks"),
            "{}",
            err.message
        );
        // Three levels: the innermost grid is checked too.
        let three = serde_json::json!([sharding(serde_json::json!(largest), nested(largest, [1, 1]))]);
        assert!(check_chunk_sizes(&uint16, &largest, &three).is_err());
    }
}
