//! libc's `-1 and errno` convention turned into `io::Result`, and errors prefixed with the
//! operation that failed.

use std::io;

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
