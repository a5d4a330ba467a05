//! Block Public Access: all four switches on.

use aws_sdk_s3::types::PublicAccessBlockConfiguration;
use serde_json::{Value, json};

use super::BucketSetting;
use crate::bootstrap::fault::{Fault, absent_is_null, fault};
use crate::bootstrap::target::Target;

/// The bucket's Block Public Access configuration.
pub(super) struct PublicAccessBlock;

#[async_trait::async_trait]
impl BucketSetting for PublicAccessBlock {
    fn name(&self) -> &'static str {
        "block public access"
    }

    fn describe(&self, _t: &Target) -> String {
        "all four on".into()
    }

    fn desired(&self, _t: &Target) -> Value {
        json!([true, true, true, true])
    }

    async fn current(&self, t: &Target) -> Result<Value, Fault> {
        match t
            .client
            .get_public_access_block()
            .bucket(&t.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .public_access_block_configuration()
                .map_or(Value::Null, |p| {
                    json!([
                        p.block_public_acls().unwrap_or(false),
                        p.ignore_public_acls().unwrap_or(false),
                        p.block_public_policy().unwrap_or(false),
                        p.restrict_public_buckets().unwrap_or(false)
                    ])
                })),
            Err(e) => absent_is_null(fault(&e)),
        }
    }

    async fn apply(&self, t: &Target) -> Result<(), Fault> {
        t.client
            .put_public_access_block()
            .bucket(&t.bucket)
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
            .map_err(|e| fault(&e))
    }
}
