//! Bucket bootstrap (`lakepipe bootstrap`, DAG `1-infra_s3_bootstrap`): creates the bucket if
//! missing and converges its settings to SPEC "Bucket" — encryption, versioning, lifecycle,
//! Block Public Access, a TLS-only policy and tags — then creates the top-level prefixes and
//! records what the store can do in `_lakepipe/capabilities.json`, which the writers read.
//!
//! The settings are a table ([`S3_SETTINGS`]): each reads the current state back, compares a
//! canonical form with the desired one and applies only what differs, so a second run changes
//! nothing. Settings of the user that are not ours (other lifecycle rules, policy statements,
//! tags) are kept. A server without an API gets an "unsupported" row (an error with
//! `--strict`); `--dry-run` only reads. On a local lake, only the layout and capabilities apply.

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging, Transition,
    TransitionStorageClass, VersioningConfiguration,
};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::oplog::{Level, OpLog};
use super::s3::source_chain;
use super::{CreateMode, Error, Result, Store};
use crate::clock::rfc3339_secs;

/// Where the capability record lives.
pub const CAPABILITIES_KEY: &str = "_lakepipe/capabilities.json";

/// Default bucket of SPEC "Bucket" (used in examples and DDL for local lakes).
pub const DEFAULT_BUCKET: &str = "modern-lakehouse-data";

/// Top-level prefixes of the lake layout.
pub const LAYOUT: [&str; 15] = [
    "data/text_files",
    "data/csv_files",
    "data/iot_data",
    "realtime",
    "batch/bronze",
    "batch/silver",
    "batch/quarantine",
    "batch/gold",
    "serving/unified",
    "serving/dashboards",
    "serving/analytics",
    "serving/alerts",
    "metadata/athena",
    "logs",
    "_lakepipe",
];

/// Sid of lakepipe's statement in the bucket policy.
const TLS_SID: &str = "LakepipeDenyInsecureTransport";
/// Tags lakepipe sets on the bucket.
const TAGS: [(&str, &str); 1] = [("project", "lakepipe")];

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Read and compare only; write nothing.
    pub dry_run: bool,
    /// Settings the server does not support are errors.
    pub strict: bool,
    /// SSE-KMS with this key instead of SSE-S3.
    pub kms_key: Option<String>,
}

/// The result of one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Changed to the desired state.
    Applied,
    /// Already in the desired state.
    Unchanged,
    /// Differs; a real run would apply it (dry run).
    WouldApply,
    /// The server lacks this API.
    Unsupported,
    /// Deliberately not applied (see the detail).
    Skipped,
    /// Does not apply to this kind of lake.
    NotApplicable,
    /// The request failed.
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::WouldApply => "would apply",
            Outcome::Unsupported => "unsupported by this server",
            Outcome::Skipped => "skipped",
            Outcome::NotApplicable => "n/a",
            Outcome::Failed => "FAILED",
        }
    }
}

/// One row of the report: setting · desired · result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Setting name.
    pub setting: String,
    /// Desired state, for humans.
    pub desired: String,
    /// What happened.
    pub result: Outcome,
    /// Why (reason, error, or what was found).
    pub detail: String,
}

/// What a bootstrap run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The lake.
    pub lake: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// One row per setting, in order.
    pub rows: Vec<Row>,
    /// The capability record written (None in a dry run).
    pub capabilities: Option<Capabilities>,
}

impl Report {
    /// Rows that make the run fail: failures, and unsupported settings under `strict`.
    pub fn errors(&self, strict: bool) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.result == Outcome::Failed || (strict && r.result == Outcome::Unsupported))
            .collect()
    }

    /// True if a real run would change nothing (or, for a real run, changed nothing).
    pub fn converged(&self) -> bool {
        !self
            .rows
            .iter()
            .any(|r| matches!(r.result, Outcome::Applied | Outcome::WouldApply))
    }

    /// The report as an aligned text table.
    pub fn table(&self) -> String {
        let head = ["setting", "desired", "result", "detail"];
        let cells: Vec<[&str; 4]> = self
            .rows
            .iter()
            .map(|r| [&*r.setting, &*r.desired, r.result.label(), &*r.detail])
            .collect();
        let mut w = head.map(str::len);
        for c in &cells {
            for i in 0..3 {
                w[i] = w[i].max(c[i].chars().count());
            }
        }
        let line = |c: [&str; 4]| {
            format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                c[0],
                c[1],
                c[2],
                c[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            )
            .trim_end()
            .to_string()
        };
        let mut out = vec![line(head)];
        out.extend(cells.into_iter().map(line));
        out.join("\n") + "\n"
    }
}

