//! The data path: threads that pump packets between the TUN device, the UDP sockets and the
//! protocol core.
//!
//! ```text
//!  lane (one per core: a TUN queue and a pair of UDP sockets each), running each packet
//!  to completion:
//!    TUN frame ─► segment superframe ─► route + claim session (lock)
//!                 ─► seal (no lock) ─► one GSO send per peer
//!    UDP batch ─► look up sessions (lock) ─► open (no lock) ─► judge (lock)
//!                 ─► coalesce ─► TUN write
//!              └─► handshake messages ─► admission gate (mac1, budgets; cookie replies)
//!                  ─► handshake queues (proven senders first) ─► handshake thread (lock, DH)
//!  timer thread: handle_timeout (lock) at each deadline; MTU and wall clock refresh
//! ```
//!
//! One mutex guards the protocol core's [`Device`]; it is held for bookkeeping only, never for
//! cryptography on the data path or for system calls. Datagrams the device produces itself
//! (handshakes, keepalives, cookie replies, packets queued during a handshake) are collected
//! while the lock is held and sent after it is released.

mod control;
mod events;
mod gather;
mod handshakes;
mod inbound;
mod lane;
mod outbound;
mod poll;
mod send;
mod timers;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use rand_core::{OsRng, RngCore as _};
use wgfabric_proto::admission::Admission;
use wgfabric_proto::{Device, Stats, Transmit};
use wgfabric_sys::{Cpus, Tun, TunConfig, UdpSockets};

use crate::cli::{Gather, Threads};
use crate::driver::Driver;
use crate::shutdown::{Reason, Shutdown};
use events::Logged;
use gather::Home;
use handshakes::{Gate, HandshakeQueue};

/// The MTU a fresh TUN device gets before `ip link set mtu` (wg-quick sets 1420).
const DEFAULT_TUN_MTU: u32 = 1420;

/// The protocol core and what belongs with it under one lock.
struct State {
    device: Device,
    /// The deadline the timer thread is sleeping towards; a new earlier one must wake it.
    timer_deadline: Option<Instant>,
    listen_port: u16,
    fwmark: u32,
}

/// The UDP sockets of one `listen_port`, with the signal that retires their reader threads
/// when the port changes.
struct Sockets {
    udp: UdpSockets,
    retire: wgfabric_sys::Shutdown,
}

/// What every thread shares.
struct Shared {
    state: Mutex<State>,
    timer_wake: Condvar,
    tun: Tun,
    sockets: RwLock<Arc<Sockets>>,
    mtu: AtomicUsize,
    /// Stops the TUN readers and the internal threads.
    io_shutdown: wgfabric_sys::Shutdown,
    daemon_shutdown: Shutdown,
    gate: Mutex<Gate>,
    handshakes: HandshakeQueue,
}

/// Datagrams and events produced while the device lock was held, to act on after release.
#[derive(Default)]
struct Outbox {
    transmits: Vec<Transmit>,
    events: Vec<Logged>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the device under the lock, then collects what it wants sent and logged, and
    /// wakes the timer thread if a deadline moved earlier.
    fn with_device<R>(&self, f: impl FnOnce(&mut Device) -> R) -> (R, Outbox) {
        let mut state = self.lock();
        let result = f(&mut state.device);
        let outbox = self.drain(&mut state);
        (result, outbox)
    }

