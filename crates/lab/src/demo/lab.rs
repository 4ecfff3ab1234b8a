//! A [`Lab`]: a whole fabric brought up on this machine, one network namespace per host, each
//! running `wgfabricd` configured with exactly what `wgfabric render` produces.
//!
//! Building it from a [`Fabric`]:
//! 1. every host gets a fresh key pair (in memory; the private key reaches its daemon over the
//!    userspace API and is never written to a file), and the inventory copy
//!    gets the public keys and, for hosts with an endpoint, their underlay address;
//! 2. the underlay is wired ([`super::underlay`]): public hosts on the internet bridge, NATed
//!    hosts behind the office router, a stand-in host behind each subnet router;
//! 3. each host, relays first, starts `wgfabricd` on its own interface name (the API sockets
//!    share one directory machine-wide) and gets what the `setconf` form lists: its key and
//!    peers over the userspace API, addresses, MTU, the routes into the tunnel, forwarding;
//!    then it loads the host's firewall (the example's access policy) as the agent would.
//!
//! Dropping the lab stops the daemons and deletes every namespace, even while panicking;
//! [`Lab::keep`] leaves it all running instead.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand_core::{CryptoRng, RngCore};
use wgfabric_proto::keys::{PrivateKey, PublicKey};

use super::agent::{Agent, AgentFiles};
use super::daemon::Daemon;
use super::underlay::{gateway, Site, SubnetSite, Underlay};
use super::{now, Error};
use crate::netns::Netns;
use wgfabric_host::agent::initial_request;
use wgfabric_host::failover::LivePeer;
use wgfabric_host::netlink::Netlink;
use wgfabric_host::nftables;
use wgfabric_host::probe::Prober;
use wgfabric_model::cidr::Cidr;
use wgfabric_model::config::HostConfig;
use wgfabric_model::fabric::Fabric;
use wgfabric_model::inventory::Role;
use wgfabric_model::key_file::write_key_file;
use wgfabric_model::names::Name;
use wgfabric_model::policy::nft::Table;
use wgfabric_model::render::forwards;
use wgfabric_store::state::{DesiredState, PathStatus, Revision, Status, FORMAT};
use wgfabric_store::store::{DirStore, Kind, Store as _};
use wgfabric_uapi::Device;

/// Longest namespace prefix: it also starts every interface name (15 bytes at most).
const MAX_PREFIX: usize = 12;

/// Where and with what a lab runs.
#[derive(Debug, Clone)]
pub struct Settings {
    prefix: String,
    daemon: PathBuf,
    run_dir: PathBuf,
}

impl Settings {
    /// Namespaces are named `PREFIX-HOST`, interfaces `PREFIXN`, logs go to `/run/PREFIX/`,
    /// and `daemon` is the `wgfabricd` binary.
    ///
    /// # Errors
    /// [`Error::Setup`] unless the prefix is 1 to 12 lowercase letters and digits.
    pub fn new(prefix: &str, daemon: PathBuf) -> Result<Self, Error> {
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if prefix.is_empty() || prefix.len() > MAX_PREFIX || !prefix.chars().all(valid) {
            return Err(Error::Setup(format!(
                "prefix `{prefix}`: use 1 to {MAX_PREFIX} lowercase letters and digits"
            )));
        }
        Ok(Self { prefix: prefix.to_owned(), daemon, run_dir: run_dir(prefix) })
    }

    /// The namespace prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where logs and the lock file go.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }
}

/// The run directory of a prefix: `/run/PREFIX`.
pub(crate) fn run_dir(prefix: &str) -> PathBuf {
    Path::new("/run").join(prefix)
}

/// One host of the lab.
#[derive(Debug)]
pub struct LabHost {
    // Declared first so that the agent stops before the daemon, and both before the namespace.
    agent: Option<Agent>,
    daemon: Option<Daemon>,
    ns: Netns,
    config: HostConfig,
    site: Site,
    key: PrivateKey,
}

