//! Idempotent retries (`Idempotency-Key`): one record per (stream, key) under
//! `_lakepipe/ingest/idempotency/<stream>/<sha256 of the key>.json`, written durably *before*
//! the request's objects (state `pending`, with the object keys and the answer as it will be
//! sent) and marked `done` after the answer. A retry finds the record: when every object it
//! lists exists, the stored answer is replayed and nothing is landed; when some are missing
//! (the process died between the record and the objects), the request's records of those
//! objects' partitions are landed under the recorded keys (create-only, so two retries cannot
//! land them twice) and the stored answer is sent. A keyed request's records are never put
//! into an object with another keyed request's, so re-landing one object from one request's
//! records is exact.
//!
//! Within one process, requests with the same key are serialised ([`Locks`]): the second
//! waits for the first and then replays its answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::Answer;
use super::error::{Error, Result};
use crate::store::{ObjectAttrs, Store, WriteOutcome};

/// Folder of the idempotency records.
pub const PREFIX: &str = "_lakepipe/ingest/idempotency";

/// Longest `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// Checks an `Idempotency-Key` header value: 1 to 255 printable ASCII characters.
pub fn check_key(value: &[u8]) -> Result<String> {
    if value.is_empty()
        || value.len() > MAX_KEY_LEN
        || !value.iter().all(|b| (0x20..0x7f).contains(b))
    {
        return Err(Error::BadIdempotencyKey);
    }
    Ok(String::from_utf8_lossy(value).into_owned())
}

/// SHA-256 of what a request carries: its records' bytes and its rejected records' places and
/// reasons — the same for the same body, different for a body with other records.
pub fn parsed_sha256(parsed: &super::Parsed) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for r in &parsed.records {
        h.update(r.index.to_le_bytes());
        h.update((r.bytes.len() as u64).to_le_bytes());
        h.update(&r.bytes);
    }
    for e in &parsed.errors {
        h.update(e.index.to_le_bytes());
        h.update(e.error.as_bytes());
        h.update([0u8]);
    }
    crate::hex::hex(&h.finalize())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::hex::hex(&sha2::Sha256::digest(bytes))
}

/// Where the record of `key` on `stream` is kept (the key itself is never stored).
pub fn record_key(stream: &str, key: &str) -> String {
    format!("{PREFIX}/{stream}/{}.json", sha256_hex(key.as_bytes()))
}

/// Where a keyed request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Recorded; its objects may not all be written yet.
    Pending,
    /// Every object written and the client answered.
    Done,
}

/// One object of a keyed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedObject {
    /// Object key.
    pub key: String,
    /// Partition date (`YYYY-MM-DD`).
    pub date: String,
    /// Partition hour (0–23).
    pub hour: u32,
    /// Records (lines) of the request in it.
    pub lines: u64,
}

/// The record of one idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Pending or done.
    pub state: State,
    /// SHA-256 of the decoded body: a retry must send the same.
    pub body_sha256: String,
    /// When the request arrived (RFC 3339, seconds): the partition of records without a
    /// usable event time, so a late retry puts them where the first attempt did.
    pub arrived: DateTime<Utc>,
    /// The request's objects.
    pub objects: Vec<RecordedObject>,
    /// The answer as sent (`replayed: false`).
    pub answer: Answer,
}

/// What a request whose key has a record does.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Every object is there: send the stored answer, land nothing.
    Replay,
    /// These objects are missing: land the request's records of their partitions under their
    /// keys, then send the stored answer.
    Recover(Vec<RecordedObject>),
}

impl IdempotencyRecord {
    /// What to do with a retry whose body hashes to `body_sha256`, given which of the
    /// record's objects exist (`exists`, in the record's order).
    pub fn decide(&self, stream: &str, body_sha256: &str, exists: &[bool]) -> Result<Decision> {
        if self.body_sha256 != body_sha256 {
            return Err(Error::KeyReused {
                stream: stream.to_string(),
            });
        }
        let missing: Vec<RecordedObject> = self
            .objects
            .iter()
            .zip(exists.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, e)| !**e)
            .map(|(o, _)| o.clone())
            .collect();
        if missing.is_empty() {
            Ok(Decision::Replay)
        } else {
            Ok(Decision::Recover(missing))
        }
    }

    /// The stored answer, marked as replayed.
    pub fn replayed_answer(&self) -> Answer {
        Answer {
            replayed: true,
            ..self.answer.clone()
        }
    }
}

fn store_error(op: &'static str) -> impl FnOnce(crate::store::Error) -> Error {
    move |source| Error::Store { op, source }
}

/// The record under `key`, if any.
pub async fn load(store: &Store, key: &str) -> Result<Option<IdempotencyRecord>> {
    let Some(bytes) = store
        .get_opt(key)
        .await
        .map_err(store_error("read of an idempotency record"))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
}

fn encode(key: &str, record: &IdempotencyRecord) -> Result<Bytes> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(|e| Error::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
}

fn attrs() -> ObjectAttrs {
    ObjectAttrs {
        content_type: Some("application/json".into()),
        metadata: Vec::new(),
    }
}