    fn drain(&self, state: &mut State) -> Outbox {
        let mut outbox = Outbox::default();
        outbox.transmits.extend(std::iter::from_fn(|| state.device.poll_transmit()));
        while let Some(event) = state.device.poll_event() {
            outbox.events.push(Logged::new(&state.device, event));
        }
        let next = state.device.poll_timeout();
        if next.is_some_and(|n| state.timer_deadline.is_none_or(|d| n < d)) {
            self.timer_wake.notify_one();
        }
        outbox
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mtu(&self) -> usize {
        self.mtu.load(Ordering::Relaxed)
    }

    fn sockets(&self) -> Arc<Sockets> {
        Arc::clone(&self.sockets.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The running data path.
pub(crate) struct Datapath {
    shared: Arc<Shared>,
    interface: String,
    pin_cpus: bool,
    busy_poll: Duration,
    /// Where lanes with light traffic gather, if they do.
    home: Option<Home>,
    /// The lanes' nice value.
    lane_nice: i32,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Datapath {
    /// Creates the TUN device and the UDP sockets and starts every thread.
    pub(crate) fn start(
        interface: &str,
        threads: Threads,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Arc<Self>> {
        let io_shutdown = wgfabric_sys::Shutdown::new().context("creating the stop signal")?;
        let queues = threads
            .lanes
            .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN));
        let tun = Tun::create(
            &TunConfig { name: interface.to_owned(), queues, offload: true },
            &io_shutdown,
        )
        .with_context(|| format!("creating TUN device {interface}"))?;
        let offloads = tun.offloads();
        tracing::debug!(
            interface = tun.name(),
            queues = queues.get(),
            tso = offloads.tso,
            uso = offloads.uso,
            "TUN device ready"
        );
        if tun.mtu().is_ok_and(|mtu| mtu != DEFAULT_TUN_MTU) {
            // A fresh TUN device starts at 1500; WireGuard's overhead needs 80 bytes of it.
            let _ = tun.set_mtu(DEFAULT_TUN_MTU);
        }
        let mtu = tun.mtu().unwrap_or(DEFAULT_TUN_MTU) as usize;
        let sockets = bind_sockets(0, queues.get())?;

        let mut seed = [0u8; 32];
        OsRng.try_fill_bytes(&mut seed).map_err(|e| anyhow!("seeding the device: {e}"))?;
        let mut device = Device::new(seed, Instant::now(), since_epoch());
        OsRng.try_fill_bytes(&mut seed).map_err(|e| anyhow!("seeding the device: {e}"))?;
        let gate = Gate { admission: Admission::new(seed), stats: Stats::default() };
        device.set_mtu(mtu);
        let listen_port = sockets.udp.port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State { device, timer_deadline: None, listen_port, fwmark: 0 }),
            timer_wake: Condvar::new(),
            tun,
            sockets: RwLock::new(Arc::new(sockets)),
            mtu: AtomicUsize::new(mtu),
            io_shutdown,
            daemon_shutdown: shutdown.clone(),
            gate: Mutex::new(gate),
            handshakes: HandshakeQueue::default(),
        });
        let datapath = Arc::new(Self {
            interface: shared.tun.name().to_owned(),
            pin_cpus: threads.pin_cpus,
            busy_poll: usable_busy_poll(threads.busy_poll),
            home: home(threads.gather)?,
            lane_nice: usable_lane_nice(threads.lane_nice),
            shared,
            threads: Mutex::new(Vec::new()),
        });
        datapath.spawn_threads()?;
        Ok(datapath)
    }

    fn spawn(
        &self,
        name: String,
        body: impl FnOnce(Arc<Shared>) + Send + 'static,
    ) -> anyhow::Result<()> {
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || body(shared))
            .with_context(|| format!("starting thread {name}"))?;
        self.threads.lock().unwrap_or_else(PoisonError::into_inner).push(handle);
        Ok(())
    }

    fn spawn_threads(&self) -> anyhow::Result<()> {
        let (pin, busy_poll, nice) = (self.pin_cpus, self.busy_poll, self.lane_nice);
        for queue in 0..self.shared.tun.queues().len() {
            let home = self.home;
            self.spawn(format!("lane-{queue}"), move |shared| {
                if pin {
                    match wgfabric_sys::pin_current_thread(queue) {
                        Ok(cpu) => tracing::debug!(lane = queue, cpu, "lane pinned"),
                        Err(e) => tracing::warn!(lane = queue, error = %e, "pinning the lane to a CPU failed"),
                    }
                }
                if let Err(e) = wgfabric_sys::set_nice(nice) {
                    tracing::warn!(lane = queue, nice, error = %e, "setting the lane's nice value failed");
                }
                lane::run(&shared, queue, busy_poll, home);
            })?;
        }
        self.spawn("handshakes".into(), |shared| handshakes::run(&shared))?;
        self.spawn("timers".into(), |shared| timers::run(&shared))?;
        Ok(())
    }
}

