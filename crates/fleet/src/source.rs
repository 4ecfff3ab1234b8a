//! Positions in TOML text: byte offsets to lines and columns, and the dotted field a position
//! falls in, so that both syntax errors from `toml` and our own semantic checks can say
//! `fabric.toml:12:1: host.laptop.endpoint: ...`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
