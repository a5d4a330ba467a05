//! `lakepipe pipeline check`: a declaration's mistakes, one line each with file, line and key.
//!
//! Checking runs in three passes, each reporting every mistake it finds:
//! 1. the TOML syntax (a file that does not parse stops here);
//! 2. the shape ([`decode`]): every `[[stream]]`, `[[fact]]`, `[[dashboard]]` and `[[alert]]`
//!    is deserialized on its own, so an unknown key or a value of the wrong type in one of
//!    them is reported on the line of that key or value and the others are still checked;
//! 3. the meaning of the elements that have the right shape: names, duplicates, generators,
//!    allowed values and bounds, stream references, windows, alert ids ([`meaning`]), and the
//!    SQL, planned by DataFusion against empty tables of the layers' schemas ([`sql`]).

mod decode;
mod meaning;
mod sql;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use super::declaration::Declaration;

/// One mistake: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Path of the key (`stream[orders].field[amount].type`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.key, self.message
        )
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].matches('\n').count() + 1
}

/// The diagnostics of one check, in the order found.
pub(super) struct Report<'t> {
    file: &'t str,
    text: &'t str,
    diagnostics: Vec<Diagnostic>,
}

impl<'t> Report<'t> {
    fn new(file: &'t str, text: &'t str) -> Self {
        Report {
            file,
            text,
            diagnostics: Vec::new(),
        }
    }

    /// Reports a mistake at byte `offset` of the text.
    fn at(&mut self, offset: usize, key: impl Into<String>, message: impl Into<String>) {
        let d = Diagnostic {
            file: self.file.to_string(),
            line: line_of(self.text, offset),
            key: key.into(),
            message: message.into(),
        };
        if !self.diagnostics.contains(&d) {
            self.diagnostics.push(d);
        }
    }
}

/// Parses and checks a declaration; `file` names it in the diagnostics. Returns the
/// declaration only if it has no mistake.
pub async fn check_text(file: &str, text: &str) -> Result<Declaration, Vec<Diagnostic>> {
    let mut report = Report::new(file, text);
    let Some(doc) = decode::decode(&mut report) else {
        return Err(report.diagnostics);
    };
    meaning::check(&mut report, &doc);
    sql::check(&mut report, &doc).await;
    if report.diagnostics.is_empty() {
        Ok(doc.declaration())
    } else {
        let mut diagnostics = report.diagnostics;
        // In file order; mistakes on one line in the order found.
        diagnostics.sort_by_key(|d| d.line);
        Err(diagnostics)
    }
}

/// Reads and checks the declaration in `path`.
pub async fn load(path: &Path) -> Result<Declaration, super::Error> {
    let text = std::fs::read_to_string(path).map_err(|source| super::Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_text(&path.display().to_string(), &text)
        .await
        .map_err(|diagnostics| super::Error::Invalid {
            path: path.to_path_buf(),
            diagnostics,
        })
}
