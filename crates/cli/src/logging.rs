//! Lifecycle events of the controller (keys generated, configurations written, addresses
//! released, what the exporter sees) go through `tracing` to standard error. The human form
//! is the message alone, a plain line without colour that reads well in a terminal and in
//! the journal; `--log-format json` writes one object per line with every field, for
//! collectors. No event carries a secret: keys are named by their public half or their file.

use core::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// The message alone, one event per line.
    #[default]
    Human,
    /// One JSON object per line, with every field.
    Json,
}

/// Installs the global subscriber: events at info and above, on standard error.
pub(crate) fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(Level::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    match format {
        LogFormat::Human => builder.event_format(MessageOnly).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// Writes an event's message, prefixed by `warning: ` or `error: ` when it is one.
struct MessageOnly;

impl<S, N> FormatEvent<S, N> for MessageOnly
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let prefix = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            _ => "",
        };
        let mut message = Message::default();
        event.record(&mut message);
        writeln!(writer, "{prefix}{}", message.0)
    }
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
