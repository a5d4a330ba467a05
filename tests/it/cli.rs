//! The command line itself: help, version, configuration precedence, usage errors.

use crate::util::TestCommand;

#[test]
fn help_lists_every_subcommand_and_version_works() {
    let t = TestCommand::new();
    let help = t.run(&["--help"]);
    help.assert_exit_code(0);
    for sub in ["up", "stream", "config", "ui"] {
        assert!(
            help.stdout()
                .lines()
                .any(|l| l.trim_start().starts_with(sub)),
            "{sub} missing from --help:\n{}",
            help.stdout()
        );
    }
    let v = t.run(&["--version"]);
    v.assert_exit_code(0);
    assert_eq!(
        v.stdout().trim(),
        format!("lakepipe {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn config_show_applies_file_then_env_then_flags_and_redacts_secrets() {
    let t = TestCommand::new();
    std::fs::write(
        t.path().join("custom.toml"),
        "lake = \"from-file\"\nseed = 9\n[s3]\naccess_key_id = \"AKIAFILEKEY\"\nsecret_access_key = \"file-secret\"\n",
    )
    .unwrap();
    let t = t
        .env("LAKEPIPE_CONFIG", "custom.toml")
        .env("LAKEPIPE_SEED", "11");
    let r = t.run(&["config", "show"]);
    r.assert_exit_code(0);
    let out = r.stdout();
    assert!(out.contains("lake = \"from-file\""), "{out}");
    assert!(out.contains("seed = 11"), "{out}");
    assert!(
        !out.contains("AKIAFILEKEY") && !out.contains("file-secret"),
        "{out}"
    );

    let r = t.run(&["--lake", "from-flag", "--json", "config", "show"]);
    r.assert_exit_code(0);
    let v = r.json();
    assert_eq!(v["lake"], "from-flag");
    assert_eq!(v["seed"], 11);
    assert_eq!(v["s3"]["secret_access_key"], "***");
}

#[test]
fn bad_input_gets_a_clear_message_and_the_right_exit_code() {
    let t = TestCommand::new();
    // Usage errors exit 2.
    let r = t.run(&[
        "stream",
        "all",
        "--from",
        "yesterday",
        "--to",
        "2026-02-01T00:00:00Z",
    ]);
    r.assert_exit_code(2);
    assert!(r.stderr().contains("RFC 3339"), "{}", r.stderr());
    t.run(&["stream", "nothing"]).assert_exit_code(2);

    // Failed work exits 1 with one error line.
    std::fs::write(t.path().join("bad.toml"), "lake = [1, 2]\n").unwrap();
    let r = t.run(&["--config", "bad.toml", "config", "show"]);
    r.assert_exit_code(1);
    assert!(r.stderr().contains("bad.toml"), "{}", r.stderr());

    let r = t.run(&[
        "stream",
        "all",
        "--from",
        "2026-02-01T01:00:00Z",
        "--to",
        "2026-02-01T00:00:00Z",
    ]);
    r.assert_exit_code(2);
    assert!(
        r.stderr().contains("must be after --from"),
        "{}",
        r.stderr()
    );

    let r = t.run(&[
        "--lake",
        "s3://Not_A_Bucket",
        "stream",
        "csv",
        "--count",
        "1",
    ]);
    r.assert_exit_code(1);
    assert!(
        r.stderr().contains("not a valid S3 bucket name"),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("panicked"));
}

#[test]
fn the_ui_refuses_a_non_loopback_address_without_a_token() {
    let t = TestCommand::new();
    for args in [
        &["ui", "--listen", "0.0.0.0:0"][..],
        &["up", "--listen", "0.0.0.0:0"][..],
    ] {
        let r = t.run(args);
        r.assert_exit_code(2);
        assert!(r.stderr().contains("needs a token"), "{}", r.stderr());
    }
    assert!(!t.lake().exists(), "refused before the lake is touched");
}

/// Far-future and far-past dates are usage errors wherever a user gives one, before any work:
/// no abort, no hang, no lake touched.
#[test]
fn dates_outside_the_supported_range_are_usage_errors() {
    let t = TestCommand::new();
    for date in [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "2200-01-01T00:00:00Z",
    ] {
        for args in [
            &[
                "dags",
                "test",
                "2-api_logs_realtime_ingest",
                "--scale",
                "0.05",
                "--logical-date",
                date,
            ][..],
            &[
                "dags",
                "trigger",
                "5-lake_catalog_refresh",
                "--logical-date",
                date,
            ][..],
            &[
                "tasks",
                "run",
                "2-api_logs_realtime_ingest",
                "ingest",
                "--logical-date",
                date,
            ][..],
            &["simulate", "--from", "2026-02-01T00:00:00Z", "--to", date][..],
            &[
                "stream",
                "csv",
                "--from",
                date,
                "--to",
                "2026-02-01T00:00:00Z",
            ][..],
        ] {
            let r = t.run(args);
            r.assert_exit_code(2);
            assert!(
                r.stderr().contains("outside the supported range"),
                "{args:?}: {}",
                r.stderr()
            );
        }
    }
    assert!(!t.lake().exists(), "refused before the lake is touched");
}

/// Ranges: the end before the start is a usage error, and a range over 31 days needs --yes.
#[test]
fn ranges_are_usage_errors_when_reversed_or_too_long_without_yes() {
    let t = TestCommand::new();
    let (a, b) = ("2026-02-01T00:00:00Z", "2026-02-01T01:00:00Z");
    for args in [
        &["simulate", "--from", b, "--to", a][..],
        &[
            "dags",
            "backfill",
            "5-lake_catalog_refresh",
            "--from",
            b,
            "--to",
            a,
        ][..],
        &["stream", "all", "--from", b, "--to", a][..],
    ] {
        let r = t.run(args);
        r.assert_exit_code(2);
        assert!(r.stderr().contains("--to"), "{args:?}: {}", r.stderr());
    }
    let r = t.run(&["simulate", "--from", a, "--to", "2027-02-01T00:00:00Z"]);
    r.assert_exit_code(2);
    assert!(r.stderr().contains("pass --yes"), "{}", r.stderr());
    assert!(!t.lake().exists());
}

/// Commands that only read a lake say there is none instead of creating an empty one.
#[test]
fn read_only_commands_on_a_missing_lake_say_so() {
    let t = TestCommand::new();
    for args in [
        &["runs", "list"][..],
        &["query", "SELECT 1"][..],
        &[
            "logs",
            "5-lake_catalog_refresh",
            "2026-02-01T00:00:00Z",
            "catalog_refresh",
        ][..],
        &["ui", "--listen", "127.0.0.1:0"][..],
    ] {
        let r = t.run(args);
        r.assert_exit_code(1);
        assert!(
            r.stderr().contains("no lake at"),
            "{args:?}: {}",
            r.stderr()
        );
        assert_eq!(r.stderr().trim().lines().count(), 1, "{}", r.stderr());
    }
    assert!(!t.lake().exists(), "no empty lake was created");
}

/// `query` cannot write or read files outside the lake; `--out` writes a result where the user
/// says.
#[test]
fn query_is_read_only_and_out_writes_the_result() {
    let t = TestCommand::new();
    std::fs::create_dir_all(t.lake()).unwrap();
    let victim = t.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let v = victim.display();
    for sql in [
        format!("COPY (SELECT 'x' AS a) TO '{v}' STORED AS CSV"),
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'".to_string(),
        "CREATE TABLE t AS SELECT 1 AS a".to_string(),
        "INSERT INTO silver_api_logs VALUES (1)".to_string(),
        "DROP TABLE silver_api_logs".to_string(),
        format!("SELECT * FROM '{v}'"),
    ] {
        let r = t.run(&["query", &sql]);
        r.assert_exit_code(1);
        assert!(!r.stdout().contains("keep me"), "{sql}");
        assert!(!r.stderr().contains("panicked"), "{sql}: {}", r.stderr());
    }
    let r = t.run(&[
        "query",
        &format!("COPY (SELECT 1 AS a) TO '{v}' STORED AS CSV"),
    ]);
    assert!(r.stderr().contains("read-only"), "{}", r.stderr());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");

    let out = t.path().join("result.csv");
    let r = t.run(&[
        "query",
        "SELECT 40 + 2 AS answer",
        "--format",
        "csv",
        "--out",
        &out.display().to_string(),
    ]);
    r.assert_exit_code(0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "answer\n42\n");
}

/// Absurd settings are refused with their bound.
#[test]
fn absurd_config_values_are_refused_with_the_bound() {
    let t = TestCommand::new();
    for (toml, bound) in [
        (
            "[store.retry]\nmax_retries = 99999999999\n",
            "between 0 and 100",
        ),
        ("[store.retry]\ntimeout_s = 0\n", "between 1 and 3600"),
    ] {
        std::fs::write(t.path().join("c.toml"), toml).unwrap();
        let r = t.run(&["--config", "c.toml", "config", "show"]);
        r.assert_exit_code(1);
        assert!(r.stderr().contains(bound), "{}", r.stderr());
    }
}

/// An S3 endpoint that accepts connections and never answers: the read-only commands fail with
/// the same one line as the others, bounded by the connect timeout (twice it) instead of
/// hanging; the test's own bound is generous (no timed assertion beyond "it ends").
#[test]
fn a_silent_s3_endpoint_fails_with_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // Accept and hold connections without ever answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    let t = TestCommand::new()
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIATEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret-never-printed");
    std::fs::write(t.path().join("c.toml"), "[store]\nconnect_timeout_s = 1\n").unwrap();
    for args in [&["runs", "list"][..], &["query", "SELECT 1"][..]] {
        let mut all = vec!["--config", "c.toml", "--lake", "s3://silent-bucket"];
        all.extend_from_slice(args);
        let r = t.run(&all);
        r.assert_exit_code(1);
        let err = r.stderr();
        assert!(err.contains("did not answer in time"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.len() < 300, "{err}");
        assert!(!err.contains("secret-never-printed"));
    }
}

#[test]
fn the_ui_refuses_a_malformed_allowed_host() {
    let t = TestCommand::new();
    for bad in ["evil.example/x", "a b", "host:port", ""] {
        let r = t.run(&["ui", "--allowed-host", bad]);
        r.assert_exit_code(2);
        assert!(
            r.stderr().contains("is not a host name"),
            "{bad}: {}",
            r.stderr()
        );
    }
    assert!(!t.lake().exists(), "refused before the lake is touched");
}
