//! The committed C header and cffi cdef must be exactly what cbindgen generates now.
//!
//! Run with `ZARRS_FFI_BLESS=1` to rewrite them after changing the ABI.

use std::path::Path;

/// The cffi cdef: the header without preprocessor lines, which cffi cannot parse, keeping
/// only the C side of `__cplusplus` conditionals.
fn cdef_from_header(header: &str) -> String {
    let mut out = String::new();
    // One entry per open conditional: whether its lines are kept.
    let mut keep: Vec<bool> = Vec::new();
    for line in header.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix('#') {
            let rest = rest.trim_start();
            if rest.starts_with("ifdef") || rest.starts_with("if ") {
                keep.push(!rest.contains("__cplusplus"));
            } else if rest.starts_with("ifndef") {
                keep.push(true);
            } else if rest.starts_with("else") {
                if let Some(last) = keep.last_mut() {
                    *last = !*last;
                }
            } else if rest.starts_with("endif") {
                keep.pop();
            }
            continue;
        }
        if keep.iter().all(|&k| k) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.trim().to_string() + "\n"
}

#[test]
fn header_and_cdef_are_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut header = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut header);
    let header = String::from_utf8(header).expect("UTF-8 header");
    let cdef = cdef_from_header(&header);

    let header_path = crate_dir.join("include/zarrs_ffi.h");
    let cdef_path = crate_dir.join("include/zarrs_ffi_cdef.h");
    if std::env::var_os("ZARRS_FFI_BLESS").is_some() {
        std::fs::write(&header_path, &header).unwrap();
        std::fs::write(&cdef_path, &cdef).unwrap();
        return;
    }
    let committed_header = std::fs::read_to_string(&header_path).unwrap_or_default();
    let committed_cdef = std::fs::read_to_string(&cdef_path).unwrap_or_default();
    assert!(
        committed_header == header,
        "include/zarrs_ffi.h is stale: run `ZARRS_FFI_BLESS=1 cargo test --test header` and commit"
    );
    assert!(
        committed_cdef == cdef,
        "include/zarrs_ffi_cdef.h is stale: run `ZARRS_FFI_BLESS=1 cargo test --test header` and commit"
    );
}
