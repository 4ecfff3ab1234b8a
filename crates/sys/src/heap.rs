//! Giving freed heap memory back to the kernel.

/// Returns free heap memory to the kernel (glibc's `malloc_trim`); a no-op elsewhere.
///
/// A large configuration change (thousands of peers through one `set`) leaves many small
/// freed buffers scattered through the heap, which glibc keeps mapped; trimming releases their
/// pages so the daemon's resident memory reflects what it actually holds.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointer is passed.
    unsafe {
        libc::malloc_trim(0);
    }
}
