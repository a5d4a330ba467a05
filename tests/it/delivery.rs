//! Alerts delivered to webhook receivers (docs/alerts-delivery.md): a receiver started by the
//! test, `simulate` with `[[receiver]]` in `lakepipe.toml`, an outage of a stretch of runs, a
//! kill -9 mid-simulation.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{Killed, TestCommand, files_under, query_rows};

/// A POST the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    authorization: Option<String>,
    body: serde_json::Value,
    status: u16,
}

/// An HTTP/1.1 receiver on 127.0.0.1 that records each POST and answers `status`.
struct Receiver {
    port: u16,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (st, g) = (status.clone(), got.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (mut len, mut authorization) = (0usize, None);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        "authorization" => authorization = Some(v.trim().to_string()),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let status = st.load(Ordering::SeqCst);
                g.lock().unwrap().push(Got {
                    path,
                    authorization,
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                    status,
                });
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, status, got }
    }

    /// Alert ids delivered (answered 2xx) to `path`.
    fn delivered(&self, path: &str) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path && g.status == 200)
            .flat_map(|g| {
                g.body["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        a["alert_id"]
                            .as_str()
                            .or(a["labels"]["alert_id"].as_str())
                            .unwrap()
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn posts(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

const SECRET: &str = "Bearer hook-secret-4242";

fn with_receivers(r: &Receiver) -> TestCommand {
    let t = TestCommand::new();
    std::fs::write(
        t.path().join("lakepipe.toml"),
        format!(
            "[[receiver]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{p}/ops\"\n\
             headers = {{ Authorization = \"{SECRET}\" }}\n\n\
             [[receiver]]\nname = \"pager\"\nurl = \"http://127.0.0.1:{p}/am\"\n\
             format = \"alertmanager\"\nmin_severity = \"high\"\ntimeout_s = 2\n",
            p = r.port
        ),
    )
    .unwrap();
    t
}

fn simulate_args<'a>(from: &'a str, to: &'a str) -> Vec<&'a str> {
    vec![
        "--lake", "lake", "simulate", "--from", from, "--to", to, "--scale", "0.05",
    ]
}

/// Alert ids in `serving/alerts/history`, with their severity.
fn history(t: &TestCommand) -> Vec<(String, String)> {
    query_rows(
        t,
        "lake",
        "SELECT alert_id, severity FROM serving_alerts_history ORDER BY alert_id",
    )
    .iter()
    .map(|r| {
        (
            r["alert_id"].as_str().unwrap().to_string(),
            r["severity"].as_str().unwrap().to_string(),
        )
    })
    .collect()
}

/// Every alert of the history reached `ops`, and the high and critical ones `pager`.
#[track_caller]
fn all_delivered(t: &TestCommand, r: &Receiver) -> usize {
    let history = history(t);
    assert!(!history.is_empty(), "the seed data raises alerts");
    let ops: BTreeSet<String> = r.delivered("/ops").into_iter().collect();
    let pager: BTreeSet<String> = r.delivered("/am").into_iter().collect();
    for (id, severity) in &history {
        assert!(ops.contains(id), "{id} never reached ops");
        let wanted = severity == "high" || severity == "critical";
        assert_eq!(pager.contains(id), wanted, "{id} ({severity}) at pager");
    }
    let known: BTreeSet<&String> = history.iter().map(|(id, _)| id).collect();
    assert!(
        ops.iter().all(|id| known.contains(id)),
        "only alerts of the history are sent"
    );
    history.len()
}

/// The output of the latest serving run's `alerts` task.
fn last_alerts_output(t: &TestCommand) -> serde_json::Value {
    let runs = t.lake().join("_lakepipe/runs/4-serving_layer_merge");
    let run = files_under(&runs)
        .into_iter()
        .filter(|f| f.ends_with("/tasks/alerts.json"))
        .max()
        .unwrap();
    let p = runs.join(run);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
            .unwrap();
    v["output"].clone()
}

#[test]
fn alerts_reach_the_receivers_and_an_outage_delays_them_without_losing_any() {
    let r = Receiver::start();
    let t = with_receivers(&r);
    t.run(&simulate_args(
        "2026-02-01T00:00:00Z",
        "2026-02-01T01:00:00Z",
    ))
    .assert_exit_code(0);
    let before = all_delivered(&t, &r);

    // An outage of six serving runs: the alerts task still succeeds, the alerts stay pending.
    r.status.store(503, Ordering::SeqCst);
    t.run(&simulate_args(
        "2026-02-01T01:00:00Z",
        "2026-02-01T02:00:00Z",
    ))
    .assert_exit_code(0);
    let out = last_alerts_output(&t);
    let ops = &out["deliveries"]["ops"];
    assert_eq!(ops["sent"], 0, "{out}");
    let raised_in_outage = history(&t).len() - before;
    assert!(raised_in_outage > 0, "alerts raised during the outage");
    assert_eq!(
        ops["pending"].as_u64().unwrap() as usize,
        raised_in_outage,
        "{out}"
    );
    let pending: serde_json::Value = serde_json::from_slice(
        &std::fs::read(t.lake().join("serving/alerts/deliveries/ops/pending.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        pending["alerts"].as_array().unwrap().len(),
        raised_in_outage
    );
    // The task log says which receiver failed and why.
    let logs: String = files_under(&t.lake())
        .iter()
        .filter(|f| f.starts_with("logs/4-serving_layer_merge/") && f.contains("/alerts/"))
        .map(|f| std::fs::read_to_string(t.lake().join(f)).unwrap())
        .collect();
    assert!(
        logs.contains("receiver ops: ") && logs.contains("HTTP 503"),
        "{logs}"
    );
    let failed = r.posts().iter().filter(|g| g.status == 503).count();
    assert!(failed >= 6 * 3, "each run tried 3 times: {failed}");
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(t.lake().join("serving/alerts/latest.json")).unwrap(),
    )
    .unwrap();
    let states: Vec<&str> = doc["deliveries"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|d| d["ops"]["state"].as_str())
        .collect();
    assert!(
        states.contains(&"sent") && states.contains(&"failed"),
        "{states:?}"
    );

    // Back up: the next run delivers what the outage held back.
    r.status.store(200, Ordering::SeqCst);
    t.run(&simulate_args(
        "2026-02-01T02:00:00Z",
        "2026-02-01T02:20:00Z",
    ))
    .assert_exit_code(0);
    all_delivered(&t, &r);
    let out = last_alerts_output(&t);
    assert_eq!(out["deliveries"]["ops"]["pending"], 0, "{out}");

    // The formats, the header, and no credential in the lake.
    let posts = r.posts();
    let ops_post = posts.iter().find(|g| g.path == "/ops").unwrap();
    assert_eq!(ops_post.authorization.as_deref(), Some(SECRET));
    assert_eq!(ops_post.body["receiver"], "ops");
    let a = &ops_post.body["alerts"][0];
    for k in [
        "alert_id",
        "rule",
        "severity",
        "stream",
        "subject",
        "window_start",
        "window_end",
        "triggered_at",
        "value",
        "threshold",
        "triggering_ids",
        "triggering_count",
        "detail",
    ] {
        assert!(a.get(k).is_some(), "{k} missing: {a}");
    }
    let am = posts.iter().find(|g| g.path == "/am").unwrap();
    assert_eq!(am.authorization, None);
    let b = &am.body;
    assert_eq!(
        (b["version"].as_str(), b["status"].as_str()),
        (Some("4"), Some("firing"))
    );
    assert_eq!(b["receiver"], "pager");
    assert!(b["groupKey"].is_string());
    let a = &b["alerts"][0];
    for k in ["alertname", "severity", "stream", "subject", "alert_id"] {
        assert!(a["labels"][k].is_string(), "{k}: {a}");
    }
    for k in ["detail", "value", "threshold"] {
        assert!(a["annotations"][k].is_string(), "{k}: {a}");
    }
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(a["generatorURL"], "");
    assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
    assert!(a["startsAt"].as_str().unwrap().starts_with("2026-02-01T"));
    for f in files_under(&t.lake()) {
        let bytes = std::fs::read(t.lake().join(&f)).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("hook-secret"),
            "{f} holds the receiver's credential"
        );
    }
    let shown = t.run(&["config", "show"]);
    assert!(
        !shown.stdout().contains("hook-secret"),
        "{}",
        shown.stdout()
    );
}

#[test]
fn a_kill_9_mid_simulation_loses_no_alert() {
    let r = Receiver::start();
    let t = with_receivers(&r);
    let args = simulate_args("2026-02-01T00:00:00Z", "2026-02-01T02:00:00Z");
    let mut child = Killed(t.command(&args).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(300);
    while r.delivered("/ops").len() < 2 {
        assert!(Instant::now() < deadline, "nothing delivered");
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "simulate ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    t.run(&args).assert_exit_code(0);
    all_delivered(&t, &r);
    // Duplicates, if any, are whole alerts under the same id: the same payload again.
    let mut seen: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    for g in r
        .posts()
        .iter()
        .filter(|g| g.path == "/ops" && g.status == 200)
    {
        for a in g.body["alerts"].as_array().unwrap() {
            let id = a["alert_id"].as_str().unwrap().to_string();
            if let Some(first) = seen.insert(id.clone(), a.clone()) {
                assert_eq!(&first, a, "{id} sent twice with different contents");
            }
        }
    }
}