/// What the store can do, as probed by bootstrap; read by the writers instead of probing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The lake it was probed on.
    pub lake: String,
    /// The S3 endpoint (None = AWS or a local lake).
    pub endpoint: Option<String>,
    /// Whether `If-None-Match: *` (create-only PUT) is honoured.
    pub conditional_put: bool,
    /// How writers make create-only writes (`conditional` or `check-then-put`).
    pub create_mode: String,
    /// Bucket settings the server does not implement.
    pub unsupported: Vec<String>,
    /// When it was probed (UTC).
    pub probed_at: String,
}

impl Capabilities {
    /// The create mode recorded.
    pub fn create_mode(&self) -> CreateMode {
        if self.conditional_put {
            CreateMode::Conditional
        } else {
            CreateMode::CheckThenPut
        }
    }

    /// The record of this lake, if bootstrap wrote one for the same endpoint (a record made
    /// against another server is ignored; an unreadable one is reported and ignored).
    pub async fn load(store: &Store) -> Result<Option<Capabilities>> {
        let Some(bytes) = store.get_opt(CAPABILITIES_KEY).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Capabilities>(&bytes) {
            Ok(c) if c.endpoint == endpoint_of(store) => Ok(Some(c)),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!("ignoring unreadable {CAPABILITIES_KEY}: {e}");
                Ok(None)
            }
        }
    }
}

fn endpoint_of(store: &Store) -> Option<String> {
    store.s3().and_then(|(_, c)| c.endpoint.clone())
}

/// Runs bootstrap on `store`. Returns an error (one clear line) when the bucket cannot be used
/// at all: access denied, wrong region, name taken; per-setting problems are rows.
pub async fn run(store: &Store, opts: &Options, log: &OpLog) -> Result<Report> {
    let mut rows = Vec::new();
    let mut unsupported = Vec::new();
    log.info(
        "start",
        &[
            ("lake", store.url().to_string()),
            ("dry_run", opts.dry_run.to_string()),
        ],
    );
    match store.s3() {
        None => {
            for s in S3_SETTINGS {
                rows.push(Row {
                    setting: s.name().into(),
                    desired: "-".into(),
                    result: Outcome::NotApplicable,
                    detail: "local lake".into(),
                });
            }
        }
        Some((bucket, conn)) => {
            let target = Target {
                client: conn.client(),
                bucket: bucket.to_string(),
                prefix: match store.url() {
                    super::LakeUrl::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/"),
                    _ => String::new(),
                },
                region: conn.region.clone(),
                kms_key: opts.kms_key.clone(),
                plain_http: conn
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
                endpoint: conn.endpoint_display(),
            };
            let exists = ensure_bucket(&target, opts.dry_run, &mut rows).await?;
            for s in S3_SETTINGS {
                let row = converge(s, &target, opts.dry_run, exists).await;
                if row.result == Outcome::Unsupported {
                    unsupported.push(s.name().to_string());
                }
                rows.push(row);
            }
        }
    }
    rows.push(layout(store, opts.dry_run).await);
    let capabilities = if opts.dry_run {
        rows.push(Row {
            setting: "create-only PUT".into(),
            desired: "probe and record".into(),
            result: Outcome::Skipped,
            detail: "dry run: the probe writes an object".into(),
        });
        None
    } else {
        let (row, caps) = capabilities(store, unsupported).await?;
        rows.push(row);
        Some(caps)
    };
    for r in &rows {
        let level = match r.result {
            Outcome::Failed => Level::Error,
            Outcome::Unsupported | Outcome::Skipped => Level::Warn,
            _ => Level::Info,
        };
        log.event(
            level,
            "setting",
            &[
                ("setting", r.setting.clone()),
                ("result", r.result.label().to_string()),
                ("detail", r.detail.clone()),
            ],
        );
    }
    Ok(Report {
        lake: store.url().to_string(),
        dry_run: opts.dry_run,
        rows,
        capabilities,
    })
}

