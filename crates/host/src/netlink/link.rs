//! Interfaces (state, MTU) and their addresses.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{absent_is_fine, libc_errno, Netlink, NetlinkError};
use wgfabric_model::cidr::IfAddr;

/// An interface as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Its index.
    pub index: u32,
    /// Its MTU.
    pub mtu: u32,
    /// Whether it is administratively up.
    pub up: bool,
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

impl Netlink {
    /// The interface `name`.
    ///
    /// # Errors
    /// [`NetlinkError::NoSuchInterface`]; others as [`Netlink`]'s requests.
    pub fn link(&mut self, name: &str) -> Result<LinkState, NetlinkError> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let what = format!("read interface {name}");
        let answer = match self.get(&what, RouteNetlinkMessage::GetLink(message)) {
            Err(error) if error.errno() == Some(libc_errno::ENODEV) => {
                return Err(NetlinkError::NoSuchInterface(name.to_owned()))
            }
            other => other?,
        };
        let Some(RouteNetlinkMessage::NewLink(link)) = answer else {
            return Err(NetlinkError::Malformed { what, reason: "no link in the answer".into() });
        };
        let mtu = link.attributes.iter().find_map(|attribute| match attribute {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        });
        Ok(LinkState {
            index: link.header.index,
            mtu: mtu.unwrap_or(0),
            up: link.header.flags.contains(LinkFlags::Up),
        })
    }

    /// The name of the interface with index `index`.
    ///
    /// # Errors
    /// [`NetlinkError`].
    pub fn link_name(&mut self, index: u32) -> Result<String, NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        let what = format!("read interface #{index}");
        let answer = self.get(&what, RouteNetlinkMessage::GetLink(message))?;
        let name = match answer {
            Some(RouteNetlinkMessage::NewLink(link)) => {
                link.attributes.into_iter().find_map(|attribute| match attribute {
                    LinkAttribute::IfName(name) => Some(name),
                    _ => None,
                })
            }
            _ => None,
        };
        name.ok_or_else(|| NetlinkError::Malformed { what, reason: "no name in the answer".into() })
    }

    /// Sets the MTU of `name` (when given) and brings it up or down (when given).
    ///
    /// # Errors
    /// As [`Netlink::link`]; [`NetlinkError::Refused`].
    pub fn set_link(
        &mut self,
        name: &str,
        mtu: Option<u32>,
        up: Option<bool>,
    ) -> Result<(), NetlinkError> {
        let index = self.link(name)?.index;
        let mut message = LinkMessage::default();
        message.header.index = index;
        if let Some(up) = up {
            message.header.change_mask = LinkFlags::Up;
            if up {
                message.header.flags = LinkFlags::Up;
            }
        }
        if let Some(mtu) = mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let state = match up {
            Some(true) => " up",
            Some(false) => " down",
            None => "",
        };
        let mtu_text = mtu.map(|mtu| format!(" mtu {mtu}")).unwrap_or_default();
        let what = format!("set interface {name}{mtu_text}{state}");
        self.request(&what, RouteNetlinkMessage::SetLink(message), 0)
    }

    /// Deletes the interface `name`, as `ip link delete` does; a userspace daemon running it
    /// exits when it notices.
    ///
    /// # Errors
    /// [`NetlinkError::NoSuchInterface`]; [`NetlinkError::Refused`].
    pub fn delete_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let index = self.link(name)?.index;
        let mut message = LinkMessage::default();
        message.header.index = index;
        let what = format!("delete interface {name}");
        self.request(&what, RouteNetlinkMessage::DelLink(message), 0)
    }

    /// The addresses of the interface with index `index` that were configured on it, in the
    /// kernel's order: link-local IPv6 addresses, which the kernel generates by itself, are
    /// left out.
    ///
    /// # Errors
    /// [`NetlinkError`].
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IfAddr>, NetlinkError> {
        let all = self.all_addresses()?;
        Ok(all.into_iter().filter(|(at, _)| *at == index).map(|(_, address)| address).collect())
    }

    /// Every address of every interface but link-local ones, with the interface's index, in
    /// the kernel's order.
    ///
    /// # Errors
    /// [`NetlinkError`].
    pub fn all_addresses(&mut self) -> Result<Vec<(u32, IfAddr)>, NetlinkError> {
        let answers = self
            .dump("list addresses", RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        let mut addresses = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewAddress(message) = answer else { continue };
            if message.header.scope == AddressScope::Link {
                continue;
            }
            // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer's on point-to-point
            // links, and the only one given for IPv6.
            let local = message.attributes.iter().find_map(|attribute| match attribute {
                AddressAttribute::Local(addr) => Some(*addr),
                _ => None,
            });
            let address = message.attributes.iter().find_map(|attribute| match attribute {
                AddressAttribute::Address(addr) => Some(*addr),
                _ => None,
            });
            if let Some(addr) = local.or(address) {
                let prefix = message.header.prefix_len;
                addresses.push((message.header.index, IfAddr { addr, prefix }));
            }
        }
        Ok(addresses)
    }

    /// Adds `address` to the interface `name` (index `index`), or updates it if it is there;
    /// IPv6 addresses skip duplicate address detection, as wg-quick's do.
    ///
    /// # Errors
    /// [`NetlinkError::Refused`].
    pub fn add_address(
        &mut self,
        name: &str,
        index: u32,
        address: IfAddr,
    ) -> Result<(), NetlinkError> {
        let mut message = address_message(index, address);
        if address.addr.is_ipv6() {
            message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let what = format!("add address {address} to {name}");
        self.request(&what, RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Removes `address` from the interface `name` (index `index`); one that is not there
    /// is already removed.
    ///
    /// # Errors
    /// [`NetlinkError::Refused`].
    pub fn delete_address(
        &mut self,
        name: &str,
        index: u32,
        address: IfAddr,
    ) -> Result<(), NetlinkError> {
        let what = format!("remove address {address} from {name}");
        let message = address_message(index, address);
        absent_is_fine(
            self.request(&what, RouteNetlinkMessage::DelAddress(message), 0),
            &[libc_errno::EADDRNOTAVAIL],
        )
    }
}

fn address_message(index: u32, address: IfAddr) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family(address.addr);
    message.header.prefix_len = address.prefix;
    message.header.index = index;
    message.attributes.push(AddressAttribute::Local(address.addr));
    message.attributes.push(AddressAttribute::Address(address.addr));
    message
}