impl LabHost {
    /// The host's name.
    pub fn name(&self) -> &Name {
        &self.config.host
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.config.role
    }

    /// Its namespace.
    pub fn namespace(&self) -> &str {
        self.ns.name()
    }

    /// Its WireGuard interface.
    pub fn interface(&self) -> &str {
        &self.config.interface
    }

    /// Its configuration as rendered and applied (with the lab's interface name).
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Where it is plugged into the underlay.
    pub fn site(&self) -> Site {
        self.site
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        self.config.public_key
    }

    /// Whether `wgfabric agent` runs on it (see [`Lab::start_agents`]).
    pub fn has_agent(&self) -> bool {
        self.agent.is_some()
    }

    /// Whether it has a pair with another spoke that may go direct.
    fn may_go_direct(&self) -> bool {
        self.config
            .paths
            .as_ref()
            .is_some_and(|paths| paths.peers.iter().any(|p| p.never.is_none()))
    }

    /// Whether its daemon runs.
    pub fn is_running(&self) -> bool {
        self.daemon.as_ref().and_then(Daemon::pid).is_some()
    }

    /// A command that runs `program` in the host's namespace.
    pub fn command(&self, program: &str) -> Command {
        self.ns.command(program)
    }

    /// Runs `argv` in the host's namespace; its standard output.
    ///
    /// # Errors
    /// When the command fails.
    pub fn run(&self, argv: &[&str]) -> Result<String, Error> {
        Ok(self.ns.exec(argv)?)
    }

    /// The live state of its peers, from its daemon's userspace API.
    ///
    /// # Errors
    /// When the daemon does not answer (it is not running).
    pub fn peers(&self) -> Result<Vec<LivePeer>, Error> {
        let device = Device::new(self.interface()).get()?;
        Ok(device.peers.iter().map(LivePeer::from).collect())
    }

    /// Sends one echo request of `size` payload bytes to `addr` from the host's namespace,
    /// waiting up to 2 s; whether it was answered.
    pub fn ping(&self, addr: IpAddr, size: usize) -> bool {
        Prober::open(Some(self.namespace()), None, &[addr])
            .and_then(|prober| prober.with_payload(size).probe(Duration::from_secs(2)))
            .is_ok_and(|answered| answered == [true])
    }

    fn start(&mut self, settings: &Settings) -> Result<(), Error> {
        let log = settings.run_dir.join(format!("{}.log", self.config.host));
        self.daemon = Some(Daemon::start(&self.ns, &settings.daemon, self.interface(), &log)?);
        self.configure()
    }

    /// Applies the configuration the way the `setconf` form's comments say.
    fn configure(&self) -> Result<(), Error> {
        let config = &self.config;
        let iface = config.interface.as_str();
        Device::new(iface).set(&initial_request(config, &self.key))?;
        let mut netlink = Netlink::open_in(Some(self.namespace()))?;
        let index = netlink.link(iface)?.index;
        for address in &config.addresses {
            netlink.add_address(iface, index, *address)?;
        }
        netlink.set_link(iface, Some(config.mtu.into()), Some(true))?;
        let routes = config.tunnel_routes();
        if routes.iter().any(Cidr::is_default_route) {
            self.pin_endpoints()?;
        }
        for route in routes {
            let (family, destination) = match (route.is_default_route(), route.is_ipv4()) {
                (true, true) => ("-4", "default".to_owned()),
                (true, false) => ("-6", "default".to_owned()),
                (false, _) => (if route.is_ipv4() { "-4" } else { "-6" }, route.to_string()),
            };
            self.run(&["ip", family, "route", "replace", &destination, "dev", iface])?;
        }
        if forwards(config) {
            self.ns.sysctl("net.ipv4.ip_forward", "1")?;
            self.ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        if let Some(firewall) = &config.firewall {
            // What the agent loads: the whole table in one nft transaction.
            nftables::load_in(Some(self.namespace()), &Table::of(firewall).to_json())?;
        }
        Ok(())
    }

    /// A full-tunnel host's default route goes into the tunnel, so the peers' endpoints must
    /// stay on the underlay (what wg-quick does with policy routing, done with host routes).
    fn pin_endpoints(&self) -> Result<(), Error> {
        let Some(gateway) = gateway(self.site) else {
            // The endpoints are on-link: the connected route is more specific than default.
            return Ok(());
        };
        for peer in &self.config.peers {
            let Some(endpoint) = &peer.endpoint else { continue };
            if let Ok(addr) = endpoint.host().parse::<Ipv4Addr>() {
                let addr = addr.to_string();
                self.run(&["ip", "route", "replace", &addr, "via", &gateway.to_string()])?;
            }
        }
        Ok(())
    }
}

/// A subnet routed behind a host, with a stand-in host inside it.
#[derive(Debug)]
pub struct Subnet {
    site: SubnetSite,
    name: Name,
    cidr: Cidr,
    router: Name,
}

impl Subnet {
    /// The external network's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Its prefix.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// The host that routes it.
    pub fn router(&self) -> &Name {
        &self.router
    }

