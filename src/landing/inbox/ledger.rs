//! What an inbox has taken, kept in the lake under `_lakepipe/inbox/<inbox id>/`:
//!
//! - `taking/<digest>.json`: the intent to take one object version (key, ETag) and the
//!   `landed_at` its landed objects are named with, written create-only before anything lands,
//!   so a re-take after a crash writes the same keys with the same bytes;
//! - `taken/<digest>.json`: one per object version taken — landed or quarantined — the record
//!   that it is never taken again;
//! - `quarantine/<digest>.json`: why an object was quarantined (its bytes, when not too large,
//!   are copied to `quarantine/inbox/<stream>/<digest>/<file name>`);
//! - `state.json` ([`State`]): where the next listing starts, and the object versions taken
//!   recently. It is a cache of the records above: a lost or stale state costs a HEAD per
//!   object listed again, never a second take.
//!
//! The digest of an object version is the first 8 bytes (16 hex digits) of
//! sha256(inbox id, key, ETag); it also names the landed objects' writer, `inbox-<digest>`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Root of the ledgers of all inboxes.
pub const LEDGER_PREFIX: &str = "_lakepipe/inbox";
/// Root of quarantined objects' bytes.
pub const QUARANTINE_PREFIX: &str = "quarantine/inbox";

/// How long after an object was last modified its key may still be followed by new keys that
/// sort before it (Firehose names an object after its buffer's start and writes it up to 15
/// minutes later, more when it retries): keys are settled — no longer listed — only once their
/// object is older than this. An object rewritten under a settled key is not seen again.
pub const RELIST_WINDOW: Duration = Duration::hours(1);

/// The digest of one object version of an inbox (16 lower-case hex digits).
pub fn digest(inbox_id: &str, key: &str, etag: &str) -> String {
    let d = sha2::Sha256::digest(format!("{inbox_id}\n{key}\n{etag}"));
    crate::hex::hex(&d[..8])
}

/// The writer tag of the objects landed from one object version: `inbox-<digest>`.
pub fn writer(digest: &str) -> String {
    format!("inbox-{digest}")
}

/// The version of an object: its ETag, or (for a store that gives none) its size and
/// modification time.
pub fn version(meta: &object_store::ObjectMeta) -> String {
    match &meta.e_tag {
        Some(e) => e.clone(),
        None => format!(
            "{}-{}",
            meta.size,
            meta.last_modified.timestamp_nanos_opt().unwrap_or_default()
        ),
    }
}

/// The lake keys of one inbox's ledger.
#[derive(Debug, Clone)]
pub struct LedgerKeys {
    root: String,
}

impl LedgerKeys {
    /// The keys of the inbox `inbox_id`.
    pub fn new(inbox_id: &str) -> LedgerKeys {
        LedgerKeys {
            root: format!("{LEDGER_PREFIX}/{inbox_id}"),
        }
    }

    /// The listing state.
    pub fn state(&self) -> String {
        format!("{}/state.json", self.root)
    }

    /// The intent record of an object version.
    pub fn taking(&self, digest: &str) -> String {
        format!("{}/taking/{digest}.json", self.root)
    }

    /// The record that an object version was taken.
    pub fn taken(&self, digest: &str) -> String {
        format!("{}/taken/{digest}.json", self.root)
    }

    /// The quarantine record of an object version.
    pub fn quarantine(&self, digest: &str) -> String {
        format!("{}/quarantine/{digest}.json", self.root)
    }
}

/// Where the bytes of a quarantined object are copied: its file name kept, under its digest.
pub fn quarantine_copy_key(stream: &str, digest: &str, key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    format!("{QUARANTINE_PREFIX}/{stream}/{digest}/{name}")
}

/// The intent to take an object version (`taking/<digest>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The inbox id.
    pub inbox: String,
    /// The object's key in the inbox.
    pub key: String,
    /// Its version (ETag).
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was picked up: the time in the names of the objects landed from it.
    pub landed_at: DateTime<Utc>,
}

