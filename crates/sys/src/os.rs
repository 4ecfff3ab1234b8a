//! Thin wrappers that turn libc's `-1 and errno` convention into `io::Result`, and the socket
//! option and poll calls shared by the TUN and UDP code.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

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

/// Polls `fds`, retrying on `EINTR`; `timeout` `None` waits for ever. Returns how many
/// descriptors have events (0 when the timeout passed).
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    // Rounded up, so that a short positive timeout still waits.
    let millis = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
    });
    loop {
        // SAFETY: the pointer and count describe the `fds` slice, borrowed for the call.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        match cvt(ret) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            result => return result.map(|n| n as usize),
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

/// Moves the calling thread to `SCHED_IDLE` (`idle`) or back to the normal policy.
///
/// A thread under `SCHED_IDLE` runs only when its CPU has nothing else to do, and any other
/// thread woken there preempts it at once: the way to poll without taking time from work.
///
/// # Errors
///
/// The failing `sched_setscheduler` call's error: leaving `SCHED_IDLE` needs `CAP_SYS_NICE`
/// (or an `RLIMIT_NICE` that allows nice 0), so check [`idle_policy_is_reversible`] first.
pub fn set_idle_policy(idle: bool) -> io::Result<()> {
    let policy = if idle { libc::SCHED_IDLE } else { libc::SCHED_OTHER };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the pointer describes `param`, which outlives the call; pid 0 is this thread.
    cvt(unsafe { libc::sched_setscheduler(0, policy, &param) }).map(drop)
}

/// Whether this process may move a thread to `SCHED_IDLE` and back, tried on a throwaway
/// thread so that a one-way trip strands nothing.
pub fn idle_policy_is_reversible() -> bool {
    std::thread::scope(|scope| {
        scope
            .spawn(|| set_idle_policy(true).and_then(|()| set_idle_policy(false)).is_ok())
            .join()
            .unwrap_or(false)
    })
}
