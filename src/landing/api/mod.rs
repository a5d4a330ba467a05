//! The HTTP ingest API's engine (`POST /ingest/<stream>` in `lakepipe up` and `serve`; the
//! HTTP side is `crate::web::ingest`). A request's body is decoded and split into records
//! (`body`), its bytes held against the process's in-flight budget (`budget`), its accepted
//! records handed to its stream's micro-batcher (`batcher`), which lands them durably and
//! create-only as `realtime/<stream>/date=…/hour=…/<stream>_<landed>_api-<process>-<seq>.jsonl`
//! and only then answers. `Idempotency-Key`s are kept in the lake (`idempotency`), so a
//! retry lands nothing twice, across restarts too. Counters for `/metrics` are in `metrics`.
//!
//! Owns nothing but those objects and `_lakepipe/ingest/`; the batch layer reads the objects
//! like any other speed-layer file.

mod batcher;
mod body;
mod budget;
mod error;
mod idempotency;
mod metrics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

pub use body::{Encoding, Parsed, Record, RecordError};
pub use budget::{Budget, Reservation};
pub use error::{Error, Result};
pub use idempotency::{IdempotencyRecord, MAX_KEY_LEN, PREFIX as IDEMPOTENCY_PREFIX, check_key};
pub use metrics::{IngestCounters, count_records, count_request, ingest_counters};

use crate::config::IngestConfig;
use crate::layers::batch::lineage::LOOKBACK_DAYS;
use crate::layers::speed::partition_time;
use crate::store::{Store, WriteOutcome};
use batcher::{Keyed, Pending, Settings, Writer, hour_of};
use idempotency::{Decision, Locks};

/// The answer to an ingest request (HTTP 200, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The stream posted to.
    pub stream: String,
    /// Records landed (JSON objects).
    pub accepted: u64,
    /// Records not landed (not JSON objects), each in `errors`.
    pub rejected: u64,
    /// Keys of the objects holding this request's records, sorted.
    pub objects: Vec<String>,
    /// Why each rejected record was not landed.
    pub errors: Vec<RecordError>,
    /// Whether this is the stored answer of an earlier request with the same
    /// `Idempotency-Key` (nothing new was landed).
    pub replayed: bool,
}

/// A body decoded and split, ready for [`Ingest::submit`].
#[derive(Debug)]
pub struct Prepared {
    /// Its records.
    pub parsed: Parsed,
}

/// A request being received (see [`Ingest::receiving`]); ends when dropped.
#[derive(Debug)]
pub struct Receiving {
    counter: Option<Arc<AtomicUsize>>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if let Some(c) = self.counter.take() {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The ingest API of one process: cheap to clone. Its batchers run until every clone is
/// dropped; once `shutdown` turns true they flush at once instead of waiting for the window.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: IngestConfig,
    budget: Budget,
    batchers: BTreeMap<&'static str, mpsc::Sender<Pending>>,
    /// Requests of each stream whose bodies are being received (group commit waits for them).
    receiving: BTreeMap<&'static str, Arc<AtomicUsize>>,
    locks: Locks,
    writer: Arc<Writer>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("process", &self.inner.writer.process_hex())
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// The ingest API over `store` with `config` (`[ingest]`); starts one batcher per seed
    /// stream (call inside a Tokio runtime).
    pub fn new(
        store: Store,
        config: IngestConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Ingest> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|source| Error::NoRandomness { source })?;
        let writer = Arc::new(Writer::new(u64::from_le_bytes(id)));
        let settings = Settings {
            flush: Duration::from_millis(config.flush_ms),
            max_batch_bytes: config.max_batch_bytes,
            group_commit: config.group_commit,
        };
        let receiving: BTreeMap<&'static str, Arc<AtomicUsize>> =
            crate::sources::stream::all_streams()
                .iter()
                .map(|s| (s.name, Arc::new(AtomicUsize::new(0))))
                .collect();
        let batchers = receiving
            .iter()
            .map(|(&name, counter)| {
                let tx = batcher::spawn(
                    name,
                    store.clone(),
                    settings,
                    Arc::clone(&writer),
                    Arc::clone(counter),
                    shutdown.clone(),
                );
                (name, tx)
            })
            .collect();
        Ok(Ingest {
            inner: Arc::new(Inner {
                store,
                budget: Budget::new(config.max_inflight_bytes),
                config,
                batchers,
                receiving,
                locks: Locks::default(),
                writer,
            }),
        })
    }

    /// The `[ingest]` settings.
    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    /// This process's id in object keys (16 hex digits).
    pub fn process_id(&self) -> String {
        self.inner.writer.process_hex()
    }

    /// A new, empty reservation of the in-flight budget for one request.
    pub fn reservation(&self) -> Reservation {
        self.inner.budget.reservation()
    }

