//! Micro-batching of one stream: requests hand their accepted records over with a oneshot
//! ([`Pending`]); a batch is flushed when its oldest record has waited `flush_ms` or
//! `max_batch_bytes` wait (at once while the server stops), or — group commit, unless turned
//! off — as soon as no request of the stream is still being received and none of its flushes
//! is writing: requests that overlap share objects, and a request never waits for company
//! that is not coming (closed-loop clients are answered at the speed of the store, not of the
//! window). A flush writes one object per
//! event-time hour for the records of requests without an idempotency key, and one per hour
//! for each keyed request (see [`super::idempotency`]); keyed requests' records first, then
//! every object create-only and durably; then each request is answered, once every object
//! holding its records is durable. A few flushes run at once, so throughput is not bound to
//! one PUT's latency.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Timelike as _, Utc};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::Answer;
use super::error::{Error, Result};
use super::idempotency::{self, IdempotencyRecord, RecordedObject, State};
use crate::layers::speed::landed_key;
use crate::store::{ObjectAttrs, Store, WriteOutcome};

/// Flushes of one stream writing at once.
const FLUSHES_IN_FLIGHT: u32 = 4;
/// Requests queued for a stream's batcher before senders wait (their bytes are bounded by the
/// in-flight budget anyway).
const QUEUE: usize = 1024;
/// Attempts at a fresh key when a shared object's key is taken (never in practice: the
/// process id is random).
const KEY_ATTEMPTS: usize = 3;

/// The hour partition of a record: the start of its hour.
pub type Partition = DateTime<Utc>;

/// The hour `t` falls in.
pub fn hour_of(t: DateTime<Utc>) -> Partition {
    let s = t.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(3600), 0).unwrap_or(t)
}

/// How a stream's batches are cut.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Longest a record waits.
    pub flush: Duration,
    /// A batch is flushed once this many bytes wait.
    pub max_batch_bytes: u64,
    /// Flush as soon as nothing more is being received and no flush is writing.
    pub group_commit: bool,
}

/// The writer tags of this process: `api-<process id>-<sequence>`.
#[derive(Debug)]
pub struct Writer {
    process: u64,
    seq: AtomicU64,
}

impl Writer {
    /// The writer of process `process` (64 random bits).
    pub fn new(process: u64) -> Writer {
        Writer {
            process,
            seq: AtomicU64::new(0),
        }
    }

    /// The process id as 16 lower-case hex digits.
    pub fn process_hex(&self) -> String {
        format!("{:016x}", self.process)
    }

    /// A tag no other write of any process uses.
    pub fn next_tag(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("api-{:016x}-{n:06}", self.process)
    }
}

/// A keyed request's idempotency record, to be written before its objects.
#[derive(Debug, Clone)]
pub struct Keyed {
    /// Where its record goes.
    pub record_key: String,
    /// SHA-256 of its decoded body.
    pub body_sha256: String,
    /// When it arrived.
    pub arrived: DateTime<Utc>,
}

/// One request's records waiting for a flush.
#[derive(Debug)]
pub struct Pending {
    /// Accepted records with their partitions, in body order.
    pub records: Vec<(Partition, Vec<u8>)>,
    /// Their bytes.
    pub bytes: u64,
    /// The answer without its objects.
    pub answer: Answer,
    /// Its idempotency record, when it has a key.
    pub keyed: Option<Keyed>,
    /// Where its answer goes.
    pub reply: oneshot::Sender<Result<Answer>>,
}

