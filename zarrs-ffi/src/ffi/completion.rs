//! Asynchronous batch reads, completed through a file descriptor an event loop watches.
//!
//! A caller with an event loop (zarr's asyncio loop) must not block in a native call, and
//! handing each read to a thread of its own language costs wake-ups and lock hand-offs
//! (for Python: the GIL, twice each way). Here the caller starts a read, which is
//! validated and parsed at once and then runs on one of a few dedicated threads; when it
//! finishes, its token, result code and message are queued on a [`ZarrsCompletionQueue`]
//! and the queue's file descriptor becomes readable. The loop watches that descriptor and
//! drains finished tokens. The gathers start the same way (`gather.rs`, through
//! `start_on`).
//!
//! The reading threads are not rayon pool threads: they call `ZarrsArray::read_jobs` just
//! as a caller's own thread does in [`zarrs_array_read_chunks`] (small reads on the thread
//! alone, larger ones shared with the pool). They are per process (`process::PerProcess`),
//! started on demand up to a bound, and never while a lock is held.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::args;
use crate::error::{FfiError, FfiResult, ZarrsResult};
use crate::handles::ZarrsArray;
use crate::layout::{ChunkJob, Destination};
use crate::options::ZarrsOptions;
use crate::panic::{boundary, caught};
use crate::registry;
use crate::process::{self, PerProcess};
use crate::process::warm::Burst;

/// A queue of finished asynchronous reads and the file descriptor that signals them.
/// Create with [`zarrs_completion_queue_new`]; free with [`zarrs_completion_queue_free`].
///
/// The queue lives on while reads started on it are in flight, even after it is freed; its
/// descriptor is closed when the last of them has finished.
///
/// Thread safety: every call may run concurrently on the same queue.
pub struct ZarrsCompletionQueue {
    queue: Arc<Queue>,
}

/// A finished read waiting to be drained, and the messages of failed reads not yet taken.
#[derive(Default)]
struct Finished {
    done: VecDeque<(u64, ZarrsResult)>,
    errors: HashMap<u64, FfiError>,
}

struct Queue {
    signal: Signal,
    finished: Mutex<Finished>,
}

impl Queue {
    fn new() -> FfiResult<Self> {
        Ok(Self { signal: Signal::new()?, finished: Mutex::default() })
    }

    fn lock(&self) -> MutexGuard<'_, Finished> {
        self.finished.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record `token`'s outcome, then signal: a drain that runs between the two finds the
    /// token and the signal only wakes the loop once more, for nothing.
    fn complete(&self, token: u64, result: FfiResult<()>) {
        {
            let mut finished = self.lock();
            match result {
                Ok(()) => finished.done.push_back((token, ZarrsResult::ZARRS_SUCCESS)),
                Err(err) => {
                    finished.done.push_back((token, err.code));
                    finished.errors.insert(token, err);
                }
            }
        }
        self.signal.notify();
    }

    /// Up to `capacity` finished tokens with their codes, oldest first. If more are left,
    /// the descriptor stays readable.
    fn drain(&self, capacity: usize) -> Vec<(u64, ZarrsResult)> {
        self.signal.clear();
        let mut finished = self.lock();
        let n = capacity.min(finished.done.len());
        let taken: Vec<_> = finished.done.drain(..n).collect();
        let more = !finished.done.is_empty();
        drop(finished);
        if more {
            self.signal.notify();
        }
        taken
    }

    fn take_error(&self, token: u64) -> Option<FfiError> {
        self.lock().errors.remove(&token)
    }
}

/// What makes the queue's descriptor readable: a Linux `eventfd`, or a pipe elsewhere on
/// Unix. Both ends are non-blocking and close-on-exec.
#[cfg(unix)]
struct Signal {
    read: std::os::fd::OwnedFd,
    /// The pipe's write end (None: an eventfd, written through `read`).
    write: Option<std::os::fd::OwnedFd>,
}

