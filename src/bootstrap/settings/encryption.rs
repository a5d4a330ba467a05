//! Default encryption: SSE-S3 (AES256), or SSE-KMS with a bucket key when `--kms-key` is given.

use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};
use serde_json::{Value, json};

use super::BucketSetting;
use crate::bootstrap::fault::{Fault, absent_is_null, built, fault};
use crate::bootstrap::target::Target;

/// Default encryption of new objects.
pub(super) struct Encryption;

#[async_trait::async_trait]
impl BucketSetting for Encryption {
    fn name(&self) -> &'static str {
        "encryption"
    }

    fn describe(&self, t: &Target) -> String {
        match &t.kms_key {
            Some(k) => format!("SSE-KMS ({k})"),
            None => "SSE-S3 (AES256)".into(),
        }
    }

    fn desired(&self, t: &Target) -> Value {
        match &t.kms_key {
            Some(k) => json!({ "algorithm": "aws:kms", "kms_key": k }),
            None => json!({ "algorithm": "AES256" }),
        }
    }

    async fn current(&self, t: &Target) -> Result<Value, Fault> {
        match t
            .client
            .get_bucket_encryption()
            .bucket(&t.bucket)
            .send()
            .await
        {
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
            Err(e) => absent_is_null(fault(&e)),
        }
    }

    async fn apply(&self, t: &Target) -> Result<(), Fault> {
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
        t.client
            .put_bucket_encryption()
            .bucket(&t.bucket)
            .server_side_encryption_configuration(cfg)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| fault(&e))
    }
}