/// Starts the batcher of `stream`; it runs until every sender is dropped, then flushes what
/// waits and ends once every flush is done. `receiving` counts the stream's requests whose
/// bodies are still being received (see [`super::Receiving`]).
pub fn spawn(
    stream: &'static str,
    store: Store,
    settings: Settings,
    writer: Arc<Writer>,
    receiving: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) -> mpsc::Sender<Pending> {
    let (tx, mut rx) = mpsc::channel::<Pending>(QUEUE);
    tokio::spawn(async move {
        let flights = Arc::new(Semaphore::new(FLUSHES_IN_FLIGHT as usize));
        let written = Arc::new(Notify::new());
        let mut waiting: Vec<Pending> = Vec::new();
        let mut bytes = 0u64;
        let mut deadline: Option<Instant> = None;
        let mut stopping = *shutdown.borrow();
        loop {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let flush_now = tokio::select! {
                item = rx.recv() => match item {
                    Some(p) => {
                        if waiting.is_empty() {
                            deadline = Some(Instant::now() + settings.flush);
                        }
                        bytes += p.bytes;
                        waiting.push(p);
                        stopping || bytes >= settings.max_batch_bytes
                    }
                    None => break,
                },
                () = timer => true,
                _ = shutdown.changed(), if !stopping => {
                    stopping = true;
                    true
                }
                () = written.notified() => false,
            };
            let idle = settings.group_commit
                && receiving.load(Ordering::SeqCst) == 0
                && flights.available_permits() == FLUSHES_IN_FLIGHT as usize;
            if (flush_now || idle) && !waiting.is_empty() {
                let batch = std::mem::take(&mut waiting);
                (bytes, deadline) = (0, None);
                start_flush(stream, &store, &writer, &flights, &written, batch).await;
            }
        }
        if !waiting.is_empty() {
            start_flush(stream, &store, &writer, &flights, &written, waiting).await;
        }
        let _ = flights.acquire_many(FLUSHES_IN_FLIGHT).await;
    });
    tx
}

/// Starts a flush once fewer than [`FLUSHES_IN_FLIGHT`] run.
async fn start_flush(
    stream: &'static str,
    store: &Store,
    writer: &Arc<Writer>,
    flights: &Arc<Semaphore>,
    written: &Arc<Notify>,
    batch: Vec<Pending>,
) {
    let Ok(permit) = Arc::clone(flights).acquire_owned().await else {
        return;
    };
    let (store, writer, written) = (store.clone(), Arc::clone(writer), Arc::clone(written));
    tokio::spawn(async move {
        flush(stream, &store, &writer, batch).await;
        drop(permit);
        written.notify_one();
    });
}

/// One object of a flush.
#[derive(Debug)]
struct Planned {
    key: String,
    partition: Partition,
    body: Vec<u8>,
    lines: u64,
    /// Whether it holds one keyed request's records (its key is then recorded and fixed).
    keyed: bool,
}

/// One request of a flush.
struct Member {
    answer: Answer,
    keyed: Option<Keyed>,
    reply: oneshot::Sender<Result<Answer>>,
    objects: BTreeSet<usize>,
    failed: Option<Error>,
}

/// The objects of `batch` (see the module docs), the requests with the objects of each.
fn plan(
    stream: &str,
    writer: &Writer,
    landed: DateTime<Utc>,
    batch: Vec<Pending>,
) -> (Vec<Planned>, Vec<Member>) {
    let mut objects: Vec<Planned> = Vec::new();
    let mut shared: BTreeMap<Partition, usize> = BTreeMap::new();
    let mut members = Vec::with_capacity(batch.len());
    for p in batch {
        let keyed = p.keyed.is_some();
        let mut own: BTreeMap<Partition, usize> = BTreeMap::new();
        let mut mine = BTreeSet::new();
        for (partition, line) in p.records {
            let by_partition = if keyed { &mut own } else { &mut shared };
            let i = *by_partition.entry(partition).or_insert_with(|| {
                objects.push(Planned {
                    key: landed_key(stream, partition, landed, &writer.next_tag()),
                    partition,
                    body: Vec::new(),
                    lines: 0,
                    keyed,
                });
                objects.len() - 1
            });
            let o = &mut objects[i];
            o.body.extend_from_slice(&line);
            o.body.push(b'\n');
            o.lines += 1;
            mine.insert(i);
        }
        members.push(Member {
            answer: p.answer,
            keyed: p.keyed,
            reply: p.reply,
            objects: mine,
            failed: None,
        });
    }
    (objects, members)
}

/// The content type and metadata of an object of `lines` records of `stream`.
pub(super) fn attrs(stream: &str, lines: u64) -> ObjectAttrs {
    ObjectAttrs {
        content_type: Some("application/x-ndjson".into()),
        metadata: vec![
            ("stream".into(), stream.to_string()),
            ("lines".into(), lines.to_string()),
        ],
    }
}

