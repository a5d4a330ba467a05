//! The web UI in a real browser: `lakepipe ui` over a lake filled by `simulate` (one day, by
//! the scheduler's one-day test, plus one failed serving run), every page loaded by headless
//! Chromium (Debian's package; `scripts/test` installs it). The DOM must show the DAG IDs,
//! grid cells in their states, charts with data points and the alerts. Screenshots are saved
//! under `<target>/tmp/ui-screenshots/`. Then the failed run is cleared with `tasks clear`,
//! and a paused DAG gets no runs.
//!
//! Besides: markup planted in the lake's documents does not run in the browser, and the UI
//! refuses cross-site actions and foreign Hosts over real HTTP while the CLI keeps working;
//! and the dashboards page, kept open, shows a serving run that lands after it loaded
//! without being reloaded (live dashboards).

use std::io::{BufRead as _, BufReader, Lines, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use chrono::{DurationRound as _, Utc};

use crate::util::{TestCommand, rfc, run_dag_at};

const SERVING: &str = "4-serving_layer_merge";
/// The serving run that fails (its unified_api_logs task), after the simulated day.
const FAILED_AT: &str = "2026-02-02T00:10:00Z";

/// `lakepipe ui` on a free loopback port, stopped on drop.
pub struct Ui {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Ui {
    /// Starts the UI over `lake` and waits until it says where it listens.
    pub fn start(t: &TestCommand, lake: &str) -> Ui {
        Ui::start_with(t, lake, &[])
    }

    /// [`Ui::start`] with more arguments of `lakepipe ui`.
    pub fn start_with(t: &TestCommand, lake: &str, args: &[&str]) -> Ui {
        let mut child = t
            .command(&[&["--lake", lake, "ui", "--listen", "127.0.0.1:0"], args].concat())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start lakepipe ui");
        let base = ui_address(&mut child);
        Ui { child, base }
    }
}

/// The UI's base URL from the line where lakepipe says it (`lakepipe ui: http://…/ over …`).
pub fn ui_base(line: &str) -> Option<String> {
    let rest = line.strip_prefix("lakepipe ui: ")?;
    Some(
        rest.split_whitespace()
            .next()?
            .trim_end_matches('/')
            .to_string(),
    )
}

/// Reads the stderr of a `lakepipe ui` or `lakepipe up` started with `Stdio::piped()` stderr
/// until it says where the UI listens; keeps draining it afterwards.
pub fn ui_address(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("lakepipe exited before saying where the UI listens")
            .unwrap();
        if let Some(base) = ui_base(&line) {
            break base;
        }
    };
    // Keep draining stderr so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    base
}

/// POSTs to the UI's API (an action) with Python's urllib, as a JSON client does; returns
/// (status, body).
pub fn post(base: &str, path: &str) -> (u16, serde_json::Value) {
    let out = crate::util::python(
        r#"
import json, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1] + sys.argv[2], data=b"", method="POST",
                             headers={"Content-Type": "application/json"})
try:
    r = urllib.request.urlopen(req, timeout=60); print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#,
        &[base, path],
    );
    let (status, body) = out.split_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> String {
    if let Ok(c) = std::env::var("LAKEPIPE_TEST_CHROMIUM") {
        return c;
    }
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return c.to_string();
        }
    }
    panic!("Chromium not found: scripts/test installs it (apt-get install chromium)");
}

fn screenshots() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Headless Chromium with the flags this closed network needs.
fn browser(profile: &Path, args: &[&str]) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Loads `path` in the browser, saves a screenshot as `<name>.png`, returns the DOM.
fn page(ui: &Ui, profile: &Path, path: &str, name: &str) -> String {
    let url = format!("{}{path}", ui.base);
    let shot = screenshots().join(format!("{name}.png"));
    browser(
        profile,
        &[
            "--window-size=1400,1100",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "no screenshot of {url}"
    );
    let dom = browser(profile, &["--dump-dom", &url]);
    assert!(dom.contains("<main>"), "{url} did not render: {dom}");
    dom
}

/// `data-value`s of the chart points inside the element that starts at `marker`.
fn points_after(dom: &str, marker: &str) -> Vec<f64> {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} missing"));
    let section = &dom[start..];
    let end = section.find("</section>").unwrap_or(section.len());
    section[..end]
        .split("class=\"point")
        .skip(1)
        .filter_map(|p| {
            let v = p.split("data-value=\"").nth(1)?;
            v[..v.find('"')?].parse().ok()
        })
        .collect()
}

