//! The `extern "C"` call for options: the defaults.

use crate::args;
use crate::error::ZarrsResult;
use crate::options::ZarrsOptions;
use crate::panic::boundary;

/// Write the default options to `options_out`.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_options_default(options_out: *mut ZarrsOptions) -> ZarrsResult {
    boundary(|| {
        // SAFETY: `options_out` is checked for NULL; the caller provides writable storage.
        unsafe { args::write_out(options_out, ZarrsOptions::default()) }
    })
}
