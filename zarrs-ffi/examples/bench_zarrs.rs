//! The "zarrs (Rust)" row of `benchmarks/bench.py`: the same operations on the same arrays,
//! through the `zarrs` crate called directly from Rust, with no C ABI and no Python.
//!
//! Build: `cargo build --release --example bench_zarrs` (in `zarrs-ffi/`). bench.py runs it
//! with one argument, the path of a JSON job, and reads one JSON document from stdout:
//!
//! - `"mode": "bench"`: time `write_all`, `read_all`, `small_reads`, `oindex` and `vindex`
//!   (whichever `operations` lists) inside this process, best of `repeat`, after the same
//!   untimed first read bench.py does. The result of each read is written to
//!   `<outputs>/<operation>.bin` afterwards (untimed), so bench.py checks it against the
//!   source data exactly as it checks every other implementation; `write_all` is checked by
//!   bench.py reading the array back with zarr's own pipeline.
//! - `"mode": "memory"`: peak resident memory of one write-then-read roundtrip above the
//!   memory held once the source data is loaded (VmHWM after resetting it through
//!   `/proc/self/clear_refs`, Linux).
//! - `"mode": "open"`: time opening every array of `open_paths` (zarr.json read and parsed).
//! - `"mode": "minibatch"`: time reading every batch of `batches` (sorted row indices, read
//!   as `oindex` is) with `threads` reader threads, each taking the next batch; all batches'
//!   rows are written to `<outputs>/minibatch.bin` in batch order afterwards.
//!
//! zarrs has no orthogonal or vectorised indexing, so `oindex` and `vindex` are built from
//! its subset retrieval, as a zarrs user would: `oindex` reads, for each block of rows holding
//! selected rows (`row_block`: the inner chunks' extent on axis 0), the slab from the first to
//! the last of them and keeps the selected ones;
//! `vindex` groups the points by chunk and decodes each chunk's bounding box of its points,
//! the chunks in parallel. Small reads, `oindex` and the mini-batches go through zarrs'
//! shard index cache (`ArrayShardedReadableExtCache`, one per opened array, kept across
//! repetitions as a user keeps it with the array), the way zarrs reads many small parts of a
//! sharded array; for an unsharded array it is a plain subset read.
//!
//! Concurrency is zarrs' own: `threads` rayon threads (0 = one per logical CPU, as
//! `threading.max_workers=None` in zarr) and zarrs' default chunk/codec split. Writes go
//! through zarrs' `FilesystemStore`, which fsyncs every chunk file it writes.
//!
//! This is a benchmark driver: data types are handled as raw bytes of the array's element
//! size, and any failure is reported in the JSON (per operation where possible).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde_json::{json, Value};
use zarrs::array::{
    Array, ArrayBytes, ArrayMetadata, ArrayMetadataOptions, ArrayShardedReadableExt, ArrayShardedReadableExtCache,
    ArraySubset, CodecOptions,
};
use zarrs::filesystem::FilesystemStore;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;
type FsArray = Array<FilesystemStore>;

fn main() {
    let Some(job_path) = std::env::args().nth(1) else {
        eprintln!("usage: bench_zarrs JOB.json");
        std::process::exit(2);
    };
    let outcome = std::fs::read_to_string(&job_path)
        .map_err(|e| format!("cannot read {job_path}: {e}").into())
        .and_then(|text| serde_json::from_str::<Value>(&text).map_err(Into::into))
        .and_then(|job| run(&job));
    match outcome {
        Ok(report) => println!("{report}"),
        Err(e) => {
            println!("{}", json!({ "fatal": e.to_string() }));
            std::process::exit(1);
        }
    }
}

fn run(job: &Value) -> Result<Value> {
    let threads = job.get("threads").and_then(Value::as_u64).unwrap_or(0) as usize;
    let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, usize::from) } else { threads };
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;
    zarrs::config::global_config_mut().set_codec_concurrent_target(threads);
    let mut report = match str_field(job, "mode")? {
        "bench" => bench(job)?,
        "memory" => memory(job)?,
        "open" => open_many(job)?,
        "minibatch" => minibatch(job)?,
        other => return Err(format!("unknown mode {other:?}").into()),
    };
    report["threads"] = json!(threads);
    report["zarrs_version"] = json!(zarrs::version::version_str());
    Ok(report)
}

// --------------------------------------------------------------------------
// Job fields
// --------------------------------------------------------------------------

fn field<'a>(job: &'a Value, name: &str) -> Result<&'a Value> {
    job.get(name).ok_or_else(|| format!("job has no {name:?}").into())
}

fn str_field<'a>(job: &'a Value, name: &str) -> Result<&'a str> {
    field(job, name)?.as_str().ok_or_else(|| format!("{name:?} must be a string").into())
}

