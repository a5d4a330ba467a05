//! `lakepipe produce`: the client side of the ingest API, for demos and benchmarks. It sends
//! the seed streams' generated events as NDJSON requests of `batch` records over
//! `connections` concurrent connections, paced to `rate` events/s or as fast as the server
//! answers, and counts the server's answers.
//!
//! Events are generated one second of event time at a time ([`generate_interval`]) on a
//! blocking thread that stays at most two requests per connection ahead of the senders, so
//! memory is bounded whatever the rate. A 503 is retried after its `Retry-After`, a timeout
//! or a dropped connection with back-off. With `idempotency_keys` every request carries an
//! `Idempotency-Key` (`<run id>-<n>`), so no retry lands a record twice; the server then gives
//! each request objects of its own instead of grouping concurrent requests.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Mutex, mpsc};

use crate::sources::stream::{StreamSpec, generate_interval, generated_streams};

/// Attempts of one request before it counts as failed.
const MAX_ATTEMPTS: u32 = 8;
/// Events of one generated second when no rate is given.
const UNPACED_EVENTS_PER_SECOND: f64 = 20_000.0;
/// Latency histogram: 1 ms buckets up to this many ms (slower answers land in the last one).
const LATENCY_BUCKETS_MS: usize = 30_000;

/// Errors of a producer run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ingest URL is not an http(s) URL.
    #[error("invalid ingest URL {url}: {message}")]
    Url { url: String, message: String },
    /// The OS gave no random bytes for the run id of the idempotency keys.
    #[error("no randomness for the run id: {source}")]
    NoRandomness { source: getrandom::Error },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {source}")]
    Client { source: reqwest::Error },
    /// The server refused a request for good (4xx other than 408/429): sending more would
    /// be refused the same way.
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    /// No request got through: the server cannot be reached.
    #[error("no answer from {url}: {message}")]
    Unreachable { url: String, message: String },
}

/// What to send.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Base URL of the server (`http://127.0.0.1:8080`); requests go to `/ingest/<stream>`.
    pub url: String,
    /// The streams, sent round-robin by request.
    pub streams: Vec<&'static StreamSpec>,
    /// Generator seed.
    pub seed: u64,
    /// Fault rate of the generator (0: every event valid).
    pub fault_rate: f64,
    /// Events per second; `None`: as fast as the server answers.
    pub rate: Option<f64>,
    /// Records per request.
    pub batch: usize,
    /// Concurrent connections.
    pub connections: usize,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many events.
    pub count: Option<u64>,
    /// Event time of the first generated second (default: now).
    pub start: DateTime<Utc>,
    /// Bearer token.
    pub token: Option<String>,
    /// Send an `Idempotency-Key` with every request.
    pub idempotency_keys: bool,
}

/// The answers counted, with rates and acknowledgement latency.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProduceMetrics {
    /// The URL requests went to (without a token).
    pub url: String,
    /// Requests answered 200.
    pub requests: u64,
    /// Events in requests answered 200.
    pub events: u64,
    /// Bytes of request bodies answered 200.
    pub bytes: u64,
    /// Records the server accepted (landed).
    pub accepted: u64,
    /// Records the server rejected (not JSON objects).
    pub rejected: u64,
    /// Requests that failed for good after retries.
    pub failed: u64,
    /// Requests answered 200 whose answer could not be read (landed; counts unknown).
    pub unreadable: u64,
    /// Answers by HTTP status, retries included (`0`: no answer).
    pub statuses: BTreeMap<u16, u64>,
    /// Wall time of the run, s.
    pub elapsed_s: f64,
    /// Accepted events per second.
    pub events_per_s: f64,
    /// Accepted request bytes per second, MB (10^6).
    pub mb_per_s: f64,
    /// Acknowledgement latency of requests answered 200 (last attempt), ms.
    pub latency_p50_ms: f64,
    /// 99th percentile of the same.
    pub latency_p99_ms: f64,
    /// Largest.
    pub latency_max_ms: f64,
}

impl ProduceMetrics {
    /// One line for people.
    pub fn summary(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        format!(
            "sent {} events in {} requests ({} accepted, {} rejected, {} failed, {} answers \
             unreadable) in {:.1} s: {:.0} events/s, {:.1} MB/s; ack p50 {:.0} ms, p99 {:.0} ms; \
             answers {{{}}}",
            self.events,
            self.requests,
            self.accepted,
            self.rejected,
            self.failed,
            self.unreadable,
            self.elapsed_s,
            self.events_per_s,
            self.mb_per_s,
            self.latency_p50_ms,
            self.latency_p99_ms,
            statuses.join(", ")
        )
    }
}

