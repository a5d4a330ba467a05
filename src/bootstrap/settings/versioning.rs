//! Versioning: enabled (with the lifecycle's noncurrent-version expiry).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use serde_json::{Value, json};

use super::BucketSetting;
use crate::bootstrap::fault::{Fault, absent_is_null, fault};
use crate::bootstrap::target::Target;

/// Object versioning.
pub(super) struct Versioning;

#[async_trait::async_trait]
impl BucketSetting for Versioning {
    fn name(&self) -> &'static str {
        "versioning"
    }

    fn describe(&self, _t: &Target) -> String {
        "enabled".into()
    }

    fn desired(&self, _t: &Target) -> Value {
        json!("Enabled")
    }

    async fn current(&self, t: &Target) -> Result<Value, Fault> {
        match t
            .client
            .get_bucket_versioning()
            .bucket(&t.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out.status().map_or(Value::Null, |s| json!(s.as_str()))),
            // moto answers with a `GetBucketVersioningResponse` root the SDK rejects; the
            // status element inside is the standard one.
            Err(e) => match lenient_status(&e) {
                Some(status) => Ok(json!(status)),
                None => absent_is_null(fault(&e)),
            },
        }
    }

    async fn apply(&self, t: &Target) -> Result<(), Fault> {
        t.client
            .put_bucket_versioning()
            .bucket(&t.bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| fault(&e))
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
