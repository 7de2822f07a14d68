//! Keeping a CPU awake for a moment after each data call, so the next call's wake-ups are
//! cheap.
//!
//! A small read through zarr's API wakes a sleeping thread four to six times: zarr's event
//! loop, our worker, a pool helper, the loop again, the caller. Where an idle CPU halts at
//! once (a virtual machine without guest halt-polling, like the one our benchmarks run on;
//! a CPU in a deep C-state on bare metal), each of those wake-ups costs 25-160 µs instead
//! of a few, because the halted CPU must be woken first. That was a fifth to a third of a
//! small read there (benchmarks/RESULTS.md).
//!
//! So, when asked, for a short window after every pipeline call starts or ends, one
//! thread of the process (`zarrs-ffi-warm`) spins, then parks until the next call. Pipeline
//! calls are those an event loop's codec pipeline makes, each followed by thread hand-offs:
//! batch reads and writes (also started asynchronously), decoding and encoding bytes the
//! caller fetched, gathers, read plans. A caller's own region and chunk calls
//! (`zarrs_array_retrieve_subset` and the like, behind `zarrs_cffi.Array`) do not start it:
//! they hand nothing to other threads, and made back to back beside a spinning thread they
//! ran 30-40% slower on the benchmark machine (the spinner shares the CPUs their pool uses). It does no
//! work. It runs at the lowest nice level (19), so a thread with work on its CPU gets nearly
//! all of it (a nice-19 thread's weight is 15 against 1024), and it spins only within the
//! window, so a process that stops calling stops spinning. This is the bounded spin-wait
//! that GNU OpenMP and OpenBLAS do by default after their parallel work.
//!
//! What it costs is the CPU time of the window: on the benchmark machine it made a small
//! read through zarr cost more CPU time than zarrs-python's and one aligned chunk per call no
//! faster (benchmarks/RESULTS.md); besides, power, a busy CPU for the host, and time counted
//! against a CPU quota. So it is off unless asked for: a user whose reads are many small
//! boxes back to back, on a machine whose idle CPUs halt at once, can turn it on. Linux only:
//! there is no portable way to lower one thread's priority.
//!
//! `SCHED_IDLE` would be more polite still, but measured no better than off on the
//! benchmark machine: the scheduler counts a CPU running only a `SCHED_IDLE` thread as idle
//! and places wake-ups as if nothing ran there, while the other CPU halts.
//!
//! The window: [`set_window_us`] (the C call `zarrs_set_keep_warm`), else the environment
//! variable `ZARRS_FFI_KEEP_WARM_US` read at the first call, else 0 (off).
//!
//! Fork-safe: the thread is per process ([`PerProcess`]); a forked child starts its own at
//! its first call inside a window.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use super::PerProcess;
use crate::error::{FfiError, ZarrsResult};

/// The window after a call, in nanoseconds; `UNSET` until first read from the environment.
static WINDOW_NS: AtomicU64 = AtomicU64::new(UNSET);
const UNSET: u64 = u64::MAX;
/// The longest window accepted: one second.
const MAX_WINDOW_US: u64 = 1_000_000;

/// Until when (nanoseconds since [`epoch`]) the warm thread spins.
static DEADLINE: AtomicU64 = AtomicU64::new(0);
/// Whether the warm thread is parked (or about to park): a call must unpark it.
static PARKED: AtomicBool = AtomicBool::new(false);
/// The process whose warm thread is running (0: none yet).
static RUNNING_IN: AtomicU32 = AtomicU32::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn clamp_ns(us: u64) -> u64 {
    if cfg!(target_os = "linux") {
        us.min(MAX_WINDOW_US) * 1000
    } else {
        0
    }
}

fn window_ns() -> u64 {
    match WINDOW_NS.load(Ordering::Relaxed) {
        UNSET => {
            let from_env = std::env::var("ZARRS_FFI_KEEP_WARM_US").ok().and_then(|v| v.trim().parse::<u64>().ok());
            let us = from_env.unwrap_or(0);
            // A racing `set_window_us` wins over the default.
            let _ = WINDOW_NS.compare_exchange(UNSET, clamp_ns(us), Ordering::Relaxed, Ordering::Relaxed);
            WINDOW_NS.load(Ordering::Relaxed)
        }
        window => window,
    }
}