/// How an object version was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its records were landed.
    Landed,
    /// It was set aside whole.
    Quarantined,
}

/// The record that an object version was taken (`taken/<digest>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Taken {
    /// The inbox id.
    pub inbox: String,
    /// The stream its records belong to.
    pub stream: String,
    /// The object's key in the inbox.
    pub key: String,
    /// Its version (ETag).
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
    /// Landed or quarantined.
    pub outcome: Outcome,
    /// The time in the landed objects' names (the pickup time).
    pub landed_at: DateTime<Utc>,
    /// When the take finished.
    pub taken_at: DateTime<Utc>,
    /// Records landed.
    pub records: u64,
    /// Of which not JSON objects (landed as sent; silver quarantines them).
    pub not_json: u64,
    /// The landed objects' keys in the lake.
    pub outputs: Vec<String>,
}

/// Why an object version was quarantined (`quarantine/<digest>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The inbox id.
    pub inbox: String,
    /// The stream.
    pub stream: String,
    /// The inbox's location.
    pub url: String,
    /// The object's key in the inbox.
    pub key: String,
    /// Its version (ETag).
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
    /// Why it cannot be taken.
    pub reason: String,
    /// When it was set aside.
    pub at: DateTime<Utc>,
    /// Where its bytes were copied in the lake (none when too large or gone).
    pub copy: Option<String>,
}

/// A recently taken object version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// Its version (ETag).
    pub etag: String,
    /// When the object was last modified.
    pub modified: DateTime<Utc>,
}

/// The listing state of an inbox (`state.json`): every key up to `settled` is done for good
/// and no longer listed; the versions taken above it are in `recent`, so re-listing them
/// takes nothing. Its size is bounded by the objects modified in the last [`RELIST_WINDOW`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The last settled key: listings start after it.
    #[serde(default)]
    pub settled: Option<String>,
    /// The versions taken after `settled`, by key.
    #[serde(default)]
    pub recent: BTreeMap<String, Seen>,
}

impl State {
    /// Has this version of `key` been taken?
    pub fn is_taken(&self, key: &str, etag: &str) -> bool {
        self.recent.get(key).is_some_and(|s| s.etag == etag)
    }

    /// Records that this version of `key` was taken (a later version replaces an earlier one).
    pub fn record(&mut self, key: &str, etag: &str, modified: DateTime<Utc>) {
        self.recent.insert(
            key.to_string(),
            Seen {
                etag: etag.to_string(),
                modified,
            },
        );
    }

