//! Operation logs of lake administration (`bootstrap`, `catalog refresh`), with the original
//! `logs/s3_orchestrator.log` semantics on a store that has no append: each run writes one
//! object under `logs/s3_orchestrator/`, then copies it to `logs/s3_orchestrator.log` (the
//! latest run). Lines are structured (`key=value`) with UTC timestamps, and also go to
//! `tracing` so they show on stderr as they happen.

use std::sync::Mutex;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{ObjectAttrs, Result, Store};
use crate::clock::{compact, rfc3339_millis};

/// Folder of the per-run log objects.
pub const RUNS_PREFIX: &str = "logs/s3_orchestrator";
/// The latest run's log.
pub const LATEST_KEY: &str = "logs/s3_orchestrator.log";

/// Level of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal progress.
    Info,
    /// Something the user should look at; the operation went on.
    Warn,
    /// The operation failed.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// The log of one operation run, kept in memory (a few hundred lines at most) and published
/// when the run ends.
#[derive(Debug)]
pub struct OpLog {
    op: String,
    started: DateTime<Utc>,
    lines: Mutex<Vec<String>>,
}

impl OpLog {
    /// A log for operation `op` (e.g. `catalog`) started at `started` (wall clock, UTC).
    pub fn new(op: &str, started: DateTime<Utc>) -> OpLog {
        OpLog {
            op: op.to_string(),
            started,
            lines: Mutex::new(Vec::new()),
        }
    }

    /// Records `event` with `fields` (values containing spaces are quoted).
    pub fn event(&self, level: Level, event: &str, fields: &[(&str, String)]) {
        let mut body = format!("op={} event={event}", self.op);
        for (k, v) in fields {
            if v.is_empty() || v.contains([' ', '"', '=']) {
                body.push_str(&format!(" {k}={v:?}"));
            } else {
                body.push_str(&format!(" {k}={v}"));
            }
        }
        match level {
            Level::Info => tracing::debug!("{body}"),
            Level::Warn => tracing::warn!("{body}"),
            Level::Error => tracing::error!("{body}"),
        }
        let line = format!(
            "{} {:<5} {body}",
            rfc3339_millis(crate::clock::wall_now()),
            level.as_str()
        );
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// Records an INFO event.
    pub fn info(&self, event: &str, fields: &[(&str, String)]) {
        self.event(Level::Info, event, fields);
    }

    /// The log so far, one line per event.
    pub fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = lines.join("\n");
        s.push('\n');
        s
    }

    /// Key of this run's log object: start time, operation and process, so concurrent or
    /// repeated runs never overwrite each other.
    pub fn key(&self) -> String {
        format!(
            "{RUNS_PREFIX}/{}_{}_{}.log",
            compact(self.started),
            self.op,
            std::process::id()
        )
    }

    /// Writes the run's log object and makes it the latest; returns its key.
    pub async fn publish(&self, store: &Store) -> Result<String> {
        let key = self.key();
        let body = Bytes::from(self.text());
        let attrs = ObjectAttrs {
            content_type: Some("text/plain; charset=utf-8".into()),
            metadata: vec![("source".into(), format!("lakepipe-{}", self.op))],
        };
        store.put(&key, body.clone(), &attrs).await?;
        store.put(LATEST_KEY, body, &attrs).await?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_structured_and_utc() {
        let t = crate::clock::parse_utc("2026-02-01T00:00:00Z").unwrap();
        let log = OpLog::new("catalog", t);
        log.info(
            "list",
            &[
                ("dataset", "text_files".into()),
                ("note", "two words".into()),
            ],
        );
        let text = log.text();
        let line = text.lines().next().unwrap();
        let ts = line.split(' ').next().unwrap();
        assert!(
            ts.ends_with('Z') && crate::clock::parse_utc(ts).is_ok(),
            "{line}"
        );
        assert!(
            line.ends_with("op=catalog event=list dataset=text_files note=\"two words\""),
            "{line}"
        );
        assert!(
            log.key()
                .starts_with("logs/s3_orchestrator/20260201T000000Z_catalog_")
        );
    }
}
