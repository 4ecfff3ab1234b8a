//! Limits for servers whose clients may be slow or hostile: a deadline for each exchange, and
//! a bounded number of open connections in which a newcomer displaces the client that has
//! waited longest. [`crate::http::MetricsServer`] and wgfabricd's userspace API socket both
//! use them.
//!
//! A timeout per read is no defence against a slow client: a byte every few seconds renews
//! it forever, and a few hundred such connections hold every thread or descriptor of a server
//! that reads them one at a time or one thread each (the "slow loris"). Hence:
//!
//! - [`Timed`] gives a whole exchange (sending a request, or taking an answer) one deadline:
//!   before each system call the socket's timeout is set to the time that is left, and past
//!   the deadline every call fails with [`io::ErrorKind::TimedOut`].
//! - [`Connections`] admits at most its capacity. When it is full, admitting one more shuts
//!   down the oldest connection still [`Phase::Waiting`] for its request, or else the oldest
//!   [`Phase::Answering`]; shutting a socket down wakes the thread blocked on it at once. A
//!   real client needs its connection for milliseconds, so the ones displaced are those that
//!   have held theirs longest without finishing a request. Only when every connection is
//!   [`Phase::Working`] (its answer being computed, which a shutdown would not stop) is the
//!   newcomer refused, and such work ends on its own. A displaced connection reads as if its
//!   client had ended its input; [`Ticket::is_interrupted`] tells the two apart, so that a
//!   request cut short is not taken for a whole one.
//!
//! So a server may serve each connection on a thread of its own: the threads stay bounded by
//! the capacity, and a flood of idle or trickling connections cannot lock anyone out.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A connected stream socket that can wait with a timeout and be shut down from another
/// thread: [`TcpStream`] and [`UnixStream`].
pub trait Socket: Send + Sync + 'static {
    /// Reads into `buf`, waiting at most `timeout` (more than zero) for data.
    ///
    /// # Errors
    /// [`io::ErrorKind::TimedOut`] when nothing came in time; any error of the socket.
    fn read_within(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;

    /// Writes some of `buf`, waiting at most `timeout` (more than zero) for room.
    ///
    /// # Errors
    /// [`io::ErrorKind::TimedOut`] when there was no room in time; any error of the socket.
    fn write_within(&self, buf: &[u8], timeout: Duration) -> io::Result<usize>;

    /// Shuts both directions down: a thread blocked reading or writing returns at once.
    fn interrupt(&self);
}

macro_rules! socket {
    ($type:ty) => {
        impl Socket for $type {
            fn read_within(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
                self.set_read_timeout(Some(timeout))?;
                timed_out(Read::read(&mut &*self, buf))
            }

            fn write_within(&self, buf: &[u8], timeout: Duration) -> io::Result<usize> {
                self.set_write_timeout(Some(timeout))?;
                timed_out(Write::write(&mut &*self, buf))
            }

            fn interrupt(&self) {
                // Fails only when the peer is gone already, which is as good.
                let _ = self.shutdown(Shutdown::Both);
            }
        }
    };
}

socket!(TcpStream);
socket!(UnixStream);

/// A socket timeout shows as `WouldBlock` on Unix; call it what it is.
fn timed_out(result: io::Result<usize>) -> io::Result<usize> {
    result.map_err(|error| match error.kind() {
        io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
        _ => error,
    })
}

/// A socket read and written against one deadline, however the bytes trickle: `&Timed` is
/// [`Read`] and [`Write`], so one reader and one writer can share it on a thread.
pub struct Timed<'a, S: ?Sized> {
    socket: &'a S,
    deadline: Cell<Instant>,
}

impl<'a, S: Socket + ?Sized> Timed<'a, S> {
    /// `socket`, with `budget` from now for what comes next.
    pub fn new(socket: &'a S, budget: Duration) -> Self {
        Self { socket, deadline: Cell::new(Instant::now() + budget) }
    }

    /// Starts a new exchange: `budget` from now.
    pub fn restart(&self, budget: Duration) {
        self.deadline.set(Instant::now() + budget);
    }

    /// The time left, or [`io::ErrorKind::TimedOut`] once there is none.
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.get().saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

impl<S: Socket + ?Sized> Read for &Timed<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.read_within(buf, self.left()?)
    }
}