fn u64_list(value: &Value, what: &str) -> Result<Vec<u64>> {
    value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_u64).collect())
        .ok_or_else(|| format!("{what} must be a list of non-negative integers").into())
}

fn u64_lists(value: &Value, what: &str) -> Result<Vec<Vec<u64>>> {
    value
        .as_array()
        .ok_or_else(|| format!("{what} must be a list of lists"))?
        .iter()
        .map(|item| u64_list(item, what))
        .collect()
}

fn count_field(job: &Value, name: &str) -> Result<usize> {
    match field(job, name)?.as_u64() {
        Some(n) if n >= 1 => Ok(n as usize),
        _ => Err(format!("{name:?} must be a positive integer").into()),
    }
}

// --------------------------------------------------------------------------
// Arrays
// --------------------------------------------------------------------------

fn open_array(path: &Path) -> Result<FsArray> {
    Ok(Array::open(Arc::new(FilesystemStore::new(path)?), "/")?)
}

/// A new array at `path` (replacing anything there) with exactly the reference's metadata.
fn create_array(path: &Path, metadata: &Value) -> Result<FsArray> {
    if path.exists() {
        std::fs::remove_dir_all(path)?;
    }
    std::fs::create_dir_all(path)?;
    let metadata = ArrayMetadata::V3(serde_json::from_value(metadata.clone())?);
    let array = Array::new_with_metadata(Arc::new(FilesystemStore::new(path)?), "/", metadata)?;
    array.store_metadata_opt(&ArrayMetadataOptions::default().with_include_zarrs_metadata(false))?;
    Ok(array)
}

fn element_size(array: &FsArray) -> Result<usize> {
    array.data_type().fixed_size().ok_or_else(|| "variable-length data types are not benchmarked".into())
}

fn whole(array: &FsArray) -> ArraySubset {
    ArraySubset::new_with_shape(array.shape().to_vec())
}

fn write_all(array: &FsArray, source: &[u8], options: &CodecOptions) -> Result<()> {
    array.store_array_subset_opt(&whole(array), ArrayBytes::new_flen(source), options)?;
    Ok(())
}

fn read_subset(array: &FsArray, subset: &ArraySubset, options: &CodecOptions) -> Result<Vec<u8>> {
    let bytes: ArrayBytes<'static> = array.retrieve_array_subset_opt(subset, options)?;
    Ok(bytes.into_fixed()?.into_owned())
}

/// A subset through zarrs' shard index cache (what zarrs offers for many small reads of a
/// sharded array; a plain subset read for an unsharded one).
fn read_cached(
    array: &FsArray,
    cache: &ArrayShardedReadableExtCache,
    subset: &ArraySubset,
    options: &CodecOptions,
) -> Result<Vec<u8>> {
    let bytes: ArrayBytes<'static> = array.retrieve_array_subset_sharded_opt(cache, subset, options)?;
    Ok(bytes.into_fixed()?.into_owned())
}

fn read_boxes(
    array: &FsArray,
    cache: &ArrayShardedReadableExtCache,
    boxes: &[ArraySubset],
    options: &CodecOptions,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for subset in boxes {
        out.extend_from_slice(&read_cached(array, cache, subset, options)?);
    }
    Ok(out)
}

/// `array.oindex[rows, :, ...]` for sorted `rows`: per block of `block` rows (the inner
/// chunks' extent on axis 0), the slab from its first to its last selected row, then the
/// selected rows of it.
fn read_oindex(
    array: &FsArray,
    cache: &ArrayShardedReadableExtCache,
    rows: &[u64],
    block: u64,
    options: &CodecOptions,
) -> Result<Vec<u8>> {
    let shape = array.shape().to_vec();
    let chunk_rows = block.max(1);
    let row_bytes = shape[1..].iter().product::<u64>() as usize * element_size(array)?;
    let mut out = Vec::with_capacity(rows.len() * row_bytes);
    let mut i = 0;
    while i < rows.len() {
        let chunk = rows[i] / chunk_rows;
        let mut j = i;
        while j < rows.len() && rows[j] / chunk_rows == chunk {
            j += 1;
        }
        let (first, last) = (rows[i], rows[j - 1]);
        let ranges: Vec<_> = std::iter::once(first..last + 1).chain(shape[1..].iter().map(|&n| 0..n)).collect();
        let slab = read_cached(array, cache, &ArraySubset::new_with_ranges(&ranges), options)?;
        for &row in &rows[i..j] {
            let at = (row - first) as usize * row_bytes;
            out.extend_from_slice(&slab[at..at + row_bytes]);
        }
        i = j;
    }
    Ok(out)
}

