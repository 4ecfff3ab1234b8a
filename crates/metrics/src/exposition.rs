//! The Prometheus text exposition format, version 0.0.4: metric families with their `HELP`
//! and `TYPE` lines, label values escaped, and samples in a stable order so that two scrapes
//! of the same state are byte-identical.
//!
//! Every value this crate exports is a non-negative integer (byte counts, Unix seconds, 0/1
//! gauges) or a duration measured in whole microseconds, so samples are `u64` and print
//! exactly (`0.001234`), never in floating-point notation.

use std::fmt::Write as _;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a family's samples mean to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever goes up (until the process restarts); query it with `rate()`.
    Counter,
    /// Goes up and down; also used for `_info` metrics whose value is always 1.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// One metric family: a name, its help text, its kind and its samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sample {
    labels: Vec<(&'static str, String)>,
    value: u64,
    /// Whether `value` counts microseconds, printed as seconds.
    micros: bool,
}

impl Family {
    /// An empty family.
    ///
    /// # Panics
    /// In debug builds, when `name` is not a valid Prometheus metric name (names are
    /// constants, so a test catches it).
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
        Self { name, help, kind, samples: Vec::new() }
    }

    /// The family's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Adds a sample. Label values may hold any text; they are escaped on output. A label
    /// whose value is empty is left out, as Prometheus treats it as absent anyway.
    ///
    /// # Panics
    /// In debug builds, when a label name is not a valid Prometheus label name.
    pub fn push(&mut self, labels: &[(&'static str, &str)], value: u64) {
        self.push_sample(labels, value, false);
    }

    /// Adds a sample of `micros` microseconds, printed in seconds (the base unit Prometheus
    /// expects) with six exact decimals. Labels as in [`Family::push`].
    pub fn push_micros(&mut self, labels: &[(&'static str, &str)], micros: u64) {
        self.push_sample(labels, micros, true);
    }

    fn push_sample(&mut self, labels: &[(&'static str, &str)], value: u64, micros: bool) {
        debug_assert!(labels.iter().all(|(name, _)| is_label_name(name)), "{labels:?}");
        let labels = labels
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|&(name, value)| (name, value.to_owned()))
            .collect();
        self.samples.push(Sample { labels, value, micros });
    }

    /// Whether it has no sample (and so is left out of the output).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Writes `families` in the text format: each non-empty family's `HELP` and `TYPE` lines,
/// then its samples sorted by their labels. Families keep the order given.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families.iter().filter(|f| !f.is_empty()) {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
        let mut samples: Vec<&Sample> = family.samples.iter().collect();
        samples.sort();
        for sample in samples {
            out.push_str(family.name);
            if !sample.labels.is_empty() {
                out.push('{');
                for (index, (name, value)) in sample.labels.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
                }
                out.push('}');
            }
            let _ = if sample.micros {
                writeln!(out, " {}.{:06}", sample.value / 1_000_000, sample.value % 1_000_000)
            } else {
                writeln!(out, " {}", sample.value)
            };
        }
    }
    out
}

/// Label values escape backslash, double quote and newline.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text escapes backslash and newline.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with the reserved `__`.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_metadata_in_a_stable_order() {
        let mut bytes = Family::new("demo_bytes_total", Kind::Counter, "Bytes moved.");
        bytes.push(&[("interface", "wg1"), ("peer", "b")], 7);
        bytes.push(&[("interface", "wg0"), ("peer", "z")], 18_446_744_073_709_551_615);
        bytes.push(&[("interface", "wg0"), ("peer", "a")], 0);
        let mut up = Family::new("demo_up", Kind::Gauge, "Whether it is up.");
        up.push(&[], 1);
        let empty = Family::new("demo_nothing", Kind::Gauge, "Never printed.");
        assert_eq!(
            render(&[bytes, empty, up]),
            "# HELP demo_bytes_total Bytes moved.\n\
             # TYPE demo_bytes_total counter\n\
             demo_bytes_total{interface=\"wg0\",peer=\"a\"} 0\n\
             demo_bytes_total{interface=\"wg0\",peer=\"z\"} 18446744073709551615\n\
             demo_bytes_total{interface=\"wg1\",peer=\"b\"} 7\n\
             # HELP demo_up Whether it is up.\n\
             # TYPE demo_up gauge\n\
             demo_up 1\n"
        );
    }

    #[test]
    fn microseconds_print_as_exact_seconds() {
        let mut rtt = Family::new("demo_rtt_seconds", Kind::Gauge, "Round trip.");
        rtt.push_micros(&[("peer", "a")], 1_234);
        rtt.push_micros(&[("peer", "b")], 61_000_005);
        assert_eq!(
            render(&[rtt]),
            "# HELP demo_rtt_seconds Round trip.\n\
             # TYPE demo_rtt_seconds gauge\n\
             demo_rtt_seconds{peer=\"a\"} 0.001234\n\
             demo_rtt_seconds{peer=\"b\"} 61.000005\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped_and_empty_labels_dropped() {
        let mut family = Family::new("demo_info", Kind::Gauge, "Line one\nback\\slash");
        family.push(&[("name", "say \"hi\"\\\nbye"), ("note", "")], 1);
        assert_eq!(
            render(&[family]),
            "# HELP demo_info Line one\\nback\\\\slash\n\
             # TYPE demo_info gauge\n\
             demo_info{name=\"say \\\"hi\\\"\\\\\\nbye\"} 1\n"
        );
    }

    #[test]
    fn names_follow_the_data_model() {
        for good in ["a", "wireguard_sent_bytes_total", "_x", "ns:sub_total"] {
            assert!(is_metric_name(good), "{good}");
        }
        for bad in ["", "1a", "a-b", "a b", "ä"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
        assert!(is_label_name("public_key") && is_label_name("_x"));
        for bad in ["", "__name__", "a:b", "9", "a-b"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }
}
