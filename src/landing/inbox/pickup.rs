//! One pass over one inbox ([`InboxPickup`]): list what is new since the last pass, decide
//! per object version whether it is taken already, and take the others exactly once.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, Timelike as _, Utc};
use futures::StreamExt as _;
use object_store::ObjectMeta;
use serde::Serialize;
use tokio::sync::watch;

use super::decode::{decode, records};
use super::error::{BadObject, Error, Result};
use super::ledger::{
    Intent, LedgerKeys, Outcome, Quarantined, RELIST_WINDOW, State, Taken, digest,
    quarantine_copy_key, version, writer,
};
use crate::clock::wall_now;
use crate::config::InboxConfig;
use crate::layers::batch::lineage::LOOKBACK_DAYS;
use crate::layers::speed::{landed_key, partition_time};
use crate::store::{ObjectAttrs, Store, Version, WriteOutcome};

/// Largest object, and largest decoded object, that is taken (1 GiB): larger ones are
/// quarantined (recorded, not copied). An object is held in memory while it is taken.
pub const MAX_OBJECT_BYTES: u64 = 1 << 30;

/// The listing state is written after this many objects taken, and at the end of a pass.
const STATE_EVERY: u64 = 50;

/// What one pass over one inbox did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InboxMetrics {
    /// The inbox id (`<stream>-<16 hex>`).
    pub inbox: String,
    /// The stream its records belong to.
    pub stream: String,
    /// The inbox's location.
    pub url: String,
    /// Objects listed (after the settled keys).
    pub listed: u64,
    /// Object versions taken this pass: landed or quarantined (in a dry run: to be taken).
    pub taken: u64,
    /// Records landed.
    pub records: u64,
    /// Of which not JSON objects (landed as sent; silver quarantines them).
    pub not_json: u64,
    /// Speed-layer objects written.
    pub objects: u64,
    /// Speed-layer objects found already written (a take finished after a crash).
    pub already_present: u64,
    /// Object versions quarantined.
    pub quarantined: u64,
    /// Object versions listed again that were taken before.
    pub skipped_already_taken: u64,
    /// Objects that could not be read this pass (retried on the next).
    pub failed: u64,
    /// Keys settled: no longer listed.
    pub settled: u64,
}

/// One pass over one inbox. Build it with [`InboxPickup::new`], then `.await` it.
#[derive(Debug)]
pub struct InboxPickup {
    /// The inbox.
    inbox: InboxConfig,
    /// The store over the inbox's location.
    source: Store,
    /// The lake.
    lake: Store,
    /// How old an object must be before its key settles ([`RELIST_WINDOW`]).
    relist_window: Duration,
    /// Largest object and decoded object taken ([`MAX_OBJECT_BYTES`]).
    max_object_bytes: u64,
    /// Stops the pass between two objects once it turns true.
    shutdown: Option<watch::Receiver<bool>>,
    /// Only list and decide: take nothing, write nothing.
    dry_run: bool,
}

/// How taking one object version ended.
enum Took {
    WouldTake,
    Landed,
    Quarantined,
    AlreadyTaken,
}

/// Why an object could not be read.
enum ReadError {
    /// Gone: quarantined (recorded) so that it is not listed forever.
    Vanished,
    /// Anything else (network, throttling, rewritten since listed): retried on the next pass.
    Transient(String),
}

impl InboxPickup {
    /// A pass over `inbox`, read through `source`, landing into `lake`.
    pub fn new(inbox: InboxConfig, source: Store, lake: Store) -> InboxPickup {
        InboxPickup {
            inbox,
            source,
            lake,
            relist_window: RELIST_WINDOW,
            max_object_bytes: MAX_OBJECT_BYTES,
            shutdown: None,
            dry_run: false,
        }
    }

    /// How old an object must be before its key is no longer listed.
    pub fn with_relist_window(mut self, window: Duration) -> InboxPickup {
        self.relist_window = window;
        self
    }

    /// The size limit of an object and of what it decodes to.
    pub fn with_max_object_bytes(mut self, limit: u64) -> InboxPickup {
        self.max_object_bytes = limit;
        self
    }

