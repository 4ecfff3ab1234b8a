//! Network namespaces named by `ip netns` (iproute2): code and commands run inside one, and
//! guards that create a namespace and delete it, with whatever still runs in it, when dropped.
//!
//! One helper for everyone who needs namespaces: the agent opens sockets in one
//! ([`enter`]), the lab builds the example fabric in several for `wgfabric demo`, and the
//! system tests build theirs. It needs only iproute2 and `/proc/sys`.
//!
//! Fallible operations return [`CommandError`] or [`std::io::Error`]. A few conveniences for
//! tests ([`run`], [`Netns::new`], [`Netns::run`], [`Netns::spawn`], [`Netns::pids`]) panic
//! with the whole story instead, and say so under `# Panics`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod enter;
mod guard;
mod ping;

pub use command::{describe, run, run_argv, run_command, run_with_input, CommandError};
pub use enter::{command_in, enter};
pub use guard::{delete, delete_with_prefix, list, veth, Background, Netns};
pub use ping::{wait_until, PingStats};