/// Writes `body` under `key` create-only and durably; a shared object whose key is taken
/// gets a fresh one. Returns the key written.
async fn write_object(
    store: &Store,
    stream: &str,
    writer: &Writer,
    landed: DateTime<Utc>,
    o: &Planned,
    body: Bytes,
) -> Result<String, String> {
    let mut key = o.key.clone();
    for _ in 0..KEY_ATTEMPTS {
        match store
            .put_new_durable(&key, body.clone(), &attrs(stream, o.lines))
            .await
        {
            Ok(WriteOutcome::Created | WriteOutcome::AlreadyPresent) => {
                crate::layers::speed::signal::landed();
                return Ok(key);
            }
            Err(crate::store::Error::Conflict { .. }) if !o.keyed => {
                key = landed_key(stream, o.partition, landed, &writer.next_tag());
            }
            Err(e) => return Err(crate::error_chain::error_chain(&e)),
        }
    }
    Err(format!("{key}: every key tried was taken"))
}

/// Writes a batch and answers its requests (see the module docs).
async fn flush(stream: &str, store: &Store, writer: &Writer, batch: Vec<Pending>) {
    let started = std::time::Instant::now();
    // The landed stamp of the keys: the wall clock of the flush, before anything is written.
    let landed = crate::clock::wall_now();
    let (mut objects, mut members) = plan(stream, writer, landed, batch);

    // (1) The records of keyed requests, with their objects and answers.
    let mut records: Vec<Option<(String, IdempotencyRecord)>> = Vec::new();
    for m in &mut members {
        let Some(k) = &m.keyed else {
            records.push(None);
            continue;
        };
        m.answer.objects = m.objects.iter().map(|&i| objects[i].key.clone()).collect();
        m.answer.objects.sort();
        let recorded = m
            .objects
            .iter()
            .map(|&i| RecordedObject {
                key: objects[i].key.clone(),
                date: objects[i].partition.format("%Y-%m-%d").to_string(),
                hour: objects[i].partition.hour(),
                lines: objects[i].lines,
            })
            .collect();
        let record = IdempotencyRecord {
            state: State::Pending,
            body_sha256: k.body_sha256.clone(),
            arrived: k.arrived,
            objects: recorded,
            answer: m.answer.clone(),
        };
        records.push(Some((k.record_key.clone(), record)));
    }
    let writes = records.iter().map(|r| async move {
        match r {
            Some((key, record)) => idempotency::write_pending(store, stream, key, record).await,
            None => Ok(()),
        }
    });
    for (m, res) in members
        .iter_mut()
        .zip(futures::future::join_all(writes).await)
    {
        if let Err(e) = res {
            m.failed = Some(e);
        }
    }

    // (2) The objects, but those of keyed requests whose record could not be written.
    let skip: BTreeSet<usize> = members
        .iter()
        .filter(|m| m.failed.is_some())
        .flat_map(|m| m.objects.iter().copied())
        .collect();
    let bodies: Vec<Bytes> = objects
        .iter_mut()
        .map(|o| Bytes::from(std::mem::take(&mut o.body)))
        .collect();
    let total_bytes: usize = bodies.iter().map(Bytes::len).sum();
    let writes = objects
        .iter()
        .zip(bodies)
        .enumerate()
        .map(|(i, (o, body))| {
            let skipped = skip.contains(&i);
            async move {
                if skipped {
                    return None;
                }
                Some(write_object(store, stream, writer, landed, o, body).await)
            }
        });
    let written: Vec<Option<Result<String, String>>> = futures::future::join_all(writes).await;

    // (3) The answers, each once all its objects are durable.
    let mut done = Vec::new();
    let (mut records_n, mut objects_n) = (0u64, 0usize);
    for (m, record) in members.into_iter().zip(records) {
        let failure = m.objects.iter().find_map(|&i| match &written[i] {
            Some(Err(message)) => Some((objects[i].key.clone(), message.clone())),
            _ => None,
        });
        let answer = match (m.failed, failure) {
            (Some(e), _) => Err(e),
            (None, Some((key, message))) => Err(Error::Write { key, message }),
            (None, None) => {
                let mut answer = m.answer;
                if m.keyed.is_none() {
                    answer.objects = m
                        .objects
                        .iter()
                        .filter_map(|&i| written[i].as_ref().and_then(|w| w.as_ref().ok()))
                        .cloned()
                        .collect();
                    answer.objects.sort();
                }
                records_n += answer.accepted;
                if let Some(r) = record {
                    done.push(r);
                }
                Ok(answer)
            }
        };
        let _ = m.reply.send(answer);
    }
    objects_n += written.iter().filter(|w| matches!(w, Some(Ok(_)))).count();
    tracing::info!(
        stream,
        objects = objects_n,
        records = records_n,
        bytes = total_bytes,
        ms = started.elapsed().as_millis() as u64,
        "ingest flush"
    );
    for (key, record) in done {
        if let Err(e) = idempotency::mark_done(store, &key, record).await {
            tracing::warn!("{}", crate::error_chain::error_chain(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;

    fn answer(accepted: u64) -> Answer {
        Answer {
            stream: "api_logs".into(),
            accepted,
            rejected: 0,
            objects: Vec::new(),
            errors: Vec::new(),
            replayed: false,
        }
    }

    fn pending(
        records: &[(&str, &str)],
        keyed: Option<&str>,
    ) -> (Pending, oneshot::Receiver<Result<Answer>>) {
        let (reply, rx) = oneshot::channel();
        let records: Vec<(Partition, Vec<u8>)> = records
            .iter()
            .map(|(t, l)| (hour_of(parse_utc(t).unwrap()), l.as_bytes().to_vec()))
            .collect();
        let p = Pending {
            bytes: records.iter().map(|(_, l)| l.len() as u64).sum(),
            answer: answer(records.len() as u64),
            records,
            keyed: keyed.map(|k| Keyed {
                record_key: idempotency::record_key("api_logs", k),
                body_sha256: idempotency::sha256_hex(k.as_bytes()),
                arrived: parse_utc("2026-02-01T05:00:00Z").unwrap(),
            }),
            reply,
        };
        (p, rx)
    }

    #[test]
    fn writer_tags_match_the_catalogs_pattern_and_never_repeat() {
        let w = Writer::new(0xab);
        let re = regex::Regex::new(r"^api-[0-9a-f]{16}-\d{6,}$").unwrap();
        let a = w.next_tag();
        let b = w.next_tag();
        assert_eq!(a, "api-00000000000000ab-000000");
        assert!(re.is_match(&a) && re.is_match(&b) && a != b);
        assert_eq!(w.process_hex(), "00000000000000ab");
    }

    #[test]
    fn a_batch_is_grouped_by_hour_with_keyed_requests_apart() {
        let w = Writer::new(1);
        let landed = parse_utc("2026-02-01T05:06:07Z").unwrap();
        let (a, _ra) = pending(
            &[
                ("2026-02-01T03:10:00Z", "{\"a\":1}"),
                ("2026-02-01T04:10:00Z", "{\"a\":2}"),
            ],
            None,
        );
        let (b, _rb) = pending(&[("2026-02-01T03:59:59Z", "{\"b\":1}")], None);
        let (c, _rc) = pending(&[("2026-02-01T03:00:00Z", "{\"c\":1}")], Some("k"));
        let (objects, members) = plan("api_logs", &w, landed, vec![a, b, c]);
        assert_eq!(objects.len(), 3);
        let shared_03 = &objects[0];
        assert_eq!(
            shared_03.key,
            "realtime/api_logs/date=2026-02-01/hour=03/api_logs_20260201T050607Z_api-0000000000000001-000000.jsonl"
        );
        assert_eq!(shared_03.body, b"{\"a\":1}\n{\"b\":1}\n");
        assert_eq!(shared_03.lines, 2);
        assert!(objects[1].key.contains("/hour=04/") && objects[1].body == b"{\"a\":2}\n");
        assert!(objects[2].keyed && objects[2].body == b"{\"c\":1}\n");
        let sets: Vec<Vec<usize>> = members
            .iter()
            .map(|m| m.objects.iter().copied().collect())
            .collect();
        assert_eq!(sets, vec![vec![0, 1], vec![0], vec![2]]);
    }

    #[tokio::test]
    async fn a_flush_lands_records_then_answers_with_their_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let w = Writer::new(7);
        let (a, ra) = pending(&[("2026-02-01T03:10:00Z", "{\"a\":1}")], None);
        let (b, rb) = pending(
            &[
                ("2026-02-01T03:20:00Z", "{\"b\":1}"),
                ("2026-02-01T04:20:00Z", "{\"b\":2}"),
            ],
            Some("key-b"),
        );
        flush("api_logs", &store, &w, vec![a, b]).await;
        let a = ra.await.unwrap().unwrap();
        let b = rb.await.unwrap().unwrap();
        assert_eq!(a.objects.len(), 1);
        assert_eq!(b.objects.len(), 2);
        assert_eq!(
            store.get_opt(&a.objects[0]).await.unwrap().unwrap(),
            &b"{\"a\":1}\n"[..]
        );
        let mut b_lines = Vec::new();
        for k in &b.objects {
            b_lines.extend_from_slice(&store.get_opt(k).await.unwrap().unwrap());
        }
        assert_eq!(b_lines, b"{\"b\":1}\n{\"b\":2}\n");
        let rec = idempotency::load(&store, &idempotency::record_key("api_logs", "key-b"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.state, State::Done);
        assert_eq!(rec.answer, b);
        assert_eq!(rec.objects.iter().map(|o| o.lines).sum::<u64>(), 2);
    }

    #[tokio::test]
    async fn the_batcher_flushes_on_its_window_and_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let settings = Settings {
            flush: Duration::from_millis(500),
            max_batch_bytes: 1 << 20,
            group_commit: false,
        };
        let tx = spawn(
            "api_logs",
            store.clone(),
            settings,
            Arc::new(Writer::new(9)),
            Arc::new(AtomicUsize::new(0)),
            stop_rx,
        );
        let (a, ra) = pending(&[("2026-02-01T03:10:00Z", "{\"a\":1}")], None);
        let (b, rb) = pending(&[("2026-02-01T03:11:00Z", "{\"b\":1}")], None);
        tx.send(a).await.unwrap();
        tx.send(b).await.unwrap();
        let (a, b) = (ra.await.unwrap().unwrap(), rb.await.unwrap().unwrap());
        // Sent within one window: one object for both.
        assert_eq!(a.objects, b.objects);
        // Stopping: a long window no longer holds records back.
        let _ = stop_tx.send(true);
        let (c, rc) = pending(&[("2026-02-01T03:12:00Z", "{\"c\":1}")], None);
        tx.send(c).await.unwrap();
        let c = rc.await.unwrap().unwrap();
        assert_eq!(c.objects.len(), 1);
        drop(tx);
    }

    #[tokio::test]
    async fn group_commit_waits_for_requests_being_received_and_no_longer() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let (_stop_tx, stop_rx) = watch::channel(false);
        let settings = Settings {
            flush: Duration::from_secs(3600),
            max_batch_bytes: 1 << 30,
            group_commit: true,
        };
        let receiving = Arc::new(AtomicUsize::new(1));
        let tx = spawn(
            "api_logs",
            store.clone(),
            settings,
            Arc::new(Writer::new(11)),
            Arc::clone(&receiving),
            stop_rx,
        );
        // `a` arrives while another request is still being received: it waits for it.
        let (a, ra) = pending(&[("2026-02-01T03:10:00Z", "{\"a\":1}")], None);
        tx.send(a).await.unwrap();
        // (The test runtime has one thread: yielding lets the batcher take `a` in.)
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        receiving.store(0, Ordering::SeqCst);
        let (b, rb) = pending(&[("2026-02-01T03:11:00Z", "{\"b\":1}")], None);
        tx.send(b).await.unwrap();
        let limit = Duration::from_secs(60);
        let a = tokio::time::timeout(limit, ra)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let b = tokio::time::timeout(limit, rb)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(a.objects, b.objects, "one object for both");
        // Nothing else is coming: a lone request is written without waiting the hour.
        let (c, rc) = pending(&[("2026-02-01T03:12:00Z", "{\"c\":1}")], None);
        tx.send(c).await.unwrap();
        let c = tokio::time::timeout(limit, rc)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_ne!(c.objects, a.objects);
        assert_eq!(
            store.get_opt(&c.objects[0]).await.unwrap().unwrap(),
            &b"{\"c\":1}\n"[..]
        );
    }
}
