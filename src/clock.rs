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

/// A simulated clock for `simulate` and tests: time moves only when the simulation sets it,
/// and sleeping (retry back-off) jumps forward instead of waiting.
#[derive(Debug)]
pub struct SimClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

impl SimClock {
    /// A simulated clock standing at `t`.
    pub fn new(t: DateTime<Utc>) -> SimClock {
        SimClock {
            now: std::sync::Mutex::new(t),
        }
    }

    /// Moves the clock to `t` (never backwards).
    pub fn advance_to(&self, t: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if t > *now {
            *now = t;
        }
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.advance_to(t);
        Box::pin(std::future::ready(()))
    }
}

/// Compact UTC timestamp used in object keys: `20260201T000500Z`.
pub fn compact(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Parses an RFC 3339 timestamp and normalises it to UTC.
/// A space instead of the `T` is accepted (Airflow renders `{{ logical_date }}` that way).
pub fn parse_utc(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    let normalised = match s.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &s[..10], &s[11..]),
        _ => s.to_string(),
    };
    DateTime::parse_from_rfc3339(&normalised)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp (e.g. 2026-02-01T00:00:00Z): {e}"))
}

/// The wall clock truncated to the second: the default logical date of a manual run
/// (`dags trigger`, the UI's trigger), as Airflow renders it.
pub fn now_to_the_second() -> DateTime<Utc> {
    let now = SystemClock.now();
    now - chrono::Duration::nanoseconds(now.timestamp_subsec_nanos() as i64)
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
        let airflow = parse_utc("2026-02-01 00:05:00+00:00").unwrap();
        assert_eq!(rfc3339_secs(airflow), "2026-02-01T00:05:00Z");
        assert_eq!(compact(airflow), "20260201T000500Z");
    }

    #[test]
    fn sim_clock_only_moves_forward_and_sleeps_instantly() {
        let t0 = parse_utc("2026-02-01T00:00:00Z").unwrap();
        let c = SimClock::new(t0);
        c.advance_to(t0 - chrono::Duration::hours(1));
        assert_eq!(c.now(), t0);
        futures::executor::block_on(c.sleep_until(t0 + chrono::Duration::minutes(5)));
        assert_eq!(c.now(), t0 + chrono::Duration::minutes(5));
    }
}
