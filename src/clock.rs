//! Time for the pipeline: every component asks a [`Clock`], never the wall clock directly,
//! so live mode and tests drive the same code.

use chrono::{DateTime, Utc};

/// A source of the current UTC time that can also wait until a given instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time (UTC).
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once [`Clock::now`] has reached `t`.
    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// The wall clock (UTC), used in live mode.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Re-check after each sleep: the wall clock may be adjusted while we wait.
            loop {
                let left = t - Utc::now();
                match left.to_std() {
                    Ok(d) if !d.is_zero() => tokio::time::sleep(d).await,
                    _ => return,
                }
            }
        })
    }
}

/// Parses an RFC 3339 timestamp and normalises it to UTC.
pub fn parse_utc(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp (e.g. 2026-02-01T00:00:00Z): {e}"))
}

/// Formats a UTC time as RFC 3339 with whole seconds and a `Z`.
pub fn rfc3339_secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Formats a UTC time as RFC 3339 with milliseconds and a `Z`.
pub fn rfc3339_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_offsets_to_utc() {
        let t = parse_utc("2026-02-01T01:30:00+02:00").unwrap();
        assert_eq!(rfc3339_secs(t), "2026-01-31T23:30:00Z");
        assert!(parse_utc("2026-02-01 01:30").is_err());
    }
}
