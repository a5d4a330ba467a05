//! A fault-injecting S3 proxy between lakepipe and moto, and the test that runs the pipeline
//! through it.
//!
//! The proxy takes one request per connection (it asks both sides to close after it), and for a
//! seeded share of requests it answers `500 InternalError` or `503 SlowDown` without forwarding, resets the connection
//! before forwarding, resets it **after** forwarding (the server did the write; the client never
//! hears — the hard case for create-only commits), cuts a GET's body off halfway (the length
//! announced, half the bytes sent), stalls without answering until the client gives up, or
//! delays. The same seed gives the same faults for the same sequence of requests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{INGEST_DAGS, Run, S3Server, TestCommand, query_rows, s3_server};

const STREAMS: [(&str, &str); 5] = [
    ("iot_sensors", "reading_id"),
    ("api_logs", "log_id"),
    ("social_media", "event_id"),
    ("ecommerce_clickstream", "event_id"),
    ("financial_transactions", "transaction_id"),
];

/// What the proxy did to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    ServerError,
    SlowDown,
    ResetBefore,
    ResetAfter,
    Truncate,
    Stall,
    Delay,
}

impl Fault {
    /// Faults that fail an attempt, which is repeated (by object_store's retry policy, or by
    /// lakepipe for an answer that broke off) and counted in `/metrics`.
    fn is_failed_attempt(self) -> bool {
        self != Fault::Delay
    }
}

/// Shares of requests (per mille) per fault.
#[derive(Debug, Clone, Copy)]
pub struct Shares {
    pub server_error: u64,
    pub slow_down: u64,
    pub reset_before: u64,
    pub reset_after: u64,
    pub truncate: u64,
    pub stall: u64,
    pub delay: u64,
}

/// 10 % of requests failed: 1 % 500, 3 % 503 SlowDown, 2 % resets before forwarding, 2 %
/// after, 1 % GET bodies cut off, 0.2 % stalls; and 0.8 % delayed.
const TEN_PERCENT: Shares = Shares {
    server_error: 10,
    slow_down: 30,
    reset_before: 20,
    reset_after: 20,
    truncate: 10,
    stall: 2,
    delay: 8,
};

/// Which requests the shares apply to: those with `method` whose path contains `path` (`None`:
/// any), and with `once_per_key` a key's first faulted request only (its repeats pass: an
/// answer lost once, not a key failing until the client gives up). The others are forwarded
/// untouched (and counted as requests).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub method: Option<&'static str>,
    pub path: Option<&'static str>,
    pub once_per_key: bool,
}

/// Every request.
const EVERY_REQUEST: Target = Target {
    method: None,
    path: None,
    once_per_key: false,
};

impl Target {
    /// The method and path of the request with this head (`PUT /bucket/key HTTP/1.1 …`).
    fn request_line(head: &str) -> (&str, &str) {
        let mut line = head.lines().next().unwrap_or("").split(' ');
        (line.next().unwrap_or(""), line.next().unwrap_or(""))
    }

    /// Whether the request with this head is one of them.
    fn matches(&self, head: &str) -> bool {
        let (method, path) = Target::request_line(head);
        self.method.is_none_or(|m| m == method) && self.path.is_none_or(|p| path.contains(p))
    }
}

