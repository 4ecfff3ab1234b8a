//! Routes and policy routing rules.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::{Deserialize, Serialize};

use super::{absent_is_fine, libc_errno, Netlink, NetlinkError};
use wgfabric_model::cidr::Cidr;

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// What a route does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// Sends it out of an interface.
    Unicast {
        /// The interface's index.
        interface: u32,
    },
    /// Drops it with "network unreachable".
    Unreachable,
}

/// A route in a routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Route {
    /// The destination prefix.
    pub destination: Cidr,
    /// The table (`MAIN_TABLE`, or a policy routing table).
    pub table: u32,
    /// What it does.
    pub kind: RouteKind,
    /// Its metric (the kernel's default, 0 for IPv4 and 1024 for IPv6, when `None`).
    pub metric: Option<u32>,
}

impl Route {
    /// A route into the interface with index `interface` in the main table.
    pub fn via(destination: Cidr, interface: u32) -> Self {
        Self {
            destination,
            table: MAIN_TABLE,
            kind: RouteKind::Unicast { interface },
            metric: None,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Unicast { interface } => write!(f, "{} dev #{interface}", self.destination)?,
            RouteKind::Unreachable => write!(f, "unreachable {}", self.destination)?,
        }
        if self.table != MAIN_TABLE {
            write!(f, " table {}", self.table)?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        Ok(())
    }
}

/// A policy routing rule that sends packets to a table, as wg-quick adds for full tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// IPv4 (`true`) or IPv6.
    pub ipv4: bool,
    /// Its priority (the kernel picks one below the last rule when `None`).
    pub priority: Option<u32>,
    /// Matches packets with this firewall mark (or without it, with `invert`).
    pub fwmark: Option<u32>,
    /// Inverts the match (`not fwmark M`).
    pub invert: bool,
    /// The table looked up.
    pub table: u32,
    /// Ignores routes of the table with a prefix this short or shorter
    /// (`suppress_prefixlength 0`: all but the default route).
    pub suppress_prefix_len: Option<u32>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.ipv4 { "-4 rule" } else { "-6 rule" })?;
        if let Some(priority) = self.priority {
            write!(f, " priority {priority}")?;
        }
        if self.invert {
            f.write_str(" not")?;
        }
        if let Some(mark) = self.fwmark {
            write!(f, " fwmark {mark:#x}")?;
        }
        write!(f, " table {}", self.table)?;
        if let Some(len) = self.suppress_prefix_len {
            write!(f, " suppress_prefixlength {len}")?;
        }
        Ok(())
    }
}

fn address_family(ipv4: bool) -> AddressFamily {
    if ipv4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// The table in a header (one byte; larger tables go in an attribute).
fn header_table(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC)
}

impl Netlink {
    /// Every IPv4 and IPv6 route of `table` (unicast into an interface, or unreachable),
    /// leaving out those the kernel made by itself for addresses and for IPv6 link-local and
    /// multicast.
    ///
    /// # Errors
    /// [`NetlinkError`].
    pub fn routes(&mut self, table: u32) -> Result<Vec<Route>, NetlinkError> {
        let messages = self.route_messages()?;
        Ok(messages.iter().filter_map(parse_route).filter(|route| route.table == table).collect())
    }

    /// The prefixes the kernel routes into interface `index` in the main table by itself, for
    /// the interface's addresses: what [`Netlink::routes`] leaves out.
    ///
    /// # Errors
    /// [`NetlinkError`].
    pub fn kernel_routes(&mut self, index: u32) -> Result<Vec<Cidr>, NetlinkError> {
        let mut prefixes = Vec::new();
        for mut message in self.route_messages()? {
            if message.header.protocol != RouteProtocol::Kernel {
                continue;
            }
            // Read as any other route, whatever its metric.
            message.header.protocol = RouteProtocol::Boot;
            let Some(route) = parse_route(&message) else { continue };
            if route.table == MAIN_TABLE && route.kind == (RouteKind::Unicast { interface: index })
            {
                prefixes.push(route.destination);
            }
        }
        Ok(prefixes)
    }

    /// Every IPv4 and IPv6 route the kernel lists.
    fn route_messages(&mut self) -> Result<Vec<RouteMessage>, NetlinkError> {
        let mut messages = Vec::new();
        for ipv4 in [true, false] {
            let mut request = RouteMessage::default();
            request.header.address_family = address_family(ipv4);
            let answers = self.dump("list routes", RouteNetlinkMessage::GetRoute(request))?;
            messages.extend(answers.into_iter().filter_map(|answer| match answer {
                RouteNetlinkMessage::NewRoute(message) => Some(message),
                _ => None,
            }));
        }
        Ok(messages)
    }

