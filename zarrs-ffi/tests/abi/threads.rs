//! The last error, threads and the panic boundary.

use super::*;

#[test]
fn last_error_is_set_cleared_and_per_thread() {
    let mut size = 0usize;
    expect_err(zarrs_array_element_size(null(), &mut size), ZARRS_ERROR_NULL_POINTER, "array");
    let main_message = last_error();
    assert!(!main_message.is_empty());

    // Another thread sees none of it, and its own failure does not show here.
    std::thread::spawn(|| {
        assert_eq!(last_error(), "");
        let mut storage = null_mut();
        expect_err(zarrs_storage_open_filesystem(null(), 0, 0, 0, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "empty");
    })
    .join()
    .unwrap();
    assert_eq!(last_error(), main_message);

    // Two threads failing at the same time each keep their own message.
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            expect_err(zarrs_options_default(null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
            barrier.wait();
            barrier.wait();
            last_error()
        });
        let b = scope.spawn(|| {
            barrier.wait();
            let bad = b"\xff";
            let mut storage = null_mut();
            expect_err(zarrs_storage_open_filesystem(bad.as_ptr().cast(), 1, 0, 0, &mut storage), ZARRS_ERROR_INVALID_ARGUMENT, "UTF-8");
            barrier.wait();
            last_error()
        });
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a.contains("NULL") && !a.contains("UTF-8"), "{a}");
        assert!(b.contains("UTF-8"), "{b}");
    });

    // A success on this thread clears its message.
    let mut options = default_options();
    check(zarrs_options_default(&mut options));
    assert_eq!(last_error(), "");
}

/// An array handle shared with other threads, as a C program would share the pointer.
#[derive(Clone, Copy)]
struct Shared(*const ZarrsArray);
// SAFETY: the header documents that calls taking a `const ZarrsArray*` may run concurrently.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

#[test]
fn concurrent_calls_on_one_array() {
    let f = Fixture::zstd("concurrent");
    let shared = Shared(f.array.ptr());
    // Each thread writes and reads back its own row of chunks (disjoint chunks).
    std::thread::scope(|scope| {
        for row in 0..4u64 {
            scope.spawn(move || {
                let shared = shared;
                let start = [row * 16, 0];
                let data = grid([16, 48], |i, j| value(row * 16 + i, j));
                for _ in 0..5 {
                    check(zarrs_array_store_subset(shared.0, null(), start.as_ptr(), [16, 48].as_ptr(), 2, data.as_ptr().cast(), data.len() * ES));
                    let mut out = vec![SENTINEL; data.len()];
                    check(zarrs_array_retrieve_subset(shared.0, null(), start.as_ptr(), [16, 48].as_ptr(), 2, out.as_mut_ptr().cast(), out.len() * ES));
                    assert_eq!(out, data);
                }
            });
        }
    });
    assert_eq!(f.array.retrieve(&[0, 0], &[64, 48]), grid([64, 48], value));
}

#[test]
fn last_error_during_thread_teardown_does_not_abort() {
    use std::sync::atomic::AtomicBool;
    static RAN: AtomicBool = AtomicBool::new(false);

    struct CallsOnDrop;
    impl Drop for CallsOnDrop {
        fn drop(&mut self) {
            // Runs while the thread's locals are destroyed; the library's last-error slot,
            // registered after this one, is already gone.
            let code = zarrs_options_default(null_mut());
            assert_eq!(code, ZARRS_ERROR_NULL_POINTER);
            // SAFETY: the library returns a valid NUL-terminated string.
            let _ = unsafe { CStr::from_ptr(zarrs_last_error()) };
            RAN.store(true, Ordering::SeqCst);
        }
    }
    thread_local! {
        static GUARD: CallsOnDrop = const { CallsOnDrop };
    }
    std::thread::spawn(|| {
        GUARD.with(|_| {});
        // Touch the library's slot after ours, so it is destroyed first.
        expect_err(zarrs_options_default(null_mut()), ZARRS_ERROR_NULL_POINTER, "NULL");
    })
    .join()
    .unwrap();
    assert!(RAN.load(Ordering::SeqCst));
}

#[test]
fn a_panic_inside_an_export_becomes_zarrs_error_panic() {
    use zarrs_ffi::zarrs_test_panic;

    let message = "deliberate test panic: ümlaut";
    let code = zarrs_test_panic(message.as_ptr().cast(), message.len());
    expect_err(code, ZARRS_ERROR_PANIC, "internal panic in zarrs-ffi");
    assert!(last_error().ends_with(message), "the payload is kept: {}", last_error());
    // The thread is still usable, and its last error is its own.
    let other = std::thread::spawn(|| {
        expect_err(zarrs_test_panic(b"elsewhere".as_ptr().cast(), 9), ZARRS_ERROR_PANIC, "elsewhere");
        last_error()
    })
    .join()
    .unwrap();
    assert!(other.ends_with("elsewhere"));
    assert!(last_error().ends_with(message), "another thread's panic is not seen here");
    check(zarrs_options_default(&mut default_options()));
    // A bad argument before the panic: see null_arguments.
}