/// A running proxy: its endpoint and what it injected.
pub struct FaultProxy {
    pub endpoint: String,
    injected: Arc<Mutex<BTreeMap<Fault, u64>>>,
    requests: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) on a free loopback port, failing
    /// `shares` of every request.
    pub fn start(upstream: &str, shares: Shares, seed: u64) -> FaultProxy {
        FaultProxy::start_for(upstream, shares, EVERY_REQUEST, seed)
    }

    /// As [`FaultProxy::start`], failing `shares` of the requests `target` matches only.
    pub fn start_for(upstream: &str, shares: Shares, target: Target, seed: u64) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let injected = Arc::new(Mutex::new(BTreeMap::new()));
        let requests = Arc::new(AtomicU64::new(0));
        let rng = Arc::new(Mutex::new(seed.max(1)));
        let faulted = Arc::new(Mutex::new(std::collections::HashSet::new()));
        {
            let (injected, requests) = (Arc::clone(&injected), Arc::clone(&requests));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let draw = {
                        // xorshift64: the faults of a seed are reproducible.
                        let mut x = rng.lock().unwrap();
                        *x ^= *x << 13;
                        *x ^= *x >> 7;
                        *x ^= *x << 17;
                        *x % 1000
                    };
                    let fault = pick(draw, shares);
                    requests.fetch_add(1, Ordering::Relaxed);
                    let upstream = upstream.clone();
                    let injected = Arc::clone(&injected);
                    let faulted = Arc::clone(&faulted);
                    std::thread::spawn(move || {
                        if let Ok(Some(f)) = serve(conn, &upstream, fault, target, &faulted) {
                            *injected.lock().unwrap().entry(f).or_default() += 1;
                        }
                    });
                }
            });
        }
        FaultProxy {
            endpoint,
            injected,
            requests,
        }
    }

    /// Attempts failed so far ([`Fault::is_failed_attempt`]), and requests seen.
    pub fn failed(&self) -> (u64, u64) {
        let (injected, requests) = self.injected();
        let failed = injected
            .iter()
            .filter(|(f, _)| f.is_failed_attempt())
            .map(|(_, n)| n)
            .sum();
        (failed, requests)
    }

    /// Faults injected so far, by kind, and requests seen.
    pub fn injected(&self) -> (BTreeMap<Fault, u64>, u64) {
        (
            self.injected.lock().unwrap().clone(),
            self.requests.load(Ordering::Relaxed),
        )
    }
}

fn pick(draw: u64, s: Shares) -> Option<Fault> {
    let mut edge = 0;
    for (share, fault) in [
        (s.server_error, Fault::ServerError),
        (s.slow_down, Fault::SlowDown),
        (s.reset_before, Fault::ResetBefore),
        (s.reset_after, Fault::ResetAfter),
        (s.truncate, Fault::Truncate),
        (s.stall, Fault::Stall),
        (s.delay, Fault::Delay),
    ] {
        edge += share;
        if draw < edge {
            return Some(fault);
        }
    }
    None
}