/// The busy-poll window lanes can honour: none when this process may not return a thread
/// from `SCHED_IDLE` (no `CAP_SYS_NICE`), since lanes poll under it.
fn usable_busy_poll(requested: Duration) -> Duration {
    if requested.is_zero() || wgfabric_sys::idle_policy_is_reversible() {
        return requested;
    }
    tracing::info!("busy polling is off: it needs CAP_SYS_NICE to leave SCHED_IDLE");
    Duration::ZERO
}

/// The nice value lanes can take: 0 when this process may not go as low as `requested`
/// (no `CAP_SYS_NICE`).
fn usable_lane_nice(requested: i32) -> i32 {
    if requested >= 0 || wgfabric_sys::nice_is_allowed(requested) {
        return requested;
    }
    tracing::info!(requested, "lanes keep nice 0: a lower value needs CAP_SYS_NICE");
    0
}

/// Where lanes gather (`--gather`): nowhere when off, when the daemon may use one CPU only
/// (it is home already), or when it may not return a thread from `SCHED_IDLE`, which
/// gathered lanes run under.
///
/// # Errors
///
/// A CPU the daemon may not use.
fn home(gather: Gather) -> anyhow::Result<Option<Home>> {
    if gather == Gather::Off {
        return Ok(None);
    }
    let everywhere = Cpus::of_current_thread().context("reading the CPUs the daemon may use")?;
    let cpu = match gather {
        Gather::Cpu(cpu) if everywhere.contains(cpu) => cpu,
        Gather::Cpu(cpu) => {
            bail!("--gather {cpu}: this daemon may run on CPUs {everywhere:?} only; pick one of those, auto or off")
        }
        Gather::Auto | Gather::Off => match everywhere.first() {
            Some(cpu) => cpu,
            None => return Ok(None),
        },
    };
    if everywhere == Cpus::only(cpu) {
        return Ok(None);
    }
    if !wgfabric_sys::idle_policy_is_reversible() {
        tracing::info!("lanes do not gather: it needs CAP_SYS_NICE to leave SCHED_IDLE");
        return Ok(None);
    }
    Ok(Some(Home { cpu, everywhere }))
}

/// Binds the UDP sockets of every lane for `port` (0: any free port).
fn bind_sockets(port: u16, lanes: usize) -> anyhow::Result<Sockets> {
    let retire = wgfabric_sys::Shutdown::new().context("creating the socket stop signal")?;
    let udp = UdpSockets::bind_lanes(port, lanes, &retire)
        .with_context(|| format!("binding UDP port {port}"))?;
    Ok(Sockets { udp, retire })
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl Datapath {
    /// How many lanes run: one per TUN queue.
    fn lanes(&self) -> usize {
        self.shared.tun.queues().len()
    }
}

impl Driver for Datapath {
    fn interface_name(&self) -> &str {
        &self.interface
    }

    fn stop(&self) {
        self.shared.io_shutdown.trigger();
        self.shared.sockets().retire.trigger();
        self.shared.handshakes.close();
        // Notify under the lock, so the timer thread is either waiting or will see the flag.
        let state = self.shared.lock();
        self.shared.timer_wake.notify_all();
        drop(state);
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            let _ = thread.join();
        }
    }

    fn counters(&self) -> wgfabric_metrics::Counters {
        let turned_away = self.shared.gate().stats.clone();
        let mut counters = wgfabric_metrics::Counters::of(&self.shared.lock().device);
        counters.device.absorb(&turned_away);
        let (length, peak) = self.shared.handshakes.depth();
        counters.handshake_queue =
            Some(wgfabric_metrics::QueueDepth { length, peak, capacity: 2 * handshakes::CAPACITY });
        counters
    }
}

/// A data-path thread hit the end of the interface: take the daemon down.
fn interface_gone(shared: &Shared) {
    shared.daemon_shutdown.trigger(Reason::InterfaceGone);
}
