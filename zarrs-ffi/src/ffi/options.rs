//! The `extern "C"` calls for options: the per-call defaults, and the process-wide keep-warm
//! window.

use crate::args;
use crate::error::ZarrsResult;
use crate::options::ZarrsOptions;
use crate::panic::boundary;
use crate::process::warm;

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

/// Set how long, in microseconds, one thread of this process keeps a CPU awake after each
/// pipeline call starts or ends (batch reads and writes, their asynchronous start, decoding
/// and encoding caller-fetched bytes, gathers, read plans; not the region and chunk calls
/// such as [`zarrs_array_retrieve_subset`]); 0 turns it off at once. The next
/// call's thread wake-ups then do not wait for a halted CPU: on a virtual machine without
/// guest halt-polling that saves tens of microseconds per wake-up, several per small read
/// through zarr. The thread does no work, spins at nice 19 and only within the window; its
/// cost is that CPU time (power, a cgroup CPU quota, other threads' CPU). At most one
/// second; process-wide, and inherited by children forked later. Off (0) unless set, here or
/// by the environment variable `ZARRS_FFI_KEEP_WARM_US` before the first call; Linux only
/// (elsewhere it stays 0).
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_set_keep_warm(microseconds: u64) -> ZarrsResult {
    boundary(|| {
        warm::set_window_us(microseconds);
        Ok(())
    })
}

/// Write the current keep-warm window ([`zarrs_set_keep_warm`]), in microseconds, to
/// `microseconds_out`.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_keep_warm(microseconds_out: *mut u64) -> ZarrsResult {
    boundary(|| {
        // SAFETY: `microseconds_out` is checked for NULL; the caller provides writable storage.
        unsafe { args::write_out(microseconds_out, warm::window_us()) }
    })
}