#[cfg(unix)]
impl Signal {
    #[cfg(target_os = "linux")]
    fn new() -> FfiResult<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: `eventfd` takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error("eventfd"));
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(Self { read: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }, write: None })
    }

    #[cfg(not(target_os = "linux"))]
    fn new() -> FfiResult<Self> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors `pipe` writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(os_error("pipe"));
        }
        // SAFETY: both were just opened and nothing else owns them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            let fd = fd.as_raw_fd();
            // SAFETY: `fcntl` on a descriptor we own, with integer arguments only.
            let ok = unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                flags >= 0
                    && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
                    && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
            };
            if !ok {
                return Err(os_error("fcntl"));
            }
        }
        Ok(Self { read, write: Some(write) })
    }

    fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.read.as_raw_fd()
    }

    /// Make the descriptor readable. A full eventfd counter or pipe is readable already.
    fn notify(&self) {
        use std::os::fd::AsRawFd;
        let fd = self.write.as_ref().unwrap_or(&self.read).as_raw_fd();
        let one = 1u64.to_ne_bytes();
        // An eventfd takes exactly 8 bytes; one byte is enough for a pipe.
        let len = if self.write.is_some() { 1 } else { one.len() };
        loop {
            // SAFETY: `one` holds at least `len` readable bytes.
            let written = unsafe { libc::write(fd, one.as_ptr().cast(), len) };
            if written >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return;
            }
        }
    }

    /// Make the descriptor unreadable until the next [`Signal::notify`].
    fn clear(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: `buf` has `buf.len()` writable bytes.
            let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // An eventfd is reset by one read; a pipe is read until it is empty.
            if n <= 0 || self.write.is_none() {
                return;
            }
        }
    }
}

#[cfg(unix)]
fn os_error(call: &str) -> FfiError {
    FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, format!("cannot create the completion queue: {call}: {}", std::io::Error::last_os_error()))
}

/// Elsewhere there is no descriptor to watch: the queue cannot be created, and callers keep
/// their own threads.
#[cfg(not(unix))]
struct Signal;

#[cfg(not(unix))]
impl Signal {
    fn new() -> FfiResult<Self> {
        Err(FfiError::new(ZarrsResult::ZARRS_ERROR_UNSUPPORTED, "completion queues need a Unix file descriptor"))
    }

    fn fd(&self) -> i32 {
        -1
    }

    fn notify(&self) {}

    fn clear(&self) {}
}

// The threads that run started reads.

type Work = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Pending {
    work: VecDeque<Work>,
    /// Threads waiting for work (woken ones included until they take it).
    waiting: usize,
    threads: usize,
}

struct Runners {
    pending: Mutex<Pending>,
    ready: Condvar,
    limit: usize,
}

/// The most reading threads a process starts: reads mostly wait for storage or for the
/// pool, so there may be more of them than CPUs (the bound of Python's own workers).
fn runner_limit() -> usize {
    32.min(process::cpus() + 4)
}

impl Runners {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `work`, starting a thread for it when none is waiting and the bound allows.
    fn submit(self: &Arc<Self>, work: Work) -> FfiResult<()> {
        let spawn = {
            let mut pending = self.lock();
            let spawn = pending.work.len() + 1 > pending.waiting && pending.threads < self.limit;
            pending.threads += usize::from(spawn);
            spawn
        };
        if spawn {
            // Started outside the lock: a `fork` while it is held would leave it held in the
            // child (the child builds its own `Runners`, but the rule costs nothing here).
            let runners = self.clone();
            let started = std::thread::Builder::new().name("zarrs-ffi-reader".into()).spawn(move || runners.run());
            if let Err(err) = started {
                let mut pending = self.lock();
                pending.threads -= 1;
                if pending.threads == 0 {
                    // Nobody would ever run the work: fail the call instead.
                    return Err(FfiError::new(ZarrsResult::ZARRS_ERROR_STORAGE, format!("cannot start a reading thread: {err}")));
                }
            }
        }
        self.lock().work.push_back(work);
        self.ready.notify_one();
        Ok(())
    }

    fn run(&self) {
        let mut pending = self.lock();
        loop {
            if let Some(work) = pending.work.pop_front() {
                drop(pending);
                work(); // never unwinds: each job catches its panics
                pending = self.lock();
                continue;
            }
            pending.waiting += 1;
            pending = self.ready.wait(pending).unwrap_or_else(PoisonError::into_inner);
            pending.waiting -= 1;
        }
    }
}

/// This process's reading threads (a forked child starts its own).
fn runners() -> FfiResult<Arc<Runners>> {
    static RUNNERS: PerProcess<(), Runners> = PerProcess::new(1);
    RUNNERS.get_or_build((), || Ok(Runners { pending: Mutex::default(), ready: Condvar::new(), limit: runner_limit() }))
}

/// Run `job` on a reading thread and record its outcome as `token` in `queue`. A panic in
/// the job becomes that token's `ZARRS_ERROR_PANIC`.
fn start(queue: &Arc<Queue>, token: u64, job: impl FnOnce() -> FfiResult<()> + Send + 'static) -> FfiResult<()> {
    let queue = queue.clone();
    runners()?.submit(Box::new(move || {
        let result = catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|payload| Err(caught(payload)));
        queue.complete(token, result);
    }))
}

