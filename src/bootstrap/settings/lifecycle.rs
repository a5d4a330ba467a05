//! Lifecycle: lakepipe's three rules of SPEC "Bucket" (data tiering and expiry, log expiry,
//! noncurrent versions and incomplete multipart uploads), scoped to the lake prefix; the
//! user's other rules are kept.

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    Transition, TransitionStorageClass,
};
use serde_json::{Value, json};

use super::BucketSetting;
use crate::bootstrap::fault::{Fault, absent_is_null, built, fault};
use crate::bootstrap::target::Target;

/// lakepipe's lifecycle rules.
pub(super) struct Lifecycle;

#[async_trait::async_trait]
impl BucketSetting for Lifecycle {
    fn name(&self) -> &'static str {
        "lifecycle"
    }

    fn describe(&self, t: &Target) -> String {
        format!(
            "{p}data/ IA 30d, GLACIER 90d, expire 2555d; {p}logs/ expire 90d; noncurrent 30d; abort MPU 7d",
            p = t.prefix
        )
    }

    fn desired(&self, t: &Target) -> Value {
        Value::Array(lifecycle_rules(t).iter().map(rule_view).collect())
    }

    async fn current(&self, t: &Target) -> Result<Value, Fault> {
        match t
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&t.bucket)
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
            Err(e) => absent_is_null(fault(&e)),
        }
    }

    async fn apply(&self, t: &Target) -> Result<(), Fault> {
        let (c, b) = (&t.client, t.bucket.as_str());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::target::target;

    #[test]
    fn lifecycle_rules_follow_spec_and_the_lake_prefix() {
        let t = target("lake/", "eu-west-1");
        let views = Lifecycle.desired(&t);
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
}
