//! `lakepipe pipeline check`: a declaration's mistakes, one line each with file, line and key.

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
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses and checks a declaration; `file` names it in the diagnostics.
pub async fn check_text(file: &str, text: &str) -> Result<Declaration, Vec<Diagnostic>> {
    match toml::from_str::<Declaration>(text) {
        Ok(d) => Ok(d),
        Err(e) => Err(vec![Diagnostic {
            file: file.into(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            key: String::new(),
            message: e.message().trim().to_string(),
        }]),
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