/// Run `job` on a reading thread and record its outcome as `token` on the caller's `queue`
/// (the other started calls: `gather.rs`).
pub(super) fn start_on(queue: &ZarrsCompletionQueue, token: u64, job: impl FnOnce() -> FfiResult<()> + Send + 'static) -> FfiResult<()> {
    start(&queue.queue, token, job)
}

/// A caller pointer that outlives the call that passed it, by that call's contract.
pub(super) struct Caller<T>(pub(super) *mut T);

// SAFETY: the pointee is only used by the one job holding it; the caller keeps it valid
// and untouched until the job's token completes (the contract of the start call).
unsafe impl<T> Send for Caller<T> {}

/// One started batch read: everything copied from the caller's arguments except the
/// handle and the buffers, which the caller keeps alive until the token completes.
struct Read {
    array: Caller<ZarrsArray>,
    options: ZarrsOptions,
    jobs: Vec<ChunkJob>,
    out: Caller<u8>,
    out_len: usize,
    out_shape: Vec<u64>,
    present: Caller<u8>,
    present_len: usize,
}

impl Read {
    fn run(self) -> FfiResult<()> {
        let _burst = Burst::begin();
        // SAFETY: the start call's contract keeps the handle alive and the buffers valid,
        // written by nothing else, until this token completes; both were checked there.
        let (array, out, present_out) = unsafe {
            (
                args::handle(self.array.0.cast_const(), "array")?,
                args::slice_mut(self.out.0, self.out_len, "out")?,
                args::slice_mut(self.present.0, self.present_len, "present_out")?,
            )
        };
        let destination = Destination::new(out, &self.out_shape, array.element_size()?, "out")?;
        let present = array.read_jobs(&self.options, self.jobs, &destination)?;
        for (slot, found) in present_out.iter_mut().zip(present) {
            *slot = u8::from(found);
        }
        Ok(())
    }
}

/// Create a completion queue. `queue_out` receives the handle; `fd_out` its file
/// descriptor, readable whenever finished reads wait to be drained
/// ([`zarrs_completion_queue_drain`]). Watch the descriptor (epoll, select, an event loop's
/// reader); never read, write or close it: the queue owns it.
///
/// Fails with `ZARRS_ERROR_UNSUPPORTED` where there are no Unix file descriptors (callers
/// then run [`zarrs_array_read_chunks`] on threads of their own).
///
/// Thread safety: safe from any thread. A forked child must create its own queue.
#[no_mangle]
pub extern "C" fn zarrs_completion_queue_new(queue_out: *mut *mut ZarrsCompletionQueue, fd_out: *mut i32) -> ZarrsResult {
    boundary(|| {
        args::require_out(queue_out, "queue_out")?;
        args::require_out(fd_out, "fd_out")?;
        let queue = Arc::new(Queue::new()?);
        let fd = queue.signal.fd();
        let handle = registry::issue(ZarrsCompletionQueue { queue });
        // SAFETY: both out-parameters are non-NULL (checked above) and writable per the
        // contract; `handle` is a fresh Box the caller now owns.
        unsafe {
            args::write_out(fd_out, fd)?;
            args::write_out(queue_out, handle)
        }
    })
}

/// Free a completion queue handle. NULL is a no-op. A handle freed already, of
/// another kind, or not from this library is `ZARRS_ERROR_INVALID_ARGUMENT` and nothing is
/// freed. Reads still in flight on it finish
/// (their buffers must stay valid until then) and their outcomes are dropped; the file
/// descriptor is closed once the last of them has finished.
///
/// Thread safety: the handle must not be in use by another thread.
#[no_mangle]
pub extern "C" fn zarrs_completion_queue_free(queue: *mut ZarrsCompletionQueue) -> ZarrsResult {
    boundary(|| {
        drop(registry::retire(queue, "queue")?);
        Ok(())
    })
}

