//! The stop signal that wakes every data-plane thread blocked in this crate.
//!
//! File descriptors are non-blocking; a read that would block polls the descriptor together
//! with an eventfd. Triggering sets a flag (checked before every call, so busy threads stop
//! too) and makes the eventfd readable for good, so every poller wakes, now and later.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{eventfd, EventfdFlags, PollFd, PollFlags, Timespec};

use crate::Error;

/// A sticky, cloneable stop signal shared by the TUN queues and UDP sockets given it.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    triggered: AtomicBool,
    event: OwnedFd,
}

impl Shutdown {
    /// A new, untriggered signal.
    ///
    /// # Errors
    ///
    /// If the eventfd cannot be created.
    pub fn new() -> io::Result<Self> {
        let event = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Self(Arc::new(Inner { triggered: AtomicBool::new(false), event })))
    }

    /// Makes every current and future blocking call that uses this signal return
    /// [`Error::Shutdown`].
    pub fn trigger(&self) {
        self.0.triggered.store(true, Ordering::SeqCst);
        // This can only fail if the counter would overflow, and then the eventfd is readable
        // anyway.
        let _ = rustix::io::write(&self.0.event, &1u64.to_ne_bytes());
    }

    /// Whether [`Self::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.0.triggered.load(Ordering::Relaxed)
    }

    /// Runs the non-blocking `op` on `fd` until it does something other than `WouldBlock`,
    /// waiting for `events` (`POLLIN` or `POLLOUT`) or the signal in between.
    pub(crate) fn retry<T>(
        &self,
        fd: BorrowedFd<'_>,
        events: libc::c_short,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> Result<T, Error> {
        loop {
            if self.is_triggered() {
                return Err(Error::Shutdown);
            }
            match op() {
                Ok(value) => return Ok(value),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.wait(fd, events)?,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(Error::Io(err)),
            }
        }
    }

    /// Runs the non-blocking `op` once (again after `EINTR`): `Ok(None)` when it would block.
    pub(crate) fn try_once<T>(
        &self,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> Result<Option<T>, Error> {
        if self.is_triggered() {
            return Err(Error::Shutdown);
        }
        loop {
            match op() {
                Ok(value) => return Ok(Some(value)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(Error::Io(err)),
            }
        }
    }

    fn event_fd(&self) -> BorrowedFd<'_> {
        self.0.event.as_fd()
    }

    /// Blocks until `fd` reports `events` (or an error, left for the next call to return)
    /// or the signal is triggered.
    fn wait(&self, fd: BorrowedFd<'_>, events: libc::c_short) -> Result<(), Error> {
        // poll(2)'s event bits fit in 16 bits.
        let events = PollFlags::from_bits_truncate(events as u16);
        let mut fds = [PollFd::new(&fd, events), PollFd::new(&self.0.event, PollFlags::IN)];
        poll(&mut fds, None)?;
        if !fds[1].revents().is_empty() {
            return Err(Error::Shutdown);
        }
        Ok(())
    }
}

/// Which of the descriptors given to [`wait_readable`] are ready, by their index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready(u8);

impl Ready {
    /// Every one of the first `count` descriptors (at most eight).
    pub fn all(count: usize) -> Self {
        Self(u8::try_from((1u16 << count.min(8)) - 1).unwrap_or(u8::MAX))
    }

    /// Whether no descriptor is ready.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the descriptor at `index` is ready.
    pub fn contains(self, index: usize) -> bool {
        index < 8 && self.0 & (1 << index) != 0
    }
}

/// Waits until one of `fds` is readable (or reports an error, left for the next read to
/// return), one of `signals` is triggered, or `timeout` passes (`None`: no limit; zero: just
/// look). Returns which descriptors are ready: none when the timeout passed.
///
/// This is how one thread serves several descriptors (a TUN queue and its UDP sockets) with
/// the non-blocking `try_*` calls.
///
/// # Errors
///
/// [`Error::Shutdown`] when a signal is triggered (check which with
/// [`Shutdown::is_triggered`]); `EINVAL` if more than eight descriptors and signals are given.
pub fn wait_readable(
    fds: &[BorrowedFd<'_>],
    signals: &[&Shutdown],
    timeout: Option<Duration>,
) -> Result<Ready, Error> {
    const MAX: usize = 8;
    if fds.len() + signals.len() > MAX {
        return Err(Error::Io(io::Error::from_raw_os_error(libc::EINVAL)));
    }
    if signals.iter().any(|s| s.is_triggered()) {
        return Err(Error::Shutdown);
    }
    let mut watched = fds.iter().copied().chain(signals.iter().map(|s| s.event_fd()));
    let Some(first) = watched.next() else {
        return Err(Error::Io(io::Error::from_raw_os_error(libc::EINVAL)));
    };
    let mut polled = [(); MAX].map(|()| PollFd::from_borrowed_fd(first, PollFlags::IN));
    for (slot, fd) in polled.iter_mut().skip(1).zip(watched) {
        *slot = PollFd::from_borrowed_fd(fd, PollFlags::IN);
    }
    let count = fds.len() + signals.len();
    if poll(&mut polled[..count], timeout)? == 0 {
        return Ok(Ready::default());
    }
    if polled[fds.len()..count].iter().any(|p| !p.revents().is_empty()) {
        return Err(Error::Shutdown);
    }
    let ready = polled[..fds.len()].iter().enumerate().filter(|(_, p)| !p.revents().is_empty());
    Ok(Ready(ready.fold(0, |mask, (index, _)| mask | 1 << index)))
}

/// Polls `fds`, retrying on `EINTR`; `timeout` `None` waits for ever. Returns how many
/// descriptors have events (0 when the timeout passed).
fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    // ppoll(2) keeps nanoseconds: a lane's timed sleep must not be rounded to milliseconds.
    let timeout = match timeout.map(Timespec::try_from) {
        Some(Ok(timeout)) => Some(timeout),
        // Longer than `time_t` seconds: as good as for ever.
        Some(Err(_)) | None => None,
    };
    loop {
        match rustix::event::poll(fds, timeout.as_ref()) {
            Err(rustix::io::Errno::INTR) => continue,
            result => return result.map_err(io::Error::from),
        }
    }
}