/// One request to send.
struct Batch {
    stream: &'static str,
    events: u64,
    body: Bytes,
}

/// Counters shared by the senders.
struct Tally {
    requests: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    unreadable: AtomicU64,
    statuses: std::sync::Mutex<BTreeMap<u16, u64>>,
    latency_ms: Vec<AtomicU64>,
    refused: Mutex<Option<Error>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            requests: AtomicU64::new(0),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unreadable: AtomicU64::new(0),
            statuses: std::sync::Mutex::new(BTreeMap::new()),
            latency_ms: (0..=LATENCY_BUCKETS_MS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            refused: Mutex::new(None),
        }
    }

    fn status(&self, s: u16) {
        if let Ok(mut m) = self.statuses.lock() {
            *m.entry(s).or_default() += 1;
        }
    }

    fn latency(&self, d: Duration) {
        let ms = (d.as_millis() as usize).min(LATENCY_BUCKETS_MS);
        self.latency_ms[ms].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile of the latencies, in ms (bucket upper bound).
    fn quantile(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self
            .latency_ms
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        quantile_ms(&counts, q)
    }
}

/// The `q` quantile of a 1-ms histogram, as the upper bound of its bucket.
fn quantile_ms(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (ms, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return (ms + 1) as f64;
        }
    }
    counts.len() as f64
}

/// Sends generated events to an ingest API: configure, then `.await` for the metrics.
#[derive(Debug)]
pub struct ProduceBuilder {
    opts: ProduceOptions,
}

impl ProduceBuilder {
    /// A producer with these options.
    pub fn new(opts: ProduceOptions) -> ProduceBuilder {
        ProduceBuilder { opts }
    }
}

impl IntoFuture for ProduceBuilder {
    type Output = Result<ProduceMetrics, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.opts))
    }
}

/// The streams named by `name` that have a generator: one, or `all` of them.
pub fn streams_named(name: &str) -> Option<Vec<&'static StreamSpec>> {
    let mut generated = generated_streams();
    if name == "all" {
        return Some(generated.collect());
    }
    generated.find(|s| s.name == name).map(|s| vec![s])
}

async fn run(opts: ProduceOptions) -> Result<ProduceMetrics, Error> {
    let base = url::Url::parse(&opts.url).map_err(|e| Error::Url {
        url: opts.url.clone(),
        message: e.to_string(),
    })?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(Error::Url {
            url: opts.url.clone(),
            message: "must start with http:// or https://".into(),
        });
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.connections)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|source| Error::Client { source })?;
    // Idempotency keys are `<run id>-<n>`: the run id keeps them apart from other runs'.
    let run_id = match opts.idempotency_keys {
        true => {
            Some(crate::hex::random_hex::<8>().map_err(|source| Error::NoRandomness { source })?)
        }
        false => None,
    };

    let (tx, rx) = mpsc::channel::<Batch>(opts.connections * 2);
    let started = Instant::now();
    let generator = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || generate(&opts, started, &tx))
    };
    let rx = Arc::new(Mutex::new(rx));
    let tally = Arc::new(Tally::new());
    let seq = Arc::new(AtomicU64::new(0));
    let progress = progress(tally.clone(), started);
    let senders: Vec<_> = (0..opts.connections.max(1))
        .map(|_| {
            let (rx, tally, client, seq) = (rx.clone(), tally.clone(), client.clone(), seq.clone());
            let (base, token) = (base.clone(), opts.token.clone());
            let run_id = run_id.clone();
            tokio::spawn(async move {
                loop {
                    let Some(batch) = rx.lock().await.recv().await else {
                        break;
                    };
                    let key = run_id
                        .as_ref()
                        .map(|r| format!("{r}-{}", seq.fetch_add(1, Ordering::Relaxed)));
                    if !send(
                        &client,
                        &base,
                        token.as_deref(),
                        key.as_deref(),
                        &batch,
                        &tally,
                    )
                    .await
                    {
                        // Refused for good: stop taking work, so the generator stops too.
                        rx.lock().await.close();
                        break;
                    }
                }
            })
        })
        .collect();
    for s in senders {
        let _ = s.await;
    }
    let _ = generator.await;
    progress.abort();
    if let Some(e) = tally.refused.lock().await.take() {
        return Err(e);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = tally.requests.load(Ordering::Relaxed);
    let statuses = tally.statuses.lock().map(|m| m.clone()).unwrap_or_default();
    if requests == 0 && statuses.keys().all(|s| *s == 0) && !statuses.is_empty() {
        return Err(Error::Unreachable {
            url: opts.url.clone(),
            message: "every request failed without an answer".into(),
        });
    }
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let bytes = tally.bytes.load(Ordering::Relaxed);
    let max = tally
        .latency_ms
        .iter()
        .rposition(|c| c.load(Ordering::Relaxed) > 0)
        .map_or(0.0, |ms| (ms + 1) as f64);
    Ok(ProduceMetrics {
        url: opts.url.clone(),
        requests,
        events: tally.events.load(Ordering::Relaxed),
        bytes,
        accepted,
        rejected: tally.rejected.load(Ordering::Relaxed),
        failed: tally.failed.load(Ordering::Relaxed),
        unreadable: tally.unreadable.load(Ordering::Relaxed),
        statuses,
        elapsed_s: elapsed,
        events_per_s: accepted as f64 / elapsed.max(1e-9),
        mb_per_s: bytes as f64 / 1e6 / elapsed.max(1e-9),
        latency_p50_ms: tally.quantile(0.50),
        latency_p99_ms: tally.quantile(0.99),
        latency_max_ms: max,
    })
}