impl<S: Socket + ?Sized> Write for &Timed<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.write_within(buf, self.left()?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: ?Sized> fmt::Debug for Timed<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timed").field("deadline", &self.deadline.get()).finish_non_exhaustive()
    }
}

/// Where a connection is in its exchange, which decides whether a newcomer may displace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected, or sending its request: displaced first, oldest first.
    Waiting,
    /// Its answer is being computed: never displaced.
    Working,
    /// Taking its answer: displaced when no connection is waiting, oldest first.
    Answering,
}

/// The open connections of one server, at most `capacity` of them. Cheap to clone.
#[derive(Clone)]
pub struct Connections(Arc<Shared>);

struct Shared {
    capacity: usize,
    table: Mutex<Table>,
    /// Signalled when the last ticket is dropped.
    idle: Condvar,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// The admitted connections, oldest first.
    open: Vec<Open>,
    /// Tickets alive, displaced connections included: threads still serving.
    tickets: usize,
}

struct Open {
    id: u64,
    phase: Phase,
    socket: Arc<dyn Socket>,
}

impl Connections {
    /// Room for `capacity` connections (at least one).
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Shared {
            capacity: capacity.max(1),
            table: Mutex::new(Table::default()),
            idle: Condvar::new(),
        }))
    }

    /// How many connections it admits at once.
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// How many connections are admitted and not displaced.
    pub fn open(&self) -> usize {
        self.0.lock().open.len()
    }

    /// Admits `socket` in [`Phase::Waiting`], displacing another connection if it is full
    /// (see the [module](self) documentation). The connection stays admitted until the
    /// ticket is dropped or it is displaced.
    ///
    /// `None` when every admitted connection is [`Phase::Working`]: close `socket` then.
    pub fn admit<S: Socket>(&self, socket: &Arc<S>) -> Option<Ticket> {
        let mut table = self.0.lock();
        if table.open.len() >= self.0.capacity {
            let oldest = |phase| table.open.iter().position(|open| open.phase == phase);
            let victim = oldest(Phase::Waiting).or_else(|| oldest(Phase::Answering))?;
            table.open.remove(victim).socket.interrupt();
        }
        let id = table.next_id;
        table.next_id += 1;
        table.tickets += 1;
        let socket: Arc<dyn Socket> = Arc::clone(socket) as _;
        table.open.push(Open { id, phase: Phase::Waiting, socket });
        Some(Ticket { connections: Arc::clone(&self.0), id })
    }

    /// Shuts every admitted connection down, as a server does when it stops: their threads
    /// return at once unless they are working on an answer.
    pub fn interrupt_all(&self) {
        for open in self.0.lock().open.drain(..) {
            open.socket.interrupt();
        }
    }

    /// Waits up to `timeout` for every ticket to be dropped; whether they were.
    pub fn wait_all_closed(&self, timeout: Duration) -> bool {
        let table = self.0.lock();
        let (table, _) = self
            .0
            .idle
            .wait_timeout_while(table, timeout, |table| table.tickets > 0)
            .unwrap_or_else(PoisonError::into_inner);
        table.tickets == 0
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table is consistent between statements: a panic elsewhere cannot tear it.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.0.lock();
        f.debug_struct("Connections")
            .field("capacity", &self.0.capacity)
            .field("open", &table.open.len())
            .field("tickets", &table.tickets)
            .finish()
    }
}

/// One admitted connection; dropping it makes room for another.
pub struct Ticket {
    connections: Arc<Shared>,
    id: u64,
}

impl Ticket {
    /// Records where the connection is in its exchange.
    pub fn set_phase(&self, phase: Phase) {
        let mut table = self.connections.lock();
        if let Some(open) = table.open.iter_mut().find(|open| open.id == self.id) {
            open.phase = phase;
        }
    }

    /// Whether the connection was shut down, to make room or because the server stops. Its
    /// socket then reads as if the client had ended its input, which a server must not take
    /// for the end of a request.
    pub fn is_interrupted(&self) -> bool {
        !self.connections.lock().open.iter().any(|open| open.id == self.id)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.connections.lock();
        table.open.retain(|open| open.id != self.id);
        table.tickets -= 1;
        if table.tickets == 0 {
            self.connections.idle.notify_all();
        }
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};

