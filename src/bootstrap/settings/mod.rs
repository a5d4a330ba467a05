//! The bucket settings lakepipe manages: what a setting is ([`BucketSetting`]), the list of
//! them ([`S3_SETTINGS`]), and how one is converged ([`converge`]): read the current state back,
//! compare its canonical form with the desired one, apply only what differs, read it back again.
//!
//! A new setting is one file here implementing [`BucketSetting`] and one line in
//! [`S3_SETTINGS`].

mod encryption;
mod lifecycle;
mod public_access_block;
mod tags;
mod tls_policy;
mod versioning;

use serde_json::Value;

use super::fault::Fault;
use super::report::{Outcome, Row};
use super::target::Target;

/// One bucket setting: its name, its desired state, how to read it back and how to apply it.
///
/// `desired` and `current` return the same canonical form (only what lakepipe manages), so
/// that equal values mean nothing to do; `apply` keeps what is not lakepipe's (other
/// lifecycle rules, policy statements, tags).
#[async_trait::async_trait]
pub(super) trait BucketSetting: Sync {
    /// The name in the report, the logs and the capability record's `unsupported` list.
    fn name(&self) -> &'static str;

    /// The desired state, for humans (the report's `desired` column).
    fn describe(&self, t: &Target) -> String;

    /// The desired state in canonical form (compared with [`BucketSetting::current`]).
    fn desired(&self, t: &Target) -> Value;

    /// Why this setting must not be applied on `t`, if so (the row is `skipped`, nothing is
    /// read).
    fn skip(&self, _t: &Target) -> Option<String> {
        None
    }

    /// The current state in canonical form, restricted to what lakepipe manages; `Null` when
    /// not configured.
    async fn current(&self, t: &Target) -> Result<Value, Fault>;

    /// Applies the desired state, keeping settings that are not lakepipe's.
    async fn apply(&self, t: &Target) -> Result<(), Fault>;
}

/// The settings, in the order they are applied and reported.
pub(super) const S3_SETTINGS: &[&dyn BucketSetting] = &[
    &encryption::Encryption,
    &versioning::Versioning,
    &lifecycle::Lifecycle,
    &public_access_block::PublicAccessBlock,
    &tls_policy::TlsPolicy,
    &tags::Tags,
];

/// Reads one setting back, compares, and applies if needed.
pub(super) async fn converge(
    s: &dyn BucketSetting,
    t: &Target,
    dry_run: bool,
    bucket_exists: bool,
) -> Row {
    let desired = s.describe(t);
    let mk = |result, detail: String| Row {
        setting: s.name().into(),
        desired: desired.clone(),
        result,
        detail,
    };
    if let Some(reason) = s.skip(t) {
        return mk(Outcome::Skipped, reason);
    }
    if !bucket_exists {
        return mk(Outcome::WouldApply, "bucket does not exist yet".into());
    }
    let current = match s.current(t).await {
        Ok(v) => v,
        Err(Fault::NotImplemented(m)) => return mk(Outcome::Unsupported, m),
        Err(Fault::Other(m)) => return mk(Outcome::Failed, format!("reading it back: {m}")),
        Err(Fault::Absent) => Value::Null,
        Err(Fault::Unreadable(m)) => {
            tracing::debug!("{}: unreadable reply ({m}); applying", s.name());
            Value::Null
        }
    };
    if current == s.desired(t) {
        return mk(Outcome::Unchanged, String::new());
    }
    let found = if current.is_null() {
        "not set".to_string()
    } else {
        format!("was {current}")
    };
    if dry_run {
        return mk(Outcome::WouldApply, found);
    }
    match s.apply(t).await {
        // Some servers accept a setting and keep only part of it (Garage drops lifecycle
        // transitions): read it back, and say so instead of claiming it applied.
        Ok(()) => match s.current(t).await {
            Ok(kept) if kept != s.desired(t) => mk(
                Outcome::Unsupported,
                format!("accepted, but the server kept only {kept}"),
            ),
            _ => mk(Outcome::Applied, found),
        },
        Err(Fault::NotImplemented(m)) => mk(Outcome::Unsupported, m),
        Err(Fault::Other(m) | Fault::Unreadable(m)) => mk(Outcome::Failed, m),
        Err(Fault::Absent) => mk(
            Outcome::Failed,
            "the server reported a missing resource".into(),
        ),
    }
}
