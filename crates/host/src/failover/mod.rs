//! Relay failover: a host that reaches the fabric through relays keeps working when its
//! active relay dies, whether it runs wgfabricd, wireguard-go or the kernel module.
//!
//! ```text
//!  every interval:  ICMP echo to each relay's overlay ──┐   (through the tunnel: the
//!                   address, from this process          │    address is that relay's peer)
//!                   userspace API `get`: rx counters ───┤
//!                                                       ▼
//!                   Monitor::handle_round(alive per relay) ──► Option<Switch>
//!                                                       │
//!                   userspace API `set`: peer NEXT allowed IPs …, peer OLD allowed IPs …
//! ```
//!
//! The decision is pure ([`Monitor`]); [`watch`] is the loop around it that probes
//! ([`crate::probe`]), reads the device and applies switches through its userspace API
//! ([`wgfabric_uapi::Device`]): no `ping`, no `wg`. The rules, with the defaults of [`Policy`]:
//!
//! - A relay is *alive* in a round if it answered the probe or its peer's received bytes grew
//!   since the previous round (so one lost probe under load does not count against it).
//! - The active relay is *down* after [`Policy::down_after`] (3) consecutive dead rounds.
//!   The failover routes then move to the first relay of the fabric-wide relay order that
//!   was alive in the last round. If none was, nothing moves.
//! - Fail-back: a relay earlier in the order than the active one takes the routes back once
//!   it has been alive for [`Policy::up_after`] (5) consecutive rounds. Every host of a
//!   network shares the relay order, so they converge on the same relay, and returning to
//!   the preferred one restores the placement the inventory chose (nearest relay, capacity).
//!   Set [`Policy::fail_back`] to false to stay put until the next failure instead.
//!
//! With a 1 s interval and a 1 s probe timeout, a dead relay is detected 3 to 4 s after it
//! dies, and traffic resumes as soon as the routes have moved: the standby relay already has a
//! session, kept up by the probes.
//!
//! Moving the failover routes changes only allowed IPs: the kernel routes into the interface
//! ([`HostConfig::tunnel_routes`]) are the same whichever relay is active, so nothing else
//! needs to change, for wg-quick, networkd or `wg setconf` hosts alike.

mod live;
mod watch;

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use wgfabric_proto::uapi::{AllowedIpChange, PeerUpdate, SetRequest};

pub use live::LivePeer;
pub use watch::{watch, Event, WatchError};

use wgfabric_model::config::{Failover, HostConfig};
use wgfabric_model::names::Name;

/// How eagerly a host moves between relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Time between probe rounds (default 1 s).
    pub interval: Duration,
    /// How long a probe round waits for its answers (default 1 s).
    pub timeout: Duration,
    /// Consecutive dead rounds after which the active relay is down (default 3).
    pub down_after: u32,
    /// Consecutive alive rounds after which a preferred relay takes the routes back
    /// (default 5).
    pub up_after: u32,
    /// Whether to move back to a preferred relay when it returns (default true).
    pub fail_back: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            down_after: 3,
            up_after: 5,
            fail_back: true,
        }
    }
}

/// Why the routes moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The active relay stopped answering.
    Failover,
    /// A preferred relay is back.
    FailBack,
}

impl Reason {
    /// A word for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::FailBack => "fail-back",
        }
    }
}

/// A decision to move the failover routes from one relay to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The relay that carried the routes.
    pub from: Name,
    /// The relay that carries them now.
    pub to: Name,
    /// Why.
    pub reason: Reason,
    /// The host's configuration with the routes on `to`.
    pub config: HostConfig,
}