/// Start reading a batch of chunks into one caller buffer; its outcome arrives as `token`
/// on `queue`.
///
/// Arguments after `token` are those of [`zarrs_array_read_chunks`], checked and parsed
/// before this returns: an argument error is returned at once and nothing is started. Keys,
/// key offsets, geometry, `options` and `out_shape` are copied: the caller may free them on
/// return. Storage and codec errors arrive with the token.
///
/// Ownership: `array`, `out` (`out_len` bytes) and `present_out` (`present_len` bytes)
/// must stay valid, and `out`'s regions and `present_out` unread and unwritten by the
/// caller, until `token` has been drained from `queue` (even if the caller no longer
/// wants the result). Then `out` and `present_out` hold what [`zarrs_array_read_chunks`]
/// writes, if the token's code is success. Tokens are the caller's: keep them distinct
/// among the reads in flight on one queue.
///
/// Thread safety: safe to call concurrently, on the same queue and the same array.
#[no_mangle]
pub extern "C" fn zarrs_array_read_chunks_start(
    queue: *const ZarrsCompletionQueue,
    token: u64,
    array: *const ZarrsArray,
    options: *const ZarrsOptions,
    num_chunks: usize,
    keys: *const c_char,
    keys_len: usize,
    key_offsets: *const u64,
    geometry: *const u64,
    geometry_len: usize,
    out: *mut u8,
    out_len: usize,
    out_shape: *const u64,
    present_out: *mut u8,
    present_len: usize,
) -> ZarrsResult {
    boundary(|| {
        let _burst = Burst::begin();
        // SAFETY: every pointer below addresses the length stated beside it, per this
        // function's contract, for the duration of the call (and `array`, `out` and
        // `present_out` beyond it, until the token completes).
        let (queue, handle, options, jobs, out_shape, out_bytes) = unsafe {
            let queue = args::handle(queue, "queue")?;
            let handle = args::handle(array, "array")?;
            let options = ZarrsOptions::from_ptr(options);
            let jobs = super::batch::jobs_from_raw(handle, num_chunks, keys, keys_len, key_offsets, geometry, geometry_len)?;
            let (out_shape, out_bytes) = super::batch::read_outputs(handle, num_chunks, out, out_len, out_shape, present_out, present_len)?;
            (queue, handle, options, jobs, out_shape, out_bytes)
        };
        // The buffer's size is checked now; the job builds the same view again.
        Destination::new(out_bytes, &out_shape, handle.element_size()?, "out")?;
        let read = Read {
            array: Caller(array.cast_mut()),
            options,
            jobs,
            out: Caller(out),
            out_len,
            out_shape,
            present: Caller(present_out),
            present_len,
        };
        start(&queue.queue, token, move || read.run())
    })
}

/// Hand back finished reads, oldest first: up to `capacity` tokens into `tokens_out` and
/// their result codes (`ZarrsResult` values) into `codes_out`, their number into
/// `count_out`. Makes the queue's descriptor unreadable, unless finished reads are left
/// (more than `capacity`): then it stays readable, and a further call returns them.
///
/// A failed token's message is taken with [`zarrs_completion_queue_take_error`].
///
/// Thread safety: safe from any thread; concurrent drains each get distinct tokens.
#[no_mangle]
pub extern "C" fn zarrs_completion_queue_drain(
    queue: *const ZarrsCompletionQueue,
    tokens_out: *mut u64,
    codes_out: *mut i32,
    capacity: usize,
    count_out: *mut usize,
) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live handle or NULL, per the contract.
        let queue = unsafe { args::handle(queue, "queue")? };
        args::require_out(count_out, "count_out")?;
        if capacity > 0 {
            args::require_out(tokens_out, "tokens_out")?;
            args::require_out(codes_out, "codes_out")?;
        }
        let taken = queue.queue.drain(capacity);
        let tokens: Vec<u64> = taken.iter().map(|(token, _)| *token).collect();
        let codes: Vec<i32> = taken.iter().map(|(_, code)| *code as i32).collect();
        // SAFETY: non-NULL when anything is written (capacity > 0, checked above), with
        // room for `capacity >= taken.len()` values each, per the contract.
        unsafe {
            if !taken.is_empty() {
                args::write_values(tokens_out, &tokens);
                args::write_values(codes_out, &codes);
            }
            args::write_out(count_out, taken.len())
        }
    })
}