/// The bucket and how to address it.
struct Target {
    client: Client,
    bucket: String,
    /// Lake prefix with a trailing `/`, or empty.
    prefix: String,
    region: String,
    kms_key: Option<String>,
    plain_http: bool,
    /// The endpoint, for messages.
    endpoint: String,
}

impl Target {
    /// ARN partition of the region (`aws`, `aws-cn`, `aws-us-gov`).
    fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }
}

/// How a request failed.
#[derive(Debug)]
enum Fault {
    /// The setting is not configured (NoSuch…Configuration).
    Absent,
    /// The server lacks the API.
    NotImplemented(String),
    /// The server answered 200 with a body the SDK cannot parse (moto's reply for a bucket
    /// that never had versioning): the state is unknown, so it is applied.
    Unreadable(String),
    /// Anything else.
    Other(String),
}

fn fault<E>(e: &SdkError<E, HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().unwrap_or_default();
    let message = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => source_chain(e),
    };
    if code == "NotImplemented" || status == Some(501) {
        Fault::NotImplemented(message)
    } else if status == Some(200) {
        Fault::Unreadable(message)
    } else if code != "NoSuchBucket"
        && (code.starts_with("NoSuch") || code.ends_with("NotFoundError"))
    {
        Fault::Absent
    } else if code == "AccessDenied" || status == Some(403) {
        Fault::Other(format!(
            "access denied ({message}): the credentials may not manage this bucket"
        ))
    } else {
        Fault::Other(message)
    }
}

/// `<Status>…</Status>` of a 200 reply the SDK could not parse.
fn lenient_status<E>(e: &SdkError<E, HttpResponse>) -> Option<String> {
    let r = e.raw_response().filter(|r| r.status().as_u16() == 200)?;
    let body = std::str::from_utf8(r.body().bytes()?).ok()?;
    let start = body.find("<Status>")? + "<Status>".len();
    let len = body[start..].find("</Status>")?;
    Some(body[start..start + len].to_string())
}

/// HEAD the bucket; create it if missing. Returns whether it exists now.
async fn ensure_bucket(t: &Target, dry_run: bool, rows: &mut Vec<Row>) -> Result<bool> {
    let desired = format!("exists in {}", t.region);
    let unusable = |reason: String| Error::Unavailable { reason };
    match t.client.head_bucket().bucket(&t.bucket).send().await {
        Ok(out) => {
            if let Some(r) = out.bucket_region().filter(|r| *r != t.region) {
                return Err(unusable(format!(
                    "bucket `{}` is in region {r}, not {}: set AWS_REGION={r}",
                    t.bucket, t.region
                )));
            }
            rows.push(row("bucket", desired, Outcome::Unchanged, "exists"));
            Ok(true)
        }
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            if dry_run {
                rows.push(row(
                    "bucket",
                    desired,
                    Outcome::WouldApply,
                    "missing: would create",
                ));
                return Ok(false);
            }
            let mut req = t.client.create_bucket().bucket(&t.bucket);
            if t.region != super::DEFAULT_REGION {
                req = req.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(t.region.as_str()))
                        .build(),
                );
            }
            match req.send().await {
                Ok(_) => {
                    rows.push(row("bucket", desired, Outcome::Applied, "created"));
                    Ok(true)
                }
                Err(e) => match e.code() {
                    Some("BucketAlreadyOwnedByYou") => {
                        rows.push(row("bucket", desired, Outcome::Unchanged, "exists"));
                        Ok(true)
                    }
                    Some("BucketAlreadyExists") => Err(unusable(format!(
                        "bucket name `{}` is taken by another account: choose another name",
                        t.bucket
                    ))),
                    Some("IllegalLocationConstraintException" | "InvalidLocationConstraint") => {
                        Err(unusable(format!(
                            "cannot create bucket `{}` in region {}: the endpoint serves another region (set AWS_REGION)",
                            t.bucket, t.region
                        )))
                    }
                    _ => Err(unusable(format!(
                        "cannot create bucket `{}`: {}",
                        t.bucket,
                        match fault(&e) {
                            Fault::NotImplemented(m) | Fault::Unreadable(m) | Fault::Other(m) => m,
                            Fault::Absent => source_chain(&e),
                        }
                    ))),
                },
            }
        }
        // One clear line (denied, wrong region, unreachable), as every command reports it.
        Err(e) => Err(super::s3::classify_head_bucket(&t.bucket, &t.endpoint, e)),
    }
}

