//! Retry policy of lake requests: exponential backoff with jitter, bounded in count and time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How failed lake requests are retried (connection errors, 5xx, throttling).
///
/// Backoff doubles from `init_backoff_ms` up to `max_backoff_ms`, each wait drawn at random
/// below its cap (full jitter, as object_store implements it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt; 0 disables retries. Default 4.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// First backoff, in milliseconds. Default 100.
    #[serde(default = "default_init_backoff_ms")]
    pub init_backoff_ms: u64,
    /// Longest backoff, in milliseconds. Default 5000.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// No retry starts later than this many seconds after the first attempt. Default 20.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

fn default_max_retries() -> usize {
    4
}
fn default_init_backoff_ms() -> u64 {
    100
}
fn default_max_backoff_ms() -> u64 {
    5_000
}
fn default_timeout_s() -> u64 {
    20
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: default_max_retries(),
            init_backoff_ms: default_init_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            timeout_s: default_timeout_s(),
        }
    }
}

impl RetryConfig {
    /// The object_store form of this policy.
    pub fn to_object_store(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(self.init_backoff_ms),
                max_backoff: Duration::from_millis(self.max_backoff_ms),
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: Duration::from_secs(self.timeout_s),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        use super::config::within;
        within(
            "store.retry.max_retries",
            self.max_retries as u64,
            0..=100,
            "",
        )?;
        within("store.retry.timeout_s", self.timeout_s, 1..=3600, "")?;
        within(
            "store.retry.max_backoff_ms",
            self.max_backoff_ms,
            1..=600_000,
            "",
        )?;
        if self.init_backoff_ms == 0 || self.init_backoff_ms > self.max_backoff_ms {
            return Err((
                "store.retry.init_backoff_ms",
                "must be > 0 and <= max_backoff_ms".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_object_store_backoff() {
        let r = RetryConfig::default().to_object_store();
        assert_eq!(r.max_retries, 4);
        assert_eq!(r.backoff.init_backoff, Duration::from_millis(100));
        assert_eq!(r.backoff.base, 2.0);
        assert_eq!(r.retry_timeout, Duration::from_secs(20));
    }

    #[test]
    fn rejects_inverted_backoff() {
        let r = RetryConfig {
            init_backoff_ms: 10_000,
            ..RetryConfig::default()
        };
        assert!(r.validate().is_err());
    }
}
