//! Time for the pipeline. Schedule time — fire times, logical dates, data intervals, windows —
//! comes from a [`Clock`], so that live mode, `simulate` and tests drive the same code. Real
//! time — when a log line was written, when a lease expires, when a record was changed — comes
//! from [`wall_now`]. Nothing else reads the system clock.

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

/// The system clock (UTC), for facts about real time that no simulation moves: log line and
/// operation-log timestamps, lease expiry, when a record was written.
pub fn wall_now() -> DateTime<Utc> {
    Utc::now()
}

/// The wall clock (UTC), used in live mode.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        wall_now()
    }

    fn sleep_until(
        &self,
        t: DateTime<Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Re-check after each sleep: the wall clock may be adjusted while we wait.
            loop {
                let left = t - wall_now();
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

/// The instants lakepipe accepts as logical dates, data-interval bounds and range bounds, as
/// seconds since the epoch: [1970-01-01T00:00:00Z, 2200-01-01T00:00:00Z). Outside it a cron
/// search runs for minutes and a data interval can span millennia (a speed-layer run at
/// 9999-12-31 asked for a terabyte), so such dates are refused where they enter: flags, HTTP
/// requests, queue entries and run records read back.
const SUPPORTED_SECS: std::ops::Range<i64> = 0..7_258_118_400;

/// The supported range of instants (see [`check_supported`]).
pub fn supported_range() -> std::ops::Range<DateTime<Utc>> {
    let at = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
    at(SUPPORTED_SECS.start)..at(SUPPORTED_SECS.end)
}

/// `t` if it lies in the supported range, else a one-line reason.
pub fn check_supported(t: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let range = supported_range();
    if range.contains(&t) {
        Ok(t)
    } else {
        Err(format!(
            "{} is outside the supported range {} to {} (exclusive)",
            rfc3339_secs(t),
            rfc3339_secs(range.start),
            rfc3339_secs(range.end)
        ))
    }
}

/// Parses an RFC 3339 timestamp, normalises it to UTC and checks that it lies in the
/// supported range ([`check_supported`]).
/// A space instead of the `T` is accepted (Airflow renders `{{ logical_date }}` that way).
pub fn parse_utc(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    let normalised = match s.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &s[..10], &s[11..]),
        _ => s.to_string(),
    };
    let t = DateTime::parse_from_rfc3339(&normalised)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("`{s}` is not an RFC 3339 timestamp (e.g. 2026-02-01T00:00:00Z): {e}")
        })?;
    check_supported(t)
}

/// Microseconds since the epoch of an RFC 3339 timestamp, exactly as chrono's
/// `parse_from_rfc3339` reads it (`None` where chrono refuses it). The shape every producer
/// writes, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, is read here in one pass (the calendar is still
/// chrono's); any other spelling — offsets, a lower-case `t`, a leap second — goes to chrono.
pub fn rfc3339_micros(s: &str) -> Option<i64> {
    utc_micros(s.as_bytes()).or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_micros())
    })
}

/// [`rfc3339_micros`] of the `Z` shape with seconds below 60, else `None`.
fn utc_micros(b: &[u8]) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    if b.last() != Some(&b'Z') {
        return None;
    }
    let nanos = match b.len() {
        20 => 0,
        // `.` and one to nine digits, scaled to nanoseconds.
        n @ 22..=30 if at(19, b'.') => num(20..n - 1)? * 10u32.pow((30 - n) as u32),
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if sec > 59 {
        return None;
    }
    Some(
        date.and_hms_nano_opt(h, m, sec, nanos)?
            .and_utc()
            .timestamp_micros(),
    )
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

    /// The one-pass reading agrees with chrono on the `Z` shape and around it: every date
    /// field out of range, fractions of zero to twelve digits, other separators and offsets.
    #[test]
    fn rfc3339_micros_reads_as_chrono_does() {
        let chrono = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_micros())
        };
        let mut cases: Vec<String> = Vec::new();
        for date in [
            "2026-02-01",
            "2024-02-29",
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "0000-01-01",
            "9999-12-31",
            "1969-12-31",
            "2026-1-01",
            "2026-02-0x",
        ] {
            for time in [
                "00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:60:00", "1:02:03",
            ] {
                for frac in [
                    "",
                    ".",
                    ".1",
                    ".139",
                    ".999999",
                    ".9999999",
                    ".123456789",
                    ".1234567891",
                    ".123456789123",
                    ".12a",
                ] {
                    for end in ["Z", "z", "+00:00", "-05:30", "", "ZZ"] {
                        cases.push(format!("{date}T{time}{frac}{end}"));
                    }
                }
            }
            cases.push(format!("{date} 10:00:00Z"));
            cases.push(format!("{date}t10:00:00Z"));
        }
        cases.extend(
            [
                "",
                "Z",
                "2026-02-01TZ",
                "2026-02-01T10:00:00.Z",
                "２026-02-01T10:00:00Z",
            ]
            .map(String::from),
        );
        for c in &cases {
            assert_eq!(rfc3339_micros(c), chrono(c), "{c:?}");
        }
        assert_eq!(
            rfc3339_micros("2026-02-01T10:00:00.139Z"),
            Some(1_769_940_000_139_000)
        );
        // The one pass read exactly the valid `Z` cases: 5 dates x 2 times x 6 fractions.
        let read = cases.iter().filter(|c| utc_micros(c.as_bytes()).is_some());
        assert_eq!(read.count(), 60);
    }

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
    fn dates_outside_the_supported_range_are_refused() {
        for s in [
            "9999-12-31T23:59:59Z",
            "2200-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2199-12-31T23:00:00-02:00",
        ] {
            let e = parse_utc(s).unwrap_err();
            assert!(e.contains("outside the supported range"), "{s}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        for s in ["1970-01-01T00:00:00Z", "2199-12-31T23:59:59Z"] {
            assert!(parse_utc(s).is_ok(), "{s}");
        }
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