    /// Whether `table` holds any route of either family, of any kind: a table number that is
    /// free for a new policy (as wg-quick looks for one).
    ///
    /// # Errors
    /// [`NetlinkError`].
    pub fn table_in_use(&mut self, table: u32) -> Result<bool, NetlinkError> {
        for ipv4 in [true, false] {
            let mut request = RouteMessage::default();
            request.header.address_family = address_family(ipv4);
            let answers = self.dump("list routes", RouteNetlinkMessage::GetRoute(request))?;
            if answers.iter().any(|answer| {
                matches!(answer, RouteNetlinkMessage::NewRoute(route) if route_table(route) == table)
            }) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Adds `route`; `interface` names its interface in errors.
    ///
    /// # Errors
    /// [`NetlinkError::Refused`], with `EEXIST` when the table has a route to the same
    /// destination with the same metric already.
    pub fn add_route(&mut self, route: &Route, interface: &str) -> Result<(), NetlinkError> {
        let what = format!("add route {}", describe(route, interface));
        let message = route_message(route, false);
        self.request(&what, RouteNetlinkMessage::NewRoute(message), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Removes `route`; one that is not there is already removed.
    ///
    /// # Errors
    /// [`NetlinkError::Refused`].
    pub fn delete_route(&mut self, route: &Route, interface: &str) -> Result<(), NetlinkError> {
        let what = format!("remove route {}", describe(route, interface));
        let message = route_message(route, true);
        absent_is_fine(
            self.request(&what, RouteNetlinkMessage::DelRoute(message), 0),
            &[libc_errno::ESRCH],
        )
    }

    /// The index of the interface that packets to `addr` leave by, as `ip route get` says;
    /// `None` when no route leads there, or the route names none (unreachable, blackhole).
    ///
    /// # Errors
    /// [`NetlinkError`] when the lookup itself fails.
    pub fn interface_to(&mut self, addr: IpAddr) -> Result<Option<u32>, NetlinkError> {
        let mut request = RouteMessage::default();
        request.header.address_family = address_family(addr.is_ipv4());
        request.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
        request.attributes.push(RouteAttribute::Destination(RouteAddress::from(addr)));
        let what = format!("look up the route to {addr}");
        let answer = match self.get(&what, RouteNetlinkMessage::GetRoute(request)) {
            Err(error)
                if error.errno().is_some_and(|errno| {
                    [libc_errno::ENETUNREACH, libc_errno::EHOSTUNREACH].contains(&errno)
                }) =>
            {
                return Ok(None)
            }
            other => other?,
        };
        let Some(RouteNetlinkMessage::NewRoute(route)) = answer else { return Ok(None) };
        Ok(route.attributes.iter().find_map(|attribute| match attribute {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        }))
    }

    /// Every IPv4 and IPv6 rule.
    ///
    /// # Errors
    /// [`NetlinkError`].
    pub fn rules(&mut self) -> Result<Vec<Rule>, NetlinkError> {
        let mut rules = Vec::new();
        for ipv4 in [true, false] {
            let mut request = RuleMessage::default();
            request.header.family = address_family(ipv4);
            for answer in self.dump("list rules", RouteNetlinkMessage::GetRule(request))? {
                let RouteNetlinkMessage::NewRule(message) = answer else { continue };
                rules.push(parse_rule(&message, ipv4));
            }
        }
        Ok(rules)
    }

    /// Adds `rule`.
    ///
    /// # Errors
    /// [`NetlinkError::Refused`].
    pub fn add_rule(&mut self, rule: &Rule) -> Result<(), NetlinkError> {
        let what = format!("add {rule}");
        let message = rule_message(rule);
        self.request(&what, RouteNetlinkMessage::NewRule(message), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Removes `rule`; one that is not there is already removed.
    ///
    /// # Errors
    /// [`NetlinkError::Refused`].
    pub fn delete_rule(&mut self, rule: &Rule) -> Result<(), NetlinkError> {
        let what = format!("remove {rule}");
        let message = rule_message(rule);
        absent_is_fine(
            self.request(&what, RouteNetlinkMessage::DelRule(message), 0),
            &[libc_errno::ENOENT],
        )
    }
}

/// A route for messages, with the interface's name rather than its index.
pub(crate) fn describe(route: &Route, interface: &str) -> String {
    let text = route.to_string();
    match route.kind {
        RouteKind::Unicast { interface: index } => {
            text.replacen(&format!("dev #{index}"), &format!("dev {interface}"), 1)
        }
        RouteKind::Unreachable => text,
    }
}

fn route_message(route: &Route, delete: bool) -> RouteMessage {
    let ipv4 = route.destination.is_ipv4();
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = address_family(ipv4);
    header.destination_prefix_length = route.destination.prefix_len();
    header.table = header_table(route.table);
    header.protocol = if delete { RouteProtocol::Unspec } else { RouteProtocol::Boot };
    let attributes = &mut message.attributes;
    match route.kind {
        RouteKind::Unicast { interface } => {
            header.kind = RouteType::Unicast;
            header.scope = if delete { RouteScope::NoWhere } else { RouteScope::Link };
            attributes.push(RouteAttribute::Oif(interface));
        }
        RouteKind::Unreachable => {
            header.kind = RouteType::Unreachable;
            header.scope = RouteScope::Universe;
        }
    }
    if route.destination.prefix_len() > 0 {
        attributes.push(RouteAttribute::Destination(RouteAddress::from(route.destination.addr())));
    }
    attributes.push(RouteAttribute::Table(route.table));
    if let Some(metric) = route.metric {
        attributes.push(RouteAttribute::Priority(metric));
    }
    message
}

/// The table of a route message: the attribute when there is one (tables above 255), else
/// the header's byte.
fn route_table(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(id) => Some(*id),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

/// A route of a dump as a [`Route`], or `None` for the kinds this module does not manage.
fn parse_route(message: &RouteMessage) -> Option<Route> {
    let header = &message.header;
    if header.protocol == RouteProtocol::Kernel {
        return None;
    }
    let table = route_table(message);
    let mut destination = None;
    let mut interface = None;
    let mut metric = None;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => {
                destination = Some(IpAddr::V4(*addr));
            }
            RouteAttribute::Destination(RouteAddress::Inet6(addr)) => {
                destination = Some(IpAddr::V6(*addr));
            }
            RouteAttribute::Oif(index) => interface = Some(*index),
            RouteAttribute::Priority(priority) => metric = Some(*priority),
            // Routes through a gateway are not this module's.
            RouteAttribute::Gateway(_) | RouteAttribute::Via(_) | RouteAttribute::MultiPath(_) => {
                return None
            }
            _ => {}
        }
    }
    let addr = destination.unwrap_or(match header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let destination = Cidr::new(addr, header.destination_prefix_length).ok()?;
    if let IpAddr::V6(v6) = addr {
        if v6.is_multicast() || v6.is_unicast_link_local() {
            return None;
        }
    }
    let kind = match header.kind {
        RouteType::Unicast => RouteKind::Unicast { interface: interface? },
        RouteType::Unreachable => RouteKind::Unreachable,
        _ => return None,
    };
    // The kernel gives every IPv6 route a metric (1024 by default): keep `None` for that one
    // so that a route read back equals the route added.
    let metric = metric.filter(|&m| !(addr.is_ipv6() && m == 1024) && m != 0);
    Some(Route { destination, table, kind, metric })
}

fn rule_message(rule: &Rule) -> RuleMessage {
    let mut message = RuleMessage::default();
    message.header.family = address_family(rule.ipv4);
    message.header.table = header_table(rule.table);
    message.header.action = RuleAction::ToTable;
    if rule.invert {
        message.header.flags = RuleFlags::Invert;
    }
    let attributes = &mut message.attributes;
    attributes.push(RuleAttribute::Table(rule.table));
    if let Some(priority) = rule.priority {
        attributes.push(RuleAttribute::Priority(priority));
    }
    if let Some(mark) = rule.fwmark {
        attributes.push(RuleAttribute::FwMark(mark));
    }
    if let Some(len) = rule.suppress_prefix_len {
        attributes.push(RuleAttribute::SuppressPrefixLen(len));
    }
    message
}

fn parse_rule(message: &RuleMessage, ipv4: bool) -> Rule {
    let mut rule = Rule {
        ipv4,
        priority: None,
        fwmark: None,
        invert: message.header.flags.contains(RuleFlags::Invert),
        table: u32::from(message.header.table),
        suppress_prefix_len: None,
    };
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Table(table) => rule.table = *table,
            RuleAttribute::Priority(priority) => rule.priority = Some(*priority),
            RuleAttribute::FwMark(mark) => rule.fwmark = Some(*mark),
            // The kernel reports "no suppression" as all ones.
            RuleAttribute::SuppressPrefixLen(len) if *len != u32::MAX => {
                rule.suppress_prefix_len = Some(*len);
            }
            _ => {}
        }
    }
    rule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip_through_their_messages() {
        for route in [
            Route::via("10.1.0.0/16".parse().unwrap(), 7),
            Route {
                destination: "::/0".parse().unwrap(),
                table: 51820,
                kind: RouteKind::Unreachable,
                metric: Some(4_000_000),
            },
        ] {
            let mut message = route_message(&route, false);
            // The kernel reports its own protocol for routes it answers with.
            message.header.protocol = RouteProtocol::Boot;
            assert_eq!(parse_route(&message), Some(route));
        }
    }

    #[test]
    fn rules_round_trip_and_read_like_ip_rule() {
        let rule = Rule {
            ipv4: true,
            priority: None,
            fwmark: Some(51820),
            invert: true,
            table: 51820,
            suppress_prefix_len: None,
        };
        assert_eq!(parse_rule(&rule_message(&rule), true), rule);
        assert_eq!(rule.to_string(), "-4 rule not fwmark 0xca6c table 51820");
        let route = Route::via("10.1.0.0/16".parse().unwrap(), 7);
        assert_eq!(describe(&route, "wg0"), "10.1.0.0/16 dev wg0");
    }
}