fn row(setting: &str, desired: String, result: Outcome, detail: &str) -> Row {
    Row {
        setting: setting.into(),
        desired,
        result,
        detail: detail.into(),
    }
}

/// The bucket settings lakepipe manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Encryption,
    Versioning,
    Lifecycle,
    PublicAccessBlock,
    TlsPolicy,
    Tags,
}

/// The settings, in the order they are applied and reported.
const S3_SETTINGS: [Setting; 6] = [
    Setting::Encryption,
    Setting::Versioning,
    Setting::Lifecycle,
    Setting::PublicAccessBlock,
    Setting::TlsPolicy,
    Setting::Tags,
];

impl Setting {
    fn name(self) -> &'static str {
        match self {
            Setting::Encryption => "encryption",
            Setting::Versioning => "versioning",
            Setting::Lifecycle => "lifecycle",
            Setting::PublicAccessBlock => "block public access",
            Setting::TlsPolicy => "TLS-only policy",
            Setting::Tags => "tags",
        }
    }

    /// The desired state, for humans.
    fn describe(self, t: &Target) -> String {
        match self {
            Setting::Encryption => match &t.kms_key {
                Some(k) => format!("SSE-KMS ({k})"),
                None => "SSE-S3 (AES256)".into(),
            },
            Setting::Versioning => "enabled".into(),
            Setting::Lifecycle => format!(
                "{p}data/ IA 30d, GLACIER 90d, expire 2555d; {p}logs/ expire 90d; noncurrent 30d; abort MPU 7d",
                p = t.prefix
            ),
            Setting::PublicAccessBlock => "all four on".into(),
            Setting::TlsPolicy => "deny aws:SecureTransport=false".into(),
            Setting::Tags => TAGS
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// The desired state in canonical form (compared with [`Setting::current`]).
    fn desired(self, t: &Target) -> Value {
        match self {
            Setting::Encryption => match &t.kms_key {
                Some(k) => json!({ "algorithm": "aws:kms", "kms_key": k }),
                None => json!({ "algorithm": "AES256" }),
            },
            Setting::Versioning => json!("Enabled"),
            Setting::Lifecycle => Value::Array(lifecycle_rules(t).iter().map(rule_view).collect()),
            Setting::PublicAccessBlock => json!([true, true, true, true]),
            Setting::TlsPolicy => tls_statement(t),
            Setting::Tags => json!(
                TAGS.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            ),
        }
    }

    /// The current state in canonical form, restricted to what lakepipe manages; `Null` when
    /// not configured.
    async fn current(self, t: &Target) -> Result<Value, Fault> {
        let (c, b) = (&t.client, t.bucket.as_str());
        let absent = |f: Fault| match f {
            Fault::Absent => Ok(Value::Null),
            f => Err(f),
        };
        match self {
            Setting::Encryption => match c.get_bucket_encryption().bucket(b).send().await {
                Ok(out) => {
                    let by_default = out
                        .server_side_encryption_configuration()
                        .and_then(|cfg| cfg.rules().first())
                        .and_then(|r| r.apply_server_side_encryption_by_default());
                    Ok(match by_default {
                        None => Value::Null,
                        Some(d) => match d.kms_master_key_id() {
                            Some(k) => {
                                json!({ "algorithm": d.sse_algorithm().as_str(), "kms_key": k })
                            }
                            None => json!({ "algorithm": d.sse_algorithm().as_str() }),
                        },
                    })
                }
                Err(e) => absent(fault(&e)),
            },
            Setting::Versioning => match c.get_bucket_versioning().bucket(b).send().await {
                Ok(out) => Ok(out.status().map_or(Value::Null, |s| json!(s.as_str()))),
                // moto answers with a `GetBucketVersioningResponse` root the SDK rejects; the
                // status element inside is the standard one.
                Err(e) => match lenient_status(&e) {
                    Some(status) => Ok(json!(status)),
                    None => absent(fault(&e)),
                },
            },
            Setting::Lifecycle => match c
                .get_bucket_lifecycle_configuration()
                .bucket(b)
                .send()
                .await
            {
                Ok(out) => {
                    let ours = lifecycle_ids(t);
                    let mut views: Vec<Value> = out
                        .rules()
                        .iter()
                        .filter(|r| r.id().is_some_and(|id| ours.contains(&id.to_string())))
                        .map(rule_view)
                        .collect();
                    views.sort_by_key(|v| v["id"].as_str().unwrap_or_default().to_string());
                    Ok(Value::Array(views))
                }
                Err(e) => absent(fault(&e)),
            },
            Setting::PublicAccessBlock => {
                match c.get_public_access_block().bucket(b).send().await {
                    Ok(out) => {
                        Ok(out
                            .public_access_block_configuration()
                            .map_or(Value::Null, |p| {
                                json!([
                                    p.block_public_acls().unwrap_or(false),
                                    p.ignore_public_acls().unwrap_or(false),
                                    p.block_public_policy().unwrap_or(false),
                                    p.restrict_public_buckets().unwrap_or(false)
                                ])
                            }))
                    }
                    Err(e) => absent(fault(&e)),
                }
            }
            Setting::TlsPolicy => match c.get_bucket_policy().bucket(b).send().await {
                Ok(out) => {
                    let doc: Value = out
                        .policy()
                        .and_then(|p| serde_json::from_str(p).ok())
                        .unwrap_or(Value::Null);
                    Ok(statements(&doc)
                        .into_iter()
                        .find(|s| s["Sid"] == TLS_SID)
                        .map_or(Value::Null, |s| canonical_statement(&s)))
                }
                Err(e) => absent(fault(&e)),
            },
            Setting::Tags => match c.get_bucket_tagging().bucket(b).send().await {
                Ok(out) => Ok(json!(
                    out.tag_set()
                        .iter()
                        .filter(|tag| TAGS.iter().any(|(k, _)| *k == tag.key()))
                        .map(|tag| (tag.key().to_string(), tag.value().to_string()))
                        .collect::<BTreeMap<_, _>>()
                )),
                Err(e) => absent(fault(&e)),
            },
        }
    }

    /// Applies the desired state, keeping settings that are not lakepipe's.
    async fn apply(self, t: &Target) -> Result<(), Fault> {
        let (c, b) = (&t.client, t.bucket.as_str());
        let built = |e: aws_sdk_s3::error::BuildError| Fault::Other(e.to_string());
        match self {
            Setting::Encryption => {
                let mut d = ServerSideEncryptionByDefault::builder();
                d = match &t.kms_key {
                    Some(k) => d
                        .sse_algorithm(ServerSideEncryption::AwsKms)
                        .kms_master_key_id(k),
                    None => d.sse_algorithm(ServerSideEncryption::Aes256),
                };
                let cfg = ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(d.build().map_err(built)?)
                            .bucket_key_enabled(t.kms_key.is_some())
                            .build(),
                    )
                    .build()
                    .map_err(built)?;
                c.put_bucket_encryption()
                    .bucket(b)
                    .server_side_encryption_configuration(cfg)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| fault(&e))
            }
            Setting::Versioning => c
                .put_bucket_versioning()
                .bucket(b)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| fault(&e)),
            Setting::Lifecycle => {
                let ours = lifecycle_ids(t);
                let mut rules: Vec<LifecycleRule> = match c
                    .get_bucket_lifecycle_configuration()
                    .bucket(b)
                    .send()
                    .await
                {
                    Ok(out) => out
                        .rules()
                        .iter()
                        .filter(|r| !r.id().is_some_and(|id| ours.contains(&id.to_string())))
                        .cloned()
                        .collect(),
                    Err(e) => match fault(&e) {
                        Fault::Absent => Vec::new(),
                        f => return Err(f),
                    },
                };
                rules.extend(lifecycle_rules(t));
                let cfg = BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .map_err(built)?;
                c.put_bucket_lifecycle_configuration()
                    .bucket(b)
                    .lifecycle_configuration(cfg)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| fault(&e))
            }
            Setting::PublicAccessBlock => c
                .put_public_access_block()
                .bucket(b)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .ignore_public_acls(true)
                        .block_public_policy(true)
                        .restrict_public_buckets(true)
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| fault(&e)),
            Setting::TlsPolicy => {
                let mut doc = match c.get_bucket_policy().bucket(b).send().await {
                    Ok(out) => out
                        .policy()
                        .and_then(|p| serde_json::from_str::<Value>(p).ok())
                        .unwrap_or(Value::Null),
                    Err(e) => match fault(&e) {
                        Fault::Absent => Value::Null,
                        f => return Err(f),
                    },
                };
                let mut stmts: Vec<Value> = statements(&doc)
                    .into_iter()
                    .filter(|s| s["Sid"] != TLS_SID)
                    .collect();
                stmts.push(tls_statement(t));
                if !doc.is_object() {
                    doc = json!({ "Version": "2012-10-17" });
                }
                doc["Statement"] = Value::Array(stmts);
                c.put_bucket_policy()
                    .bucket(b)
                    .policy(doc.to_string())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| fault(&e))
            }
            Setting::Tags => {
                let mut tags: BTreeMap<String, String> =
                    match c.get_bucket_tagging().bucket(b).send().await {
                        Ok(out) => out
                            .tag_set()
                            .iter()
                            .map(|tag| (tag.key().to_string(), tag.value().to_string()))
                            .collect(),
                        Err(e) => match fault(&e) {
                            Fault::Absent => BTreeMap::new(),
                            f => return Err(f),
                        },
                    };
                for (k, v) in TAGS {
                    tags.insert(k.into(), v.into());
                }
                let set = tags
                    .into_iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(built)?;
                c.put_bucket_tagging()
                    .bucket(b)
                    .tagging(
                        Tagging::builder()
                            .set_tag_set(Some(set))
                            .build()
                            .map_err(built)?,
                    )
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| fault(&e))
            }
        }
    }
}

