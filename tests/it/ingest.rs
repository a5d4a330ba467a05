//! The HTTP ingest API of `lakepipe serve` over real HTTP: events posted with curl (NDJSON,
//! a JSON array, gzip) and Python `requests` land with exactly their bytes; an acknowledged
//! request survives `kill -9` of the server, and retries with its `Idempotency-Key`, before
//! and after the restart, land nothing twice; each refusal has its status (413, 404, 400,
//! 401, 403, 415, 503).

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Stdio};

use chrono::{Duration, Utc};

use crate::util::{TestCommand, files_under, s3_server};
use crate::web::ui_address;

/// A short flush window: the tests wait for one per request.
const CONFIG: &str = "[ingest]\nflush_ms = 50\n";

/// `lakepipe serve` over the test's lake, killed (SIGKILL) on drop.
struct Server {
    child: Child,
    /// `http://ADDR` as the server printed it.
    base: String,
    /// The port it listens on.
    port: u16,
}

impl Server {
    fn start(t: &TestCommand, listen: &str, args: &[&str]) -> Server {
        Server::start_on(t, &t.lake().display().to_string(), listen, args)
    }

    /// [`Server::start`] on the lake `lake` (a directory or `s3://…`).
    fn start_on(t: &TestCommand, lake: &str, listen: &str, args: &[&str]) -> Server {
        let mut child = t
            .command(&[&["--lake", lake, "serve", "--listen", listen], args].concat())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start lakepipe serve");
        let base = ui_address(&mut child);
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Server { child, base, port }
    }

