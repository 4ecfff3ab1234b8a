//! Running code inside a network namespace named by `ip netns`: a socket opened in a thread
//! that joined it, or a command started there. The agent's own namespace is `None`.

use std::path::Path;
use std::process::Command;

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// Where `ip netns` keeps the namespaces it names.
const NETNS_DIR: &str = "/var/run/netns";

/// Runs `f` in a thread that has joined the network namespace `name` (or this process's own,
/// for `None`), and returns what it returned. A socket opened there stays in that namespace
/// for its whole life, whichever thread uses it later; so do `/proc/sys/net` files opened
/// there.
///
/// # Errors
/// When the namespace does not exist or cannot be joined (not root); else `f`'s error.
pub fn enter<T: Send>(
    name: Option<&str>,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    let Some(name) = name else { return f() };
    let path = Path::new(NETNS_DIR).join(name);
    let context = |error: std::io::Error| {
        std::io::Error::new(error.kind(), format!("network namespace `{name}`: {error}"))
    };
    let handle = std::fs::File::open(&path).map_err(context)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                use std::os::fd::AsFd as _;
                move_into_link_name_space(handle.as_fd(), Some(LinkNameSpaceType::Network))
                    .map_err(|errno| context(errno.into()))?;
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A command that runs `program` inside the namespace `name`.
pub fn command_in(namespace: &str, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", namespace, program]);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_in_a_namespace_go_through_ip_netns_exec() {
        let command = command_in("wgfdemo-relay", "wg");
        let argv: Vec<_> = command.get_args().collect();
        assert_eq!(command.get_program(), "ip");
        assert_eq!(argv, ["netns", "exec", "wgfdemo-relay", "wg"]);
    }
}