/// `array.vindex[points]`: points grouped by chunk, each chunk's bounding box of its points
/// decoded (chunks in parallel, codec concurrency split between them), values gathered.
fn read_vindex(array: &FsArray, points: &[Vec<u64>], threads: usize) -> Result<Vec<u8>> {
    let ndim = points.len();
    let count = points.first().map_or(0, Vec::len);
    if points.iter().any(|axis| axis.len() != count) || ndim != array.shape().len() {
        return Err("points must give one coordinate list per axis, all the same length".into());
    }
    let size = element_size(array)?;
    let chunk_shape: Vec<u64> = array.chunk_shape(&vec![0; ndim])?.iter().map(|n| n.get()).collect();
    let mut groups: BTreeMap<Vec<u64>, Vec<usize>> = BTreeMap::new();
    for p in 0..count {
        let chunk = points.iter().zip(&chunk_shape).map(|(axis, &extent)| axis[p] / extent).collect();
        groups.entry(chunk).or_default().push(p);
    }
    let options = CodecOptions::default().with_concurrent_target((threads / groups.len().max(1)).max(1));
    let gathered: Vec<(Vec<usize>, Vec<u8>)> = groups
        .into_par_iter()
        .map(|(chunk, members)| -> Result<(Vec<usize>, Vec<u8>)> {
            let local = |d: usize, p: usize| points[d][p] - chunk[d] * chunk_shape[d];
            let lo: Vec<u64> = (0..ndim).map(|d| members.iter().map(|&p| local(d, p)).min().unwrap_or(0)).collect();
            let hi: Vec<u64> = (0..ndim).map(|d| members.iter().map(|&p| local(d, p)).max().unwrap_or(0) + 1).collect();
            let ranges: Vec<_> = (0..ndim).map(|d| lo[d]..hi[d]).collect();
            let bytes: ArrayBytes<'static> =
                array.retrieve_chunk_subset_opt(&chunk, &ArraySubset::new_with_ranges(&ranges), &options)?;
            let bytes = bytes.into_fixed()?;
            let mut values = Vec::with_capacity(members.len() * size);
            for &p in &members {
                let mut offset = 0u64;
                for d in 0..ndim {
                    offset = offset * (hi[d] - lo[d]) + (local(d, p) - lo[d]);
                }
                let at = offset as usize * size;
                values.extend_from_slice(&bytes[at..at + size]);
            }
            Ok((members, values))
        })
        .collect::<Result<_>>()?;
    let mut out = vec![0u8; count * size];
    for (members, values) in gathered {
        for (k, &p) in members.iter().enumerate() {
            out[p * size..(p + 1) * size].copy_from_slice(&values[k * size..(k + 1) * size]);
        }
    }
    Ok(out)
}

// --------------------------------------------------------------------------
// Modes
// --------------------------------------------------------------------------

/// Flush earlier writes before a timed write, as bench.py does (`os.sync()`).
fn sync_filesystems() {
    let _ = std::process::Command::new("sync").status();
}

