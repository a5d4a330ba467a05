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
    r.assert_exit_code(1);
    assert!(r.stderr().contains("must be before"), "{}", r.stderr());

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
