//! Landing on real S3 servers started by `scripts/test`: moto (honours create-only PUT,
//! versioning) and Garage (ignores `If-None-Match`), plus the error paths.

use std::time::Duration;

use crate::util::{S3Server, TestCommand, s3_server};

const FROM: &str = "2026-02-01T00:00:00Z";
const TO: &str = "2026-02-01T01:00:00Z";

fn land_hour(server: &S3Server, bucket: &str) -> serde_json::Value {
    let t = server.apply(TestCommand::new());
    let lake = format!("s3://{bucket}/lakepipe");
    let r = t.run(&[
        "--lake", &lake, "--json", "stream", "all", "--from", FROM, "--to", TO,
    ]);
    r.assert_exit_code(0);
    r.json()
}

/// Checks content types and user metadata. moto's HTTP server drops request headers whose
/// names contain `_` (so `x-amz-meta-document_id` never reaches it, even from boto3); AWS and
/// Garage keep them, so the original system's keys are checked where the server keeps them.
async fn check_heads(server: &S3Server, bucket: &str, keeps_underscore_metadata: bool) {
    let keys = server.keys(bucket, "lakepipe/data/").await;
    assert_eq!(keys.len(), 2040);
    let expect = [
        (
            "text_files",
            "text/plain; charset=utf-8",
            vec!["document_id", "generated_at"],
        ),
        (
            "csv_files",
            "text/csv",
            vec!["file_id", "num_rows", "generated_at"],
        ),
        (
            "iot_data",
            "application/x-ndjson",
            vec!["device_id", "batch_size", "generated_at"],
        ),
    ];
    for (dataset, content_type, original) in expect {
        let key = keys
            .iter()
            .find(|k| k.starts_with(&format!("lakepipe/data/{dataset}/")))
            .unwrap_or_else(|| panic!("no {dataset} key"));
        let head = server
            .client()
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some(content_type), "{key}");
        let meta = head.metadata().cloned().unwrap_or_default();
        let ours = ["source", "slot", "schema_version"];
        for k in original.iter().chain(&ours) {
            if keeps_underscore_metadata || !k.contains('_') {
                assert!(
                    meta.contains_key(*k),
                    "{key}: metadata {k} missing in {meta:?}"
                );
            }
        }
        if keeps_underscore_metadata {
            assert_eq!(meta["schema_version"], "1");
        }
        assert!(meta["slot"].starts_with("2026-02-01T00:") && meta["slot"].ends_with('Z'));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_hour_lands_with_types_and_metadata_and_a_rerun_makes_no_new_versions() {
    let server = s3_server("LAKEPIPE_TEST_MOTO");
    let bucket = server.new_bucket("moto").await;
    server
        .client()
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let s = server.clone();
    let b = bucket.clone();
    let m = tokio::task::spawn_blocking(move || land_hour(&s, &b))
        .await
        .unwrap();
    assert_eq!(
        m["create_mode"], "conditional",
        "moto honours If-None-Match"
    );
    assert_eq!(m["datasets"]["text"]["written"], 720);
    assert_eq!(m["datasets"]["iot"]["written"], 960);
    check_heads(&server, &bucket, false).await;

    let s = server.clone();
    let b = bucket.clone();
    let m = tokio::task::spawn_blocking(move || land_hour(&s, &b))
        .await
        .unwrap();
    assert_eq!(m["datasets"]["text"]["written"], 0);
    assert_eq!(m["datasets"]["csv"]["already_present"], 360);

    let mut versions = 0;
    let mut marker = None;
    loop {
        let page = server
            .client()
            .list_object_versions()
            .bucket(&bucket)
            .prefix("lakepipe/data/")
            .set_key_marker(marker.clone())
            .send()
            .await
            .unwrap();
        versions += page.versions().len();
        if page.is_truncated() != Some(true) {
            break;
        }
        marker = page.next_key_marker().map(str::to_string);
    }
    assert_eq!(versions, 2040, "a re-run must not create object versions");
}

#[tokio::test(flavor = "multi_thread")]
async fn garage_hour_lands_and_the_probe_detects_ignored_conditional_put() {
    let server = s3_server("LAKEPIPE_TEST_GARAGE");
    let bucket = server.new_bucket("garage").await;
    let s = server.clone();
    let b = bucket.clone();
    let m = tokio::task::spawn_blocking(move || land_hour(&s, &b))
        .await
        .unwrap();
    assert_eq!(
        m["create_mode"], "check-then-put",
        "garage ignores If-None-Match"
    );
    assert_eq!(m["datasets"]["csv"]["written"], 360);
    check_heads(&server, &bucket, true).await;

    let s = server.clone();
    let b = bucket.clone();
    let m = tokio::task::spawn_blocking(move || land_hour(&s, &b))
        .await
        .unwrap();
    assert_eq!(m["datasets"]["iot"]["written"], 0);
    assert_eq!(m["datasets"]["iot"]["already_present"], 960);
    assert_eq!(server.keys(&bucket, "lakepipe/data/").await.len(), 2040);
}

fn assert_fails_fast(t: &TestCommand, lake: &str, needle: &str) {
    let r = t.run(&["--lake", lake, "stream", "csv", "--from", FROM, "--to", TO]);
    r.assert_exit_code(1);
    assert!(r.elapsed < Duration::from_secs(30), "took {:?}", r.elapsed);
    let err = r.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one clear line expected:\n{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{err}"
    );
}

#[test]
fn missing_bucket_bad_credentials_and_unreachable_endpoint_fail_fast_with_one_line() {
    let moto = s3_server("LAKEPIPE_TEST_MOTO");
    let t = moto.apply(TestCommand::new());
    assert_fails_fast(&t, "s3://no-such-bucket-lakepipe", "does not exist");

    let garage = s3_server("LAKEPIPE_TEST_GARAGE");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(garage.new_bucket("creds"));
    let bad = S3Server {
        secret: "not-the-secret".into(),
        ..garage.clone()
    };
    let t = bad.apply(TestCommand::new());
    assert_fails_fast(&t, &format!("s3://{bucket}"), "denied");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = S3Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        ..moto
    };
    let t = gone.apply(TestCommand::new());
    assert_fails_fast(&t, "s3://some-bucket", "cannot reach");
}