/// Take the error of a drained token that failed: returns its result code and makes its
/// message (naming the chunk key, as [`zarrs_array_read_chunks`] does) this thread's last
/// error ([`zarrs_last_error`]). Each failed token's error can be taken once; a token with
/// no error waiting fails with `ZARRS_ERROR_INVALID_ARGUMENT`.
///
/// Thread safety: safe from any thread.
#[no_mangle]
pub extern "C" fn zarrs_completion_queue_take_error(queue: *const ZarrsCompletionQueue, token: u64) -> ZarrsResult {
    boundary(|| {
        // SAFETY: a live handle or NULL, per the contract.
        let queue = unsafe { args::handle(queue, "queue")? };
        Err(queue
            .queue
            .take_error(token)
            .unwrap_or_else(|| FfiError::invalid(format!("token {token} has no error waiting on this queue"))))
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    use super::{start, Queue};
    use crate::error::{FfiError, ZarrsResult};

    fn readable(queue: &Queue) -> bool {
        let mut poll = libc::pollfd { fd: queue.signal.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; zero timeout.
        unsafe { libc::poll(&mut poll, 1, 0) == 1 }
    }

    /// Drain until `n` tokens have arrived (waiting for the descriptor between drains).
    fn collect(queue: &Queue, n: usize, capacity: usize) -> Vec<(u64, ZarrsResult)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut all = Vec::new();
        while all.len() < n {
            assert!(Instant::now() < deadline, "only {} of {n} tokens arrived", all.len());
            if readable(queue) {
                let got = queue.drain(capacity);
                assert!(got.len() <= capacity);
                all.extend(got);
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        all
    }

    #[test]
    fn tokens_complete_in_the_order_their_reads_finish() {
        let queue = Arc::new(Queue::new().unwrap());
        assert!(!readable(&queue));
        // Token 1 is held until token 2 has finished.
        let gate = Arc::new(Barrier::new(2));
        let held = gate.clone();
        start(&queue, 1, move || {
            held.wait();
            Ok(())
        })
        .unwrap();
        start(&queue, 2, || Ok(())).unwrap();
        assert_eq!(collect(&queue, 1, 8), vec![(2, ZarrsResult::ZARRS_SUCCESS)]);
        assert!(!readable(&queue), "drained: the descriptor must be quiet");
        gate.wait();
        assert_eq!(collect(&queue, 1, 8), vec![(1, ZarrsResult::ZARRS_SUCCESS)]);
    }

    #[test]
    fn each_failed_token_keeps_its_own_error_and_a_panic_is_an_error() {
        let queue = Arc::new(Queue::new().unwrap());
        for token in 0..6u64 {
            start(&queue, token, move || match token % 3 {
                0 => Ok(()),
                1 => Err(FfiError::new(ZarrsResult::ZARRS_ERROR_CODEC, format!("c/{token} in a.zarr: corrupt"))),
                _ => panic!("job {token}"),
            })
            .unwrap();
        }
        let mut done = collect(&queue, 6, 64);
        done.sort_by_key(|(token, _)| *token);
        let codes: Vec<_> = done.iter().map(|(_, code)| *code).collect();
        use ZarrsResult::*;
        assert_eq!(codes, [ZARRS_SUCCESS, ZARRS_ERROR_CODEC, ZARRS_ERROR_PANIC].repeat(2));
        for token in [1, 4] {
            let err = queue.take_error(token).unwrap();
            assert_eq!(err.message, format!("c/{token} in a.zarr: corrupt"));
            assert!(queue.take_error(token).is_none(), "an error is taken once");
        }
        for token in [2, 5] {
            let err = queue.take_error(token).unwrap();
            assert!(err.message.contains(&format!("job {token}")), "{}", err.message);
        }
        assert!(queue.take_error(0).is_none());
    }

    #[test]
    fn a_small_capacity_leaves_the_descriptor_readable_until_all_are_drained() {
        let queue = Arc::new(Queue::new().unwrap());
        for token in 0..10 {
            start(&queue, token, || Ok(())).unwrap();
        }
        let mut done: Vec<u64> = collect(&queue, 10, 3).into_iter().map(|(token, _)| token).collect();
        done.sort_unstable();
        assert_eq!(done, (0..10).collect::<Vec<_>>());
        assert!(!readable(&queue));
        assert!(queue.drain(3).is_empty());
    }

    #[test]
    fn a_queue_freed_while_a_read_is_in_flight_lives_until_it_finishes() {
        let queue = Arc::new(Queue::new().unwrap());
        let fd = queue.signal.fd();
        let release = Arc::new(AtomicBool::new(false));
        let held = release.clone();
        start(&queue, 7, move || {
            while !held.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        })
        .unwrap();
        let weak = Arc::downgrade(&queue);
        drop(queue); // the caller's handle is gone; the job still holds the queue
        let open = |fd| {
            // SAFETY: F_GETFD takes no pointer; it fails on a closed descriptor.
            unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
        };
        assert!(weak.upgrade().is_some() && open(fd));
        release.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(10);
        while weak.strong_count() > 0 {
            assert!(Instant::now() < deadline, "the queue outlived its last read");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl crate::registry::Handle for ZarrsCompletionQueue {
    const NAME: &'static str = "ZarrsCompletionQueue";
}
