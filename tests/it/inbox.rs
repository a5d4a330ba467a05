//! Inboxes: objects other producers write — a local directory, and a moto bucket filled by
//! the AWS CLI (a client nobody here wrote) for a lake in another bucket — taken exactly once
//! into `realtime/<stream>/`, across re-runs, a restart and re-listings; a rewritten object
//! taken again; corrupt gzip quarantined with its key.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{TestCommand, files_under, s3_server};

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// `n` api_logs-like records with ids `<tag>-<i>`, `event_time` an hour ago (`None`: absent).
fn records(tag: &str, n: usize, with_time: bool) -> String {
    let t = chrono::Utc::now() - chrono::Duration::hours(1);
    let t = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (0..n)
        .map(|i| {
            let time = if with_time {
                format!(",\"event_time\":\"{t}\"")
            } else {
                String::new()
            };
            format!(
                "{{\"request_id\":\"{tag}-{i}\",\"endpoint\":\"/api/v1/users\",\"status_code\":200{time}}}\n"
            )
        })
        .collect()
}

/// How often each `request_id` was landed under `realtime/api_logs/` of a local lake.
fn landed_ids(lake: &Path) -> BTreeMap<String, usize> {
    let root = lake.join("realtime/api_logs");
    let mut ids = BTreeMap::new();
    for f in files_under(&root) {
        assert!(f.contains("_inbox-"), "{f}");
        let body = std::fs::read_to_string(root.join(&f)).unwrap();
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            *ids.entry(v["request_id"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    ids
}

#[track_caller]
fn assert_once(ids: &BTreeMap<String, usize>, expected: usize) {
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "landed more than once: {twice:?}");
    assert_eq!(ids.len(), expected, "{ids:?}");
}

/// The JSON documents under `dir` of a local lake.
fn json_docs(dir: &Path) -> Vec<serde_json::Value> {
    files_under(dir)
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap())
        .collect()
}

/// The single inbox ledger folder of a local lake.
fn ledger(lake: &Path) -> PathBuf {
    let root = lake.join("_lakepipe/inbox");
    let dirs: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 1);
    dirs[0].path()
}

fn pickup(t: &TestCommand) -> serde_json::Value {
    let r = t.run(&["--json", "inbox", "pickup"]);
    r.assert_exit_code(0);
    r.json()
}