/// Reads one setting back, compares, and applies if needed.
async fn converge(s: Setting, t: &Target, dry_run: bool, bucket_exists: bool) -> Row {
    let desired = s.describe(t);
    let mk = |result, detail: String| Row {
        setting: s.name().into(),
        desired: desired.clone(),
        result,
        detail,
    };
    if s == Setting::TlsPolicy && t.plain_http {
        return mk(
            Outcome::Skipped,
            "endpoint is plain HTTP: a TLS-only policy would lock every client out".into(),
        );
    }
    if !bucket_exists {
        return mk(Outcome::WouldApply, "bucket does not exist yet".into());
    }
    let current = match s.current(t).await {
        Ok(v) => v,
        Err(Fault::NotImplemented(m)) => return mk(Outcome::Unsupported, m),
        Err(Fault::Other(m)) => return mk(Outcome::Failed, format!("reading it back: {m}")),
        Err(Fault::Absent) => Value::Null,
        Err(Fault::Unreadable(m)) => {
            tracing::debug!("{}: unreadable reply ({m}); applying", s.name());
            Value::Null
        }
    };
    if current == s.desired(t) {
        return mk(Outcome::Unchanged, String::new());
    }
    let found = if current.is_null() {
        "not set".to_string()
    } else {
        format!("was {current}")
    };
    if dry_run {
        return mk(Outcome::WouldApply, found);
    }
    match s.apply(t).await {
        // Some servers accept a setting and keep only part of it (Garage drops lifecycle
        // transitions): read it back, and say so instead of claiming it applied.
        Ok(()) => match s.current(t).await {
            Ok(kept) if kept != s.desired(t) => mk(
                Outcome::Unsupported,
                format!("accepted, but the server kept only {kept}"),
            ),
            _ => mk(Outcome::Applied, found),
        },
        Err(Fault::NotImplemented(m)) => mk(Outcome::Unsupported, m),
        Err(Fault::Other(m) | Fault::Unreadable(m)) => mk(Outcome::Failed, m),
        Err(Fault::Absent) => mk(
            Outcome::Failed,
            "the server reported a missing resource".into(),
        ),
    }
}

