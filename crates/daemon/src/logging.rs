//! Log output: lifecycle events through `tracing`, to stderr, as text or JSON.
//!
//! Nothing logged carries a key: the key types redact themselves and the userspace API's
//! error messages never quote values.

use std::io::IsTerminal as _;

use tracing::level_filters::LevelFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. Call once, before anything logs.
pub(crate) fn init(level: LevelFilter, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}