    /// The stand-in host's address.
    pub fn target(&self) -> IpAddr {
        self.site.target
    }

    /// The stand-in host's namespace.
    pub fn namespace(&self) -> &str {
        self.site.ns.name()
    }
}

/// Removes the run directory when dropped, unless kept.
#[derive(Debug)]
struct RunDir(Option<PathBuf>);

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fabric running in network namespaces; see the module documentation.
#[derive(Debug)]
pub struct Lab {
    // Dropped in this order: daemons and host namespaces, subnets, the underlay, the logs.
    hosts: Vec<LabHost>,
    subnets: Vec<Subnet>,
    underlay: Underlay,
    run_dir: RunDir,
    fabric: Fabric,
    settings: Settings,
}

impl Lab {
    /// Brings `fabric` up as described in the module documentation. `on_host` is told about
    /// each host once its daemon is configured.
    ///
    /// # Errors
    /// [`Error::Setup`] when a tool is missing or a daemon does not start, [`Error::Spawn`]
    /// or [`Error::File`] when it cannot be started or logged; [`Error::Command`] when a step
    /// fails. Whatever was built is torn down again.
    pub fn build<R: RngCore + CryptoRng>(
        fabric: &Fabric,
        settings: Settings,
        rng: &mut R,
        mut on_host: impl FnMut(&LabHost),
    ) -> Result<Self, Error> {
        let mut inventory = fabric.inventory().clone();
        let (mut public, mut private) = (0, 0);
        let mut plan = Vec::new();
        for host in inventory.hosts.values_mut() {
            let site = if host.nat && host.endpoint.is_none() {
                private += 1;
                Site::behind_nat(private - 1)?
            } else {
                public += 1;
                Site::public(public - 1)?
            };
            let key = PrivateKey::generate(rng);
            host.public_key = key.public_key();
            if let Some(endpoint) = &host.endpoint {
                let moved = format!("{}:{}", site.address(), endpoint.port());
                host.endpoint = Some(moved.parse()?);
            }
            plan.push((site, key));
        }
        let fabric = Fabric::new(inventory, fabric.lock().clone())?;
        std::fs::create_dir_all(&settings.run_dir)
            .map_err(|cause| Error::File { path: settings.run_dir.clone(), cause })?;
        let run_dir = RunDir(Some(settings.run_dir.clone()));
        let mut underlay = Underlay::build(&settings.prefix, private > 0)?;
        let mut hosts = Vec::with_capacity(plan.len());
        for (index, (mut config, (site, key))) in fabric.host_configs().zip(plan).enumerate() {
            config.interface = format!("{}{index}", settings.prefix);
            if let Some(firewall) = &mut config.firewall {
                firewall.interface.clone_from(&config.interface);
            }
            let ns = Netns::create(&format!("{}-{}", settings.prefix, config.host))?;
            underlay.plug(&ns, site)?;
            hosts.push(LabHost { agent: None, daemon: None, ns, config, site, key });
        }
        let mut subnets = Vec::new();
        for external in fabric.inventory().externals.values() {
            let Some(router) = &external.host else { continue };
            let Some(host) = hosts.iter().find(|host| host.name() == router) else { continue };
            let device = format!("sub{}", subnets.len());
            let ns_name = format!("{}-{}", settings.prefix, external.name);
            subnets.push(Subnet {
                site: SubnetSite::build(&ns_name, &host.ns, &device, &external.cidr)?,
                name: external.name.clone(),
                cidr: external.cidr,
                router: router.clone(),
            });
        }
        let mut lab = Self { hosts, subnets, underlay, run_dir, fabric, settings };
        // Relays first: the others' first handshake (sent as soon as a keepalive is set)
        // must find them listening, or it is retried only 5 s later.
        let mut order: Vec<usize> = (0..lab.hosts.len()).collect();
        order.sort_by_key(|index| lab.hosts[*index].role() != Role::Relay);
        for index in order {
            lab.hosts[index].start(&lab.settings)?;
            on_host(&lab.hosts[index]);
        }
        Ok(lab)
    }