/// lakepipe's lifecycle rules (SPEC "Bucket"), scoped to the lake prefix. S3 does not
/// transition objects under 128 KB; the catalog reports how many there are (`small_objects`).
fn lifecycle_rules(t: &Target) -> Vec<LifecycleRule> {
    let p = &t.prefix;
    let rule = |id: &str, prefix: String| {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
    };
    let rules = [
        rule("lakepipe-data-tiering", format!("{p}data/"))
            .transitions(
                Transition::builder()
                    .days(30)
                    .storage_class(TransitionStorageClass::StandardIa)
                    .build(),
            )
            .transitions(
                Transition::builder()
                    .days(90)
                    .storage_class(TransitionStorageClass::Glacier)
                    .build(),
            )
            .expiration(LifecycleExpiration::builder().days(2555).build()),
        rule("lakepipe-logs-expiry", format!("{p}logs/"))
            .expiration(LifecycleExpiration::builder().days(90).build()),
        rule("lakepipe-noncurrent-and-multipart", p.clone())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(30)
                    .build(),
            )
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(7)
                    .build(),
            ),
    ];
    rules
        .into_iter()
        .map(|r| r.build().expect("id and status are set"))
        .collect()
}

fn lifecycle_ids(t: &Target) -> Vec<String> {
    lifecycle_rules(t)
        .iter()
        .filter_map(|r| r.id().map(str::to_string))
        .collect()
}

