//! `bootstrap` against moto (every setting read back with the AWS SDK), Garage (unsupported
//! APIs, `--strict`, the create-only PUT probe), and bad input.

use crate::util::{Run, S3Server, TestCommand, s3_server};

fn run(server: &S3Server, args: &[&str]) -> Run {
    let t = server.apply(TestCommand::new());
    t.run(args)
}

async fn run_async(server: &S3Server, args: &[&str]) -> Run {
    let s = server.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&s, &a)
    })
    .await
    .unwrap()
}

fn result_of<'a>(report: &'a serde_json::Value, setting: &str) -> &'a str {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["setting"] == setting)
        .unwrap_or_else(|| panic!("no row {setting} in {report:#}"))["result"]
        .as_str()
        .unwrap()
}

fn unique_bucket(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "lp-{tag}-{:x}{:x}",
        n & 0xffff_ffff_ffff,
        std::process::id()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_bootstrap_applies_every_setting_is_idempotent_and_dry_run_writes_nothing() {
    let server = s3_server("LAKEPIPE_TEST_MOTO");
    let c = server.client();
    let bucket = unique_bucket("boot");
    let lake = format!("s3://{bucket}/lake");

    // Dry run on a missing bucket: a plan, and still no bucket.
    let r = run_async(
        &server,
        &["--lake", &lake, "--json", "bootstrap", "--dry-run"],
    )
    .await;
    r.assert_exit_code(0);
    let plan = r.json();
    assert_eq!(result_of(&plan, "bucket"), "would_apply");
    assert_eq!(result_of(&plan, "encryption"), "would_apply");
    assert!(
        c.head_bucket().bucket(&bucket).send().await.is_err(),
        "dry run created the bucket"
    );

    let r = run_async(&server, &["--lake", &lake, "--json", "bootstrap"]).await;
    r.assert_exit_code(0);
    let report = r.json();
    assert_eq!(result_of(&report, "bucket"), "applied");
    for s in [
        "encryption",
        "versioning",
        "lifecycle",
        "block public access",
        "tags",
        "prefixes",
    ] {
        assert_eq!(result_of(&report, s), "applied", "{s}: {report:#}");
    }
    // moto enforces TLS-only policies even over plain HTTP: applying it would lock us out.
    assert_eq!(result_of(&report, "TLS-only policy"), "skipped");
    assert_eq!(result_of(&report, "create-only PUT"), "unchanged");
    assert!(
        !r.stdout().contains("testing") && !r.stderr().contains("testing"),
        "credentials printed"
    );

    // Read every setting back with the SDK.
    let enc = c
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    match c.get_bucket_versioning().bucket(&bucket).send().await {
        Ok(v) => assert_eq!(v.status().unwrap().as_str(), "Enabled"),
        // moto 5.2 wraps the standard reply in a root element the SDK rejects.
        Err(e) => {
            let body = e
                .raw_response()
                .and_then(|r| r.body().bytes())
                .unwrap_or_default();
            let body = String::from_utf8_lossy(body);
            assert!(body.contains("<Status>Enabled</Status>"), "{body}");
        }
    }
    let pab = c
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let p = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            p.block_public_acls(),
            p.ignore_public_acls(),
            p.block_public_policy(),
            p.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let tags = c.get_bucket_tagging().bucket(&bucket).send().await.unwrap();
    assert!(
        tags.tag_set()
            .iter()
            .any(|t| t.key() == "project" && t.value() == "lakepipe")
    );
    assert!(
        c.get_bucket_policy().bucket(&bucket).send().await.is_err(),
        "no policy over HTTP"
    );
    let lc = c
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let rule = |id: &str| {
        lc.rules()
            .iter()
            .find(|r| r.id() == Some(id))
            .unwrap()
            .clone()
    };
    let prefix_of = |r: &aws_sdk_s3::types::LifecycleRule| {
        let f = r.filter().unwrap();
        f.prefix()
            .or_else(|| f.and().and_then(|a| a.prefix()))
            .unwrap_or("")
            .to_string()
    };
    let data = rule("lakepipe-data-tiering");
    assert_eq!(prefix_of(&data), "lake/data/");
    let tr: Vec<(Option<i32>, String)> = data
        .transitions()
        .iter()
        .map(|t| (t.days(), t.storage_class().unwrap().as_str().to_string()))
        .collect();
    assert_eq!(
        tr,
        [
            (Some(30), "STANDARD_IA".into()),
            (Some(90), "GLACIER".into())
        ]
    );
    assert_eq!(data.expiration().unwrap().days(), Some(2555));
    let logs = rule("lakepipe-logs-expiry");
    assert_eq!(prefix_of(&logs), "lake/logs/");
    assert_eq!(logs.expiration().unwrap().days(), Some(90));
    let nc = rule("lakepipe-noncurrent-and-multipart");
    assert_eq!(
        nc.noncurrent_version_expiration()
            .unwrap()
            .noncurrent_days(),
        Some(30)
    );
    assert_eq!(
        nc.abort_incomplete_multipart_upload()
            .unwrap()
            .days_after_initiation(),
        Some(7)
    );
    let keys = server.keys(&bucket, "lake/").await;
    for marker in [
        "lake/data/text_files/",
        "lake/serving/alerts/",
        "lake/_lakepipe/",
    ] {
        assert!(
            keys.iter().any(|k| k == marker),
            "{marker} missing in {keys:?}"
        );
    }
    let caps: serde_json::Value = serde_json::from_slice(
        &server
            .object(&bucket, "lake/_lakepipe/capabilities.json")
            .await,
    )
    .unwrap();
    assert_eq!(caps["conditional_put"], true, "moto honours If-None-Match");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("lake/logs/s3_orchestrator/")),
        "operation log missing in {keys:?}"
    );

    // A second run changes nothing and says so.
    let r = run_async(&server, &["--lake", &lake, "--json", "bootstrap"]).await;
    r.assert_exit_code(0);
    let again = r.json();
    for row in again["rows"].as_array().unwrap() {
        assert!(
            ["unchanged", "skipped"].contains(&row["result"].as_str().unwrap()),
            "re-run changed {row}"
        );
    }
    assert!(r.stderr().contains("nothing changed"), "{}", r.stderr());

    // A setting changed behind our back: dry run reports it and leaves it alone; other
    // users' tags survive the real run.
    c.put_bucket_tagging()
        .bucket(&bucket)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .tag_set(
                    aws_sdk_s3::types::Tag::builder()
                        .key("owner")
                        .value("data-team")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let before = server.keys(&bucket, "").await;
    let r = run_async(
        &server,
        &["--lake", &lake, "--json", "bootstrap", "--dry-run"],
    )
    .await;
    r.assert_exit_code(0);
    assert_eq!(result_of(&r.json(), "tags"), "would_apply");
    assert_eq!(
        server.keys(&bucket, "").await,
        before,
        "dry run wrote objects"
    );
    let t = c.get_bucket_tagging().bucket(&bucket).send().await.unwrap();
    assert_eq!(t.tag_set().len(), 1, "dry run changed tags");
    let r = run_async(&server, &["--lake", &lake, "--json", "bootstrap"]).await;
    r.assert_exit_code(0);
    assert_eq!(result_of(&r.json(), "tags"), "applied");
    let t = c.get_bucket_tagging().bucket(&bucket).send().await.unwrap();
    let mut got: Vec<(String, String)> = t
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("owner".to_string(), "data-team".to_string()),
            ("project".into(), "lakepipe".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garage_bootstrap_warns_on_missing_apis_fails_when_strict_and_records_capabilities() {
    let server = s3_server("LAKEPIPE_TEST_GARAGE");
    let bucket = server.new_bucket("gboot").await;
    let lake = format!("s3://{bucket}");
    let r = run_async(&server, &["--lake", &lake, "--json", "bootstrap"]).await;
    r.assert_exit_code(0);
    let report = r.json();
    // Garage accepts a lifecycle configuration but keeps only expirations: read back, it is
    // reported as unsupported rather than applied.
    for s in [
        "encryption",
        "versioning",
        "lifecycle",
        "block public access",
        "tags",
    ] {
        assert_eq!(result_of(&report, s), "unsupported", "{s}: {report:#}");
    }
    assert_eq!(result_of(&report, "create-only PUT"), "unsupported");
    assert_eq!(report["capabilities"]["conditional_put"], false);
    assert!(
        r.stderr().contains("not supported by this server"),
        "{}",
        r.stderr()
    );
    let keys = server.keys(&bucket, "_lakepipe/").await;
    assert!(
        keys.iter().any(|k| k == "_lakepipe/capabilities.json"),
        "{keys:?}"
    );

    let r = run_async(&server, &["--lake", &lake, "bootstrap", "--strict"]).await;
    r.assert_exit_code(1);
    assert!(r.stderr().contains("--strict"), "{}", r.stderr());
    assert!(
        r.stdout().contains("unsupported by this server"),
        "{}",
        r.stdout()
    );

    // Writers read the record: landing reports check-then-put without probing.
    let s = server.clone();
    let l = lake.clone();
    let m = tokio::task::spawn_blocking(move || {
        run(
            &s,
            &[
                "--lake",
                &l,
                "--json",
                "stream",
                "text",
                "--from",
                "2026-02-01T00:00:00Z",
                "--to",
                "2026-02-01T00:00:10Z",
            ],
        )
    })
    .await
    .unwrap();
    m.assert_exit_code(0);
    assert_eq!(m.json()["create_mode"], "check-then-put");
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_bad_input_gets_one_clear_line() {
    let garage = s3_server("LAKEPIPE_TEST_GARAGE");
    let r = run_async(&garage, &["--lake", "s3://Bad_Bucket", "bootstrap"]).await;
    assert_ne!(r.code(), 0);
    assert!(
        r.stderr().contains("not a valid S3 bucket name"),
        "{}",
        r.stderr()
    );

    let wrong = S3Server {
        secret: "not-the-secret".into(),
        ..garage.clone()
    };
    let r = run_async(&wrong, &["--lake", "s3://lp-denied-bucket", "bootstrap"]).await;
    r.assert_exit_code(1);
    let err = r.stderr();
    assert!(
        err.contains("denied") || err.contains("credentials"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret") && !r.stdout().contains("not-the-secret"));
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{err}"
    );

    // A bucket in another region than the configured one.
    let moto = s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = unique_bucket("region");
    moto.client()
        .create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let r = run_async(&moto, &["--lake", &format!("s3://{bucket}"), "bootstrap"]).await;
    r.assert_exit_code(1);
    assert!(r.stderr().contains("eu-west-1"), "{}", r.stderr());
}