    /// Stops the pass between two objects when `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> InboxPickup {
        self.shutdown = Some(shutdown);
        self
    }

    /// Only lists and decides what would be taken (counted in `taken`); reads no object and
    /// writes nothing.
    pub fn with_dry_run(mut self, dry_run: bool) -> InboxPickup {
        self.dry_run = dry_run;
        self
    }

    fn lake_error(&self, source: crate::store::Error) -> Error {
        Error::Lake {
            inbox: self.inbox.id(),
            source,
        }
    }

    async fn execute(self) -> Result<InboxMetrics> {
        let id = self.inbox.id();
        let keys = LedgerKeys::new(&id);
        let mut m = InboxMetrics {
            inbox: id.clone(),
            stream: self.inbox.stream.clone(),
            url: self.inbox.url.clone(),
            ..InboxMetrics::default()
        };
        let mut state = self.load_state(&keys).await?;
        let before = state.clone();
        // S3 lists in key order, so keys may settle as the listing goes (a backlog does not
        // pile up in the state); a local directory lists in no order, so only at the end.
        let sorted = !self.source.is_local();
        let mut listing = match &state.settled {
            Some(after) => self.source.list_after("", after),
            None => self.source.list(""),
        };
        let mut first_failed: Option<String> = None;
        let mut unsaved = 0;
        let mut exhausted = true;
        while let Some(item) = listing.next().await {
            let meta = match item {
                Ok(meta) => meta,
                Err(source) => {
                    self.save_state(&keys, &state, &before).await.ok();
                    return Err(Error::Source {
                        inbox: id.clone(),
                        url: self.inbox.url.clone(),
                        source,
                    });
                }
            };
            let key = meta.location.to_string();
            if key.is_empty() {
                continue;
            }
            m.listed += 1;
            let etag = version(&meta);
            if !state.is_taken(&key, &etag) {
                if self.shutdown.as_ref().is_some_and(|s| *s.borrow()) {
                    exhausted = false;
                    break;
                }
                match self.take(&mut m, &keys, &meta, &key, &etag).await {
                    Ok(Some(took)) => {
                        match took {
                            Took::WouldTake => {
                                m.taken += 1;
                                continue;
                            }
                            Took::Landed => m.taken += 1,
                            Took::Quarantined => {
                                m.taken += 1;
                                m.quarantined += 1;
                            }
                            Took::AlreadyTaken => m.skipped_already_taken += 1,
                        }
                        state.record(&key, &etag, meta.last_modified);
                        unsaved += 1;
                    }
                    Ok(None) => {
                        m.failed += 1;
                        if first_failed.as_ref().is_none_or(|f| key < *f) {
                            first_failed = Some(key.clone());
                        }
                    }
                    Err(e) => {
                        self.save_state(&keys, &state, &before).await.ok();
                        return Err(e);
                    }
                }
            } else {
                m.skipped_already_taken += 1;
            }
            if sorted {
                m.settled += state.settle(
                    wall_now(),
                    self.relist_window,
                    Some(&key),
                    first_failed.as_deref(),
                ) as u64;
            }
            if unsaved >= STATE_EVERY {
                self.save_state(&keys, &state, &before).await?;
                unsaved = 0;
            }
        }
        if exhausted {
            m.settled += state.settle(
                wall_now(),
                self.relist_window,
                None,
                first_failed.as_deref(),
            ) as u64;
        }
        self.save_state(&keys, &state, &before).await?;
        Ok(m)
    }

    /// The listing state; an unreadable one is started afresh (it is only a cache).
    async fn load_state(&self, keys: &LedgerKeys) -> Result<State> {
        let key = keys.state();
        let Some(body) = self
            .lake
            .get_opt(&key)
            .await
            .map_err(|e| self.lake_error(e))?
        else {
            return Ok(State::default());
        };
        match serde_json::from_slice(&body) {
            Ok(s) => Ok(s),
            Err(e) => {
                tracing::warn!(
                    inbox = %self.inbox.id(),
                    "{key} is unreadable ({e}); listing the inbox from its start"
                );
                Ok(State::default())
            }
        }
    }

    async fn save_state(&self, keys: &LedgerKeys, state: &State, before: &State) -> Result<()> {
        if state == before || self.dry_run {
            return Ok(());
        }
        self.lake
            .put_json(&keys.state(), state)
            .await
            .map_err(|e| self.lake_error(e))
    }

    /// Takes one object version not in the listing state: `None` if it could not be read
    /// this time.
    async fn take(
        &self,
        m: &mut InboxMetrics,
        keys: &LedgerKeys,
        meta: &ObjectMeta,
        key: &str,
        etag: &str,
    ) -> Result<Option<Took>> {
        let id = self.inbox.id();
        let digest = digest(&id, key, etag);
        let taken_key = keys.taken(&digest);
        if self
            .lake
            .head(&taken_key)
            .await
            .map_err(|e| self.lake_error(e))?
            .is_some()
        {
            return Ok(Some(Took::AlreadyTaken));
        }
        if self.dry_run {
            return Ok(Some(Took::WouldTake));
        }
        if meta.size > self.max_object_bytes {
            let reason = BadObject::TooLarge {
                what: "the object",
                limit: self.max_object_bytes,
            };
            self.quarantine(keys, meta, key, etag, &digest, &reason, None)
                .await?;
            return Ok(Some(Took::Quarantined));
        }
        let raw = match self.read(meta).await {
            Ok(raw) => raw,
            Err(ReadError::Vanished) => {
                self.quarantine(keys, meta, key, etag, &digest, &BadObject::Vanished, None)
                    .await?;
                return Ok(Some(Took::Quarantined));
            }
            Err(ReadError::Transient(message)) => {
                tracing::warn!(
                    inbox = %id,
                    key,
                    "cannot read the object, retrying next pass: {message}"
                );
                return Ok(None);
            }
        };
        let text = match decode(key, &raw, self.inbox.compression, self.max_object_bytes) {
            Ok(text) => text,
            Err(reason) => {
                self.quarantine(keys, meta, key, etag, &digest, &reason, Some(raw))
                    .await?;
                return Ok(Some(Took::Quarantined));
            }
        };
        drop(raw);
        let landed_at = self.intent(keys, meta, key, etag, &digest).await?;

        // Group the records by hour partition, in the order sent; each partition's object is
        // built only when it is written, so the object is in memory once more at most.
        type Partition<'a> = (DateTime<Utc>, usize, Vec<&'a [u8]>);
        let mut parts: BTreeMap<(NaiveDate, u32), Partition<'_>> = BTreeMap::new();
        let (mut records_n, mut not_json) = (0u64, 0u64);
        let field = crate::sources::stream::stream_by_name(&self.inbox.stream)
            .map_or("event_time", |s| s.event_time_field);
        for r in records(&text, field) {
            let t = partition_time(r.event_time, landed_at, LOOKBACK_DAYS);
            let (_, len, lines) = parts
                .entry((t.date_naive(), t.hour()))
                .or_insert_with(|| (t, 0, Vec::new()));
            *len += r.bytes.len() + 1;
            lines.push(r.bytes);
            records_n += 1;
            not_json += u64::from(!r.is_object);
        }

        let writer = writer(&digest);
        let attrs = ObjectAttrs {
            content_type: Some("application/x-ndjson".into()),
            metadata: vec![
                ("stream".into(), self.inbox.stream.clone()),
                ("inbox".into(), id.clone()),
            ],
        };
        let mut outputs = Vec::with_capacity(parts.len());
        for (_, (t, len, lines)) in parts {
            let out = landed_key(&self.inbox.stream, t, landed_at, &writer);
            let mut body = Vec::with_capacity(len);
            for line in lines {
                body.extend_from_slice(line);
                body.push(b'\n');
            }
            match self
                .lake
                .put_new_durable(&out, Bytes::from(body), &attrs)
                .await
                .map_err(|e| self.lake_error(e))?
            {
                WriteOutcome::Created => m.objects += 1,
                WriteOutcome::AlreadyPresent => m.already_present += 1,
            }
            crate::layers::speed::signal::landed();
            outputs.push(out);
        }
        m.records += records_n;
        m.not_json += not_json;
        let taken = Taken {
            inbox: id,
            stream: self.inbox.stream.clone(),
            key: key.to_string(),
            etag: etag.to_string(),
            size: meta.size,
            outcome: Outcome::Landed,
            landed_at,
            taken_at: wall_now(),
            records: records_n,
            not_json,
            outputs,
        };
        self.lake
            .put_json(&taken_key, &taken)
            .await
            .map_err(|e| self.lake_error(e))?;
        Ok(Some(Took::Landed))
    }

    /// Reads exactly the listed version: a rewrite since the listing is not taken under the
    /// old version's name (it is listed again next pass).
    async fn read(&self, meta: &ObjectMeta) -> Result<Bytes, ReadError> {
        match self
            .source
            .get_version(meta.location.as_ref(), meta.e_tag.as_deref())
            .await
        {
            Ok(Version::Bytes(b)) => Ok(b),
            Ok(Version::Gone) => Err(ReadError::Vanished),
            Ok(Version::Changed) => Err(ReadError::Transient(
                "rewritten since it was listed".to_string(),
            )),
            Err(e) => Err(ReadError::Transient(e.to_string())),
        }
    }

    /// Writes the intent to take an object version, create-only, and returns its
    /// `landed_at`: now, or the time of an earlier take that did not finish.
    async fn intent(
        &self,
        keys: &LedgerKeys,
        meta: &ObjectMeta,
        key: &str,
        etag: &str,
        digest: &str,
    ) -> Result<DateTime<Utc>> {
        let intent_key = keys.taking(digest);
        let intent = Intent {
            inbox: self.inbox.id(),
            key: key.to_string(),
            etag: etag.to_string(),
            size: meta.size,
            landed_at: wall_now(),
        };
        let body = serde_json::to_vec_pretty(&intent).map_err(|source| {
            self.lake_error(crate::store::Error::Encode {
                key: intent_key.clone(),
                source,
            })
        })?;
        if self
            .lake
            .create_if_absent(&intent_key, Bytes::from(body))
            .await
            .map_err(|e| self.lake_error(e))?
        {
            return Ok(intent.landed_at);
        }
        let existing = self
            .lake
            .get_opt(&intent_key)
            .await
            .map_err(|e| self.lake_error(e))?
            .unwrap_or_default();
        let earlier: Intent =
            serde_json::from_slice(&existing).map_err(|source| Error::Ledger {
                inbox: self.inbox.id(),
                key: intent_key.clone(),
                source,
            })?;
        tracing::info!(inbox = %self.inbox.id(), key, "finishing a take that did not finish");
        Ok(earlier.landed_at)
    }

    /// Sets an object version aside whole: its bytes (if read) under `quarantine/inbox/`, why
    /// in the ledger, and marks it taken so that it is never retried.
    #[allow(clippy::too_many_arguments)]
    async fn quarantine(
        &self,
        keys: &LedgerKeys,
        meta: &ObjectMeta,
        key: &str,
        etag: &str,
        digest: &str,
        reason: &BadObject,
        raw: Option<Bytes>,
    ) -> Result<()> {
        let id = self.inbox.id();
        let copy = match raw {
            Some(raw) => {
                let copy = quarantine_copy_key(&self.inbox.stream, digest, key);
                self.lake
                    .put(&copy, raw, &ObjectAttrs::default())
                    .await
                    .map_err(|e| self.lake_error(e))?;
                Some(copy)
            }
            None => None,
        };
        let now = wall_now();
        let record = Quarantined {
            inbox: id.clone(),
            stream: self.inbox.stream.clone(),
            url: self.inbox.url.clone(),
            key: key.to_string(),
            etag: etag.to_string(),
            size: meta.size,
            reason: reason.to_string(),
            at: now,
            copy,
        };
        self.lake
            .put_json(&keys.quarantine(digest), &record)
            .await
            .map_err(|e| self.lake_error(e))?;
        let taken = Taken {
            inbox: id.clone(),
            stream: self.inbox.stream.clone(),
            key: key.to_string(),
            etag: etag.to_string(),
            size: meta.size,
            outcome: Outcome::Quarantined,
            landed_at: now,
            taken_at: now,
            records: 0,
            not_json: 0,
            outputs: Vec::new(),
        };
        self.lake
            .put_json(&keys.taken(digest), &taken)
            .await
            .map_err(|e| self.lake_error(e))?;
        tracing::warn!(inbox = %id, key, "quarantined: {reason}");
        Ok(())
    }
}