/// Reads one HTTP message (head, and the body its `Content-Length` or chunked encoding frames;
/// to EOF when `to_eof`), returning the head and the body bytes as read.
fn read_message(s: &mut TcpStream, to_eof: bool) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut body = buf[head_end..].to_vec();
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        let done = match (to_eof, length, chunked) {
            (true, _, _) => false,
            (_, Some(n), _) => body.len() >= n,
            (_, None, true) => body.ends_with(b"0\r\n\r\n"),
            _ => true,
        };
        if done {
            break;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

/// The head with its `Connection` header replaced by `close`.
fn closing(head: &str) -> String {
    let mut out: Vec<&str> = head
        .trim_end_matches("\r\n\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    out.push("Connection: close");
    format!("{}\r\n\r\n", out.join("\r\n"))
}

fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Serves one request, injecting `fault` if `target` matches it (`faulted`: the paths faulted
/// so far): the fault applied, if any (a truncation applies to a successful GET with a body
/// only).
fn serve(
    mut client: TcpStream,
    upstream: &str,
    fault: Option<Fault>,
    target: Target,
    faulted: &Mutex<std::collections::HashSet<String>>,
) -> std::io::Result<Option<Fault>> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (head, body) = read_message(&mut client, false)?;
    let fault = fault.filter(|_| {
        target.matches(&head)
            && (!target.once_per_key
                || faulted
                    .lock()
                    .unwrap()
                    .insert(Target::request_line(&head).1.to_string()))
    });
    match fault {
        Some(f @ (Fault::SlowDown | Fault::ServerError)) => {
            let (status, code, message) = if f == Fault::SlowDown {
                (
                    "503 Slow Down",
                    "SlowDown",
                    "Please reduce your request rate.",
                )
            } else {
                (
                    "500 Internal Server Error",
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                )
            };
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            );
            write!(
                client,
                "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            )?;
            let _ = client.shutdown(Shutdown::Write);
            return Ok(fault);
        }
        Some(Fault::ResetBefore) => {
            reset(client);
            return Ok(fault);
        }
        Some(Fault::Stall) => {
            // No answer: the connection is held until the client's timeout closes it.
            client.set_read_timeout(Some(Duration::from_secs(120)))?;
            let _ = client.read(&mut [0u8; 1]);
            return Ok(fault);
        }
        Some(Fault::Delay) => std::thread::sleep(Duration::from_millis(300)),
        _ => {}
    }
    let mut server = TcpStream::connect(upstream)?;
    server.set_read_timeout(Some(Duration::from_secs(60)))?;
    server.write_all(closing(&head).as_bytes())?;
    server.write_all(&body)?;
    let (rhead, rbody) = read_message(&mut server, true)?;
    match fault {
        Some(Fault::ResetAfter) => {
            reset(client);
            return Ok(fault);
        }
        Some(Fault::Truncate)
            if head.starts_with("GET ") && rhead.starts_with("HTTP/1.1 2") && rbody.len() >= 2 =>
        {
            client.write_all(closing(&rhead).as_bytes())?;
            client.write_all(&rbody[..rbody.len() / 2])?;
            reset(client);
            return Ok(fault);
        }
        _ => {}
    }
    client.write_all(closing(&rhead).as_bytes())?;
    client.write_all(&rbody)?;
    let _ = client.shutdown(Shutdown::Write);
    Ok(fault.filter(|f| *f == Fault::Delay))
}

/// The environment of the binary for `server`, through `proxy`: a stalled request is given up
/// after 2 s (`store.request_timeout_s`; 30 by default).
fn through(server: &S3Server, proxy: &FaultProxy) -> TestCommand {
    let t = TestCommand::new();
    let config = t.path().join("lakepipe.toml");
    std::fs::write(&config, "[store]\nrequest_timeout_s = 2\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    t.env("LAKEPIPE_CONFIG", &config)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", &server.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret)
}

/// Hours of the schedule on moto with 10 % of S3 requests failing (500, 503 SlowDown, resets
/// before and after forwarding, GET bodies cut off, stalls, delays) — the ingest and catalog
/// DAGs from 23:30 across midnight, then every DAG from 01:30 across the 02:00 batch run: the
/// same landed objects as a clean run, and every id once in each unified table, with the same
/// counts as the clean run. Then `serve` through the same proxy: `/metrics` counts the failed
/// attempts it retried.
#[tokio::test]
async fn simulate_on_moto_through_s3_faults_loses_and_repeats_nothing() {
    let (faulty, lake, proxy) = simulate_through_faults(
        "LAKEPIPE_TEST_MOTO",
        (TEN_PERCENT, EVERY_REQUEST),
        Some("2026-02-01T23:30:00Z"),
        "2026-02-02T01:30:00Z",
        "2026-02-02T02:10:00Z",
    )
    .await;
    let (injected, _) = proxy.injected();
    for f in [
        Fault::ServerError,
        Fault::SlowDown,
        Fault::ResetBefore,
        Fault::ResetAfter,
        Fault::Truncate,
        Fault::Stall,
        Fault::Delay,
    ] {
        assert!(
            injected.get(&f).copied().unwrap_or(0) > 0,
            "{f:?}: {injected:?}"
        );
    }
    retries_are_counted_in_metrics("LAKEPIPE_TEST_MOTO", &faulty, &lake, &proxy);
}

/// The same faults in front of Garage, which ignores create-only writes (claims and
/// check-then-put instead): 25 minutes of every DAG around the batch run; then `serve`
/// through them counts its retries in `/metrics`.
#[tokio::test]
async fn simulate_on_garage_through_s3_faults_loses_and_repeats_nothing() {
    let (faulty, lake, proxy) = simulate_through_faults(
        "LAKEPIPE_TEST_GARAGE",
        (TEN_PERCENT, EVERY_REQUEST),
        None,
        "2026-02-02T01:45:00Z",
        "2026-02-02T02:10:00Z",
    )
    .await;
    let (failed, requests) = proxy.failed();
    assert!(
        failed * 100 >= requests * 5,
        "{:?} of {requests}",
        proxy.injected().0
    );
    retries_are_counted_in_metrics("LAKEPIPE_TEST_GARAGE", &faulty, &lake, &proxy);
}

/// Found when this issue was filed: a Delta commit whose answer was lost (the log entry's PUT
/// done, the connection reset before the client heard) came back on retry as a conflict with
/// itself ("a concurrent transaction deleted data this operation read") and cost the task an
/// attempt. Here 30 % of the PUTs into a `_delta_log/` are answered by a reset after they were
/// forwarded (each key once: its repeat is answered), and nothing else fails: the batch run and
/// two serving runs end as a clean run's, and every task in one attempt — each writer took the
/// commit it found for its own.
#[tokio::test]
async fn a_delta_commit_whose_answer_was_lost_is_taken_for_the_writers_own() {
    let lost_answers = Shares {
        server_error: 0,
        slow_down: 0,
        reset_before: 0,
        reset_after: 300,
        truncate: 0,
        stall: 0,
        delay: 0,
    };
    let log_puts = Target {
        method: Some("PUT"),
        path: Some("/_delta_log/"),
        once_per_key: true,
    };
    let (_, lake, proxy) = simulate_through_faults(
        "LAKEPIPE_TEST_MOTO",
        (lost_answers, log_puts),
        Some("2026-02-01T23:50:00Z"),
        "2026-02-02T01:55:00Z",
        "2026-02-02T02:10:00Z",
    )
    .await;
    let (injected, requests) = proxy.injected();
    let lost = injected.get(&Fault::ResetAfter).copied().unwrap_or(0);
    assert!(lost >= 5, "{injected:?} of {requests}");
    let server = s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = lake.trim_start_matches("s3://").trim_end_matches("/lake");
    let mut tasks = 0;
    let mut retried = Vec::new();
    for key in server.keys(bucket, "lake/_lakepipe/runs/").await {
        if !key.contains("/tasks/") || !key.ends_with(".json") {
            continue;
        }
        let ti: serde_json::Value = serde_json::from_slice(&server.object(bucket, &key).await)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        tasks += 1;
        let attempts = ti["attempts"].as_array().map_or(0, Vec::len);
        if attempts > 1 {
            retried.push((key, ti["attempts"].clone()));
        }
    }
    eprintln!("{lost} commit answers lost of {requests} requests; {tasks} tasks");
    assert!(tasks >= 40, "{tasks}");
    assert!(retried.is_empty(), "tasks retried: {retried:#?}");
}

/// `simulate` of [`from`, `to`] on `var`'s server twice, undisturbed and through a fault
/// proxy (failing `faults`: shares of the requests a target matches), each after the ingest and
/// catalog DAGs from `seeded_from` to `from` if given: the same landed objects, and the same
/// unified and silver rows with every id once. The faulty run's command, lake and proxy.
async fn simulate_through_faults(
    var: &str,
    faults: (Shares, Target),
    seeded_from: Option<&str>,
    from: &str,
    to: &str,
) -> (TestCommand, String, FaultProxy) {
    let server = s3_server(var);
    let clean_bucket = server.new_bucket("clean").await;
    let faulty_bucket = server.new_bucket("faulty").await;
    let proxy = FaultProxy::start_for(&server.endpoint, faults.0, faults.1, 26_12_05);
    let mut runs = Vec::new();
    if let Some(seeded_from) = seeded_from {
        let mut seed = vec!["simulate", "--from", seeded_from, "--to", from];
        for dag in INGEST_DAGS.into_iter().chain(["5-lake_catalog_refresh"]) {
            seed.extend(["--dag", dag]);
        }
        runs.push(seed);
    }
    runs.push(vec!["simulate", "--from", from, "--to", to]);
    let simulate = |t: &TestCommand, lake: &str| -> Vec<Run> {
        runs.iter()
            .map(|range| {
                let mut args = vec!["--lake", lake];
                args.extend(range.iter().copied());
                args.extend(["--scale", "0.05"]);
                t.run(&args)
            })
            .collect()
    };
    let clean = server.apply(TestCommand::new());
    let clean_lake = format!("s3://{clean_bucket}/lake");
    for run in simulate(&clean, &clean_lake) {
        run.assert_exit_code(0);
    }

    let faulty = through(&server, &proxy);
    let faulty_lake = format!("s3://{faulty_bucket}/lake");
    let done = simulate(&faulty, &faulty_lake);
    let (injected, requests) = proxy.injected();
    eprintln!("{var}: {requests} requests through the proxy, faults {injected:?}");
    for run in done {
        run.assert_exit_code(0);
    }

    // The landed objects: the same keys and bytes.
    for prefix in ["lake/realtime/"] {
        let a = server.keys(&clean_bucket, prefix).await;
        let b = server.keys(&faulty_bucket, prefix).await;
        assert_eq!(a, b, "{prefix}");
        for key in &a {
            assert_eq!(
                server.object(&clean_bucket, key).await,
                server.object(&faulty_bucket, key).await,
                "{key}"
            );
        }
    }
    // Every id once in each unified table, and the same rows as the clean run.
    for (stream, id) in STREAMS {
        let sql = format!(
            "SELECT date, count(*) AS n, count(DISTINCT {id}) AS ids FROM serving_unified_{stream} GROUP BY date ORDER BY date"
        );
        let want = query_rows(&clean, &clean_lake, &sql);
        let got = query_rows(&faulty, &faulty_lake, &sql);
        for r in &got {
            assert_eq!(r["n"], r["ids"], "{stream}: {r}");
        }
        assert_eq!(got, want, "{stream}");
        let sql = format!("SELECT count(*) AS n, count(DISTINCT {id}) AS ids FROM silver_{stream}");
        assert_eq!(
            query_rows(&faulty, &faulty_lake, &sql),
            query_rows(&clean, &clean_lake, &sql),
            "silver_{stream}"
        );
    }

    (faulty, faulty_lake, proxy)
}

/// `lakepipe serve` on `lake` (on `var`'s server) through `proxy`, sent an event every half second (each lands an
/// object and a live serving run): `/metrics` counts retried attempts, never more than the
/// proxy failed, nor more requests than it saw.
fn retries_are_counted_in_metrics(var: &str, t: &TestCommand, lake: &str, proxy: &FaultProxy) {
    let sum = |metrics: &str, name: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let (failed_before, requests_before) = proxy.failed();
    let log = t.path().join("serve.log");
    let (_server, up) = serve_logged(t, lake, &log);
    let base = up.unwrap_or_else(|said| panic!("serve did not start:\n{said}"));
    let mut metrics = String::new();
    // Events posted meanwhile make S3 requests whatever the scheduler's next tick (each lands
    // an object, and live serving runs on each landing).
    let event = t.path().join("event.ndjson");
    for i in 0..360 {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        std::fs::write(
            &event,
            format!("{{\"log_id\":\"m-{i}\",\"event_time\":\"{now}\"}}\n"),
        )
        .unwrap();
        let _ = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-X", "POST"])
            .args(["-H", "Content-Type: application/x-ndjson", "--data-binary"])
            .arg(format!("@{}", event.display()))
            .arg(format!("{base}/ingest/api_logs"))
            .output();
        let out = std::process::Command::new("curl")
            .args(["-sS", &format!("{base}/metrics")])
            .output()
            .expect("curl");
        metrics = String::from_utf8_lossy(&out.stdout).into_owned();
        if sum(&metrics, "lakepipe_s3_retries_total") >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let (failed_after, requests_after) = proxy.failed();
    let retries = sum(&metrics, "lakepipe_s3_retries_total");
    let requests = sum(&metrics, "lakepipe_s3_requests_total");
    eprintln!(
        "{var}: serve: {retries} retries and {requests} requests counted; the proxy failed {} of {}",
        failed_after - failed_before,
        requests_after - requests_before
    );
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(retries >= 3, "{metrics}\nserve said:\n{said}");
    assert!(retries <= failed_after - failed_before, "{metrics}");
    assert!(requests <= requests_after - requests_before, "{metrics}");
}

/// The ingest API on a moto lake through the fault proxy (10 % of S3 requests failed), killed
/// with SIGKILL four times while a request is in flight: a producer posts 60 requests of 20
/// records, each with an Idempotency-Key, and repeats each until it is acknowledged (the API
/// answers 503 when the lake refused a write; a killed server answers nothing, and the request
/// goes to the restarted one with the same key). Every acknowledged record is in the speed
/// layer exactly once, read from moto directly.
#[tokio::test(flavor = "multi_thread")]
async fn ingest_through_s3_faults_and_kill_9_lands_every_acknowledged_record_once() {
    const REQUESTS: usize = 60;
    const RECORDS: usize = 20;
    // (request, milliseconds after it was sent): serve is killed then, and started again.
    const KILLS: [(usize, u64); 4] = [(9, 5), (23, 15), (38, 25), (51, 60)];
    let server = s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = server.new_bucket("ingest-faults").await;
    let proxy = FaultProxy::start(&server.endpoint, TEN_PERCENT, 27_12_05);
    let lake = format!("s3://{bucket}/lake");
    let t = through(&server, &proxy);
    let (statuses, acked, killed) = tokio::task::spawn_blocking(move || {
        let serve = || {
            crate::util::serving(
                &t,
                &[
                    "--lake",
                    &lake,
                    "serve",
                    "--no-scheduler",
                    "--listen",
                    "127.0.0.1:0",
                ],
            )
        };
        let (mut running, mut base) = serve();
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut statuses = BTreeMap::<String, u64>::new();
        // The status the request in flight got from each killed server ("000": none).
        let mut killed = Vec::new();
        let mut acked = Vec::new();
        for r in 0..REQUESTS {
            let ids: Vec<String> = (0..RECORDS)
                .map(|i| format!("faults-{r:03}-{i:02}"))
                .collect();
            let body: String = ids
                .iter()
                .map(|id| format!("{{\"log_id\":\"{id}\",\"event_time\":\"{now}\"}}\n"))
                .collect();
            let file = t.path().join(format!("r{r}.ndjson"));
            std::fs::write(&file, body).unwrap();
            let mut kill = KILLS.iter().find(|(at, _)| *at == r).map(|(_, ms)| *ms);
            loop {
                let curl = std::process::Command::new("curl")
                    .args(["-sS", "-m", "120", "-o", "/dev/null", "-w", "%{http_code}"])
                    .args(["-X", "POST", "-H", "Content-Type: application/x-ndjson"])
                    .args(["-H", &format!("Idempotency-Key: faults-{r}")])
                    .arg("--data-binary")
                    .arg(format!("@{}", file.display()))
                    .arg(format!("{base}/ingest/api_logs"))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("curl");
                let killing = kill.take();
                if let Some(ms) = killing {
                    std::thread::sleep(Duration::from_millis(ms));
                    drop(running); // SIGKILL, then reaped
                    (running, base) = serve();
                }
                let out = curl.wait_with_output().expect("curl");
                let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
                *statuses.entry(status.clone()).or_default() += 1;
                if killing.is_some() {
                    killed.push(status.clone());
                }
                match status.as_str() {
                    "200" => break,
                    "503" | "409" => std::thread::sleep(Duration::from_millis(200)),
                    "000" if killing.is_some() => {}
                    other => panic!("request {r}: status {other}"),
                }
            }
            acked.extend(ids);
        }
        (statuses, acked, killed)
    })
    .await
    .unwrap();
    eprintln!("SIGKILLs with a request in flight, its status from the killed server: {killed:?}");
    let (injected, requests) = proxy.injected();
    eprintln!(
        "answers {statuses:?}; {requests} S3 requests through the proxy, faults {injected:?}"
    );
    let mut seen = BTreeMap::<String, u64>::new();
    for key in server.keys(&bucket, "lake/realtime/api_logs/").await {
        let body = server.object(&bucket, &key).await;
        for line in String::from_utf8(body).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            *seen
                .entry(v["log_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(acked.len(), REQUESTS * RECORDS);
    assert_eq!(killed.len(), KILLS.len());
    let lost: Vec<_> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(twice.is_empty(), "twice: {twice:?}");
    assert_eq!(seen.len(), acked.len());
    assert!(proxy.failed().0 > 0, "{injected:?}");
}

/// Found by the `/metrics` step above failing now and then in CI: `serve` through the fault
/// proxy exited at start-up when one request of its first few failed without an answer — the
/// create-only PUT of its capability probe or of the scheduler lease (the client does not
/// repeat a create-only PUT) or the DELETE of a dead scheduler's lease (a bulk POST, not
/// repeated either): 18 of 20 starts died at 30 % faults. Now 8 starts in a row, each killed
/// with SIGKILL once it runs (so the next takes over a dead holder's lease), each start up.
/// (A later CI run caught the preflight's HEAD bucket giving up after three failed attempts
/// at start 7; with eight attempts, 40 starts in a row came up.)
#[tokio::test]
async fn serve_starts_through_s3_faults_and_takes_over_a_killed_schedulers_lease() {
    let server = s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = server.new_bucket("starts").await;
    let lake = format!("s3://{bucket}/lake");
    let thirty_percent = Shares {
        server_error: 40,
        slow_down: 60,
        reset_before: 60,
        reset_after: 60,
        truncate: 30,
        stall: 20,
        delay: 30,
    };
    let proxy = FaultProxy::start(&server.endpoint, thirty_percent, 5_12_26);
    let t = through(&server, &proxy);
    for start in 0..8 {
        let log = t.path().join(format!("serve-{start}.log"));
        // Dropped (SIGKILL) at the end of each round.
        let (_serve, up) = serve_logged(&t, &lake, &log);
        let (injected, requests) = proxy.injected();
        if let Err(said) = up {
            panic!("start {start} did not run ({requests} requests so far, {injected:?}):\n{said}");
        }
    }
    let (injected, requests) = proxy.injected();
    eprintln!("8 starts of serve: {requests} requests through the proxy, faults {injected:?}");
}

/// Starts `lakepipe serve` on `lake` with its stderr in `log`, and waits until its scheduler
/// runs: the process, and the UI's base URL — or, if it exited or took two minutes, what it
/// said.
fn serve_logged(
    t: &TestCommand,
    lake: &str,
    log: &std::path::Path,
) -> (crate::util::Killed, Result<String, String>) {
    let child = t
        .command(&["--lake", lake, "serve", "--listen", "127.0.0.1:0"])
        .stderr(std::fs::File::create(log).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = crate::util::Killed(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        if said.contains("lakepipe serve: the scheduler") {
            let base = said.lines().find_map(crate::web::ui_base);
            return (child, base.ok_or(said));
        }
        if child.0.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            return (child, Err(said));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