    /// Decodes and splits a whole body (off the async threads), holding what it decodes in
    /// `reservation`.
    pub async fn prepare(
        &self,
        body: Vec<u8>,
        encoding: Encoding,
        mut reservation: Reservation,
    ) -> Result<(Prepared, Reservation)> {
        let (max_body, max_record) = (
            self.inner.config.max_body_bytes,
            self.inner.config.max_record_bytes,
        );
        tokio::task::spawn_blocking(move || {
            let decoded = body::decode(body, encoding, max_body, &mut reservation)?;
            // Splitting copies the records out of the decoded body: both are held at once.
            reservation.grow_to(reservation.bytes().max(2 * decoded.len() as u64))?;
            let parsed = body::split(&decoded, max_record)?;
            Ok((Prepared { parsed }, reservation))
        })
        .await
        .map_err(|e| Error::BodyRead {
            reason: e.to_string(),
        })?
    }

    /// Marks a request of `stream` as being received until the guard is handed to
    /// [`Ingest::submit_received`] or dropped: group commit does not cut a batch while one is.
    pub fn receiving(&self, stream: &str) -> Receiving {
        let counter = self.inner.receiving.get(stream).cloned();
        if let Some(c) = &counter {
            c.fetch_add(1, Ordering::SeqCst);
        }
        Receiving { counter }
    }

    /// Lands the accepted records of `prepared` on `stream` and answers once they are
    /// durable; with an idempotency key (checked with [`check_key`]), a key already answered
    /// replays its first answer and lands nothing (see `idempotency`).
    pub async fn submit(
        &self,
        stream: &str,
        prepared: Prepared,
        idempotency_key: Option<&str>,
    ) -> Result<Answer> {
        self.submit_received(
            stream,
            prepared,
            idempotency_key,
            Receiving { counter: None },
        )
        .await
    }

    /// [`Ingest::submit`] of a request marked with [`Ingest::receiving`]: the mark ends as its
    /// records join their batch.
    pub async fn submit_received(
        &self,
        stream: &str,
        prepared: Prepared,
        idempotency_key: Option<&str>,
        receiving: Receiving,
    ) -> Result<Answer> {
        let Some((&name, tx)) = self.inner.batchers.get_key_value(stream) else {
            return Err(Error::UnknownStream {
                stream: stream.to_string(),
            });
        };
        let Prepared { parsed } = prepared;
        // Only a keyed request pays for the digest (what a retry must repeat).
        let digest = idempotency_key.map(|_| idempotency::parsed_sha256(&parsed));
        let answer = Answer {
            stream: name.to_string(),
            accepted: parsed.records.len() as u64,
            rejected: parsed.errors.len() as u64,
            objects: Vec::new(),
            errors: parsed.errors,
            replayed: false,
        };
        let arrived = crate::clock::now_to_the_second();
        let keyed = idempotency_key.zip(digest).map(|(key, body_sha256)| Keyed {
            record_key: idempotency::record_key(name, key),
            body_sha256,
            arrived,
        });
        // Requests with the same key in this process wait for each other.
        let _guard = match &keyed {
            Some(k) => Some(self.inner.locks.lock(&k.record_key).await),
            None => None,
        };
        if let Some(k) = &keyed
            && let Some(record) = idempotency::load(&self.inner.store, &k.record_key).await?
        {
            let exists = idempotency::existing(&self.inner.store, &record).await?;
            match record.decide(name, &k.body_sha256, &exists)? {
                Decision::Replay => {}
                Decision::Recover(missing) => {
                    self.recover(name, &record, &missing, &parsed.records)
                        .await?;
                    let _ =
                        idempotency::mark_done(&self.inner.store, &k.record_key, record.clone())
                            .await;
                }
            }
            return Ok(record.replayed_answer());
        }
        if parsed.records.is_empty() {
            return Ok(answer);
        }
        let records: Vec<_> = parsed
            .records
            .into_iter()
            .map(|r| {
                (
                    hour_of(partition_time(r.event_time, arrived, LOOKBACK_DAYS)),
                    r.bytes,
                )
            })
            .collect();
        let (reply, answered) = oneshot::channel();
        let pending = Pending {
            bytes: records.iter().map(|(_, b)| b.len() as u64).sum(),
            records,
            answer,
            keyed,
            reply,
        };
        // No longer being received (before it joins, so that the batcher never waits for a
        // request that is already in its batch).
        drop(receiving);
        tx.send(pending).await.map_err(|_| Error::Stopping)?;
        answered.await.map_err(|_| Error::Stopping)?
    }

