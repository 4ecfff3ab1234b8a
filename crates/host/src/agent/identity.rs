//! What tells the agent that the daemon or the interface under it changed: a daemon that
//! restarts (or is replaced by another implementation) creates a new API socket file, and an
//! interface that is deleted and created again gets a new index. Either way what the agent
//! remembers of the live state is void: it probes the daemon's capabilities again and puts
//! the interface's addresses, MTU and link state back.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// The daemon's socket file and the interface, as the kernel identifies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Device, inode and change time of the API socket file.
    socket: Option<(u64, u64, i64, i64)>,
    /// The interface's index.
    ifindex: Option<u32>,
}

impl Identity {
    /// The identity of the daemon answering at `socket` for `interface`, as of now.
    pub(crate) fn of(socket: &Path, interface: &str) -> Self {
        let socket =
            std::fs::metadata(socket).ok().map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()));
        let ifindex = std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))
            .ok()
            .and_then(|text| text.trim().parse().ok());
        Self { socket, ifindex }
    }

    /// What changed from `before`, in words, if anything did.
    pub(crate) fn change_from(&self, before: &Self) -> Option<&'static str> {
        match (self.socket != before.socket, self.ifindex != before.ifindex) {
            (true, true) => Some("the daemon restarted and its interface was created again"),
            (true, false) => Some("the daemon behind the API socket changed"),
            (false, true) => Some("the interface was deleted and created again"),
            (false, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_socket_file_or_interface_is_a_change() {
        let dir = std::env::temp_dir().join(format!("wgfabric-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("wg0.sock");
        std::fs::write(&socket, "").unwrap();
        let first = Identity::of(&socket, "lo");
        assert_eq!(first.change_from(&first), None);
        assert_eq!(Identity::of(&socket, "lo"), first, "nothing changed");
        std::fs::remove_file(&socket).unwrap();
        std::fs::write(&socket, "").unwrap();
        let again = Identity::of(&socket, "lo");
        assert_eq!(again.change_from(&first), Some("the daemon behind the API socket changed"));
        let other = Identity { ifindex: Some(u32::MAX), ..again };
        assert_eq!(other.change_from(&again), Some("the interface was deleted and created again"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