#[test]
fn local_inbox_takes_every_record_once_retakes_a_rewrite_and_quarantines_corrupt_gzip() {
    let t = TestCommand::new();
    std::fs::write(
        t.path().join("lakepipe.toml"),
        "lake = \"lake\"\n\n[[inbox]]\nstream = \"api_logs\"\nurl = \"inbox\"\n",
    )
    .unwrap();
    let inbox = t.path().join("inbox");
    std::fs::create_dir_all(inbox.join("2026/02/01")).unwrap();
    std::fs::write(inbox.join("a.ndjson"), records("a", 3, true)).unwrap();
    std::fs::write(
        inbox.join("2026/02/01/b.json.gz"),
        gzip(records("b", 4, false).as_bytes()),
    )
    .unwrap();

    // A dry run counts and takes nothing.
    let r = t.run(&["--json", "inbox", "pickup", "--dry-run"]);
    r.assert_exit_code(0);
    assert_eq!(r.json()["taken"], 2);
    assert!(landed_ids(&t.lake()).is_empty());

    let m = pickup(&t);
    let i = &m["inboxes"][0];
    assert_eq!(i["stream"], "api_logs");
    assert_eq!(i["url"], "inbox");
    assert!(i["inbox"].as_str().unwrap().starts_with("api_logs-"));
    assert_eq!(
        (&i["listed"], &i["taken"], &i["records"], &i["quarantined"]),
        (&2.into(), &2.into(), &7.into(), &0.into())
    );
    assert!(i["objects"].as_u64().unwrap() >= 2);
    assert_once(&landed_ids(&t.lake()), 7);
    // `a`'s records are in their event hour.
    let hour = chrono::Utc::now() - chrono::Duration::hours(1);
    let dir = format!(
        "realtime/api_logs/date={}/hour={}",
        hour.format("%Y-%m-%d"),
        hour.format("%H")
    );
    assert!(
        files_under(&t.lake().join(&dir))
            .iter()
            .any(|f| std::fs::read_to_string(t.lake().join(&dir).join(f))
                .unwrap()
                .contains("\"a-0\"")),
        "{dir}"
    );

    // A re-run takes nothing.
    let m = pickup(&t);
    assert_eq!((&m["taken"], &m["records"]), (&0.into(), &0.into()));
    assert_once(&landed_ids(&t.lake()), 7);

    // A rewrite with new content is a new object.
    std::fs::write(inbox.join("a.ndjson"), records("a2", 2, true)).unwrap();
    let m = pickup(&t);
    assert_eq!((&m["taken"], &m["records"]), (&1.into(), &2.into()));
    assert_once(&landed_ids(&t.lake()), 9);

    // Corrupt gzip: quarantined whole, with its key and reason, once.
    let mut bad = gzip(records("bad", 50, true).as_bytes());
    let half = bad.len() / 2;
    bad.truncate(half);
    std::fs::write(inbox.join("2026/02/01/corrupt.json.gz"), &bad).unwrap();
    let m = pickup(&t);
    assert_eq!(
        (&m["taken"], &m["quarantined"], &m["records"]),
        (&1.into(), &1.into(), &0.into())
    );
    let q = json_docs(&ledger(&t.lake()).join("quarantine"));
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["key"], "2026/02/01/corrupt.json.gz");
    assert!(
        q[0]["reason"].as_str().unwrap().contains("corrupt gzip"),
        "{}",
        q[0]
    );
    let copy = q[0]["copy"].as_str().unwrap();
    assert!(copy.starts_with("quarantine/inbox/api_logs/") && copy.ends_with("/corrupt.json.gz"));
    assert_eq!(std::fs::read(t.lake().join(copy)).unwrap(), bad);
    let m = pickup(&t);
    assert_eq!((&m["taken"], &m["quarantined"]), (&0.into(), &0.into()));
    assert_once(&landed_ids(&t.lake()), 9);
    // Every version taken has its record: a, b, the rewritten a, the corrupt object.
    assert_eq!(json_docs(&ledger(&t.lake()).join("taken")).len(), 4);
}

/// The `aws` CLI from the test venv (`awscli` in scripts/requirements-test.txt).
fn aws_cli() -> PathBuf {
    if let Ok(p) = std::env::var("LAKEPIPE_TEST_AWS") {
        return PathBuf::from(p);
    }
    let python = std::env::var("LAKEPIPE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("LAKEPIPE_TEST_PYTHON is not set: run the inbox tests through `scripts/test`, which installs the AWS CLI")
    });
    Path::new(&python).with_file_name("aws")
}