    /// Lands `records` of the partitions of `missing` under their recorded keys.
    async fn recover(
        &self,
        stream: &str,
        record: &IdempotencyRecord,
        missing: &[idempotency::RecordedObject],
        records: &[Record],
    ) -> Result<()> {
        for o in missing {
            let mut body = Vec::new();
            let mut lines = 0u64;
            for r in records {
                let hour = hour_of(partition_time(r.event_time, record.arrived, LOOKBACK_DAYS));
                if hour.format("%Y-%m-%d").to_string() == o.date
                    && chrono::Timelike::hour(&hour) == o.hour
                {
                    body.extend_from_slice(&r.bytes);
                    body.push(b'\n');
                    lines += 1;
                }
            }
            if lines != o.lines {
                tracing::warn!(
                    stream,
                    key = o.key,
                    recorded = o.lines,
                    found = lines,
                    "ingest recovery: the retry's records of a missing object differ from the record"
                );
            }
            let attrs = batcher::attrs(stream, lines);
            match self
                .inner
                .store
                .put_new_durable(&o.key, body.into(), &attrs)
                .await
            {
                Ok(WriteOutcome::Created | WriteOutcome::AlreadyPresent) => {}
                Err(source) => {
                    return Err(Error::Store {
                        op: "re-landing of an idempotent request's object",
                        source,
                    });
                }
            }
            tracing::info!(
                stream,
                key = o.key,
                lines,
                "ingest recovery: object re-landed"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ingest(dir: &std::path::Path) -> (Ingest, Store, watch::Sender<bool>) {
        let store = crate::store::local_store(dir).await;
        let (tx, rx) = watch::channel(false);
        let config = IngestConfig {
            flush_ms: 20,
            ..IngestConfig::default()
        };
        (Ingest::new(store.clone(), config, rx).unwrap(), store, tx)
    }

    async fn prepared(i: &Ingest, body: &str) -> Prepared {
        i.prepare(
            body.as_bytes().to_vec(),
            Encoding::Identity,
            i.reservation(),
        )
        .await
        .unwrap()
        .0
    }

    /// Two records (one two hours old, one without event time) and a rejected line.
    fn body() -> String {
        let t = crate::clock::rfc3339_secs(crate::clock::wall_now() - chrono::Duration::hours(2));
        format!("{{\"event_time\":\"{t}\",\"n\":1}}\n{{\"n\":2}}\n7\n")
    }

    #[tokio::test]
    async fn a_retry_replays_and_relands_only_what_a_crash_left_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (i, store, _stop) = ingest(dir.path()).await;
        let body = body();
        let first = i
            .submit("api_logs", prepared(&i, &body).await, Some("k"))
            .await
            .unwrap();
        assert_eq!(
            (first.accepted, first.rejected, first.replayed),
            (2, 1, false)
        );
        // No event time: the arrival hour, apart from the record of two hours ago.
        assert_eq!(first.objects.len(), 2);
        let bytes: Vec<_> = {
            let mut v = Vec::new();
            for k in &first.objects {
                v.push(store.get_opt(k).await.unwrap().unwrap());
            }
            v
        };
        // Same key, same body: the first answer, nothing new.
        let again = i
            .submit("api_logs", prepared(&i, &body).await, Some("k"))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.objects, first.objects);
        // Same key, another body: refused.
        assert!(matches!(
            i.submit("api_logs", prepared(&i, "{\"n\":3}\n").await, Some("k"))
                .await,
            Err(Error::KeyReused { .. })
        ));
        // A crash after the record, before the objects: the record is pending and the
        // objects are gone. The retry lands them again under the recorded keys.
        let rkey = idempotency::record_key("api_logs", "k");
        let mut record = idempotency::load(&store, &rkey).await.unwrap().unwrap();
        record.state = idempotency::State::Pending;
        store
            .put(
                &rkey,
                serde_json::to_vec(&record).unwrap().into(),
                &crate::store::ObjectAttrs::default(),
            )
            .await
            .unwrap();
        for k in &first.objects {
            store.delete(k).await.unwrap();
        }
        let recovered = i
            .submit("api_logs", prepared(&i, &body).await, Some("k"))
            .await
            .unwrap();
        assert!(recovered.replayed);
        assert_eq!(recovered.objects, first.objects);
        for (k, b) in first.objects.iter().zip(&bytes) {
            assert_eq!(&store.get_opt(k).await.unwrap().unwrap(), b, "{k}");
        }
        let record = idempotency::load(&store, &rkey).await.unwrap().unwrap();
        assert_eq!(record.state, idempotency::State::Done);
    }

    #[tokio::test]
    async fn concurrent_requests_with_one_key_land_once() {
        let dir = tempfile::tempdir().unwrap();
        let (i, store, _stop) = ingest(dir.path()).await;
        let body = body();
        let (a, b) = tokio::join!(
            async {
                i.submit("api_logs", prepared(&i, &body).await, Some("same"))
                    .await
            },
            async {
                i.submit("api_logs", prepared(&i, &body).await, Some("same"))
                    .await
            },
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.objects, b.objects);
        assert!(a.replayed != b.replayed, "exactly one is the first");
        let mut lines = 0;
        let mut listing = store.list("realtime/");
        while let Some(m) = futures::StreamExt::next(&mut listing).await {
            let m = m.unwrap();
            lines += store
                .get_opt(m.location.as_ref())
                .await
                .unwrap()
                .unwrap()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
        }
        assert_eq!(lines, 2);
        // Unknown streams and all-rejected bodies land nothing.
        assert!(matches!(
            i.submit("nope", prepared(&i, &body).await, None).await,
            Err(Error::UnknownStream { .. })
        ));
        let none = i
            .submit("api_logs", prepared(&i, "[1]\n").await, None)
            .await
            .unwrap();
        assert_eq!((none.accepted, none.rejected), (0, 1));
        assert!(none.objects.is_empty());
    }
}