impl Switch {
    /// The one userspace API request that applies the switch: the new relay's peer first,
    /// so that the routes move to it in the same request rather than disappearing in between
    /// (an allowed IP given to one peer is taken from any other).
    pub fn set_request(&self) -> SetRequest {
        let peers = [&self.to, &self.from]
            .into_iter()
            .filter_map(|name| self.config.peer(name.as_str()))
            .map(|peer| {
                let mut update = PeerUpdate::new(peer.public_key);
                update.update_only = true;
                update.replace_allowed_ips = true;
                update.allowed_ips = peer
                    .allowed_ips
                    .iter()
                    .map(|&cidr| AllowedIpChange::Add(cidr.into()))
                    .collect();
                update
            })
            .collect();
        SetRequest { peers, ..SetRequest::default() }
    }
}

/// One relay's health as the monitor has seen it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Health {
    relay: Name,
    probe: IpAddr,
    alive: Option<bool>,
    streak: u32,
}

/// The failover state of one host: which relay is active, and each relay's recent health.
#[derive(Debug, Clone)]
pub struct Monitor {
    config: HostConfig,
    policy: Policy,
    relays: Vec<Health>,
}

/// The host cannot fail over: it is a relay, a full-mesh member, or has a single relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host `{0}` has no relay to fail over to (it is a relay, a mesh member, or has one relay)")]
pub struct NoFailover(pub String);

impl Monitor {
    /// A monitor starting from `config` (normally the rendered one, whose active relay is the
    /// first of the order).
    ///
    /// # Errors
    /// [`NoFailover`] if the host has fewer than two relays with an overlay address to probe.
    pub fn new(config: HostConfig, policy: Policy) -> Result<Self, NoFailover> {
        let no_failover = || NoFailover(config.host.to_string());
        let failover: &Failover = config.failover.as_ref().ok_or_else(no_failover)?;
        let relays: Vec<Health> = failover
            .relays
            .iter()
            .filter_map(|relay| {
                let probe = config
                    .peer(relay.as_str())?
                    .allowed_ips
                    .iter()
                    .find(|cidr| cidr.is_host() && !failover.routes.contains(cidr))?;
                Some(Health { relay: relay.clone(), probe: probe.addr(), alive: None, streak: 0 })
            })
            .collect();
        if relays.len() < 2 {
            return Err(no_failover());
        }
        Ok(Self { config, policy, relays })
    }

    /// The host's configuration as last switched.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The relay carrying the failover routes.
    pub fn active(&self) -> &Name {
        // `new` checked that `failover` is set, and switches keep it set.
        &self.config.failover.as_ref().expect("a monitored host has failover").active
    }

    /// The relays in order with the overlay address to probe each through the tunnel.
    pub fn probes(&self) -> impl Iterator<Item = (&Name, IpAddr)> {
        self.relays.iter().map(|health| (&health.relay, health.probe))
    }

    /// Takes one round of observations (`alive` per relay, in [`Monitor::probes`] order;
    /// relays missing from it count as dead) and decides whether to move the routes. The
    /// returned switch is already applied to [`Monitor::config`]; the caller applies it to
    /// the device.
    #[must_use]
    pub fn handle_round(&mut self, alive: &[bool]) -> Option<Switch> {
        for (index, health) in self.relays.iter_mut().enumerate() {
            let now = alive.get(index).copied().unwrap_or(false);
            health.streak = if health.alive == Some(now) { health.streak + 1 } else { 1 };
            health.alive = Some(now);
        }
        let active = self.relays.iter().position(|health| health.relay == *self.active())?;
        let current = &self.relays[active];
        let target = if current.alive == Some(false) && current.streak >= self.policy.down_after {
            self.relays
                .iter()
                .find(|health| health.alive == Some(true))
                .map(|h| (h, Reason::Failover))
        } else if self.policy.fail_back {
            self.relays[..active]
                .iter()
                .find(|health| health.alive == Some(true) && health.streak >= self.policy.up_after)
                .map(|h| (h, Reason::FailBack))
        } else {
            None
        };
        let (to, reason) = target.map(|(health, reason)| (health.relay.clone(), reason))?;
        let config = self.config.with_active_relay(to.as_str())?;
        let from = core::mem::replace(&mut self.config, config).failover?.active;
        Some(Switch { from, to, reason, config: self.config.clone() })
    }
}

#[cfg(test)]
mod tests;