/// Runs after the one-day simulation of the scheduler test, on its lake.
pub fn browse_the_one_day_lake(t: &TestCommand) {
    // One more serving run, whose unified_api_logs task fails every attempt.
    let r = t.run(&[
        "--lake",
        "lake",
        "simulate",
        "--from",
        "2026-02-02T00:00:00Z",
        "--to",
        FAILED_AT,
        "--dag",
        SERVING,
        "--fail-task",
        &format!("{SERVING}:unified_api_logs"),
    ]);
    r.assert_exit_code(1);

    let ui = Ui::start(t, "lake");
    let profile = tempfile::tempdir().unwrap();
    let profile = profile.path();

    // DAGs: every DAG ID, the serving DAG's run counts and last (failed) run.
    let dom = page(&ui, profile, "/", "dags");
    for d in [
        "1-infra_s3_bootstrap",
        "2-iot_sensors_realtime_ingest",
        "2-api_logs_realtime_ingest",
        "2-social_media_realtime_ingest",
        "2-ecommerce_clickstream_realtime_ingest",
        "2-financial_transactions_realtime_ingest",
        "3-batch_etl_all_streams",
        SERVING,
        "5-lake_catalog_refresh",
    ] {
        assert!(dom.contains(&format!("data-dag-id=\"{d}\"")), "{d} missing");
    }
    let row = &dom[dom.find(&format!("data-dag-id=\"{SERVING}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains(">144 success<") && row.contains(">1 failed<"),
        "{row}"
    );
    assert!(
        row.contains(&format!("{FAILED_AT}</a>")) && row.contains("data-state=\"failed\""),
        "{row}"
    );

    // The serving grid: the failed run's cells in their states, the runs before all green.
    let dom = page(&ui, profile, &format!("/dags/{SERVING}"), "grid-serving");
    let cell = |task: &str, run: &str| {
        let m = format!("data-task=\"{task}\" data-run=\"{run}\" data-state=\"");
        let i = dom
            .find(&m)
            .unwrap_or_else(|| panic!("no cell {task} {run}"));
        let s = &dom[i + m.len()..];
        s[..s.find('"').unwrap()].to_string()
    };
    assert_eq!(cell("unified_api_logs", FAILED_AT), "failed");
    assert_eq!(cell("unified_iot_sensors", FAILED_AT), "success");
    for task in ["dashboards", "alerts", "analytics", "upkeep"] {
        assert_eq!(cell(task, FAILED_AT), "upstream_failed", "{task}");
        assert_eq!(cell(task, "2026-02-01T23:50:00Z"), "success", "{task}");
    }
    assert_eq!(
        dom.matches("class=\"cell state-").count(),
        25 * 9,
        "25 runs x 9 tasks (5 unified, dashboards, alerts, analytics, upkeep)"
    );
    assert!(
        dom.contains("2026-02-02T00:00:00Z<br>– 2026-02-02T00:10:00Z"),
        "data interval shown"
    );

    // The batch grid and the failed run's page with its attempts and log links.
    let dom = page(&ui, profile, "/dags/3-batch_etl_all_streams", "grid-batch");
    assert!(dom.contains(
        "data-task=\"silver_api_logs\" data-run=\"2026-02-01T02:00:00Z\" data-state=\"success\""
    ));
    let dom = page(
        &ui,
        profile,
        &format!("/dags/{SERVING}/runs/{FAILED_AT}"),
        "run-failed",
    );
    assert!(dom.contains("clear failed tasks"));
    assert!(dom.contains("tasks/unified_api_logs/log?attempt=1"));
    let dom = page(
        &ui,
        profile,
        &format!("/dags/{SERVING}/runs/2026-02-01T01:00:00Z/tasks/unified_api_logs/log?attempt=1"),
        "log",
    );
    assert!(
        dom.contains("serving/unified/api_logs: appending to"),
        "log streamed: {dom}"
    );

    // Lake: the catalog's datasets and every layer's Delta tables.
    let dom = page(&ui, profile, "/lake", "lake");
    for name in ["realtime_api_logs", "realtime_iot_sensors"] {
        assert!(dom.contains(&format!("data-dataset=\"{name}\"")), "{name}");
    }
    for name in [
        "bronze_api_logs",
        "silver_api_logs",
        "quarantine_api_logs",
        "gold_fact_api_hourly",
        "serving_unified_api_logs",
        "serving_alerts_history",
    ] {
        assert!(dom.contains(&format!("data-table=\"{name}\"")), "{name}");
    }

    // Dashboards: the five cards of SPEC and the per-minute time series, each with a chart that
    // has data points, and the batch/speed boundary of its window.
    let dom = page(&ui, profile, "/dashboards", "dashboards");
    for d in [
        "iot_current_status",
        "api_health_1h",
        "social_trending_2h",
        "ecommerce_realtime_kpi",
        "financial_realtime_monitor",
        "api_per_minute",
        "financial_per_minute",
    ] {
        let marker = format!("data-dashboard=\"{d}\"");
        let points = points_after(&dom, &marker);
        assert!(points.len() >= 3, "{d}: {points:?}");
        assert!(points.iter().any(|v| *v > 0.0), "{d}: all zero");
        let section = &dom[dom.find(&marker).unwrap()..];
        assert!(
            section.contains("data-label=\"batch\"") && section.contains("data-label=\"speed\"")
        );
    }
    let api = points_after(&dom, "data-dashboard=\"api_health_1h\"");
    assert!(
        api.len() >= 2 + 3 * 12,
        "split + 3 charts x 12 endpoints: {}",
        api.len()
    );

    // Alerts: the rows of latest.json, with rule, window and triggering ids.
    let latest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(t.lake().join("serving/alerts/latest.json")).unwrap(),
    )
    .unwrap();
    let last = latest["last_24h"].as_array().unwrap();
    assert!(
        !last.is_empty(),
        "one day at scale 0.05 raises fraud alerts"
    );
    let dom = page(&ui, profile, "/alerts", "alerts");
    assert_eq!(dom.matches("<tr class=\"alert ").count(), last.len());
    let first = &last[0];
    assert!(dom.contains(&format!(
        "data-rule=\"{}\"",
        first["rule"].as_str().unwrap()
    )));
    assert!(dom.contains(first["triggering_ids"][0].as_str().unwrap()));
    assert!(dom.contains(first["window_start"].as_str().unwrap()));
    drop(ui);

    // `tasks clear` re-runs the failed task and its downstream: the run turns green.
    let r = t.run(&[
        "--lake",
        "lake",
        "--json",
        "tasks",
        "clear",
        SERVING,
        "--logical-date",
        FAILED_AT,
    ]);
    r.assert_exit_code(0);
    assert_eq!(r.json()["state"], "success");
    let r = t.run(&[
        "--lake",
        "lake",
        "tasks",
        "clear",
        SERVING,
        "--logical-date",
        FAILED_AT,
    ]);
    r.assert_exit_code(1);
    assert!(r.stderr().contains("only failed runs"), "{}", r.stderr());

    // A paused DAG gets no runs; unpaused, it is scheduled again.
    let serving_runs = |from: &str, to: &str| {
        let r = t.run(&[
            "--lake", "lake", "--json", "simulate", "--from", from, "--to", to, "--dag", SERVING,
        ]);
        r.assert_exit_code(0);
        r.json()["executed"].as_u64().unwrap()
    };
    t.run(&["--lake", "lake", "dags", "pause", SERVING])
        .assert_exit_code(0);
    assert_eq!(serving_runs(FAILED_AT, "2026-02-02T00:30:00Z"), 0);
    assert!(
        !t.lake()
            .join(format!("_lakepipe/runs/{SERVING}/20260202T002000Z"))
            .exists()
    );
    t.run(&["--lake", "lake", "dags", "unpause", SERVING])
        .assert_exit_code(0);
    assert_eq!(
        serving_runs("2026-02-02T00:30:00Z", "2026-02-02T00:40:00Z"),
        1
    );
}

/// A script a planted document would run: it marks the page, so the DOM shows whether it ran.
const MARK: &str = "document.body.appendChild(document.createElement('div')).id='xss'+'-ran'";

/// A request with Python's urllib: (status, headers as lower-case name → value, body).
fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value, String) {
    let h = serde_json::to_string(
        &headers
            .iter()
            .copied()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    let out = crate::util::python(
        r#"
import json, sys, urllib.request, urllib.error
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
base, method, path, headers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
data = b"" if method == "POST" else None
req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
try:
    r = urllib.request.build_opener(NoRedirect).open(req, timeout=60)
except urllib.error.HTTPError as e:
    r = e
print(json.dumps({"status": r.status if hasattr(r, "status") else r.code,
                  "headers": {k.lower(): v for k, v in r.headers.items()},
                  "body": r.read().decode()}))
"#,
        &[base, method, path, &h],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    (
        v["status"].as_u64().unwrap() as u16,
        v["headers"].clone(),
        v["body"].as_str().unwrap().to_string(),
    )
}

#[test]
fn planted_markup_does_not_run_and_cross_site_actions_are_refused() {
    let t = TestCommand::new();
    let lake = t.lake();
    let dir = lake.join("serving/dashboards");
    std::fs::create_dir_all(&dir).unwrap();
    let in_script = format!("</script><script>{MARK}</script>");
    let in_attr = format!("\"><img src=x onerror=\"{MARK}\">");
    std::fs::write(
        dir.join("api_health_1h.json"),
        serde_json::to_vec(&serde_json::json!({
            "as_of": in_script, "stream": in_attr,
            "window": {"start": in_script, "end": in_attr, "minutes": 60},
            "events_by_source": {"batch": 3, "speed": 1},
            "rows": [{"endpoint": in_attr, "request_count": 4, "p95_ms": 120.0, "error_rate_pct": 25.0},
                     {"endpoint": in_script, "request_count": 2, "p95_ms": 80.0, "error_rate_pct": 0.0}]
        }))
        .unwrap(),
    )
    .unwrap();
    let ui = Ui::start_with(&t, "lake", &["--allowed-host", "lake.example"]);

    // In a real browser: the planted markup is text, nothing it carries ran, and the UI's own
    // script did (it shows the auto-reload note), so a script would have had its chance.
    let profile = tempfile::tempdir().unwrap();
    let dom = page(&ui, profile.path(), "/dashboards", "planted");
    assert!(
        !dom.contains("id=\"xss-ran\""),
        "a planted script ran: {dom}"
    );
    assert!(
        dom.contains("<p id=\"live\" class=\"muted\" data-live-updates=\"0\">"),
        "the UI's script did not run: {dom}"
    );
    assert!(dom.contains("data-dashboard=\"api_health_1h\""));
    assert!(
        dom.contains("as of &lt;/script&gt;&lt;script&gt;document.body"),
        "{dom}"
    );

    let (status, headers, _) = http(&ui.base, "GET", "/dashboards", &[]);
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].as_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // The issue's requests: a cross-site form post and a foreign Host.
    let catalog = "5-lake_catalog_refresh";
    let (status, _, body) = http(
        &ui.base,
        "POST",
        &format!("/dags/{catalog}/pause"),
        &[
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
    );
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = http(
        &ui.base,
        "POST",
        &format!("/api/dags/{catalog}/pause"),
        &[("Content-Type", "text/plain")],
    );
    assert_eq!(status, 415, "{body}");
    let (status, _, _) = http(&ui.base, "GET", "/api/dags", &[("Host", "evil.example")]);
    assert_eq!(status, 403);
    // The name given with --allowed-host is answered (a reverse proxy's Host).
    let (status, _, body) = http(&ui.base, "GET", "/api/dags", &[("Host", "lake.example")]);
    assert_eq!(status, 200, "{body}");
    let paused = |ui: &Ui| {
        let (status, _, body) = http(&ui.base, "GET", "/api/dags", &[]);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["is_paused"] == true)
            .map(|d| d["dag_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(paused(&ui).is_empty(), "a refused request paused a DAG");

    // The UI's API clients and the CLI keep working.
    let (status, body) = post(&ui.base, &format!("/api/dags/{catalog}/pause"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(paused(&ui), vec![catalog.to_string()]);
    t.run(&["--lake", "lake", "dags", "unpause", catalog])
        .assert_exit_code(0);
    assert!(paused(&ui).is_empty());
}

/// Drives a page kept open in headless Chromium over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: commands on fd 3, replies on fd 4, NUL-separated JSON). `--dump-dom`
/// cannot watch a page change: it dumps at the load event (`--timeout` does not delay it, and
/// `--virtual-time-budget` fast-forwards timers but not a real event stream).
///
/// Lines on stdin/stdout: prints `ready <state>` once the page has loaded and its script has
/// had a moment to connect its event stream, `state` being `{as_of, updates}` of the
/// dashboards (`as_of` the oldest of the cards': a run's documents land one after the other);
/// then for each `dom <as_of>` read, waits (at most two minutes) until every card is as of
/// `as_of` and prints `dom <outerHTML as a JSON string>`.
const LIVE_PAGE: &str = r#"
import json, os, subprocess, sys, time
chrome, url, profile = sys.argv[1], sys.argv[2], sys.argv[3]
to_chrome_r, to_chrome_w = os.pipe()
from_chrome_r, from_chrome_w = os.pipe()
def child():
    # Through fresh descriptors: a pipe end may already be 3 or 4 (and not inheritable).
    a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
    os.dup2(a, 3)
    os.dup2(b, 4)
proc = subprocess.Popen(
    [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
     "--disable-quic", "--no-first-run", "--disable-background-networking",
     "--disable-component-update", "--disable-sync", "--remote-debugging-pipe",
     "--user-data-dir=" + profile, "about:blank"],
    preexec_fn=child, close_fds=False, stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.close(to_chrome_r)
os.close(from_chrome_w)
out = os.fdopen(to_chrome_w, "wb", buffering=0)
inp = os.fdopen(from_chrome_r, "rb", buffering=0)
buf, last_id = b"", 0
def call(method, params=None, session=None):
    global buf, last_id
    last_id += 1
    msg = {"id": last_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    out.write(json.dumps(msg).encode() + b"\0")
    while True:
        while b"\0" not in buf:
            chunk = inp.read(65536)
            if not chunk:
                raise SystemExit("chromium closed its pipe")
            buf += chunk
        raw, buf = buf.split(b"\0", 1)
        reply = json.loads(raw)
        if reply.get("id") == last_id:
            if "error" in reply:
                raise SystemExit(f"{method}: {reply['error']}")
            return reply["result"]
try:
    target = call("Target.createTarget", {"url": url})["targetId"]
    session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    def evaluate(expr):
        r = call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
        return r.get("result", {}).get("value")
    # The oldest as_of of the cards: a run's documents land one after the other.
    state = ("(() => { const d = document.getElementById('dashboards'); const l = document.getElementById('live');"
             " if (document.readyState !== 'complete' || !d || !l) return null;"
             " const cards = [...d.querySelectorAll('section[data-as-of]')].map((s) => s.dataset.asOf).sort();"
             " return {as_of: cards.length ? cards[0] : d.dataset.asOf, updates: l.dataset.liveUpdates}; })()")
    deadline = time.time() + 120
    while (s := evaluate(state)) is None:
        if time.time() > deadline:
            raise SystemExit("the page did not load: " + str(evaluate("document.documentElement.outerHTML")))
        time.sleep(0.2)
    time.sleep(1.5)
    print("ready " + json.dumps(s), flush=True)
    for line in sys.stdin:
        cmd, _, as_of = line.strip().partition(" ")
        if cmd != "dom":
            continue
        deadline = time.time() + 120
        while (evaluate(state) or {}).get("as_of") != as_of and time.time() < deadline:
            time.sleep(0.2)
        print("dom " + json.dumps(evaluate("document.documentElement.outerHTML")), flush=True)
finally:
    proc.kill()
    proc.wait()
"#;

/// A page kept open in the browser ([`LIVE_PAGE`]); closed on drop.
struct LivePage {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl LivePage {
    /// Opens `url` and waits until it has loaded; returns the page and its
    /// `{as_of, updates}` then.
    fn open(url: &str, profile: &Path) -> (LivePage, serde_json::Value) {
        let python = std::env::var("LAKEPIPE_TEST_PYTHON").unwrap_or_else(|_| {
            panic!("LAKEPIPE_TEST_PYTHON is not set: run the tests through `scripts/test`")
        });
        let mut child = Command::new(python)
            .arg("-c")
            .arg(LIVE_PAGE)
            .args([&chromium(), url, &profile.display().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the page driver");
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let mut page = LivePage {
            child,
            stdin,
            lines,
        };
        let ready = page.line("ready");
        (page, serde_json::from_str(&ready).unwrap())
    }

    /// The next line of the driver, which must start with `what`, without it.
    fn line(&mut self, what: &str) -> String {
        let line = self
            .lines
            .next()
            .unwrap_or_else(|| panic!("the page driver ended before `{what}` (see its stderr)"))
            .unwrap();
        line.strip_prefix(&format!("{what} "))
            .unwrap_or_else(|| panic!("expected `{what}`, got {line}"))
            .to_string()
    }

    /// The page's DOM once all its dashboards are as of `as_of` (or after two minutes: the
    /// caller's assertions say what it shows).
    fn dom_when(&mut self, as_of: &str) -> String {
        let stdin = self.stdin.as_mut().expect("open");
        writeln!(stdin, "dom {as_of}").unwrap();
        stdin.flush().unwrap();
        serde_json::from_str(&self.line("dom")).unwrap()
    }
}

impl Drop for LivePage {
    fn drop(&mut self) {
        // End of input: the driver closes the browser and exits.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `data-value` of the point labelled `label` in the element that starts at `marker`.
fn value_after(dom: &str, marker: &str, label: &str) -> Option<String> {
    let section = &dom[dom.find(marker)?..];
    let section = &section[..section.find("</section>").unwrap_or(section.len())];
    let m = format!("data-label=\"{label}\" data-value=\"");
    let v = &section[section.find(&m)? + m.len()..];
    Some(v[..v.find('"')?].to_string())
}

/// `lakepipe serve` on a free loopback port, stopped on drop.
fn serve(t: &TestCommand, lake: &str) -> Ui {
    let mut child = t
        .command(&[
            "--lake",
            lake,
            "serve",
            "--no-scheduler",
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start lakepipe serve");
    let base = ui_address(&mut child);
    Ui { child, base }
}

/// Posts `count` generated events of `stream` (event time now) to the ingest API.
fn produce(t: &TestCommand, base: &str, stream: &str, count: u32, seed: &str) {
    let r = t.run(&[
        "--json",
        "produce",
        stream,
        "--url",
        base,
        "--count",
        &count.to_string(),
        "--seed",
        seed,
    ]);
    r.assert_exit_code(0);
    assert_eq!(r.json()["accepted"], count, "{}", r.stdout());
}

#[test]
fn the_dashboards_page_shows_a_new_serving_run_without_a_reload() {
    let t = TestCommand::new();
    let ui = serve(&t, "lake");
    // Events posted now, then the serving run of the next ten minutes but one: its windows
    // (the last hour) hold them.
    produce(&t, &ui.base, "api_logs", 300, "1");
    produce(&t, &ui.base, "financial_transactions", 100, "1");
    let first = (Utc::now() + chrono::Duration::minutes(12))
        .duration_trunc(chrono::Duration::minutes(10))
        .unwrap();
    run_dag_at(&t, "lake", SERVING, first);

    let profile = tempfile::tempdir().unwrap();
    let (mut page, loaded) = LivePage::open(&format!("{}/dashboards", ui.base), profile.path());
    assert_eq!(loaded["as_of"], rfc(first), "{loaded}");
    assert_eq!(loaded["updates"], "0", "{loaded}");
    let before = page.dom_when(&rfc(first));
    let api = "data-dashboard=\"api_per_minute\"";
    let fin = "data-dashboard=\"financial_per_minute\"";
    assert_eq!(value_after(&before, api, "speed").as_deref(), Some("300"));
    assert_eq!(value_after(&before, fin, "speed").as_deref(), Some("100"));

    // While the page stays open: more events, and the next serving run lands.
    produce(&t, &ui.base, "api_logs", 200, "2");
    produce(&t, &ui.base, "financial_transactions", 50, "2");
    let second = first + chrono::Duration::minutes(10);
    run_dag_at(&t, "lake", SERVING, second);

    let after = page.dom_when(&rfc(second));
    drop(page);
    // The same page (its live note counts the updates it swapped in) shows the new run.
    let note = &after[after.find("<p id=\"live\"").expect("live note")..];
    let note = &note[..note.find("</p>").unwrap()];
    let updates: u32 = note
        .split("data-live-updates=\"")
        .nth(1)
        .and_then(|v| v[..v.find('"')?].parse().ok())
        .unwrap_or_else(|| panic!("no update count in {note}"));
    assert!(updates >= 1, "{note}");
    assert!(
        after.contains(&format!(
            "<div id=\"dashboards\" data-as-of=\"{}\">",
            rfc(second)
        )),
        "not updated: {note}"
    );
    assert!(
        after.contains(&format!("{api} data-rows=")),
        "the time series are shown"
    );
    // Changed values: the windows now hold both posts, all from the speed layer.
    assert_eq!(value_after(&after, api, "speed").as_deref(), Some("500"));
    assert_eq!(value_after(&after, fin, "speed").as_deref(), Some("150"));
    assert_eq!(value_after(&after, api, "batch").as_deref(), Some("0"));
    // Time series points, and nothing of the page but the cards changed: no reload.
    assert!(points_after(&after, api).len() > 3);
    assert!(note.contains("without a reload"), "{note}");
}
