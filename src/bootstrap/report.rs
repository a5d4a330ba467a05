//! What a bootstrap run reports: one [`Row`] per setting with its [`Outcome`], gathered in a
//! [`Report`] that prints as a text table or serialises to JSON and says whether the run failed
//! or changed anything.

use serde::{Deserialize, Serialize};

use crate::store::Capabilities;

/// The result of one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Changed to the desired state.
    Applied,
    /// Already in the desired state.
    Unchanged,
    /// Differs; a real run would apply it (dry run).
    WouldApply,
    /// The server lacks this API.
    Unsupported,
    /// Deliberately not applied (see the detail).
    Skipped,
    /// Does not apply to this kind of lake.
    NotApplicable,
    /// The request failed.
    Failed,
}

impl Outcome {
    pub(super) fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::WouldApply => "would apply",
            Outcome::Unsupported => "unsupported by this server",
            Outcome::Skipped => "skipped",
            Outcome::NotApplicable => "n/a",
            Outcome::Failed => "FAILED",
        }
    }
}

/// One row of the report: setting · desired · result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Setting name.
    pub setting: String,
    /// Desired state, for humans.
    pub desired: String,
    /// What happened.
    pub result: Outcome,
    /// Why (reason, error, or what was found).
    pub detail: String,
}

/// What a bootstrap run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The lake.
    pub lake: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// One row per setting, in order.
    pub rows: Vec<Row>,
    /// The capability record written (None in a dry run).
    pub capabilities: Option<Capabilities>,
}

impl Report {
    /// Rows that make the run fail: failures, and unsupported settings under `strict`.
    pub fn errors(&self, strict: bool) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.result == Outcome::Failed || (strict && r.result == Outcome::Unsupported))
            .collect()
    }

    /// True if a real run would change nothing (or, for a real run, changed nothing).
    pub fn converged(&self) -> bool {
        !self
            .rows
            .iter()
            .any(|r| matches!(r.result, Outcome::Applied | Outcome::WouldApply))
    }

    /// The report as an aligned text table.
    pub fn table(&self) -> String {
        let head = ["setting", "desired", "result", "detail"];
        let cells: Vec<[&str; 4]> = self
            .rows
            .iter()
            .map(|r| [&*r.setting, &*r.desired, r.result.label(), &*r.detail])
            .collect();
        let mut w = head.map(str::len);
        for c in &cells {
            for i in 0..3 {
                w[i] = w[i].max(c[i].chars().count());
            }
        }
        let line = |c: [&str; 4]| {
            format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                c[0],
                c[1],
                c[2],
                c[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            )
            .trim_end()
            .to_string()
        };
        let mut out = vec![line(head)];
        out.extend(cells.into_iter().map(line));
        out.join("\n") + "\n"
    }
}

/// A row.
pub(super) fn row(setting: &str, desired: String, result: Outcome, detail: &str) -> Row {
    Row {
        setting: setting.into(),
        desired,
        result,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_fails_on_errors_and_on_unsupported_only_when_strict() {
        let mk = |result| Report {
            lake: "s3://b".into(),
            dry_run: false,
            rows: vec![row("versioning", "enabled".into(), result, "")],
            capabilities: None,
        };
        assert!(mk(Outcome::Unsupported).errors(false).is_empty());
        assert_eq!(mk(Outcome::Unsupported).errors(true).len(), 1);
        assert_eq!(mk(Outcome::Failed).errors(false).len(), 1);
        assert!(mk(Outcome::Unchanged).converged());
        assert!(!mk(Outcome::WouldApply).converged());
        let table = mk(Outcome::Unsupported).table();
        assert!(
            table.contains("versioning  enabled  unsupported by this server"),
            "{table}"
        );
    }
}
