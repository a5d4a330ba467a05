//! A full disk under a local lake: the lake is a small tmpfs that fills up in the middle of the
//! batch run. lakepipe fails with a clear message (no panic, no hang), leaves every Delta table
//! readable with no partial version, and once space is back, clearing the failed tasks (as
//! with Airflow's `tasks clear`) gives what a run with room to spare gives. Mounting needs
//! root, which the test machine has.

use std::path::Path;
use std::process::Command;

use crate::util::{STREAMS, TestCommand, files_under};

const BATCH: &str = "3-batch_etl_all_streams";

/// A tmpfs mounted at a directory, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        mount(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"], at);
        Tmpfs(at.to_owned())
    }

    fn resize(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], &self.0);
    }

    /// KiB in use.
    fn used_kib(&self) -> u64 {
        let out = Command::new("df")
            .args(["-k", "--output=used"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap()
    }
}

/// `mount <args> <at>`; mounting needs root (CAP_SYS_ADMIN), which the test machine has.
fn mount(args: &[&str], at: &Path) {
    let out = Command::new("mount").args(args).arg(at).output().unwrap();
    assert!(
        out.status.success(),
        "mount {args:?} {}: {}",
        at.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A day of the five speed layers, then the batch DAG over its 02:00 run, on the simulated
/// clock (retries wait simulated time).
fn speed_day(t: &TestCommand) {
    let mut args = vec![
        "--lake",
        "lake",
        "simulate",
        "--from",
        "2026-02-01T00:00:00Z",
        "--to",
        "2026-02-02T00:10:00Z",
        "--scale",
        "0.05",
    ];
    let dags: Vec<String> = STREAMS
        .iter()
        .map(|s| format!("2-{s}_realtime_ingest"))
        .collect();
    for d in &dags {
        args.extend(["--dag", d.as_str()]);
    }
    t.run(&args).assert_exit_code(0);
}

const BATCH_RUN: [&str; 9] = [
    "--lake",
    "lake",
    "simulate",
    "--dag",
    BATCH,
    "--from",
    "2026-02-02T01:55:00Z",
    "--to",
    "2026-02-02T02:05:00Z",
];

#[test]
fn a_full_disk_fails_the_batch_clearly_corrupts_nothing_and_clearing_it_once_space_is_back_gives_the_clean_result()
 {
    let reference = TestCommand::new();
    speed_day(&reference);
    reference.run(&BATCH_RUN).assert_exit_code(0);

    let t = TestCommand::new();
    let disk = Tmpfs::mount(&t.lake(), "400m");
    speed_day(&t);
    // Room for a few MiB more: the batch run needs about ten.
    disk.resize(&format!("{}k", disk.used_kib() + 4096));
    let full = t.run(&BATCH_RUN);
    assert_ne!(full.code(), 0, "{}", full.stderr());
    let stderr = full.stderr();
    assert!(
        stderr.contains("No space left on device"),
        "no clear message:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");

    // No partial table version: every commit is whole JSON, every table readable.
    let files = files_under(&t.lake());
    for f in files
        .iter()
        .filter(|f| f.contains("/_delta_log/") && f.ends_with(".json"))
    {
        let text = std::fs::read_to_string(t.lake().join(f)).unwrap();
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{f}: a partial commit ({e}): {line}"));
        }
    }
    assert!(
        files
            .iter()
            .all(|f| !(f.starts_with("batch/") && f.contains('#'))),
        "staging files left in the tables"
    );
    for stream in STREAMS {
        for layer in ["bronze", "silver", "quarantine"] {
            if t.lake()
                .join(format!("batch/{layer}/{stream}/_delta_log"))
                .exists()
            {
                t.run(&[
                    "--lake",
                    "lake",
                    "query",
                    &format!("SELECT count(*) FROM {layer}_{stream}"),
                ])
                .assert_exit_code(0);
            }
        }
    }

    // Space back: resume the run if the full disk stopped the scheduler itself, then clear
    // the tasks that failed (their retries ran out while the disk was full).
    disk.resize("400m");
    t.run(&BATCH_RUN);
    let state = |t: &TestCommand| {
        let runs = t.run(&["--lake", "lake", "--json", "runs", "list", "--dag", BATCH]);
        runs.assert_exit_code(0);
        runs.json()[0]["state"].as_str().unwrap().to_string()
    };
    assert_eq!(state(&t), "failed");
    t.run(&[
        "--lake",
        "lake",
        "tasks",
        "clear",
        BATCH,
        "--logical-date",
        "2026-02-02T02:00:00Z",
    ])
    .assert_exit_code(0);
    assert_eq!(state(&t), "success");
    assert_eq!(
        crate::scheduler::lake_fingerprint(&t),
        crate::scheduler::lake_fingerprint(&reference)
    );
}