/// `aws --endpoint-url <moto> s3 cp <file> s3://<bucket>/<key>`, with moto's credentials and
/// nothing from the developer's AWS files.
fn aws_cp(endpoint: &str, home: &Path, file: &Path, bucket: &str, key: &str) {
    let out = Command::new(aws_cli())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-creds"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["--endpoint-url", endpoint, "s3", "cp", "--only-show-errors"])
        .arg(file)
        .arg(format!("s3://{bucket}/{key}"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", aws_cli().display()));
    assert!(
        out.status.success(),
        "aws s3 cp failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_inbox_filled_by_the_aws_cli_takes_every_record_once_across_a_restart() {
    let server = s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = server.new_bucket("inbox").await;
    let lake = S3Lake {
        server: server.clone(),
        bucket: server.new_bucket("lake").await,
    };
    let t = server.apply(TestCommand::new());
    std::fs::write(
        t.path().join("lakepipe.toml"),
        format!(
            "lake = \"s3://{}/lake\"\n\n[[inbox]]\nstream = \"api_logs\"\nurl = \"s3://{bucket}/firehose/\"\ncompression = \"gzip\"\npoll_s = 1\n",
            lake.bucket
        ),
    )
    .unwrap();
    let home = t.path().join("home");
    let upload = |name: &str, body: &[u8], key: &str| {
        let file = t.path().join(name);
        std::fs::write(&file, body).unwrap();
        aws_cp(&server.endpoint, &home, &file, &bucket, key);
    };
    // Firehose's layout: <prefix>/YYYY/MM/DD/HH/<stream>-<n>-<time>-<uuid>.gz
    let key =
        |n: u32| format!("firehose/2026/02/01/10/api-logs-1-2026-02-01-10-0{n}-00-5f0e8a3c-{n}.gz");
    for n in 0..3 {
        let body = gzip(records(&format!("f{n}"), 4, n != 1).as_bytes());
        upload(&format!("f{n}.gz"), &body, &key(n));
    }

    let m = tokio::task::spawn_blocking({
        let t = t.command(&["--json", "inbox", "pickup"]);
        move || run_json(t)
    })
    .await
    .unwrap();
    assert_eq!((&m["taken"], &m["records"]), (&3.into(), &12.into()));
    assert_once(&lake.ids().await, 12);

    // A restart: `serve` lists the inbox again and takes nothing; an object overwritten by
    // the CLI while it runs is taken again.
    let mut serve = t
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_once(&lake.ids().await, 12);
    upload(
        "f1-new.gz",
        &gzip(records("f1new", 5, true).as_bytes()),
        &key(1),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while lake.ids().await.len() < 17 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while serve.try_wait().unwrap().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if serve.try_wait().unwrap().is_none() {
        serve.kill().unwrap();
    }
    let out = serve.wait_with_output().unwrap();
    assert_once(&lake.ids().await, 17);
    assert!(
        out.status.success(),
        "serve: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A corrupt gzip object: quarantined with its key; then a re-listing takes nothing.
    let mut bad = gzip(records("bad", 40, true).as_bytes());
    let n = bad.len();
    bad[n / 2..].fill(0x55);
    upload("bad.gz", &bad, &key(7));
    let m = tokio::task::spawn_blocking({
        let t = t.command(&["--json", "inbox", "pickup"]);
        move || run_json(t)
    })
    .await
    .unwrap();
    assert_eq!(
        (&m["taken"], &m["quarantined"], &m["records"]),
        (&1.into(), &1.into(), &0.into())
    );
    let q = lake.docs("quarantine").await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["key"], key(7).strip_prefix("firehose/").unwrap());
    assert_eq!(q[0]["url"], format!("s3://{bucket}/firehose/"));
    assert!(
        q[0]["reason"].as_str().unwrap().contains("corrupt gzip"),
        "{}",
        q[0]
    );
    let m = tokio::task::spawn_blocking({
        let t = t.command(&["--json", "inbox", "pickup"]);
        move || run_json(t)
    })
    .await
    .unwrap();
    assert_eq!(
        (&m["inboxes"][0]["listed"], &m["taken"]),
        (&4.into(), &0.into())
    );
    assert_once(&lake.ids().await, 17);
    // Every version taken has its record: three objects, the overwrite, the corrupt one.
    assert_eq!(lake.docs("taken").await.len(), 5);
}

fn run_json(mut c: Command) -> serde_json::Value {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A lake in a moto bucket, under `lake/`.
struct S3Lake {
    server: crate::util::S3Server,
    bucket: String,
}

impl S3Lake {
    async fn get(&self, key: &str) -> Vec<u8> {
        self.server.object(&self.bucket, key).await
    }

    /// How often each `request_id` was landed under `realtime/api_logs/`.
    async fn ids(&self) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        for key in self
            .server
            .keys(&self.bucket, "lake/realtime/api_logs/")
            .await
        {
            assert!(key.contains("_inbox-"), "{key}");
            let body = String::from_utf8(self.get(&key).await).unwrap();
            for line in body.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                *ids.entry(v["request_id"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
        }
        ids
    }

    /// The JSON documents in the `sub` folder of the (single) inbox ledger.
    async fn docs(&self, sub: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for key in self
            .server
            .keys(&self.bucket, "lake/_lakepipe/inbox/")
            .await
        {
            if key.split('/').nth(4) == Some(sub) {
                out.push(serde_json::from_slice(&self.get(&key).await).unwrap());
            }
        }
        out
    }
}
