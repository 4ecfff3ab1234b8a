#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgfabric_fuzz::metrics_request::run(data));

/// The server answers each connection on a thread of its own, which may still be exiting
/// when LeakSanitizer looks (after an input, or at the end of the run): glibc's record of
/// that thread's thread-local destructors, and the thread's own handle and name (allocated
/// in `Thread::new`), then look leaked. Nothing else is suppressed.
#[no_mangle]
pub extern "C" fn __lsan_default_suppressions() -> *const std::ffi::c_char {
    c"leak:__cxa_thread_atexit_impl\nleak:thread::Thread>::new\n".as_ptr()
}
