//! Where the lake is ([`LakeUrl`]) and how the object-store client behaves ([`StoreConfig`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::retry::RetryConfig;

/// A parsed `--lake` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeUrl {
    /// A directory on local disk (created on first use).
    Local(PathBuf),
    /// A bucket and an optional key prefix (no leading or trailing `/`).
    S3 { bucket: String, prefix: String },
}

impl LakeUrl {
    /// Parses `s3://bucket[/prefix]`, `file:///path` or a plain path.
    pub fn parse(s: &str) -> Result<LakeUrl, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the lake location is empty".into());
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            validate_bucket_name(bucket)?;
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(LakeUrl::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(LakeUrl::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(format!(
                "unsupported lake URL scheme `{scheme}://`: use a local path or s3://bucket[/prefix]"
            ));
        }
        Ok(LakeUrl::Local(PathBuf::from(s)))
    }
}

impl std::fmt::Display for LakeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeUrl::Local(p) => write!(f, "{}", p.display()),
            LakeUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            LakeUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Checks the S3 bucket naming rules (3–63 chars of a-z, 0-9, `.` and `-`, alphanumeric ends).
pub fn validate_bucket_name(b: &str) -> Result<(), String> {
    let ok_chars = b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&b.len())
        || !ok_chars
        || !ends(b.chars().next())
        || !ends(b.chars().last())
    {
        return Err(format!(
            "`{b}` is not a valid S3 bucket name (3-63 characters: lower-case letters, digits, '.' and '-')"
        ));
    }
    Ok(())
}

/// Object-store client settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Most requests in flight at once. Env `LAKEPIPE_CONCURRENCY`. Default 32.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Objects at least this large (MiB) are uploaded in parts. Default 8.
    #[serde(default = "default_multipart_threshold_mib")]
    pub multipart_threshold_mib: u64,
    /// Connect timeout per request, in seconds. Default 5.
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: u64,
    /// Whole-request timeout, in seconds. Default 30.
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: u64,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_concurrency() -> usize {
    32
}
fn default_multipart_threshold_mib() -> u64 {
    8
}
fn default_connect_timeout_s() -> u64 {
    5
}
fn default_request_timeout_s() -> u64 {
    30
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            concurrency: default_concurrency(),
            multipart_threshold_mib: default_multipart_threshold_mib(),
            connect_timeout_s: default_connect_timeout_s(),
            request_timeout_s: default_request_timeout_s(),
            retry: RetryConfig::default(),
        }
    }
}

impl StoreConfig {
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        within("store.concurrency", self.concurrency as u64, 1..=1024, "")?;
        within(
            "store.multipart_threshold_mib",
            self.multipart_threshold_mib,
            5..=5120,
            " (S3's smallest and largest part sizes)",
        )?;
        within(
            "store.connect_timeout_s",
            self.connect_timeout_s,
            1..=300,
            "",
        )?;
        within(
            "store.request_timeout_s",
            self.request_timeout_s,
            1..=3600,
            "",
        )?;
        self.retry.validate()
    }
}

/// `value` if it lies in `range`, else the key and the bound, e.g. "99999999999 is not
/// between 0 and 100".
pub(crate) fn within(
    key: &'static str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
    why: &str,
) -> Result<(), (&'static str, String)> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err((
            key,
            format!(
                "{value} is not between {} and {}{why}",
                range.start(),
                range.end()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lake_urls() {
        assert_eq!(
            LakeUrl::parse("./lake").unwrap(),
            LakeUrl::Local("./lake".into())
        );
        assert_eq!(
            LakeUrl::parse("file:///tmp/x").unwrap(),
            LakeUrl::Local("/tmp/x".into())
        );
        assert_eq!(
            LakeUrl::parse("s3://modern-lakehouse-data/a/b/").unwrap(),
            LakeUrl::S3 {
                bucket: "modern-lakehouse-data".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            LakeUrl::parse("s3://bucket").unwrap().to_string(),
            "s3://bucket".to_string()
        );
        assert!(LakeUrl::parse("s3://Bad_Bucket").is_err());
        assert!(LakeUrl::parse("gs://bucket").is_err());
    }
}