    /// The fabric as the lab runs it (its keys and underlay endpoints).
    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every host, in name order.
    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    /// The host named `name`.
    ///
    /// # Errors
    /// [`Error::NoSuchHost`] if there is none.
    pub fn host(&self, name: &str) -> Result<&LabHost, Error> {
        self.hosts
            .iter()
            .find(|host| host.name().as_str() == name)
            .ok_or_else(|| Error::NoSuchHost(name.to_owned()))
    }

    /// The routed subnets with their stand-in hosts.
    pub fn subnets(&self) -> &[Subnet] {
        &self.subnets
    }

    /// Kills `name`'s daemon with SIGKILL, as a crash would; returns when it was sent.
    ///
    /// # Errors
    /// [`Error::NoSuchHost`] if there is no such host.
    pub fn kill(&mut self, name: &str) -> Result<std::time::Instant, Error> {
        let index = self.index(name)?;
        let at = now();
        if let Some(daemon) = &mut self.hosts[index].daemon {
            daemon.kill();
        }
        Ok(at)
    }

    /// Starts `name`'s daemon again and reapplies its configuration.
    ///
    /// # Errors
    /// As [`Lab::build`].
    pub fn restart(&mut self, name: &str) -> Result<(), Error> {
        let index = self.index(name)?;
        let host = &mut self.hosts[index];
        if let Some(mut daemon) = host.daemon.take() {
            daemon.stop();
        }
        host.start(&self.settings)
    }

    /// The directory source the agents follow and report to.
    pub fn source(&self) -> PathBuf {
        self.settings.run_dir.join("source")
    }

