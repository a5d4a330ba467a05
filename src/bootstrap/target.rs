//! The bucket a bootstrap run converges and how to address it ([`Target`]): client, bucket,
//! lake prefix, region, KMS key, endpoint.

use aws_sdk_s3::Client;

use super::Options;
use crate::store::{LakeUrl, Store};

/// The bucket and how to address it.
pub(super) struct Target {
    pub(super) client: Client,
    pub(super) bucket: String,
    /// Lake prefix with a trailing `/`, or empty.
    pub(super) prefix: String,
    pub(super) region: String,
    pub(super) kms_key: Option<String>,
    pub(super) plain_http: bool,
    /// The endpoint, for messages.
    pub(super) endpoint: String,
}

impl Target {
    /// The bucket of `store`; None on a local lake.
    pub(super) fn of(store: &Store, opts: &Options) -> Option<Target> {
        let (bucket, conn) = store.s3()?;
        Some(Target {
            client: conn.client(),
            bucket: bucket.to_string(),
            prefix: match store.url() {
                LakeUrl::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/"),
                _ => String::new(),
            },
            region: conn.region.clone(),
            kms_key: opts.kms_key.clone(),
            plain_http: conn
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
            endpoint: conn.endpoint_display(),
        })
    }

    /// ARN partition of the region (`aws`, `aws-cn`, `aws-us-gov`).
    pub(super) fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }
}

/// A target on AWS for `modern-lakehouse-data` (unit tests; no request is sent).
#[cfg(test)]
pub(super) fn target(prefix: &str, region: &str) -> Target {
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