/// Set the window, in microseconds (at most one second; 0 turns keeping warm off at once),
/// for this process and the children it forks later. Stays 0 on systems other than Linux.
pub fn set_window_us(us: u64) {
    let ns = clamp_ns(us);
    WINDOW_NS.store(ns, Ordering::Relaxed);
    if ns == 0 {
        DEADLINE.store(0, Ordering::SeqCst); // off now, not at the end of the last window
    }
}

/// The window in microseconds.
pub fn window_us() -> u64 {
    window_ns() / 1000
}

/// Mark a data call: the warm thread spins until the window after this moment has passed.
/// One atomic load when keeping warm is off.
pub fn touch() {
    let window = window_ns();
    if window == 0 {
        return;
    }
    DEADLINE.fetch_max(now_ns().saturating_add(window), Ordering::SeqCst);
    if RUNNING_IN.load(Ordering::Relaxed) == std::process::id() && !PARKED.load(Ordering::SeqCst) {
        return; // spinning: it reads the new deadline
    }
    wake();
}

/// The slow path of [`touch`]: start this process's warm thread, or unpark it.
#[cold]
fn wake() {
    static THREADS: PerProcess<(), std::thread::Thread> = PerProcess::new(1);
    let Ok(thread) = THREADS.get_or_build((), || {
        // A forked child inherits the parent's flag, not its thread.
        PARKED.store(false, Ordering::SeqCst);
        std::thread::Builder::new()
            .name("zarrs-ffi-warm".to_string())
            .spawn(spin)
            .map(|handle| handle.thread().clone())
            .map_err(|e| FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, format!("cannot start a thread: {e}")))
    }) else {
        return; // no thread to keep warm with: calls are only slower
    };
    RUNNING_IN.store(std::process::id(), Ordering::Relaxed);
    if PARKED.swap(false, Ordering::SeqCst) {
        thread.unpark();
    }
}

/// The warm thread: spin until the deadline, park, repeat.
fn spin() {
    lower_priority();
    loop {
        while now_ns() < DEADLINE.load(Ordering::Relaxed) {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        PARKED.store(true, Ordering::SeqCst);
        // A call that moved the deadline before seeing PARKED would not unpark us.
        if now_ns() < DEADLINE.load(Ordering::SeqCst) {
            PARKED.store(false, Ordering::SeqCst);
            continue;
        }
        std::thread::park(); // unparked by `wake` (a spurious return re-checks the deadline)
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: `gettid` takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    // SAFETY: plain integer arguments; raising this thread's own nice value needs no
    // privilege. On failure the window is turned off, since a spin at normal priority would
    // take CPU time from real work.
    let lowered = u32::try_from(tid).is_ok_and(|tid| unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) } == 0);
    if !lowered {
        set_window_us(0);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    set_window_us(0);
}

/// A data call in progress: [`touch`] when it starts and when it ends.
pub struct Burst(());

impl Burst {
    pub fn begin() -> Self {
        touch();
        Self(())
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        touch();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The warm thread's CPU time so far (clock ticks) and nice value.
    fn warm_thread() -> Option<(u64, i64)> {
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let dir = task.ok()?.path();
            if std::fs::read_to_string(dir.join("comm")).ok()?.trim() == "zarrs-ffi-warm" {
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let ticks = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
                return Some((ticks, fields[16].parse().ok()?));
            }
        }
        None
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < until, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn spins_at_nice_19_within_the_window_then_parks_and_costs_nothing() {
        set_window_us(2_000_000);
        assert_eq!(window_us(), MAX_WINDOW_US, "clamped to one second");
        set_window_us(30_000);
        assert_eq!(window_us(), 30_000);
        touch();
        std::thread::sleep(Duration::from_millis(10));
        assert!(!PARKED.load(Ordering::SeqCst), "spinning within the window");
        let (_, nice) = warm_thread().expect("a thread named zarrs-ffi-warm");
        assert_eq!(nice, 19);
        wait_for("the window has passed and it parked", || PARKED.load(Ordering::SeqCst));
        let (parked_ticks, _) = warm_thread().expect("still there");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(warm_thread().map(|t| t.0), Some(parked_ticks), "no CPU time while parked");

        touch();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!PARKED.load(Ordering::SeqCst), "a new call unparks it");
        set_window_us(0);
        wait_for("turning it off parked it at once", || PARKED.load(Ordering::SeqCst));
    }
}
