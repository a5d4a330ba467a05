//! The expectations of a stream, declared as data in the style of Delta Live Tables: each a
//! rule name, a check and an action (`warn`, `drop` or `fail`).

pub use crate::sources::stream::Action;
use crate::sources::stream::StreamSpec;

/// What an expectation checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The line was landed as valid UTF-8 (bronze keeps the bytes of one that was not).
    ValidUtf8,
    /// The line is a JSON object.
    ValidJson,
    /// The id is a non-empty string.
    IdPresent,
    /// `event_time` is an RFC 3339 time.
    EventTimeParses,
    /// `event_time` is not after the batch run.
    NotFuture,
    /// `event_time` is not before the day the run closes (late data).
    OnTime,
    /// The field with this index in the stream's schema has its type and allowed values.
    Field(usize),
}

/// One expectation: rule name, check, action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Rule name, as written to quarantine.
    pub rule: String,
    /// What it checks.
    pub check: Check,
    /// What a violation does.
    pub action: Action,
}

/// The expectations of a stream, in evaluation order (a row is quarantined under the first
/// `drop` rule it breaks).
pub fn expectations(spec: &StreamSpec) -> Vec<Expectation> {
    let e = |rule: &str, check, action| Expectation {
        rule: rule.into(),
        check,
        action,
    };
    let mut v = vec![
        e("valid_utf8", Check::ValidUtf8, Action::Drop),
        e("valid_json", Check::ValidJson, Action::Drop),
        e("id_present", Check::IdPresent, Action::Drop),
        e("event_time_parses", Check::EventTimeParses, Action::Drop),
        e("event_time_not_future", Check::NotFuture, Action::Drop),
        e("event_time_on_time", Check::OnTime, Action::Warn),
    ];
    for (i, f) in spec.fields.iter().enumerate() {
        v.push(e(
            &format!("{}_valid", f.name),
            Check::Field(i),
            Action::Drop,
        ));
    }
    v
}