impl IntoFuture for InboxPickup {
    type Output = Result<InboxMetrics>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.execute())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::config::{Compression, InboxFormat};
    use crate::store::local_store;

    struct Fixture {
        _dirs: (tempfile::TempDir, tempfile::TempDir),
        inbox_dir: std::path::PathBuf,
        inbox: InboxConfig,
        source: Store,
        lake: Store,
    }

    async fn fixture() -> Fixture {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let inbox_dir = a.path().to_path_buf();
        let inbox = InboxConfig {
            stream: "api_logs".into(),
            url: inbox_dir.display().to_string(),
            format: InboxFormat::Ndjson,
            compression: Compression::Auto,
            poll_s: 10,
        };
        let source = local_store(&inbox_dir).await;
        let lake = local_store(b.path()).await;
        Fixture {
            _dirs: (a, b),
            inbox_dir,
            inbox,
            source,
            lake,
        }
    }

    impl Fixture {
        async fn pass(&self) -> InboxMetrics {
            InboxPickup::new(self.inbox.clone(), self.source.clone(), self.lake.clone())
                .await
                .unwrap()
        }

        fn write(&self, name: &str, body: &[u8]) {
            let p = self.inbox_dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }

        /// Every landed line, sorted.
        async fn landed(&self) -> Vec<String> {
            let mut lines = Vec::new();
            let mut l = self.lake.list("realtime/api_logs");
            while let Some(m) = l.next().await {
                let m = m.unwrap();
                let body = self
                    .lake
                    .get_opt(m.location.as_ref())
                    .await
                    .unwrap()
                    .unwrap();
                lines.extend(
                    String::from_utf8(body.to_vec())
                        .unwrap()
                        .lines()
                        .map(str::to_string),
                );
            }
            lines.sort();
            lines
        }
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn line(n: u32, event_time: DateTime<Utc>) -> String {
        format!(
            "{{\"n\":{n},\"event_time\":\"{}\"}}",
            crate::clock::rfc3339_secs(event_time)
        )
    }

    #[tokio::test]
    async fn each_version_is_taken_once_by_event_time_even_without_the_state() {
        let f = fixture().await;
        let hour_ago = wall_now() - Duration::hours(1);
        let text = format!("{}\n{}\nnot json\n", line(1, hour_ago), line(2, wall_now()));
        f.write("a/1.json", text.as_bytes());
        f.write("a/2.json.gz", &gzip(line(3, hour_ago).as_bytes()));

        let m = f.pass().await;
        assert_eq!((m.listed, m.taken, m.records, m.not_json), (2, 2, 4, 1));
        let landed = f.landed().await;
        assert_eq!(landed.len(), 4);
        let hour_dir = format!("hour={:02}", hour_ago.hour());
        let mut keys = Vec::new();
        let mut l = f.lake.list("realtime/api_logs");
        while let Some(m) = l.next().await {
            keys.push(m.unwrap().location.to_string());
        }
        assert!(keys.iter().any(|k| k.contains(&hour_dir)), "{keys:?}");
        assert!(keys.iter().all(|k| k.contains("_inbox-")), "{keys:?}");

        // A dry run of a new object takes nothing.
        f.write("a/3.json", line(4, hour_ago).as_bytes());
        let m = InboxPickup::new(f.inbox.clone(), f.source.clone(), f.lake.clone())
            .with_dry_run(true)
            .await
            .unwrap();
        assert_eq!((m.listed, m.taken, m.records), (3, 1, 0));
        assert_eq!(f.landed().await, landed);
        std::fs::remove_file(f.inbox_dir.join("a/3.json")).unwrap();

        // Again, and again without the listing state: nothing is taken twice.
        let m = f.pass().await;
        assert_eq!((m.taken, m.skipped_already_taken), (0, 2));
        f.lake
            .delete(&LedgerKeys::new(&f.inbox.id()).state())
            .await
            .unwrap();
        let m = f.pass().await;
        assert_eq!((m.taken, m.skipped_already_taken), (0, 2));
        assert_eq!(f.landed().await, landed);

        // A rewrite is a new version.
        f.write("a/1.json", line(9, hour_ago).as_bytes());
        let m = f.pass().await;
        assert_eq!((m.taken, m.records), (1, 1));
        assert_eq!(f.landed().await.len(), 5);
    }

    #[tokio::test]
    async fn a_take_cut_short_is_finished_under_the_same_names() {
        let f = fixture().await;
        let t = wall_now() - Duration::hours(2);
        f.write("b.json", format!("{}\n", line(1, t)).as_bytes());
        let meta = f.source.head("b.json").await.unwrap().unwrap();
        let etag = version(&meta);
        let d = digest(&f.inbox.id(), "b.json", &etag);
        let keys = LedgerKeys::new(&f.inbox.id());
        // The crash: the intent and the landed object exist, the taken record does not.
        let landed_at = crate::clock::parse_utc("2026-02-01T10:00:00Z").unwrap();
        let intent = Intent {
            inbox: f.inbox.id(),
            key: "b.json".into(),
            etag,
            size: meta.size,
            landed_at,
        };
        f.lake.put_json(&keys.taking(&d), &intent).await.unwrap();
        let out = landed_key("api_logs", t, landed_at, &writer(&d));
        f.lake
            .put_new_durable(
                &out,
                Bytes::from(format!("{}\n", line(1, t))),
                &ObjectAttrs::default(),
            )
            .await
            .unwrap();

        let m = f.pass().await;
        assert_eq!((m.taken, m.objects, m.already_present), (1, 0, 1));
        assert_eq!(f.landed().await.len(), 1);
        let taken: Taken =
            serde_json::from_slice(&f.lake.get_opt(&keys.taken(&d)).await.unwrap().unwrap())
                .unwrap();
        assert_eq!(taken.landed_at, landed_at);
        assert_eq!(taken.outputs, vec![out]);
    }

    #[tokio::test]
    async fn a_corrupt_object_is_quarantined_once_and_keys_settle() {
        let f = fixture().await;
        let mut bad = gzip(b"{\"n\":1}\n");
        bad.truncate(bad.len() / 2);
        f.write("c/bad.gz", &bad);
        f.write("c/good.json", b"{\"n\":2}\n");

        let m = f.pass().await;
        assert_eq!((m.taken, m.quarantined, m.records), (2, 1, 1));
        let d = digest(&f.inbox.id(), "c/bad.gz", &{
            let meta = f.source.head("c/bad.gz").await.unwrap().unwrap();
            version(&meta)
        });
        let keys = LedgerKeys::new(&f.inbox.id());
        let q: Quarantined =
            serde_json::from_slice(&f.lake.get_opt(&keys.quarantine(&d)).await.unwrap().unwrap())
                .unwrap();
        assert_eq!(q.key, "c/bad.gz");
        assert!(q.reason.starts_with("corrupt gzip"), "{}", q.reason);
        let copy = q.copy.unwrap();
        assert_eq!(f.lake.get_opt(&copy).await.unwrap().unwrap(), bad);

        let m = f.pass().await;
        assert_eq!((m.taken, m.quarantined), (0, 0));

        // With no relist window, both keys settle and are no longer listed.
        let m = InboxPickup::new(f.inbox.clone(), f.source.clone(), f.lake.clone())
            .with_relist_window(Duration::zero())
            .await
            .unwrap();
        assert_eq!((m.listed, m.settled), (2, 2));
        let state: State =
            serde_json::from_slice(&f.lake.get_opt(&keys.state()).await.unwrap().unwrap()).unwrap();
        assert_eq!(state.settled.as_deref(), Some("c/good.json"));
        assert!(state.recent.is_empty());
        let m = f.pass().await;
        assert_eq!(m.listed, 0);
        f.write("d/new.json", b"{\"n\":3}\n");
        let m = f.pass().await;
        assert_eq!((m.listed, m.taken), (1, 1));
    }
}