/// Writes a new `pending` record durably and create-only: another request holding the key
/// (another process) makes it [`Error::KeyInUse`].
pub async fn write_pending(
    store: &Store,
    stream: &str,
    key: &str,
    record: &IdempotencyRecord,
) -> Result<()> {
    match store
        .put_new_durable(key, encode(key, record)?, &attrs())
        .await
    {
        Ok(WriteOutcome::Created | WriteOutcome::AlreadyPresent) => Ok(()),
        Err(crate::store::Error::Conflict { .. }) => Err(Error::KeyInUse {
            stream: stream.to_string(),
        }),
        Err(source) => Err(Error::Store {
            op: "write of an idempotency record",
            source,
        }),
    }
}

/// Marks a record `done` (best effort: a `pending` record whose objects all exist means the
/// same).
pub async fn mark_done(store: &Store, key: &str, mut record: IdempotencyRecord) -> Result<()> {
    record.state = State::Done;
    store
        .put(key, encode(key, &record)?, &attrs())
        .await
        .map_err(store_error("update of an idempotency record"))
}

/// Which of the record's objects exist (a `done` record's all do).
pub async fn existing(store: &Store, record: &IdempotencyRecord) -> Result<Vec<bool>> {
    if record.state == State::Done {
        return Ok(vec![true; record.objects.len()]);
    }
    let heads = record.objects.iter().map(|o| store.head(&o.key));
    futures::future::join_all(heads)
        .await
        .into_iter()
        .map(|r| r.map(|m| m.is_some()))
        .collect::<std::result::Result<_, _>>()
        .map_err(store_error("HEAD of an object of an idempotency record"))
}

/// Per-key locks of this process: requests with the same key wait for each other.
#[derive(Debug, Default)]
pub struct Locks {
    map: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    /// Waits for the lock of `key` (a record key) and holds it until the guard drops.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = map.get(key).and_then(Weak::upgrade) {
                l
            } else {
                // Forget the locks nobody holds any more, so the map stays as small as the
                // number of keyed requests in flight.
                map.retain(|_, w| w.strong_count() > 0);
                let l = Arc::new(tokio::sync::Mutex::new(()));
                map.insert(key.to_string(), Arc::downgrade(&l));
                l
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> IdempotencyRecord {
        let objects = vec![
            RecordedObject {
                key: "realtime/a/date=2026-02-01/hour=03/x.jsonl".into(),
                date: "2026-02-01".into(),
                hour: 3,
                lines: 2,
            },
            RecordedObject {
                key: "realtime/a/date=2026-02-01/hour=04/y.jsonl".into(),
                date: "2026-02-01".into(),
                hour: 4,
                lines: 1,
            },
        ];
        IdempotencyRecord {
            state: State::Pending,
            body_sha256: sha256_hex(b"body"),
            arrived: crate::clock::parse_utc("2026-02-01T05:00:00Z").unwrap(),
            answer: Answer {
                stream: "api_logs".into(),
                accepted: 3,
                rejected: 0,
                objects: objects.iter().map(|o| o.key.clone()).collect(),
                errors: Vec::new(),
                replayed: false,
            },
            objects,
        }
    }

    #[test]
    fn keys_are_checked_and_stored_by_digest() {
        assert!(check_key(b"order-42").is_ok());
        assert!(check_key(b"").is_err());
        assert!(check_key(&[b'a'; 256]).is_err());
        assert!(check_key(b"tab\there").is_err());
        assert!(check_key("é".as_bytes()).is_err());
        let k = record_key("api_logs", "order-42");
        assert!(k.starts_with("_lakepipe/ingest/idempotency/api_logs/"));
        assert!(!k.contains("order-42") && k.ends_with(".json"));
        assert_ne!(k, record_key("iot_sensors", "order-42"));
    }

    #[test]
    fn a_record_replays_recovers_or_refuses_another_body() {
        let r = record();
        let sha = sha256_hex(b"body");
        assert_eq!(
            r.decide("a", &sha, &[true, true]).unwrap(),
            Decision::Replay
        );
        assert_eq!(
            r.decide("a", &sha, &[true, false]).unwrap(),
            Decision::Recover(vec![r.objects[1].clone()])
        );
        assert_eq!(
            r.decide("a", &sha, &[]).unwrap(),
            Decision::Recover(r.objects.clone())
        );
        assert!(matches!(
            r.decide("a", &sha256_hex(b"other"), &[true, true]),
            Err(Error::KeyReused { .. })
        ));
        let replayed = r.replayed_answer();
        assert!(replayed.replayed && replayed.objects == r.answer.objects);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["state"], "pending");
        let back: IdempotencyRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[tokio::test]
    async fn records_round_trip_through_the_lake() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let key = record_key("api_logs", "k");
        assert!(load(&store, &key).await.unwrap().is_none());
        let r = record();
        write_pending(&store, "api_logs", &key, &r).await.unwrap();
        // The same record again is fine; another one under the key is another writer's.
        write_pending(&store, "api_logs", &key, &r).await.unwrap();
        let mut other = r.clone();
        other.objects.pop();
        assert!(matches!(
            write_pending(&store, "api_logs", &key, &other).await,
            Err(Error::KeyInUse { .. })
        ));
        assert_eq!(existing(&store, &r).await.unwrap(), vec![false, false]);
        mark_done(&store, &key, r.clone()).await.unwrap();
        let done = load(&store, &key).await.unwrap().unwrap();
        assert_eq!(done.state, State::Done);
        assert_eq!(existing(&store, &done).await.unwrap(), vec![true, true]);
    }
}