/// Canonical form of a lifecycle rule: servers echo filters in different shapes (`Prefix`,
/// `And.Prefix`, legacy rule prefix, empty filter).
fn rule_view(r: &LifecycleRule) -> Value {
    #[allow(deprecated)]
    let legacy = r.prefix();
    let prefix = r
        .filter()
        .and_then(|f| f.prefix().or_else(|| f.and().and_then(|a| a.prefix())))
        .or(legacy)
        .unwrap_or("");
    json!({
        "id": r.id(),
        "enabled": *r.status() == ExpirationStatus::Enabled,
        "prefix": prefix,
        "transitions": r.transitions().iter().map(|t| json!([t.days(), t.storage_class().map(|s| s.as_str())])).collect::<Vec<_>>(),
        "expiration_days": r.expiration().and_then(|e| e.days()),
        "noncurrent_days": r.noncurrent_version_expiration().and_then(|n| n.noncurrent_days()),
        "abort_multipart_days": r.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()),
    })
}

/// The policy statement that denies any request made without TLS.
fn tls_statement(t: &Target) -> Value {
    let arn = format!("arn:{}:s3:::{}", t.partition(), t.bucket);
    json!({
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn.clone(), format!("{arn}/*")],
        "Condition": { "Bool": { "aws:SecureTransport": "false" } }
    })
}

/// Statements of a policy document (a single statement object counts as one).
fn statements(doc: &Value) -> Vec<Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![doc["Statement"].clone()],
        _ => Vec::new(),
    }
}

/// A statement as we compare it: resources sorted, a single principal/action as a string.
fn canonical_statement(s: &Value) -> Value {
    let mut s = s.clone();
    if let Value::Array(r) = &mut s["Resource"] {
        r.sort_by_key(|v| v.to_string());
    }
    if let Some(p) = s["Principal"].get("AWS").filter(|p| *p == "*") {
        s["Principal"] = p.clone();
    }
    s
}

/// Creates the top-level prefixes: folder markers on S3, directories on disk.
async fn layout(store: &Store, dry_run: bool) -> Row {
    let desired = format!("{} prefixes", LAYOUT.len());
    let mut missing = Vec::new();
    for p in LAYOUT {
        match store.folder_exists(p).await {
            Ok(true) => {}
            Ok(false) => missing.push(p),
            Err(e) => return row("prefixes", desired, Outcome::Failed, &e.to_string()),
        }
    }
    if missing.is_empty() {
        return row("prefixes", desired, Outcome::Unchanged, "all present");
    }
    let detail = format!("missing: {}", missing.join(", "));
    if dry_run {
        return row("prefixes", desired, Outcome::WouldApply, &detail);
    }
    for p in &missing {
        if let Err(e) = store.create_folder(p).await {
            return row("prefixes", desired, Outcome::Failed, &e.to_string());
        }
    }
    row(
        "prefixes",
        desired,
        Outcome::Applied,
        &format!("created {}", missing.len()),
    )
}