/// Best of `repeat` timed calls of `read` (after one untimed call when `warm`), and the
/// result of the last call.
fn best_of(repeat: usize, warm: bool, mut read: impl FnMut() -> Result<Vec<u8>>) -> Result<(f64, Vec<u8>)> {
    if warm {
        read()?;
    }
    let mut best = f64::INFINITY;
    let mut last = Vec::new();
    for _ in 0..repeat {
        let start = Instant::now();
        last = read()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok((best, last))
}

fn bench(job: &Value) -> Result<Value> {
    let source = std::fs::read(str_field(job, "source")?)?;
    let reference = PathBuf::from(str_field(job, "reference")?);
    let target = PathBuf::from(str_field(job, "target")?);
    let outputs = PathBuf::from(str_field(job, "outputs")?);
    let repeat = count_field(job, "repeat")?;
    let small_repeat = count_field(job, "small_repeat")?;
    let threads = rayon::current_num_threads();
    let options = CodecOptions::default();
    let mut results = serde_json::Map::new();
    for operation in field(job, "operations")?.as_array().ok_or("\"operations\" must be a list")? {
        let operation = operation.as_str().ok_or("operations must be strings")?;
        let outcome = (|| -> Result<f64> {
            if operation == "write_all" {
                let metadata = field(job, "metadata")?;
                let mut best = f64::INFINITY;
                for _ in 0..repeat {
                    let array = create_array(&target, metadata)?;
                    sync_filesystems();
                    let start = Instant::now();
                    write_all(&array, &source, &options)?;
                    best = best.min(start.elapsed().as_secs_f64());
                }
                return Ok(best);
            }
            let array = open_array(&reference)?;
            // One shard index cache per opened array, as a zarrs user keeps it with the array.
            let cache = ArrayShardedReadableExtCache::new(&array);
            let (seconds, result) = match operation {
                "read_all" => best_of(repeat, false, || read_subset(&array, &whole(&array), &options))?,
                "small_reads" => {
                    let shape = u64_list(field(job, "box_shape")?, "box_shape")?;
                    let boxes: Vec<ArraySubset> = u64_lists(field(job, "boxes")?, "boxes")?
                        .into_iter()
                        .map(|start| {
                            ArraySubset::new_with_ranges(&start.iter().zip(&shape).map(|(&s, &n)| s..s + n).collect::<Vec<_>>())
                        })
                        .collect();
                    // The untimed first read is the first box alone, as in bench.py.
                    read_boxes(&array, &cache, &boxes[..boxes.len().min(1)], &options)?;
                    best_of(small_repeat, false, || read_boxes(&array, &cache, &boxes, &options))?
                }
                "oindex" => {
                    let rows = u64_list(field(job, "rows")?, "rows")?;
                    let block = field(job, "row_block")?.as_u64().ok_or("\"row_block\" must be an integer")?;
                    best_of(repeat, true, || read_oindex(&array, &cache, &rows, block, &options))?
                }
                "vindex" => {
                    let points = u64_lists(field(job, "points")?, "points")?;
                    best_of(repeat, true, || read_vindex(&array, &points, threads))?
                }
                other => return Err(format!("unknown operation {other:?}").into()),
            };
            std::fs::write(outputs.join(format!("{operation}.bin")), result)?;
            Ok(seconds)
        })();
        let cell = match outcome {
            Ok(seconds) => json!({ "seconds": seconds }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        results.insert(operation.to_string(), cell);
    }
    Ok(json!({ "results": results }))
}

/// One `/proc/self/status` value in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(name: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("no {name} in /proc/self/status").into())
}

fn memory(job: &Value) -> Result<Value> {
    let source = std::fs::read(str_field(job, "source")?)?;
    let target = PathBuf::from(str_field(job, "target")?);
    let array = create_array(&target, field(job, "metadata")?)?;
    let options = CodecOptions::default();
    let baseline = proc_status_bytes("VmRSS")?;
    // "5" resets the peak (VmHWM) to the current RSS (Linux 4.0+).
    std::fs::write("/proc/self/clear_refs", "5")?;
    write_all(&array, &source, &options)?;
    let result = read_subset(&array, &whole(&array), &options)?;
    let peak = proc_status_bytes("VmHWM")?;
    Ok(json!({
        "baseline_bytes": baseline,
        "peak_bytes": peak,
        "read_matches_source": result == source,
    }))
}

fn open_many(job: &Value) -> Result<Value> {
    let paths: Vec<PathBuf> = field(job, "open_paths")?
        .as_array()
        .ok_or("\"open_paths\" must be a list")?
        .iter()
        .map(|p| p.as_str().map(PathBuf::from).ok_or("open_paths must be strings"))
        .collect::<std::result::Result<_, _>>()?;
    let repeat = count_field(job, "repeat")?;
    let mut best = f64::INFINITY;
    let mut shapes = Vec::new();
    for _ in 0..repeat {
        let start = Instant::now();
        let arrays = paths.iter().map(|p| open_array(p)).collect::<Result<Vec<_>>>()?;
        best = best.min(start.elapsed().as_secs_f64());
        shapes = arrays.iter().map(|a| a.shape().to_vec()).collect();
    }
    Ok(json!({ "seconds": best, "shapes": shapes }))
}

fn minibatch(job: &Value) -> Result<Value> {
    let array = open_array(Path::new(str_field(job, "reference")?))?;
    let batches = u64_lists(field(job, "batches")?, "batches")?;
    let block = field(job, "row_block")?.as_u64().ok_or("\"row_block\" must be an integer")?;
    let readers = count_field(job, "readers")?;
    let outputs = PathBuf::from(str_field(job, "outputs")?);
    let options = CodecOptions::default();
    let cache = ArrayShardedReadableExtCache::new(&array);
    // Untimed first batch, as in bench.py.
    read_oindex(&array, &cache, &batches[0], block, &options)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    let results: Vec<(usize, Vec<u8>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..readers)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, Vec<u8>)>> {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(rows) = batches.get(i) else { return Ok(mine) };
                        mine.push((i, read_oindex(&array, &cache, rows, block, &options)?));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.join().map_err(|_| "a reader thread panicked")??);
        }
        Ok::<_, Box<dyn Error + Send + Sync>>(all)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let mut results = results;
    results.sort_by_key(|(i, _)| *i);
    let bytes: Vec<u8> = results.into_iter().flat_map(|(_, rows)| rows).collect();
    std::fs::write(outputs.join("minibatch.bin"), bytes)?;
    Ok(json!({ "seconds": seconds }))
}
