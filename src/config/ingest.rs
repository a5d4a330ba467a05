//! The settings of real events in: the HTTP ingest API (`[ingest]`) and the inboxes other
//! producers write to (`[[inbox]]`).

use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::store::LakeUrl;

/// The HTTP ingest API (`[ingest]`): `POST /ingest/<stream>` in `lakepipe up` and `serve`.
///
/// Records of concurrent requests to one stream are grouped into one object per event-time
/// hour, flushed when the oldest waiting record is `flush_ms` old or `max_batch_bytes` are
/// waiting (Vector's `batch.timeout_secs` / `batch.max_bytes`), and with `group_commit` as soon
/// as nothing more is being received and the stream's previous batch is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Longest a record waits for its batch to be written, in ms. Default 1000.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// A batch is written once this many bytes wait. Default 8 MiB.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: u64,
    /// Group commit: also write a batch as soon as no request of the stream is still being
    /// received and none of its batches is being written, so that a request never waits for
    /// company that is not coming. Off: batches are cut by `flush_ms` and `max_batch_bytes`
    /// only (Vector's behaviour: fewer objects, answers after the window). Default true.
    #[serde(default = "default_group_commit")]
    pub group_commit: bool,
    /// Largest request body, after gzip decoding (413 beyond). Default 16 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Largest record (one line, or one element of a JSON array; 413 beyond). Default 1 MiB.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// Request bytes held at once, across streams; beyond it requests get 503 with
    /// `Retry-After` instead of memory. Default 64 MiB.
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: u64,
    /// Tokens that may post, each to some streams. Requests from loopback need none; every
    /// other request needs one (`Authorization: Bearer`). Never printed.
    #[serde(default)]
    pub tokens: Vec<IngestToken>,
}

/// A token of the ingest API and the streams it may post to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestToken {
    /// The secret, as sent in `Authorization: Bearer`.
    pub token: String,
    /// Streams it may post to; `["*"]` for all.
    pub streams: Vec<String>,
}

impl IngestToken {
    /// Whether this token may post to `stream`.
    pub fn allows(&self, stream: &str) -> bool {
        self.streams.iter().any(|s| s == "*" || s == stream)
    }
}

fn default_flush_ms() -> u64 {
    1000
}
fn default_max_batch_bytes() -> u64 {
    8 << 20
}
fn default_group_commit() -> bool {
    true
}
fn default_max_body_bytes() -> u64 {
    16 << 20
}
fn default_max_record_bytes() -> u64 {
    1 << 20
}
fn default_max_inflight_bytes() -> u64 {
    64 << 20
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            flush_ms: default_flush_ms(),
            max_batch_bytes: default_max_batch_bytes(),
            group_commit: default_group_commit(),
            max_body_bytes: default_max_body_bytes(),
            max_record_bytes: default_max_record_bytes(),
            max_inflight_bytes: default_max_inflight_bytes(),
            tokens: Vec::new(),
        }
    }
}

/// Compression of an inbox's objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip when the key ends in `.gz` or the bytes start with gzip's magic number.
    #[default]
    Auto,
    /// Always gzip.
    Gzip,
    /// Never compressed.
    None,
}

/// Format of an inbox's objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboxFormat {
    /// Newline-delimited JSON objects (Firehose, Vector `codec = "json"`, Fluent Bit
    /// `format json_lines`); Firehose's records written back to back without newlines
    /// (`}{`) are split too.
    #[default]
    Ndjson,
}

/// An inbox (`[[inbox]]`): a prefix where another producer delivers objects of one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// The stream its records belong to.
    pub stream: String,
    /// Where the objects are: `s3://bucket/prefix` (any bucket the AWS environment can read)
    /// or a local directory.
    pub url: String,
    /// Object format. Default `ndjson`.
    #[serde(default)]
    pub format: InboxFormat,
    /// Object compression. Default `auto`.
    #[serde(default)]
    pub compression: Compression,
    /// Seconds between listings in `up` / `serve`. Default 10.
    #[serde(default = "default_poll_s")]
    pub poll_s: u64,
}

fn default_poll_s() -> u64 {
    10
}

impl InboxConfig {
    /// The parsed location.
    pub fn location(&self) -> std::result::Result<LakeUrl, String> {
        LakeUrl::parse(&self.url)
    }

    /// A name for the inbox that is stable across restarts: the stream and the location.
    pub fn id(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{}\n{}", self.stream, self.url));
        format!("{}-{}", self.stream, crate::hex::hex(&digest[..8]))
    }
}

/// Checks the `[ingest]` and `[[inbox]]` settings: known streams, sane limits, parseable URLs.
pub(super) fn validate(ingest: &IngestConfig, inboxes: &[InboxConfig]) -> Result<()> {
    let known = |s: &str| crate::sources::stream::stream_by_name(s).is_some();
    let invalid = |key: &'static str, message: String| Err(Error::Invalid { key, message });
    if !(1..=60_000).contains(&ingest.flush_ms) {
        return invalid(
            "ingest.flush_ms",
            format!("{} is not between 1 and 60000 ms", ingest.flush_ms),
        );
    }
    for (key, v) in [
        ("ingest.max_batch_bytes", ingest.max_batch_bytes),
        ("ingest.max_body_bytes", ingest.max_body_bytes),
        ("ingest.max_record_bytes", ingest.max_record_bytes),
        ("ingest.max_inflight_bytes", ingest.max_inflight_bytes),
    ] {
        if !(1024..=(4u64 << 30)).contains(&v) {
            return invalid(key, format!("{v} is not between 1 KiB and 4 GiB"));
        }
    }
    if 2 * ingest.max_body_bytes > ingest.max_inflight_bytes {
        return invalid(
            "ingest.max_inflight_bytes",
            format!(
                "{} is less than twice ingest.max_body_bytes ({}): a request holds its body and \
                 the records split out of it, so the largest bodies could never be taken",
                ingest.max_inflight_bytes, ingest.max_body_bytes
            ),
        );
    }
    for t in &ingest.tokens {
        if t.token.len() < 8 {
            return invalid(
                "ingest.tokens.token",
                "a token must have at least 8 characters".into(),
            );
        }
        if let Some(s) = t.streams.iter().find(|s| *s != "*" && !known(s)) {
            return invalid("ingest.tokens.streams", format!("unknown stream `{s}`"));
        }
    }
    for i in inboxes {
        if !known(&i.stream) {
            return invalid("inbox.stream", format!("unknown stream `{}`", i.stream));
        }
        i.location().map_err(|message| Error::Invalid {
            key: "inbox.url",
            message,
        })?;
        if !(1..=86_400).contains(&i.poll_s) {
            return invalid(
                "inbox.poll_s",
                format!("{} is not between 1 and 86400 seconds", i.poll_s),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_must_hold_a_largest_body_twice_and_streams_must_exist() {
        let ok = IngestConfig::default();
        assert!(validate(&ok, &[]).is_ok());
        let small = IngestConfig {
            max_body_bytes: 1 << 20,
            max_inflight_bytes: (2 << 20) - 1,
            ..IngestConfig::default()
        };
        let e = validate(&small, &[]).unwrap_err().to_string();
        assert!(e.contains("ingest.max_inflight_bytes"), "{e}");
        let inbox = InboxConfig {
            stream: "orders".into(),
            url: "s3://b/p/".into(),
            format: InboxFormat::Ndjson,
            compression: Compression::Auto,
            poll_s: 10,
        };
        let e = validate(&ok, &[inbox]).unwrap_err().to_string();
        assert!(e.contains("unknown stream `orders`"), "{e}");
    }
}