    use super::*;

    /// A connected pair over loopback: (the server's end, the client's end).
    fn pair(listener: &TcpListener) -> (Arc<TcpStream>, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Arc::new(server), client)
    }

    /// Whether the server closed its end: the client reads end of input (or a reset).
    fn closed(client: &TcpStream) -> bool {
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        matches!(Read::read(&mut &*client, &mut [0u8; 1]), Ok(0) | Err(_))
    }

    #[test]
    fn the_oldest_waiting_connection_makes_room_then_the_oldest_answering() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let connections = Connections::new(3);
        let (a, a_client) = pair(&listener);
        let (b, b_client) = pair(&listener);
        let (c, c_client) = pair(&listener);
        let a_ticket = connections.admit(&a).unwrap();
        let b_ticket = connections.admit(&b).unwrap();
        let c_ticket = connections.admit(&c).unwrap();
        a_ticket.set_phase(Phase::Answering);
        b_ticket.set_phase(Phase::Working);
        assert_eq!(connections.open(), 3);

        // Full: c is the oldest waiting, though a and b are older.
        let (d, _d_client) = pair(&listener);
        let d_ticket = connections.admit(&d).unwrap();
        assert!(closed(&c_client));
        assert_eq!(connections.open(), 3);
        // No one waits now but d; then a, answering, goes before b, working.
        d_ticket.set_phase(Phase::Working);
        let (e, _e_client) = pair(&listener);
        let e_ticket = connections.admit(&e).unwrap();
        assert!(closed(&a_client));
        assert!(a_ticket.is_interrupted() && c_ticket.is_interrupted());
        assert!(!b_ticket.is_interrupted() && !d_ticket.is_interrupted());
        // Everyone else works: the newcomer is refused and nobody is displaced.
        e_ticket.set_phase(Phase::Working);
        let (f, _f_client) = pair(&listener);
        assert!(connections.admit(&f).is_none());
        b_client.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let still_open = Read::read(&mut &b_client, &mut [0u8; 1]).unwrap_err();
        assert_eq!(still_open.kind(), io::ErrorKind::WouldBlock);

        // Displaced connections' tickets still count until their threads let go.
        drop((b_ticket, d_ticket, e_ticket));
        assert_eq!(connections.open(), 0);
        assert!(!connections.wait_all_closed(Duration::from_millis(10)));
        drop((a_ticket, c_ticket));
        assert!(connections.wait_all_closed(Duration::ZERO));
    }

    #[test]
    fn interrupting_wakes_a_blocked_reader() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let connections = Connections::new(4);
        let (server, _client) = pair(&listener);
        let ticket = connections.admit(&server).unwrap();
        let reader = std::thread::spawn(move || {
            let timed = Timed::new(&*server, Duration::from_secs(30));
            let read = (&timed).read(&mut [0u8; 16]);
            (read, ticket.is_interrupted())
        });
        // Whether the reader blocks before or after this, it sees end of input, and knows
        // that it was not the client's.
        connections.interrupt_all();
        assert!(connections.wait_all_closed(Duration::from_secs(10)));
        let (read, interrupted) = reader.join().unwrap();
        assert_eq!(read.unwrap(), 0);
        assert!(interrupted);
    }

    #[test]
    fn a_deadline_is_not_renewed_by_each_byte() {
        use std::sync::atomic::{AtomicBool, Ordering};

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let (server, mut client) = pair(&listener);
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = {
            let stop = Arc::clone(&stop);
            // A byte every 20 ms: a timeout per read of 300 ms would never expire.
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && client.write_all(b"x").is_ok() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let started = Instant::now();
        let timed = Timed::new(&*server, Duration::from_millis(300));
        let mut reader = &timed;
        let mut read = 0;
        let error = loop {
            match reader.read(&mut [0u8; 64]) {
                Ok(n) => read += n,
                Err(error) => break error,
            }
        };
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        trickle.join().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(read > 0, "nothing trickled in");
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
        // A new exchange gets a new deadline.
        timed.restart(Duration::from_secs(5));
        assert!(timed.left().is_ok());
    }
}
