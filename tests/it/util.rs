//! Test helpers: a fresh temp dir per test, the binary with a clean environment, S3 servers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test, run in a temp dir with a clean environment.
pub struct TestCommand {
    pub dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
}

/// Result of one run.
pub struct Run {
    pub out: Output,
    pub elapsed: Duration,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    #[track_caller]
    pub fn assert_exit_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }
}

impl TestCommand {
    pub fn new() -> TestCommand {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        // Empty AWS files: the chain reads nothing from the developer's ~/.aws.
        std::fs::write(home.join("aws-config"), "").unwrap();
        std::fs::write(home.join("aws-creds"), "").unwrap();
        let envs = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), home.display().to_string()),
            // Never let the AWS chain reach for instance metadata or the developer's profile.
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            (
                "AWS_CONFIG_FILE".into(),
                home.join("aws-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                home.join("aws-creds").display().to_string(),
            ),
            ("LAKEPIPE_LOG".into(), "warn".into()),
        ];
        TestCommand { dir, envs }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    pub fn env(mut self, k: &str, v: &str) -> TestCommand {
        self.envs.push((k.into(), v.into()));
        self
    }

    /// The environment the binary runs with (for other programs of a test that should see
    /// the same lake and store).
    pub fn envs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lakepipe"));
        c.current_dir(self.dir.path())
            .env_clear()
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let out = self.command(args).output().expect("run lakepipe");
        Run {
            out,
            elapsed: started.elapsed(),
        }
    }
}

/// The five Lambda streams.
pub const STREAMS: [&str; 5] = [
    "iot_sensors",
    "api_logs",
    "social_media",
    "ecommerce_clickstream",
    "financial_transactions",
];

/// Every file below `root`, as paths relative to it with `/` separators.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    out.sort();
    out
}

/// An S3 server started by the test command.
#[derive(Clone, Debug)]
pub struct S3Server {
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
}

/// The server named by `var`; fails (never skips) when the tests run outside `scripts/test`.
pub fn s3_server(var: &str) -> S3Server {
    let endpoint = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the S3 tests through `scripts/test`, which starts moto and Garage")
    });
    let (key_id, secret) = if var == "LAKEPIPE_TEST_GARAGE" {
        (
            std::env::var("LAKEPIPE_TEST_GARAGE_KEY_ID").expect("LAKEPIPE_TEST_GARAGE_KEY_ID"),
            std::env::var("LAKEPIPE_TEST_GARAGE_SECRET").expect("LAKEPIPE_TEST_GARAGE_SECRET"),
        )
    } else {
        ("testing".into(), "testing".into())
    };
    S3Server {
        endpoint,
        key_id,
        secret,
    }
}

impl S3Server {
    /// The binary's environment for this server.
    pub fn apply(&self, t: TestCommand) -> TestCommand {
        t.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
    }

    /// An SDK client for checks made by the test itself.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds =
            aws_sdk_s3::config::Credentials::new(&self.key_id, &self.secret, None, None, "test");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates a fresh bucket for one test.
    pub async fn new_bucket(&self, tag: &str) -> String {
        let name = format!("lp-{tag}-{}", unique_suffix());
        self.client()
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name} at {}: {e:?}", self.endpoint));
        name
    }

    /// The bytes of the object at `key`.
    pub async fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let o = self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {key}: {e:?}"));
        o.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// All keys under `prefix` (paginated).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut pages = self
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("list objects");
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        out
    }
}

/// Lower-case hex unique per call and per process: bucket names never collide across runs.
pub fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:010x}{:x}{n}", nanos & 0xff_ffff_ffff, std::process::id())
}

/// Runs `script` with the test venv's Python (deltalake, pyarrow, duckdb) and `args`; returns
/// its stdout. Fails (never skips) outside `scripts/test`.
pub fn python(script: &str, args: &[&str]) -> String {
    let python = std::env::var("LAKEPIPE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("LAKEPIPE_TEST_PYTHON is not set: run the tests through `scripts/test`, which installs deltalake, pyarrow, duckdb and sqlglot")
    });
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of `lakepipe query <sql> --format json` over the lake `lake`, as JSON objects.
pub fn query_rows(t: &TestCommand, lake: &str, sql: &str) -> Vec<serde_json::Value> {
    let r = t.run(&["--lake", lake, "query", sql, "--format", "json"]);
    r.assert_exit_code(0);
    r.stdout()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A child process, killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `lakepipe <args>` (a command serving the UI, e.g. `serve --listen 127.0.0.1:0`) and
/// waits until it says where: the process and the UI's base URL.
pub fn serving(t: &TestCommand, args: &[&str]) -> (Killed, String) {
    let mut child = t
        .command(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = crate::web::ui_address(&mut child);
    (Killed(child), base)
}

/// A time in RFC 3339, to the second.
pub fn rfc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Runs the one DAG run of `dag` at `at` in `lake` (`dags backfill` over the instant).
pub fn run_dag_at(t: &TestCommand, lake: &str, dag: &str, at: chrono::DateTime<chrono::Utc>) {
    t.run(&[
        "--lake",
        lake,
        "dags",
        "backfill",
        dag,
        "--from",
        &rfc(at),
        "--to",
        &rfc(at),
    ])
    .assert_exit_code(0);
}

/// The five ingest DAGs (group 2).
pub const INGEST_DAGS: [&str; 5] = [
    "2-api_logs_realtime_ingest",
    "2-ecommerce_clickstream_realtime_ingest",
    "2-financial_transactions_realtime_ingest",
    "2-iot_sensors_realtime_ingest",
    "2-social_media_realtime_ingest",
];
