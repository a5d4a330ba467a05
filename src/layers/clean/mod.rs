//! The cleaning rules of the lake's streams, shared by silver (`batch::silver`) and the
//! serving layer's unified tables: the [`expectations`] of each stream, declared as data, each
//! with an action in the style of Delta Live Tables — `warn` (kept, counted), `drop` (to
//! quarantine with the rule, the offending value, the raw line and its lineage) or `fail` (the
//! task fails with the row); the [`derived`] columns; the [`clean_schema`] and
//! [`quarantine_schema`]; and the [`Cleaner`] that applies them to raw lines.

mod cleaner;
mod derived;
mod expectations;
pub(crate) mod schema;

pub use cleaner::{Cleaned, Cleaner, Counts};
pub use derived::{derived, seed_derived};
pub use expectations::{Expectation, expectations};
pub use schema::{LANDING_ORDER, clean_schema};

/// A row broke an expectation whose action is `fail`: the rule, the row's file and line, and
/// the offending value. It travels out of the cleaning partitions inside a
/// `DataFusionError::External`; [`find_in_chain`] finds it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expectation `{rule}` (action fail) broken by {key}:{line}: {value}")]
pub struct BrokenExpectation {
    /// The rule.
    pub rule: String,
    /// The landed file of the row (`_source_key`).
    pub key: String,
    /// Its line in the file (`_line`).
    pub line: i64,
    /// The offending value.
    pub value: String,
}

/// The first error of type `T` in the chain of `e` (`e` itself, then each `source()`): how a
/// typed error is found again after it travelled through DataFusion or deltalake, whose
/// wrappers (`DataFusionError::External`, `Context`, `Shared`, `ArrowError::ExternalError`,
/// deltalake's generic errors) all give it as their source.
pub fn find_in_chain<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::error::ArrowError;
    use deltalake::datafusion::error::DataFusionError;
    use std::sync::Arc;

    fn broken() -> BrokenExpectation {
        BrokenExpectation {
            rule: "status_code_valid".into(),
            key: "realtime/api_logs/f.jsonl".into(),
            line: 3,
            value: "299".into(),
        }
    }

    #[test]
    fn a_broken_expectation_reads_as_before() {
        assert_eq!(
            broken().to_string(),
            "expectation `status_code_valid` (action fail) broken by realtime/api_logs/f.jsonl:3: 299"
        );
    }

    #[test]
    fn a_broken_expectation_is_found_through_datafusion_and_arrow_wrappers() {
        let external = || DataFusionError::External(Box::new(broken()));
        let wrapped = [
            external(),
            external().context("writing silver"),
            DataFusionError::Shared(Arc::new(external())),
            DataFusionError::ArrowError(
                Box::new(ArrowError::ExternalError(Box::new(external()))),
                None,
            ),
            DataFusionError::External(Box::new(deltalake::DeltaTableError::GenericError {
                source: Box::new(external().context("x")),
            })),
        ];
        for e in &wrapped {
            assert_eq!(
                find_in_chain::<BrokenExpectation>(e),
                Some(&broken()),
                "{e:?}"
            );
        }
        let other = DataFusionError::Execution("the quarantine writer stopped".into());
        assert_eq!(find_in_chain::<BrokenExpectation>(&other), None);
    }
}