/// Generates requests one event-time second at a time until the duration or count is reached
/// or the senders stop; paced to `rate` when given.
fn generate(opts: &ProduceOptions, started: Instant, tx: &mpsc::Sender<Batch>) {
    let per_second = opts.rate.unwrap_or(UNPACED_EVENTS_PER_SECOND);
    let mut sent = 0u64;
    for second in 0u64.. {
        if let Some(rate) = opts.rate {
            // Second k of event time is released k / (rate / per_second) s after the start.
            let due = Duration::from_secs_f64(second as f64 * per_second / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            return;
        }
        let from = opts.start + chrono::Duration::seconds(second as i64);
        let to = from + chrono::Duration::seconds(1);
        let generated: Vec<(&'static str, Vec<String>)> = opts
            .streams
            .iter()
            .map(|spec| {
                // A stream makes `per_run` events per 5 minutes at scale 1.
                let scale = per_second / opts.streams.len() as f64 / (spec.per_run as f64 / 300.0);
                let events = generate_interval(spec, opts.seed, from, to, scale, opts.fault_rate);
                (
                    spec.name,
                    events.events.into_iter().map(|e| e.line).collect(),
                )
            })
            .collect();
        let batch = opts.batch.max(1);
        let rounds = generated.iter().map(|(_, l)| l.len().div_ceil(batch)).max();
        // Requests alternate between the streams.
        for round in 0..rounds.unwrap_or(0) {
            for (stream, lines) in &generated {
                let from = (round * batch).min(lines.len());
                let mut chunk = &lines[from..(from + batch).min(lines.len())];
                if chunk.is_empty() {
                    continue;
                }
                if let Some(count) = opts.count {
                    let left = count.saturating_sub(sent) as usize;
                    if left == 0 {
                        return;
                    }
                    chunk = &chunk[..chunk.len().min(left)];
                }
                let mut body = Vec::with_capacity(chunk.iter().map(|l| l.len() + 1).sum());
                for line in chunk {
                    body.extend_from_slice(line.as_bytes());
                    body.push(b'\n');
                }
                sent += chunk.len() as u64;
                let batch = Batch {
                    stream,
                    events: chunk.len() as u64,
                    body: Bytes::from(body),
                };
                if tx.blocking_send(batch).is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends one request until it is answered 200 or fails for good; false when the server
/// refused it in a way that would refuse every other request too.
async fn send(
    client: &reqwest::Client,
    base: &url::Url,
    token: Option<&str>,
    key: Option<&str>,
    batch: &Batch,
    tally: &Tally,
) -> bool {
    let url = match base.join(&format!("ingest/{}", batch.stream)) {
        Ok(u) => u,
        Err(_) => return false,
    };
    let mut backoff = Duration::from_millis(100);
    for _ in 0..MAX_ATTEMPTS {
        let mut req = client
            .post(url.clone())
            .header("content-type", "application/x-ndjson")
            .body(batch.body.clone());
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let t0 = Instant::now();
        let wait = match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                tally.status(status);
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = res.bytes().await;
                match status {
                    200 => {
                        tally.latency(t0.elapsed());
                        // The records are landed; an answer that cannot be read only leaves
                        // their counts unknown (counted apart, never retried).
                        let answer = body.ok().and_then(|b| {
                            serde_json::from_slice::<serde_json::Value>(&b)
                                .ok()
                                .filter(|a| a.get("accepted").is_some_and(|v| v.is_u64()))
                        });
                        let Some(answer) = answer else {
                            tally.unreadable.fetch_add(1, Ordering::Relaxed);
                            tally.requests.fetch_add(1, Ordering::Relaxed);
                            tally.events.fetch_add(batch.events, Ordering::Relaxed);
                            return true;
                        };
                        let count = |k: &str| answer.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
                        tally.requests.fetch_add(1, Ordering::Relaxed);
                        tally.events.fetch_add(batch.events, Ordering::Relaxed);
                        tally
                            .bytes
                            .fetch_add(batch.body.len() as u64, Ordering::Relaxed);
                        tally
                            .accepted
                            .fetch_add(count("accepted"), Ordering::Relaxed);
                        tally
                            .rejected
                            .fetch_add(count("rejected"), Ordering::Relaxed);
                        return true;
                    }
                    408 | 429 | 500..=599 => retry_after.unwrap_or(backoff),
                    _ => {
                        let mut refused = tally.refused.lock().await;
                        if refused.is_none() {
                            *refused = Some(Error::Refused {
                                url: url.to_string(),
                                status,
                                body: body
                                    .map(|b| {
                                        String::from_utf8_lossy(&b).chars().take(300).collect()
                                    })
                                    .unwrap_or_else(|e| format!("(unreadable: {e})")),
                            });
                        }
                        return false;
                    }
                }
            }
            Err(_) => {
                tally.status(0);
                backoff
            }
        };
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    tally.failed.fetch_add(1, Ordering::Relaxed);
    true
}

/// A progress line: a spinner on a terminal, a plain line every 10 s otherwise.
fn progress(tally: Arc<Tally>, started: Instant) -> tokio::task::JoinHandle<()> {
    use std::io::IsTerminal as _;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} produce {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b
    });
    tokio::spawn(async move {
        let every = if bar.is_some() { 1 } else { 10 };
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        tick.tick().await;
        loop {
            tick.tick().await;
            let secs = started.elapsed().as_secs_f64();
            let accepted = tally.accepted.load(Ordering::Relaxed);
            let statuses = tally.statuses.lock().map(|m| m.clone()).unwrap_or_default();
            let line = format!(
                "{accepted} events accepted in {secs:.0} s ({:.0}/s), answers {statuses:?}",
                accepted as f64 / secs.max(1e-9)
            );
            match &bar {
                Some(b) => b.set_message(line),
                None => eprintln!("produce: {line}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_histogram() {
        let mut counts = vec![0u64; 100];
        counts[4] = 50; // 50 answers in [4, 5) ms
        counts[9] = 49;
        counts[99] = 1;
        assert_eq!(quantile_ms(&counts, 0.5), 5.0);
        assert_eq!(quantile_ms(&counts, 0.99), 10.0);
        assert_eq!(quantile_ms(&counts, 1.0), 100.0);
        assert_eq!(quantile_ms(&[0, 0], 0.5), 0.0);
    }

    #[test]
    fn generated_requests_stop_at_the_count_and_hold_whole_lines() {
        let opts = ProduceOptions {
            url: "http://127.0.0.1:1".into(),
            streams: streams_named("all").unwrap(),
            seed: 7,
            fault_rate: 0.0,
            rate: None,
            batch: 100,
            connections: 1,
            duration: None,
            count: Some(1234),
            start: crate::clock::parse_utc("2026-02-01T00:00:00Z").unwrap(),
            token: None,
            idempotency_keys: false,
        };
        let (tx, mut rx) = mpsc::channel(1_000);
        generate(&opts, Instant::now(), &tx);
        drop(tx);
        let (mut events, mut streams) = (0, std::collections::BTreeSet::new());
        while let Ok(b) = rx.try_recv() {
            assert!(b.events <= 100);
            let lines = b.body.split(|c| *c == b'\n').filter(|l| !l.is_empty());
            for l in lines {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                assert!(v.get("event_time").is_some());
            }
            events += b.events;
            streams.insert(b.stream);
        }
        assert_eq!(events, 1234);
        assert_eq!(streams.len(), 5, "every stream in turn: {streams:?}");
        assert!(streams_named("nope").is_none());
    }
}