    /// Advances `settled` over the leading taken keys whose objects were last modified at
    /// least `window` before `now`, and forgets them. Only keys that this pass has listed up
    /// to (`listed_up_to`, `None` once the listing is exhausted) and that sort before the
    /// first key that failed this pass (`first_failed`) may settle: a key not yet listed, or
    /// not taken, must be listed again. Returns how many keys settled.
    pub fn settle(
        &mut self,
        now: DateTime<Utc>,
        window: Duration,
        listed_up_to: Option<&str>,
        first_failed: Option<&str>,
    ) -> usize {
        let mut settled = 0;
        while let Some(entry) = self.recent.first_entry() {
            let key = entry.key().as_str();
            let listed = listed_up_to.is_none_or(|up_to| key <= up_to);
            let before_failure = first_failed.is_none_or(|f| key < f);
            if !(listed && before_failure && entry.get().modified + window <= now) {
                break;
            }
            let (key, _) = entry.remove_entry();
            self.settled = Some(key);
            settled += 1;
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::clock::parse_utc(s).unwrap()
    }

    #[test]
    fn digests_are_deterministic_and_tell_versions_apart() {
        let a = digest("api_logs-0123456789abcdef", "2026/02/01/10/a.gz", "\"e1\"");
        assert_eq!(
            a,
            digest("api_logs-0123456789abcdef", "2026/02/01/10/a.gz", "\"e1\"")
        );
        assert_eq!(a.len(), 16);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(
            a,
            digest("api_logs-0123456789abcdef", "2026/02/01/10/a.gz", "\"e2\"")
        );
        assert_ne!(
            a,
            digest("api_logs-0123456789abcdef", "2026/02/01/10/b.gz", "\"e1\"")
        );
        assert_ne!(
            a,
            digest("api_logs-fedcba9876543210", "2026/02/01/10/a.gz", "\"e1\"")
        );
        // Pinned: a change here would re-take every object after an upgrade.
        assert_eq!(digest("i", "k", "e"), {
            let d = sha2::Sha256::digest(b"i\nk\ne");
            d[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        let w = writer(&a);
        let name = format!("api_logs_20260201T100000Z_{w}.jsonl");
        assert_eq!(
            crate::layers::speed::landed_at("api_logs", &name),
            Some(t("2026-02-01T10:00:00Z")),
            "the catalog and lineage accept the writer tag"
        );
    }

    #[test]
    fn ledger_keys_and_quarantine_copy() {
        let k = LedgerKeys::new("api_logs-00");
        assert_eq!(k.state(), "_lakepipe/inbox/api_logs-00/state.json");
        assert_eq!(k.taking("ab"), "_lakepipe/inbox/api_logs-00/taking/ab.json");
        assert_eq!(k.taken("ab"), "_lakepipe/inbox/api_logs-00/taken/ab.json");
        assert_eq!(
            k.quarantine("ab"),
            "_lakepipe/inbox/api_logs-00/quarantine/ab.json"
        );
        assert_eq!(
            quarantine_copy_key("api_logs", "ab", "2026/02/01/x.gz"),
            "quarantine/inbox/api_logs/ab/x.gz"
        );
    }

    #[test]
    fn a_new_version_of_a_key_is_not_taken() {
        let mut s = State::default();
        s.record("a", "e1", t("2026-02-01T10:00:00Z"));
        assert!(s.is_taken("a", "e1"));
        assert!(!s.is_taken("a", "e2"));
        assert!(!s.is_taken("b", "e1"));
        s.record("a", "e2", t("2026-02-01T10:05:00Z"));
        assert!(s.is_taken("a", "e2"));
        assert!(!s.is_taken("a", "e1"));
    }

    #[test]
    fn only_old_contiguous_listed_keys_settle() {
        let w = Duration::hours(1);
        let now = t("2026-02-01T12:00:00Z");
        let mut s = State::default();
        s.record("k1", "e", t("2026-02-01T10:00:00Z"));
        s.record("k2", "e", t("2026-02-01T10:30:00Z"));
        s.record("k3", "e", t("2026-02-01T11:30:00Z")); // younger than the window
        s.record("k4", "e", t("2026-02-01T09:00:00Z"));

        // Listed only up to k1: k2 may be followed by unlisted keys.
        let mut a = s.clone();
        assert_eq!(a.settle(now, w, Some("k1"), None), 1);
        assert_eq!(a.settled.as_deref(), Some("k1"));
        assert_eq!(a.recent.len(), 3);

        // A failure at k2 stops settling before it.
        let mut b = s.clone();
        assert_eq!(b.settle(now, w, None, Some("k2")), 1);
        assert_eq!(b.settled.as_deref(), Some("k1"));

        // k3 is too young: k4, older, stays behind it too.
        let mut c = s.clone();
        assert_eq!(c.settle(now, w, None, None), 2);
        assert_eq!(c.settled.as_deref(), Some("k2"));
        assert_eq!(c.recent.keys().collect::<Vec<_>>(), ["k3", "k4"]);

        // An hour later everything settles and the state is empty again.
        assert_eq!(c.settle(now + w, w, None, None), 2);
        assert_eq!(c.settled.as_deref(), Some("k4"));
        assert!(c.recent.is_empty());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), c);
    }
}
