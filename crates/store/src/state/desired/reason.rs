//! Why an agent refuses a desired state: one variant per check of
//! [`DesiredState::validate`](super::DesiredState::validate).

use wgfabric_model::cidr::{Cidr, IfAddr};
use wgfabric_model::names::Name;
use wgfabric_proto::keys::PublicKey;

use super::FORMAT;

/// A desired state that is not one the agent may apply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The bytes are not a desired state (JSON syntax, a missing or unknown field).
    #[error("not a desired state: {0}")]
    Json(#[from] serde_json::Error),
    /// A format this agent does not read.
    #[error("format {0} (this agent reads {FORMAT})")]
    Format(u32),
    /// Another host's document.
    #[error("it is the desired state of `{owner}`, not of `{host}`")]
    OtherHost {
        /// The host the document is for.
        owner: Name,
        /// The host this agent runs on.
        host: String,
    },
    /// The firewall names an interface Linux cannot have.
    #[error("firewall interface name `{}` is not valid", .0.escape_debug())]
    FirewallInterface(String),
    /// The WireGuard interface's name is not a valid interface name.
    #[error("interface name `{}` is not 1 to 15 letters, digits, `-`, `_` or `.`", .0.escape_debug())]
    InterfaceName(String),
    /// No interface address.
    #[error("the interface has no address")]
    NoAddress,
    /// An interface address in a special-use range.
    #[error("interface address {address} {why}")]
    SpecialAddress {
        /// The address.
        address: IfAddr,
        /// What range it is in.
        why: &'static str,
    },
    /// An MTU below what the addresses' IP versions need.
    #[error("MTU {mtu} is below the minimum of {min}")]
    Mtu {
        /// The configured MTU.
        mtu: u16,
        /// The least MTU for the addresses.
        min: u16,
    },
    /// A peer with the host's own public key.
    #[error("peer `{0}` has this host's own public key")]
    OwnKey(Name),
    /// A peer name or key listed twice.
    #[error("peer `{name}` ({key}) appears twice")]
    PeerTwice {
        /// The peer's name.
        name: Name,
        /// The peer's key.
        key: PublicKey,
    },
    /// An allowed IP on two peers.
    #[error(
        "allowed IP {cidr} is on both `{first}` and `{second}`; it can belong to one peer only"
    )]
    SharedAllowedIp {
        /// The prefix.
        cidr: Cidr,
        /// The peer listed first.
        first: Name,
        /// The peer listed second.
        second: Name,
    },
    /// A direct-path peer whose address is not a single host's.
    #[error("direct-path peer `{peer}` has address {cidr}, not a host's /32 or /128")]
    DirectPrefix {
        /// The peer.
        peer: Name,
        /// The prefix.
        cidr: Cidr,
    },
    /// A preshared key for a name that is not a peer.
    #[error("a preshared key for `{0}`, which is not a peer")]
    PresharedKeyForStranger(Name),
    /// Two rotation orders with one id.
    #[error("rotation {0} is ordered twice")]
    RotationTwice(String),
    /// A rotation order that does not fit the configuration.
    #[error("rotation {id}: {problem}")]
    Rotation {
        /// The rotation's id.
        id: String,
        /// What does not fit.
        problem: RotationProblem,
    },
}

/// Why a rotation order does not fit the configuration it came with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationProblem {
    /// A phase that installs the new key, without it.
    #[error("phase {0} without the new key")]
    NoNewKey(&'static str),
    /// The new key equals the old one.
    #[error("the new key is the old key")]
    SameKey,
    /// The host's own rotation, from a key it does not have.
    #[error("the old key is not this host's key")]
    NotOurOldKey,
    /// The host's own rotation, with a preshared key for a name that is not a peer.
    #[error("a preshared key for `{0}`, which is not a peer")]
    PresharedKeyForStranger(Name),
    /// A rotation of a host that is neither this one nor a peer.
    #[error("`{0}` is neither this host nor one of its peers")]
    Stranger(Name),
    /// A peer's rotation from a key the peer does not have here.
    #[error("the old key is not the key of `{0}`")]
    NotPeersOldKey(Name),
    /// A new key already on the interface.
    #[error("the new key is already in use on this interface")]
    NewKeyInUse,
    /// A peer's rotation carrying a preshared key for a host other than this one.
    #[error("a peer's order carries another host's preshared key")]
    ForeignPresharedKey,
}
