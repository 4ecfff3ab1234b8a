//! Positions in TOML text: byte offsets to lines and columns, and the dotted field a position
//! falls in, so that both syntax errors from `toml` and our own semantic checks can say
//! `fabric.toml:12:1: host.laptop.endpoint: ...`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::SourceError;

/// A TOML document's text with its line starts, for turning spans into positions.
pub(crate) struct SourceText<'a> {
    file: PathBuf,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceText<'a> {
    pub(crate) fn new(file: &Path, text: &'a str) -> Self {
        let line_starts =
            core::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { file: file.to_owned(), text, line_starts }
    }

    /// 1-based line and column of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|start| *start <= offset).max(1);
        let column =
            self.text[self.line_starts[line - 1]..offset.min(self.text.len())].chars().count();
        (line, column + 1)
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.position(offset).0
    }

    /// An error at a byte offset.
    pub(crate) fn error_at(&self, offset: usize, field: String, message: String) -> SourceError {
        let (line, column) = self.position(offset);
        SourceError { file: self.file.clone(), line, column, field, message }
    }

    /// An error at the start of a 1-based line.
    pub(crate) fn error_on_line(&self, line: usize, field: String, message: String) -> SourceError {
        SourceError { file: self.file.clone(), line, column: 1, field, message }
    }

    /// Converts a `toml` deserialization error, naming the field from the text around it.
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> SourceError {
        let offset = error.span().map_or(0, |span| span.start);
        let message = error.message().trim().replace('\n', "; ");
        self.error_at(offset, self.field_at(offset), message)
    }

    /// The dotted field at a byte offset: the nearest table header above it, plus the key of
    /// its line when the line is a `key = value` pair.
    fn field_at(&self, offset: usize) -> String {
        let line = self.line(offset);
        let line_text = |n: usize| {
            let start = self.line_starts[n - 1];
            let end = self.line_starts.get(n).copied().unwrap_or(self.text.len());
            self.text[start..end].trim()
        };
        let header = |text: &str| {
            text.starts_with('[')
                .then(|| text.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
        };
        if let Some(table) = header(line_text(line)) {
            return table;
        }
        let key = line_text(line).split_once('=').map(|(key, _)| key.trim().trim_matches('"'));
        let table = (1..line).rev().find_map(|n| header(line_text(n)));
        match (table, key) {
            (Some(table), Some(key)) => format!("{table}.{key}"),
            (Some(table), None) => table,
            (None, Some(key)) => key.to_owned(),
            (None, None) => "(document)".to_owned(),
        }
    }
}

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Position {
    /// 1-based line.
    pub(crate) line: usize,
    /// 1-based column.
    pub(crate) column: usize,
}

/// Where each table and key of a TOML document was written, by dotted field
/// (`host.laptop.keepalive`), so that findings about an already validated inventory can point
/// at the very key they concern. Inherited values have no position of their own: a finding
/// about one falls back to its table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Positions {
    fields: BTreeMap<String, Position>,
}

impl Positions {
    /// Indexes every table header and `key = value` line of `text`. Only the first place a
    /// field is written counts. Lines inside multi-line values are skipped as long as they do
    /// not look like a key; a stray match only matters if a finding names that exact field.
    pub(crate) fn index(text: &str) -> Self {
        let mut fields = BTreeMap::new();
        let mut table = String::new();
        for (number, line) in text.lines().enumerate() {
            let indent = line.len() - line.trim_start().len();
            let column = line[..indent].chars().count() + 1;
            let position = Position { line: number + 1, column };
            let trimmed = line.trim();
            if let Some(header) = trimmed.strip_prefix('[') {
                let header = header.trim_start_matches('[');
                if let Some((name, _)) = header.split_once(']') {
                    table = dotted(name);
                    fields.entry(table.clone()).or_insert(position);
                }
                continue;
            }
            let Some((key, _)) = trimmed.split_once('=') else { continue };
            let key = key.trim();
            let is_key = !key.is_empty()
                && key.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' ')
                });
            if is_key {
                let key = dotted(key);
                let field = if table.is_empty() { key } else { format!("{table}.{key}") };
                fields.entry(field).or_insert(position);
            }
        }
        Self { fields }
    }

    /// Where `field` was written, if it was.
    pub(crate) fn of(&self, field: &str) -> Option<Position> {
        self.fields.get(field).copied()
    }

    /// Where `field` was written, else where the nearest enclosing table was
    /// (`host.laptop` for an inherited `host.laptop.keepalive`).
    pub(crate) fn nearest(&self, field: &str) -> Option<Position> {
        let mut field = field;
        loop {
            if let Some(position) = self.of(field) {
                return Some(position);
            }
            field = field.rsplit_once('.')?.0;
        }
    }
}

/// A TOML key or table name with its quotes and the spaces around dots removed:
/// `host."laptop-ana" . mtu` becomes `host.laptop-ana.mtu`.
fn dotted(key: &str) -> String {
    key.split('.')
        .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_tables_and_keys() {
        let text = "[defaults]\nkeepalive = 25\n\n[host.\"laptop-ana\"]\n  mtu = 1380 # low\n\
                    routes = [\n  \"10.0.0.0/8\",\n]\n[[removed]]\nhost = \"x\"\n";
        let positions = Positions::index(text);
        assert_eq!(positions.of("defaults.keepalive"), Some(Position { line: 2, column: 1 }));
        assert_eq!(positions.of("host.laptop-ana"), Some(Position { line: 4, column: 1 }));
        assert_eq!(positions.of("host.laptop-ana.mtu"), Some(Position { line: 5, column: 3 }));
        assert_eq!(positions.of("host.laptop-ana.routes"), Some(Position { line: 6, column: 1 }));
        assert_eq!(positions.of("removed.host"), Some(Position { line: 10, column: 1 }));
        assert_eq!(positions.of("host.laptop-ana.keepalive"), None);
        let inherited = positions.nearest("host.laptop-ana.keepalive");
        assert_eq!(inherited, Some(Position { line: 4, column: 1 }));
        assert_eq!(positions.nearest("host.nobody.mtu"), None);
    }

    #[test]
    fn positions_and_fields() {
        let text = "a = 1\n[host.x]\nmtu = \"big\"\n";
        let source = SourceText::new(Path::new("f.toml"), text);
        let offset = text.find("\"big\"").unwrap();
        assert_eq!(source.position(offset), (3, 7));
        assert_eq!(source.field_at(offset), "host.x.mtu");
        assert_eq!(source.field_at(text.find("[host").unwrap()), "host.x");
        assert_eq!(source.field_at(0), "a");
    }
}