    /// Starts `wgfabric agent` (`wgfabric` is the binary) on every spoke with a pair that
    /// may go direct, after writing its desired state (the configuration the lab applied) to
    /// [`Lab::source`] and its key to a 0600 file in the run directory. The agents run the
    /// direct paths and their hosts' relay failover. Returns the hosts, in name order.
    ///
    /// # Errors
    /// [`Error::File`] when a file cannot be written, [`Error::Spawn`] when an agent cannot
    /// be started.
    pub fn start_agents(&mut self, wgfabric: &Path) -> Result<Vec<Name>, Error> {
        let source = self.source();
        let desired = source.join(Kind::Desired.as_str());
        std::fs::create_dir_all(&desired)
            .map_err(|cause| Error::File { path: desired.clone(), cause })?;
        let store = DirStore::new(source.clone());
        let mut started = Vec::new();
        for host in self.hosts.iter_mut().filter(|host| host.may_go_direct()) {
            let name = host.config.host.clone();
            let key_file = self.settings.run_dir.join("keys").join(format!("{name}.key"));
            write_key_file(&key_file, &host.key).map_err(|error| Error::File {
                path: key_file.clone(),
                cause: std::io::Error::other(error.to_string()),
            })?;
            let doc = DesiredState {
                format: FORMAT,
                revision: Revision::new("demo"),
                commit: None,
                config: host.config.clone(),
                sealed_private_key: None,
                preshared_keys: BTreeMap::new(),
                rotations: Vec::new(),
            };
            store.put(Kind::Desired, &name, &doc.to_json()).map_err(|error| Error::File {
                path: desired.join(format!("{name}.json")),
                cause: std::io::Error::other(error.to_string()),
            })?;
            let log = self.settings.run_dir.join(format!("agent-{name}.log"));
            let files = AgentFiles { wgfabric, source: &source, key_file: &key_file, log: &log };
            host.agent = Some(Agent::start(&host.ns, &name, &host.config.interface, files)?);
            started.push(name);
        }
        Ok(started)
    }

    /// What `name`'s agent last reported of its paths to the other spokes; empty without an
    /// agent or before its first status.
    pub fn reported_paths(&self, name: &Name) -> Vec<PathStatus> {
        let status = DirStore::new(self.source()).get(Kind::Status, name).ok().flatten();
        status.and_then(|bytes| Status::from_json(&bytes).ok()).map_or_else(Vec::new, |s| s.paths)
    }

    fn index(&self, name: &str) -> Result<usize, Error> {
        self.hosts
            .iter()
            .position(|host| host.name().as_str() == name)
            .ok_or_else(|| Error::NoSuchHost(name.to_owned()))
    }

    /// Leaves everything running: namespaces, daemons and logs stay until
    /// `wgfabric demo --clean` (or [`super::clean`]).
    pub fn keep(self) -> Kept {
        let Self { hosts, subnets, underlay, mut run_dir, settings, .. } = self;
        let mut kept = Kept {
            hosts: Vec::new(),
            namespaces: Vec::new(),
            run_dir: run_dir.0.take().unwrap_or_else(|| settings.run_dir.clone()),
        };
        for host in hosts {
            if let Some(agent) = host.agent {
                agent.keep();
            }
            if let Some(daemon) = host.daemon {
                daemon.keep();
            }
            kept.hosts.push(KeptHost {
                name: host.config.host,
                role: host.config.role,
                namespace: host.ns.keep(),
                interface: host.config.interface,
            });
        }
        kept.namespaces.extend(subnets.into_iter().map(|subnet| subnet.site.ns.keep()));
        kept.namespaces.push(underlay.internet.keep());
        kept.namespaces.extend(underlay.nat.map(Netns::keep));
        kept
    }
}

/// What a kept lab left running.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The hosts.
    pub hosts: Vec<KeptHost>,
    /// The other namespaces (subnets, internet, NAT router).
    pub namespaces: Vec<String>,
    /// Where the daemons' logs are.
    pub run_dir: PathBuf,
}

/// A host left running.
#[derive(Debug, Clone)]
pub struct KeptHost {
    /// Its name.
    pub name: Name,
    /// Its role.
    pub role: Role,
    /// Its namespace.
    pub namespace: String,
    /// Its WireGuard interface.
    pub interface: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_leave_room_for_interface_numbers() {
        let daemon = PathBuf::from("/usr/sbin/wgfabricd");
        let settings = Settings::new("wgfdemo", daemon.clone()).unwrap();
        assert_eq!(settings.run_dir(), Path::new("/run/wgfdemo"));
        for bad in ["", "WGF", "wgf-demo", "a23456789abcd", "../x"] {
            assert!(Settings::new(bad, daemon.clone()).is_err(), "{bad:?}");
        }
        assert!(Settings::new("a23456789abc", daemon).is_ok());
    }
}
