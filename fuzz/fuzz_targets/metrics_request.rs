#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgfabric_fuzz::metrics_request::run(data));

/// The server answers each connection on a thread of its own, which may still be starting or
/// exiting when LeakSanitizer looks (after an input, or at the end of the run): glibc's record
/// of that thread's thread-local destructors, and what `std::thread` allocated to start it
/// (its handle, name and closure, all under `spawn_unchecked`), then look leaked. Nothing the
/// server allocates while answering is suppressed.
#[no_mangle]
pub extern "C" fn __lsan_default_suppressions() -> *const std::ffi::c_char {
    c"leak:__cxa_thread_atexit_impl\nleak:std::thread::lifecycle::spawn_unchecked\n".as_ptr()
}
