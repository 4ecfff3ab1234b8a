//! Thin wrappers that turn libc's `-1 and errno` convention into `io::Result`, and the socket
//! option and poll calls shared by the TUN and UDP code.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Returns the errno of a failed call, or the call's result.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`] for calls that return a byte count.
pub(crate) fn cvt_len(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// Prefixes an error with the operation that failed, keeping its kind.
pub(crate) fn context(what: &str) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |err| io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Sets an integer socket option.
pub(crate) fn set_int_opt(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the pointer and length describe `value`, which outlives the call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(ret).map(drop)
}

/// Reads an integer socket option.
pub(crate) fn get_int_opt(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the pointers describe `value` and `len`, which outlive the call.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    cvt(ret).map(|_| value)
}

/// Polls `fds`, retrying on `EINTR`, without a timeout.
pub(crate) fn poll(fds: &mut [libc::pollfd]) -> io::Result<()> {
    loop {
        // SAFETY: the pointer and count describe the `fds` slice, borrowed for the call.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        match cvt(ret) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            result => return result.map(drop),
        }
    }
}

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

/// Pins the calling thread to the `index`-th CPU it is allowed to run on (wrapping around),
/// and returns that CPU's number.
///
/// # Errors
///
/// The failing `sched_getaffinity`/`sched_setaffinity` call's error.
pub fn pin_current_thread(index: usize) -> io::Result<usize> {
    // SAFETY: cpu_set_t is a plain bit array, valid when all-zero.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer and size describe `allowed`, which outlives the call.
    cvt(unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed) })?;
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads bit `cpu` of `allowed`, below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &allowed) })
        .collect();
    let cpu = *cpus.get(index % cpus.len().max(1)).ok_or(io::ErrorKind::NotFound)?;
    // SAFETY: as above, an all-zero cpu_set_t is valid.
    let mut only: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes bit `cpu` of `only`, below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut only) };
    // SAFETY: the pointer and size describe `only`, which outlives the call.
    cvt(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &only) })?;
    Ok(cpu)
}