/// Probes create-only PUT and writes the capability record.
async fn capabilities(store: &Store, unsupported: Vec<String>) -> Result<(Row, Capabilities)> {
    let mode = if store.is_local() {
        CreateMode::Conditional
    } else {
        store.probe_conditional_put().await?
    };
    let caps = Capabilities {
        lake: store.url().to_string(),
        endpoint: endpoint_of(store),
        conditional_put: mode == CreateMode::Conditional,
        create_mode: mode.as_str().to_string(),
        unsupported,
        probed_at: rfc3339_secs(Utc::now()),
    };
    store.put_json(CAPABILITIES_KEY, &caps).await?;
    let (result, detail) = match mode {
        CreateMode::Conditional => (Outcome::Unchanged, "honoured: writers use create-only PUT"),
        CreateMode::CheckThenPut => (
            Outcome::Unsupported,
            "ignored by this server: writers check then put, and lakepipe must be the only writer (scheduler lease)",
        ),
    };
    Ok((
        row(
            "create-only PUT",
            "If-None-Match: * honoured".into(),
            result,
            &format!("{detail}; recorded in {CAPABILITIES_KEY}"),
        ),
        caps,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(prefix: &str, region: &str) -> Target {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(region.to_string()))
            .build();
        Target {
            client: Client::from_conf(conf),
            bucket: "modern-lakehouse-data".into(),
            prefix: prefix.into(),
            region: region.into(),
            kms_key: None,
            plain_http: false,
            endpoint: "AWS".into(),
        }
    }

    #[test]
    fn lifecycle_rules_follow_spec_and_the_lake_prefix() {
        let t = target("lake/", "eu-west-1");
        let views = Setting::Lifecycle.desired(&t);
        let by_id = |id: &str| {
            views
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["id"] == id)
                .unwrap()
                .clone()
        };
        let data = by_id("lakepipe-data-tiering");
        assert_eq!(data["prefix"], "lake/data/");
        assert_eq!(
            data["transitions"],
            json!([[30, "STANDARD_IA"], [90, "GLACIER"]])
        );
        assert_eq!(data["expiration_days"], 2555);
        assert_eq!(by_id("lakepipe-logs-expiry")["expiration_days"], 90);
        let nc = by_id("lakepipe-noncurrent-and-multipart");
        assert_eq!(nc["prefix"], "lake/");
        assert_eq!(nc["noncurrent_days"], 30);
        assert_eq!(nc["abort_multipart_days"], 7);
    }

    #[test]
    fn lifecycle_views_ignore_the_filter_shape() {
        #[allow(deprecated)]
        let legacy = LifecycleRule::builder()
            .id("x")
            .status(ExpirationStatus::Enabled)
            .prefix("data/")
            .build()
            .unwrap();
        let filtered = LifecycleRule::builder()
            .id("x")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("data/").build())
            .build()
            .unwrap();
        assert_eq!(rule_view(&legacy), rule_view(&filtered));
    }

    #[test]
    fn tls_policy_denies_plain_http_on_the_bucket_and_its_objects() {
        let s = tls_statement(&target("", "cn-north-1"));
        assert_eq!(s["Effect"], "Deny");
        assert_eq!(s["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(
            s["Resource"],
            json!([
                "arn:aws-cn:s3:::modern-lakehouse-data",
                "arn:aws-cn:s3:::modern-lakehouse-data/*"
            ])
        );
        // AWS may echo `"Principal": {"AWS": "*"}`; that is the same statement.
        let mut echoed = s.clone();
        echoed["Principal"] = json!({ "AWS": "*" });
        assert_eq!(canonical_statement(&echoed), canonical_statement(&s));
    }

    #[test]
    fn report_fails_on_errors_and_on_unsupported_only_when_strict() {
        let mk = |result| Report {
            lake: "s3://b".into(),
            dry_run: false,
            rows: vec![row("versioning", "enabled".into(), result, "")],
            capabilities: None,
        };
        assert!(mk(Outcome::Unsupported).errors(false).is_empty());
        assert_eq!(mk(Outcome::Unsupported).errors(true).len(), 1);
        assert_eq!(mk(Outcome::Failed).errors(false).len(), 1);
        assert!(mk(Outcome::Unchanged).converged());
        assert!(!mk(Outcome::WouldApply).converged());
        let table = mk(Outcome::Unsupported).table();
        assert!(
            table.contains("versioning  enabled  unsupported by this server"),
            "{table}"
        );
    }
}
