//! The bucket itself: HEAD it, create it in the configured region if missing, and refuse with
//! one clear line when it cannot be used (denied, wrong region, name taken).

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use super::fault::{Fault, fault};
use super::report::{Outcome, Row, row};
use super::target::Target;
use super::{Error, Result};
use crate::store::{DEFAULT_REGION, classify_head_bucket, source_chain};

/// HEAD the bucket; create it if missing. Returns whether it exists now.
pub(super) async fn ensure_bucket(t: &Target, dry_run: bool, rows: &mut Vec<Row>) -> Result<bool> {
    let desired = format!("exists in {}", t.region);
    let unusable = |reason: String| Error::Bucket {
        bucket: t.bucket.clone(),
        reason,
    };
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
            if t.region != DEFAULT_REGION {
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
        Err(e) => Err(classify_head_bucket(&t.bucket, &t.endpoint, e).into()),
    }
}
