//! Landing streamers on a temp local lake: range mode, re-runs, faults, live mode and Ctrl-C.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::util::{TestCommand, files_under};

const FROM: &str = "2026-02-01T00:00:00Z";
const TO: &str = "2026-02-01T01:00:00Z";

fn by_dataset(files: &[String]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for f in files {
        let d = ["text_files", "csv_files", "iot_data"]
            .into_iter()
            .find(|d| f.starts_with(&format!("data/{d}/")))
            .unwrap_or("other");
        *m.entry(d).or_default() += 1;
    }
    m
}

#[test]
fn one_hour_range_lands_exact_files_and_a_rerun_adds_nothing() {
    let t = TestCommand::new();
    let r = t.run(&[
        "--lake", "lake", "--json", "stream", "all", "--from", FROM, "--to", TO,
    ]);
    r.assert_exit_code(0);
    let m = r.json();
    assert_eq!(m["datasets"]["text"]["written"], 720);
    assert_eq!(m["datasets"]["csv"]["written"], 360);
    assert_eq!(m["datasets"]["iot"]["written"], 960);
    assert_eq!(m["create_mode"], "conditional");

    let files = files_under(&t.lake());
    assert_eq!(
        by_dataset(&files),
        BTreeMap::from([("csv_files", 360), ("iot_data", 960), ("text_files", 720)])
    );

    let text_re = |f: &str| {
        let name = f.strip_prefix("data/text_files/year=2026/month=02/day=01/document_")?;
        let (n, rest) = name.split_once('_')?;
        let hhmmss = rest.strip_suffix(".txt")?;
        Some((n.parse::<u64>().ok()?, hhmmss.to_string()))
    };
    for f in files.iter().filter(|f| f.starts_with("data/text_files/")) {
        let (n, hhmmss) = text_re(f).unwrap_or_else(|| panic!("bad text key {f}"));
        let secs = n * 5;
        assert_eq!(
            hhmmss,
            format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            "{f}"
        );
        let body = std::fs::read_to_string(t.lake().join(f)).unwrap();
        assert_eq!(body.lines().count(), 100, "{f}");
        assert_eq!(body.lines().next().unwrap(), format!("Document ID: {n}"));
    }
    for f in files.iter().filter(|f| f.starts_with("data/csv_files/")) {
        assert!(
            f.starts_with("data/csv_files/year=2026/month=02/day=01/data_") && f.ends_with(".csv"),
            "{f}"
        );
        let body = std::fs::read_to_string(t.lake().join(f)).unwrap();
        let rows: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(rows.len(), 101, "{f}");
        assert_eq!(rows[0], "id,timestamp,value,category,status");
        assert!(rows[1..].iter().all(|r| r.split(',').count() == 5), "{f}");
    }
    let mut per_device = BTreeMap::<String, usize>::new();
    for f in files.iter().filter(|f| f.starts_with("data/iot_data/")) {
        let device = f.split('/').nth(2).unwrap().to_string();
        assert!(device.starts_with("device_id=sensor_00"), "{f}");
        let name = f.rsplit('/').next().unwrap();
        let hex = name
            .strip_suffix(".jsonl")
            .unwrap()
            .rsplit('_')
            .next()
            .unwrap();
        assert!(
            hex.len() == 8
                && hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{f}"
        );
        *per_device.entry(device).or_default() += 1;
        let body = std::fs::read_to_string(t.lake().join(f)).unwrap();
        assert_eq!(body.lines().count(), 10, "{f}");
        for line in body.lines() {
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
            let keys: Vec<&str> = v.keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 9, "{line}");
            for k in [
                "device_id",
                "location",
                "sensor_type",
                "timestamp",
                "temperature",
                "humidity",
                "pressure",
                "status",
                "reading_id",
            ] {
                assert!(v.contains_key(k), "{k} missing: {line}");
            }
        }
    }
    assert_eq!(
        per_device.values().copied().collect::<Vec<_>>(),
        vec![240; 4]
    );

    // Re-running the range writes nothing and leaves every file untouched.
    let stamp = |f: &String| {
        std::fs::metadata(t.lake().join(f))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before: Vec<SystemTime> = files.iter().map(stamp).collect();
    let r = t.run(&[
        "--lake", "lake", "--json", "stream", "all", "--from", FROM, "--to", TO,
    ]);
    r.assert_exit_code(0);
    let m = r.json();
    for (d, n) in [("text", 720), ("csv", 360), ("iot", 960)] {
        assert_eq!(m["datasets"][d]["written"], 0, "{d}");
        assert_eq!(m["datasets"][d]["already_present"], n, "{d}");
    }
    assert_eq!(files_under(&t.lake()), files);
    assert_eq!(files.iter().map(stamp).collect::<Vec<_>>(), before);
}

#[test]
fn faults_are_counted_and_present_in_the_files() {
    let t = TestCommand::new();
    let r = t.run(&[
        "--lake",
        "lake",
        "--json",
        "stream",
        "csv",
        "--from",
        FROM,
        "--to",
        "2026-02-01T00:10:00Z",
        "--fault-rate",
        "0.05",
    ]);
    r.assert_exit_code(0);
    let m = r.json();
    let faults = &m["datasets"]["csv"]["faults"];
    let malformed = faults["malformed"].as_u64().unwrap();
    let duplicate = faults["duplicate"].as_u64().unwrap();
    assert!(malformed > 0 && duplicate > 0, "{m}");
    let mut short = 0;
    let mut rows = 0;
    for f in files_under(&t.lake()) {
        let body = std::fs::read_to_string(t.lake().join(&f)).unwrap();
        for row in body.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
            rows += 1;
            if row.split(',').count() != 5 {
                short += 1;
            }
        }
    }
    assert_eq!(short, malformed);
    assert_eq!(rows, 60 * 100 + duplicate);
    assert_eq!(m["datasets"]["csv"]["lines"].as_u64().unwrap(), rows);
}

#[test]
fn live_mode_writes_the_current_slots_and_stops_after_count() {
    let t = TestCommand::new();
    let started = chrono::Utc::now();
    let r = t.run(&["--lake", "lake", "--json", "stream", "text", "--count", "2"]);
    r.assert_exit_code(0);
    assert!(r.elapsed < Duration::from_secs(30));
    let files = files_under(&t.lake());
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        // Event time decides the partition: today's UTC date (or tomorrow's right at midnight).
        let day = started.format("year=%Y/month=%m/day=%d").to_string();
        let next = (started + chrono::Duration::seconds(30))
            .format("year=%Y/month=%m/day=%d")
            .to_string();
        assert!(f.contains(&day) || f.contains(&next), "{f}");
    }
    assert_eq!(r.json()["datasets"]["text"]["written"], 2);
}

#[test]
fn ctrl_c_finishes_in_flight_uploads_prints_a_summary_and_exits_zero() {
    let t = TestCommand::new();
    let child = t
        .command(&["--lake", "lake", "stream", "all"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until at least one object landed, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&t.lake()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("landed") && stdout.contains("0 failed"),
        "{stdout}"
    );
    let n = files_under(&t.lake()).len();
    assert!(n >= 1);
    assert!(
        stdout.contains(&format!("landed {n} new objects")),
        "{n} files but: {stdout}"
    );
}