    /// SIGTERM, then waits for the exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        self.child.wait().unwrap()
    }

    /// `kill -9`.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One answer as curl saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header lines, lower case.
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
    pub fn objects(&self) -> Vec<String> {
        self.json()["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }
}

/// POSTs `body` (a file) to `url` with curl and `headers`.
pub fn post(url: &str, body: &Path, headers: &[&str]) -> Reply {
    let mut args = vec![
        "-sS".to_string(),
        "-i".into(),
        "-X".into(),
        "POST".into(),
        "-H".into(),
        "Expect:".into(),
        "--data-binary".into(),
        format!("@{}", body.display()),
    ];
    for h in headers {
        args.push("-H".into());
        args.push((*h).to_string());
    }
    args.push(url.to_string());
    let out = std::process::Command::new("curl")
        .args(&args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text}"));
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

pub const NDJSON: &str = "Content-Type: application/x-ndjson";

/// An `api_logs` event at `t` (RFC 3339), as a producer would send it.
fn api_log(n: u32, t: &str) -> String {
    serde_json::json!({
        "log_id": format!("00000000-0000-4000-8000-{n:012}"),
        "event_time": t,
        "request_id": format!("req-{n}"),
        "method": "GET",
        "endpoint": "/api/v1/users",
        "status_code": 200,
        "response_time_ms": 12.5,
        "client_ip": "10.0.0.1",
        "user_agent": "curl/8",
        "region": "us-east-1",
        "api_key_id": "key-1",
        "bytes_sent": 100,
        "bytes_received": 20,
    })
    .to_string()
}

/// Now and an hour ago, RFC 3339.
fn times() -> (String, String) {
    let now = Utc::now();
    let f = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    (f(now), f(now - Duration::hours(1)))
}

/// The lines of the objects `keys` in the lake, in key order.
fn lines_of(t: &TestCommand, keys: &[String]) -> Vec<String> {
    let mut keys = keys.to_vec();
    keys.sort();
    keys.iter()
        .flat_map(|k| {
            let text = std::fs::read_to_string(t.lake().join(k)).unwrap();
            assert!(text.ends_with('\n'), "{k}: not newline-terminated");
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

/// Every landed speed-layer object of the lake.
fn landed(t: &TestCommand) -> Vec<String> {
    files_under(&t.lake())
        .into_iter()
        .filter(|f| f.starts_with("realtime/"))
        .collect()
}

/// The records (lines) of every speed-layer object.
fn landed_records(t: &TestCommand) -> usize {
    landed(t)
        .iter()
        .map(|k| {
            std::fs::read_to_string(t.lake().join(k))
                .unwrap()
                .lines()
                .count()
        })
        .sum()
}

fn write(t: &TestCommand, name: &str, body: &[u8]) -> std::path::PathBuf {
    let p = t.path().join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn ingest_curl_ndjson_array_and_gzip_land_exactly_the_accepted_lines() {
    let t = TestCommand::new();
    std::fs::write(t.path().join("lakepipe.toml"), CONFIG).unwrap();
    let server = Server::start(&t, "127.0.0.1:0", &[]);
    let url = format!("{}/ingest/api_logs", server.base);
    let (now, hour_ago) = times();
    let good = [api_log(1, &now), api_log(2, &hour_ago), api_log(3, &now)];
    // Line 1 is an array, line 3 is not JSON, line 5 is blank (skipped); CRLF is stripped.
    let body = format!(
        "{}\r\n[1,2]\n{}\n{{\"broken\": \n\n{}\n",
        good[0], good[1], good[2]
    );
    let r = post(&url, &write(&t, "b.ndjson", body.as_bytes()), &[NDJSON]);
    assert_eq!(r.status, 200, "{r:?}");
    let a = r.json();
    assert_eq!(a["stream"], "api_logs");
    assert_eq!(a["accepted"], 3);
    assert_eq!(a["rejected"], 2);
    assert_eq!(a["replayed"], false);
    let idx: Vec<u64> = a["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![1, 3]);
    // Two event-time hours: two objects, each in its partition, with a writer tag the
    // catalog accepts.
    let objects = r.objects();
    assert_eq!(objects.len(), 2, "{objects:?}");
    let re = regex::Regex::new(
        r"^realtime/api_logs/date=\d{4}-\d{2}-\d{2}/hour=\d{2}/api_logs_\d{8}T\d{6}Z_api-[0-9a-f]{16}-\d{6,}\.jsonl$",
    )
    .unwrap();
    for k in &objects {
        assert!(re.is_match(k), "{k}");
    }
    let hour = |t: &str| format!("date={}/hour={}/", &t[..10], &t[11..13]);
    assert!(objects.iter().any(|k| k.contains(&hour(&now))));
    assert!(objects.iter().any(|k| k.contains(&hour(&hour_ago))));
    let mut got = lines_of(&t, &objects);
    let mut want = good.to_vec();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "the lake holds exactly the accepted lines' bytes"
    );

    // A JSON array, pretty-printed: each element lands on one line.
    let array = format!("[\n  {},\n  {}\n]\n", api_log(4, &now), api_log(5, &now));
    let r = post(
        &url,
        &write(&t, "b.json", array.as_bytes()),
        &["Content-Type: application/json"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["accepted"], 2);
    assert_eq!(
        lines_of(&t, &r.objects()),
        vec![api_log(4, &now), api_log(5, &now)]
    );

    // gzip.
    let plain = format!("{}\n{}\n", api_log(6, &now), api_log(7, &now));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(plain.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let r = post(
        &url,
        &write(&t, "b.ndjson.gz", &gz),
        &[NDJSON, "Content-Encoding: gzip"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["accepted"], 2);
    assert_eq!(
        lines_of(&t, &r.objects()),
        vec![api_log(6, &now), api_log(7, &now)]
    );
    // Nothing else landed: 2 + 1 + 1 objects.
    assert_eq!(landed(&t).len(), 4, "{:?}", landed(&t));
}

#[test]
fn ingest_python_requests_posts_a_batch() {
    let Ok(python) = std::env::var("LAKEPIPE_TEST_PYTHON") else {
        eprintln!(
            "skipped: LAKEPIPE_TEST_PYTHON is not set (run `scripts/test`, whose venv has requests)"
        );
        return;
    };
    let t = TestCommand::new();
    std::fs::write(t.path().join("lakepipe.toml"), CONFIG).unwrap();
    let server = Server::start(&t, "127.0.0.1:0", &[]);
    let (now, _) = times();
    let script = r#"
import json, sys, requests
url, now = sys.argv[1], sys.argv[2]
events = [{"log_id": "py-%d" % i, "event_time": now, "endpoint": "/api/v1/orders",
           "status_code": 201} for i in range(3)]
body = "\n".join(json.dumps(e) for e in events) + "\n"
r = requests.post(url, data=body.encode(), headers={"Content-Type": "application/x-ndjson",
                  "Idempotency-Key": "py-batch-1"}, timeout=30)
again = requests.post(url, json=events[:1], timeout=30)
retry = requests.post(url, data=body.encode(), headers={"Content-Type": "application/x-ndjson",
                      "Idempotency-Key": "py-batch-1"}, timeout=30)
print(json.dumps({"first": [r.status_code, r.json()], "array": [again.status_code, again.json()],
                  "retry": [retry.status_code, retry.json(),
                            retry.headers.get("Idempotent-Replayed")]}))
"#;
    let out = std::process::Command::new(python)
        .args([
            "-c",
            script,
            &format!("{}/ingest/api_logs", server.base),
            &now,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["first"][0], 200);
    assert_eq!(v["first"][1]["accepted"], 3);
    assert_eq!(v["array"][0], 200);
    assert_eq!(v["array"][1]["accepted"], 1);
    assert_eq!(v["retry"][0], 200);
    assert_eq!(v["retry"][1]["replayed"], true);
    assert_eq!(v["retry"][1]["objects"], v["first"][1]["objects"]);
    assert_eq!(v["retry"][2], "true");
    let keys: Vec<String> = v["first"][1]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines_of(&t, &keys).len(), 3);
}

#[test]
fn ingest_acknowledged_records_survive_kill_9_and_idempotent_retries_land_nothing_twice() {
    let t = TestCommand::new();
    std::fs::write(t.path().join("lakepipe.toml"), CONFIG).unwrap();
    let (now, hour_ago) = times();
    let body_a = format!("{}\n{}\n", api_log(1, &now), api_log(2, &hour_ago));
    let body_b = format!("{}\n{}\n", api_log(3, &now), api_log(4, &now));
    let file_a = write(&t, "a.ndjson", body_a.as_bytes());
    let file_b = write(&t, "b.ndjson", body_b.as_bytes());

    let server = Server::start(&t, "127.0.0.1:0", &[]);
    let url = format!("{}/ingest/api_logs", server.base);
    let a = post(&url, &file_a, &[NDJSON, "Idempotency-Key: batch-a"]);
    assert_eq!(a.status, 200, "{a:?}");
    // A retry before the restart: the first answer, nothing landed.
    let a_again = post(&url, &file_a, &[NDJSON, "Idempotency-Key: batch-a"]);
    assert_eq!(a_again.status, 200);
    assert_eq!(a_again.json()["replayed"], true);
    assert!(a_again.headers.contains("idempotent-replayed: true"));
    assert_eq!(a_again.objects(), a.objects());
    // The same key with another body is refused.
    let other = post(&url, &file_b, &[NDJSON, "Idempotency-Key: batch-a"]);
    assert_eq!(other.status, 422, "{other:?}");
    let b = post(&url, &file_b, &[NDJSON, "Idempotency-Key: batch-b"]);
    assert_eq!(b.status, 200, "{b:?}");
    // kill -9 right after the 200.
    server.kill();

    let before = landed(&t);
    let server = Server::start(&t, "127.0.0.1:0", &[]);
    let url = format!("{}/ingest/api_logs", server.base);
    // Every acknowledged record is in the lake.
    let mut got = lines_of(&t, &[a.objects(), b.objects()].concat());
    got.sort();
    let mut want: Vec<String> = body_a
        .lines()
        .chain(body_b.lines())
        .map(String::from)
        .collect();
    want.sort();
    assert_eq!(got, want);
    // Retries after the restart: the first answers, no new object, no line twice.
    for (file, key, first) in [(&file_a, "batch-a", &a), (&file_b, "batch-b", &b)] {
        let r = post(&url, file, &[NDJSON, &format!("Idempotency-Key: {key}")]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["replayed"], true);
        assert_eq!(r.objects(), first.objects());
        assert_eq!(r.json()["accepted"], first.json()["accepted"]);
    }
    assert_eq!(landed(&t), before);
    assert_eq!(landed_records(&t), 4);
}

/// The first non-loopback IPv4 address of this machine, if any.
fn outside_address() -> Option<String> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
        .map(|a| a.to_string())
}

/// The `lakepipe_ingest_inflight_bytes` gauge of the server (its UI token is `token`).
fn inflight(base: &str, token: &str) -> u64 {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{base}/metrics"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("lakepipe_ingest_inflight_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn ingest_refusals_have_their_statuses() {
    let t = TestCommand::new();
    std::fs::write(
        t.path().join("lakepipe.toml"),
        r#"[ingest]
flush_ms = 50
max_body_bytes = 4096
max_record_bytes = 1024
max_inflight_bytes = 8192
tokens = [{ token = "producer-token-1", streams = ["api_logs"] }]
"#,
    )
    .unwrap();
    let server = Server::start(&t, "0.0.0.0:0", &["--token", "ui-token-123456"]);
    let local = format!("http://127.0.0.1:{}", server.port);
    let url = format!("{local}/ingest/api_logs");
    let (now, _) = times();
    let one = write(
        &t,
        "one.ndjson",
        format!("{}\n", api_log(1, &now)).as_bytes(),
    );
    let status = |r: Reply| r.status;

    // 413: the body, and one record over its limit (nothing of that request lands).
    let big = write(
        &t,
        "big.ndjson",
        format!("{}\n", api_log(1, &now)).repeat(20).as_bytes(),
    );
    assert_eq!(status(post(&url, &big, &[NDJSON])), 413);
    let long = format!(
        "{}\n{{\"pad\":\"{}\"}}\n",
        api_log(2, &now),
        "x".repeat(1100)
    );
    let r = post(&url, &write(&t, "long.ndjson", long.as_bytes()), &[NDJSON]);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("record 1"));
    assert!(landed(&t).is_empty());
    // 404, 415, 400 (array framing, gzip, encoding, empty body, idempotency key).
    assert_eq!(
        status(post(&format!("{local}/ingest/nope"), &one, &[NDJSON])),
        404
    );
    assert_eq!(status(post(&url, &one, &["Content-Type: text/plain"])), 415);
    let bad_array = write(&t, "bad.json", b"[{\"a\":1}, {\"b\":");
    assert_eq!(
        status(post(&url, &bad_array, &["Content-Type: application/json"])),
        400
    );
    assert_eq!(
        status(post(&url, &one, &[NDJSON, "Content-Encoding: gzip"])),
        400
    );
    assert_eq!(
        status(post(&url, &one, &[NDJSON, "Content-Encoding: br"])),
        400
    );
    let empty = write(&t, "empty", b"\n\n");
    assert_eq!(status(post(&url, &empty, &[NDJSON])), 400);
    let long_key = format!("Idempotency-Key: {}", "k".repeat(300));
    assert_eq!(status(post(&url, &one, &[NDJSON, &long_key])), 400);
    // 403: a browser's cross-site request, whatever the token.
    assert_eq!(
        status(post(&url, &one, &[NDJSON, "Sec-Fetch-Site: cross-site"])),
        403
    );
    assert_eq!(
        status(post(&url, &one, &[NDJSON, "Origin: http://evil.example"])),
        403
    );
    // From loopback no token is needed.
    assert_eq!(status(post(&url, &one, &[NDJSON])), 200);

    // 401 / 403 off loopback.
    match outside_address() {
        Some(ip) => {
            let outside = format!("http://{ip}:{}/ingest", server.port);
            let api_logs = format!("{outside}/api_logs");
            let iot = format!("{outside}/iot_sensors");
            let r = post(&api_logs, &one, &[NDJSON]);
            assert_eq!(r.status, 401, "{r:?}");
            assert!(r.headers.contains("www-authenticate: bearer"));
            let wrong = "Authorization: Bearer not-a-token-at-all";
            assert_eq!(status(post(&api_logs, &one, &[NDJSON, wrong])), 401);
            let producer = "Authorization: Bearer producer-token-1";
            assert_eq!(status(post(&api_logs, &one, &[NDJSON, producer])), 200);
            let r = post(&iot, &one, &[NDJSON, producer]);
            assert_eq!(r.status, 403, "{r:?}");
            assert!(
                !r.body.contains("producer-token-1"),
                "tokens are never echoed"
            );
            let ui = "Authorization: Bearer ui-token-123456";
            assert_eq!(status(post(&iot, &one, &[NDJSON, ui])), 200);
        }
        None => eprintln!("no non-loopback IPv4 address: 401/403 are covered by web::tests only"),
    }

    // 503: one client holds a partial body of 4000 bytes open, which holds twice that (its
    // records are split out of it): all but 192 bytes of the budget.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let held = format!("{}\n", api_log(9, &now));
    let pad = 4000 - held.len();
    let held = format!("{held}{}", " ".repeat(pad));
    write!(
        slow,
        "POST /ingest/api_logs HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        server.port,
        held.len(),
        &held[..100]
    )
    .unwrap();
    slow.flush().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while inflight(&local, "ui-token-123456") < 8000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never reserved its bytes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = post(&url, &one, &[NDJSON]);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.headers.contains("retry-after: 1"), "{}", r.headers);
    // The held request completes, and the budget is given back.
    slow.write_all(&held.as_bytes()[100..]).unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(status(post(&url, &one, &[NDJSON])), 200);
}

#[test]
fn ingest_sigterm_lands_and_answers_waiting_requests_before_exit() {
    let t = TestCommand::new();
    // A window no test waits for, without group commit: only the shutdown flushes the batch.
    std::fs::write(
        t.path().join("lakepipe.toml"),
        "[ingest]\nflush_ms = 60000\ngroup_commit = false\n",
    )
    .unwrap();
    let server = Server::start(&t, "127.0.0.1:0", &[]);
    let url = format!("{}/ingest/api_logs", server.base);
    let (now, _) = times();
    let body = format!("{}\n{}\n", api_log(1, &now), api_log(2, &now));
    let file = write(&t, "w.ndjson", body.as_bytes());
    let waiting = std::thread::spawn(move || post(&url, &file, &[NDJSON]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while inflight(&server.base, "") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        landed(&t).is_empty(),
        "nothing is flushed before the window"
    );
    let exit = server.terminate();
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        lines_of(&t, &r.objects()),
        body.lines().map(String::from).collect::<Vec<_>>()
    );
    assert!(exit.success(), "{exit:?}");
}

/// On S3 (moto): the answer comes after the PUTs; objects carry their content type and
/// metadata; a retry with the key replays.
#[test]
fn ingest_on_s3_lands_objects_with_type_and_metadata_and_replays_retries() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = rt.block_on(moto.new_bucket("ingest"));
    let t = moto.apply(TestCommand::new());
    std::fs::write(t.path().join("lakepipe.toml"), CONFIG).unwrap();
    let lake = format!("s3://{bucket}/lake");
    let server = Server::start_on(&t, &lake, "127.0.0.1:0", &[]);
    let url = format!("{}/ingest/iot_sensors", server.base);
    let (now, _) = times();
    let body = format!("{{\"sensor_id\":\"s-1\",\"event_time\":\"{now}\",\"temperature\":21.5}}\n");
    let file = write(&t, "s3.ndjson", body.as_bytes());
    let r = post(&url, &file, &[NDJSON, "Idempotency-Key: s3-1"]);
    assert_eq!(r.status, 200, "{r:?}");
    let objects = r.objects();
    assert_eq!(objects.len(), 1);
    let again = post(&url, &file, &[NDJSON, "Idempotency-Key: s3-1"]);
    assert_eq!(again.json()["replayed"], true);
    assert_eq!(again.objects(), objects);
    let client = moto.client();
    let keys = rt.block_on(moto.keys(&bucket, "lake/realtime/"));
    assert_eq!(keys, vec![format!("lake/{}", objects[0])]);
    let got = rt
        .block_on(client.get_object().bucket(&bucket).key(&keys[0]).send())
        .unwrap();
    assert_eq!(got.content_type(), Some("application/x-ndjson"));
    let meta = got.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("stream").map(String::as_str), Some("iot_sensors"));
    assert_eq!(meta.get("lines").map(String::as_str), Some("1"));
    let bytes = rt.block_on(got.body.collect()).unwrap().into_bytes();
    assert_eq!(&bytes[..], body.as_bytes());
    let records = rt.block_on(moto.keys(&bucket, "lake/_lakepipe/ingest/idempotency/iot_sensors/"));
    assert_eq!(records.len(), 1);
}

/// `lakepipe produce` against `serve`: the generated events are sent in requests of
/// `--batch`, every one is accepted, and the summary counts the server's answers.
#[test]
fn produce_sends_generated_events_and_counts_the_answers() {
    let t = TestCommand::new();
    std::fs::write(t.path().join("lakepipe.toml"), CONFIG).unwrap();
    let server = Server::start(&t, "127.0.0.1:0", &[]);
    let r = t.run(&[
        "--json",
        "produce",
        "all",
        "--url",
        &server.base,
        "--count",
        "1200",
        "--batch",
        "500",
        "--connections",
        "2",
    ]);
    r.assert_exit_code(0);
    let m = r.json();
    assert_eq!(m["events"], 1200, "{m}");
    assert_eq!(m["accepted"], 1200, "{m}");
    assert_eq!(m["rejected"], 0, "{m}");
    assert_eq!(m["failed"], 0, "{m}");
    assert_eq!(m["unreadable"], 0, "{m}");
    assert_eq!(m["statuses"]["200"], m["requests"], "{m}");
    assert_eq!(landed_records(&t), 1200);
    // A stream that does not exist is refused before anything is sent.
    let bad = t.run(&["produce", "nope", "--url", &server.base, "--count", "1"]);
    bad.assert_exit_code(1);
    assert!(
        bad.stderr().contains("unknown stream `nope`"),
        "{}",
        bad.stderr()
    );
}
