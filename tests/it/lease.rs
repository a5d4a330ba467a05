//! Two schedulers on one lake on moto (which honours create-only writes): started at the same
//! instant twenty times, exactly one runs and the other says who holds the lease — also when
//! both start right after the holder was killed with SIGKILL, where the one that takes over
//! resumes the killed holder's runs and nothing runs twice.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Killed, S3Server, TestCommand, s3_server};

/// The outcome of one scheduler process: its pid, exit code and stderr.
struct Ended {
    pid: u32,
    code: i32,
    stderr: String,
}

fn start(t: &TestCommand, args: &[&str]) -> Child {
    t.command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn ended(child: Child) -> Ended {
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    Ended {
        pid,
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `simulate` of the api_logs ingest DAG over the 30 minutes from `from`.
fn simulate_args<'a>(lake: &'a str, from: &'a str, to: &'a str) -> Vec<&'a str> {
    vec![
        "--lake",
        lake,
        "simulate",
        "--from",
        from,
        "--to",
        to,
        "--scale",
        "0.05",
        "--dag",
        "2-api_logs_realtime_ingest",
    ]
}

async fn lease_exists(server: &S3Server, bucket: &str) -> bool {
    server
        .client()
        .head_object()
        .bucket(bucket)
        .key("lake/_lakepipe/scheduler.lease")
        .send()
        .await
        .is_ok()
}

/// A fresh bucket's lake on the S3 server named by an environment variable.
struct Lake {
    rt: tokio::runtime::Runtime,
    server: S3Server,
    bucket: String,
    lake: String,
    t: TestCommand,
}

impl Lake {
    fn on(var: &str) -> Lake {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = s3_server(var);
        let bucket = rt.block_on(server.new_bucket("lease"));
        let t = server.apply(TestCommand::new());
        Lake {
            rt,
            lake: format!("s3://{bucket}/lake"),
            server,
            bucket,
            t,
        }
    }
}

/// Starts two schedulers with `args` at once; exactly one runs to success and the other is
/// refused naming it. Returns (the one that ran, the one refused).
fn together(t: &TestCommand, args: &[&str], round: u32) -> (Ended, Ended) {
    let (a, b) = (start(t, args), start(t, args));
    let (a, b) = (ended(a), ended(b));
    let (winner, loser) = match (a.code, b.code) {
        (0, c) if c != 0 => (a, b),
        (c, 0) if c != 0 => (b, a),
        _ => panic!(
            "round {round}: exit codes {} and {}\n--- {}\n{}\n--- {}\n{}",
            a.code, b.code, a.pid, a.stderr, b.pid, b.stderr
        ),
    };
    let named = format!(
        "another scheduler is running on this lake: `lakepipe simulate` (pid {} on ",
        winner.pid
    );
    assert!(
        loser.stderr.contains(&named),
        "round {round}: the refused scheduler does not name the holder:\n{}",
        loser.stderr
    );
    (winner, loser)
}

#[test]
fn two_schedulers_started_together_on_moto_one_runs_and_the_other_names_the_holder() {
    let Lake {
        rt,
        server,
        bucket,
        lake,
        t,
    } = Lake::on("LAKEPIPE_TEST_MOTO");
    let mut takeovers = 0;
    for round in 0..20u32 {
        let from = chrono::DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z").unwrap()
            + chrono::Duration::minutes(30 * i64::from(round));
        let to = from + chrono::Duration::minutes(30);
        let (from, to) = (
            crate::util::rfc(from.to_utc()),
            crate::util::rfc(to.to_utc()),
        );
        let args = simulate_args(&lake, &from, &to);
        let after_kill = round % 2 == 1;
        if after_kill {
            // A holder killed while it schedules: its lease and its runs are left behind.
            let mut holder = Killed(start(&t, &args));
            let deadline = Instant::now() + Duration::from_secs(60);
            while !rt.block_on(lease_exists(&server, &bucket)) {
                assert!(Instant::now() < deadline, "round {round}: no lease");
                assert!(
                    holder.0.try_wait().unwrap().is_none(),
                    "round {round}: the holder ended before it was killed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            holder.0.kill().unwrap(); // SIGKILL
            holder.0.wait().unwrap();
            assert!(rt.block_on(lease_exists(&server, &bucket)));
        }
        let (winner, loser) = together(&t, &args, round);
        // After a kill, one of them found the dead holder's lease and replaced it (the other
        // may have created its own in the gap, and then it is the one that runs).
        if after_kill {
            assert!(
                format!("{}{}", winner.stderr, loser.stderr).contains("is gone; taking over"),
                "round {round}: {}",
                winner.stderr
            );
            takeovers += 1;
        }
        assert!(
            !rt.block_on(lease_exists(&server, &bucket)),
            "round {round}: released at exit"
        );
    }
    assert_eq!(takeovers, 10);

    // Every run of the twenty windows ran to success once: the refused schedulers ran
    // nothing, and the killed holders' runs were resumed, not repeated.
    let runs = t.run(&["--lake", &lake, "--json", "runs", "list"]);
    runs.assert_exit_code(0);
    let runs = runs.json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 20 * 6, "six 5-minute runs per window");
    for r in runs {
        assert_eq!(r["state"], "success", "{r}");
    }
}

/// Garage ignores `If-None-Match: *`, so both schedulers write the lease; the one whose write
/// did not stand sees it when it reads the lease back and stops before running anything.
#[test]
fn two_schedulers_started_together_on_garage_one_runs_although_it_ignores_create_only_writes() {
    let Lake { lake, t, .. } = Lake::on("LAKEPIPE_TEST_GARAGE");
    for round in 0..5u32 {
        let from = format!("2026-02-01T0{round}:00:00Z");
        let to = format!("2026-02-01T0{round}:30:00Z");
        let (winner, _) = together(&t, &simulate_args(&lake, &from, &to), round);
        assert!(
            winner.stderr.contains("ignores `If-None-Match: *`"),
            "round {round}: {}",
            winner.stderr
        );
    }
    let runs = t.run(&["--lake", &lake, "--json", "runs", "list"]);
    runs.assert_exit_code(0);
    assert_eq!(runs.json().as_array().unwrap().len(), 5 * 6);
}
