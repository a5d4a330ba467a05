//! The AWS side of the store: the standard credential chain (`aws-config`: environment,
//! profiles incl. `AWS_PROFILE`, SSO, IMDS), the S3 admin client and the pre-flight check.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use object_store::aws::AwsCredential;
use tokio::sync::Mutex;

use super::{Error, Result};
use crate::config::S3Config;

/// Region used when neither the config nor the AWS environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Resolved S3 connection: the SDK configuration plus our overrides.
#[derive(Debug, Clone)]
pub struct S3Connection {
    /// Shared AWS configuration (credentials, region, endpoint, timeouts).
    pub sdk: SdkConfig,
    /// Effective region.
    pub region: String,
    /// Effective custom endpoint, if any (`None` = AWS).
    pub endpoint: Option<String>,
    /// Path-style (false) or virtual-hosted-style (true) addressing.
    pub virtual_hosted_style: bool,
    /// `store.connect_timeout_s`: [`S3Connection::preflight`] gives each attempt this long,
    /// and all of them three times this.
    pub connect_timeout: Duration,
}

impl S3Connection {
    /// Loads the AWS configuration chain and applies lakepipe's overrides.
    pub async fn load(cfg: &S3Config, connect_timeout: Duration) -> S3Connection {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(connect_timeout)
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(25))
                .build(),
        );
        if let Some(profile) = &cfg.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id,
                secret,
                cfg.session_token.clone(),
                None,
                "lakepipe-config",
            ));
        }
        let sdk = loader.load().await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let endpoint = sdk.endpoint_url().map(str::to_string);
        S3Connection {
            sdk,
            region,
            endpoint,
            virtual_hosted_style: cfg.virtual_hosted_style,
            connect_timeout,
        }
    }

    /// An S3 client for bucket administration and checks.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .region(Region::new(self.region.clone()))
            .force_path_style(!self.virtual_hosted_style)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Human-readable endpoint for messages.
    pub fn endpoint_display(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", self.region))
    }

    /// Checks that the bucket exists and the credentials may use it, so that a bad setup fails
    /// with one clear line instead of a flood of upload errors. Each attempt is bounded by the
    /// connect timeout; a transient failure (5xx, throttling, a reset or a stall) is tried
    /// again, up to [`PREFLIGHT_ATTEMPTS`] times with a short back-off, so a few requests lost
    /// in a row do not fail the command (found by CI: three attempts let one start in fifty die
    /// at a 30 % fault rate). All attempts together are bounded by three times the connect
    /// timeout (15 s by default): an endpoint that accepts connections but never answers fails
    /// about as quickly as one that refuses them. A 403 or 404 is not repeated.
    pub async fn preflight(&self, bucket: &str) -> Result<()> {
        let endpoint = self.endpoint_display();
        let bounded = aws_sdk_s3::config::Builder::default()
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(self.connect_timeout)
                    .operation_attempt_timeout(self.connect_timeout)
                    .operation_timeout(self.connect_timeout * 3)
                    .build(),
            )
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(PREFLIGHT_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(1)),
            );
        let head = self
            .client()
            .head_bucket()
            .bucket(bucket)
            .customize()
            .config_override(bounded)
            .send()
            .await;
        match head {
            Ok(_) => Ok(()),
            Err(e) => Err(classify_head_bucket(bucket, &endpoint, e)),
        }
    }
}

/// How many times the preflight's HEAD bucket is sent before a transient failure is reported.
pub const PREFLIGHT_ATTEMPTS: u32 = 8;

/// One clear line for a failed HEAD bucket (missing, denied, wrong region, unreachable).
pub(crate) fn classify_head_bucket<R: std::fmt::Debug>(
    bucket: &str,
    endpoint: &str,
    err: SdkError<aws_sdk_s3::operation::head_bucket::HeadBucketError, R>,
) -> Error {
    let reason = match &err {
        SdkError::ServiceError(se) => {
            let status = format!("{:?}", se.raw());
            let code = se.err().code().unwrap_or("");
            if se.err().is_not_found() || code == "NoSuchBucket" || status.contains("404") {
                format!(
                    "bucket `{bucket}` does not exist at {endpoint} (create it with `lakepipe bootstrap` or your S3 console)"
                )
            } else if code == "InvalidAccessKeyId"
                || code == "SignatureDoesNotMatch"
                || status.contains("403")
            {
                format!(
                    "access to bucket `{bucket}` at {endpoint} was denied: check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE) and the bucket policy"
                )
            } else if status.contains("301") || code == "PermanentRedirect" {
                format!(
                    "bucket `{bucket}` is in another region than the configured one: set AWS_REGION to the bucket's region"
                )
            } else {
                // A HEAD answer has no body, so often neither message nor code: the status
                // is all there is to say.
                let said = se
                    .err()
                    .message()
                    .filter(|m| !m.is_empty())
                    .or(Some(code).filter(|c| !c.is_empty()))
                    .map(str::to_string)
                    .unwrap_or_else(|| http_status(&status));
                format!("S3 at {endpoint} refused HEAD bucket `{bucket}`: {said}")
            }
        }
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                format!("S3 endpoint {endpoint} did not answer in time")
            } else if d.is_io() {
                format!("cannot reach S3 endpoint {endpoint} (connection failed)")
            } else {
                format!(
                    "cannot reach S3 endpoint {endpoint}: {}",
                    source_chain(&err)
                )
            }
        }
        SdkError::TimeoutError(_) => format!("S3 endpoint {endpoint} did not answer in time"),
        _ => format!(
            "cannot use bucket `{bucket}` at {endpoint}: {}",
            source_chain(&err)
        ),
    };
    Error::Unavailable { reason }
}

/// "HTTP 503" from the debug form of a raw response (`status: StatusCode(503)`), or "no
/// message" when it has none.
fn http_status(raw: &str) -> String {
    raw.split("StatusCode(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(|code| format!("HTTP {code}"))
        .unwrap_or_else(|| "no message".to_string())
}

/// Joins an error and its sources into one line.
pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Hands credentials from the AWS chain to object_store, caching them until shortly before
/// they expire (static credentials are resolved once).
#[derive(Debug)]
pub struct SdkCredentialProvider {
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl SdkCredentialProvider {
    /// Wraps the credential provider of `sdk`; `None` when the chain has no provider.
    pub fn new(sdk: &SdkConfig) -> Option<SdkCredentialProvider> {
        sdk.credentials_provider()
            .map(|provider| SdkCredentialProvider {
                provider,
                cached: Mutex::new(None),
            })
    }
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for SdkCredentialProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let mut cached = self.cached.lock().await;
        if let Some((cred, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|t| t > SystemTime::now() + Duration::from_secs(300));
            if fresh {
                return Ok(Arc::clone(cred));
            }
        }
        let c = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: format!("no usable AWS credentials: {}", source_chain(&e)).into(),
            }
        })?;
        let cred = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        });
        *cached = Some((Arc::clone(&cred), c.expiry()));
        Ok(cred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bodiless_refusal_is_named_by_its_status() {
        let raw = "Response { status: StatusCode(503), headers: Headers { .. }, body: SdkBody { inner: Once(None) } }";
        assert_eq!(http_status(raw), "HTTP 503");
        assert_eq!(http_status("Response { }"), "no message");
    }
}
