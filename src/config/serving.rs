//! The serving layer's settings (`[serving]`): when `4-serving_layer_merge` runs, and how often
//! live serving (`up`, `serve`) may run between its runs.

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// The serving DAG's cadence by default: the seed's every 10 minutes.
pub const DEFAULT_SERVING_SCHEDULE: &str = "*/10 * * * *";

/// Serving settings (`[serving]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    /// Cron schedule (UTC, five fields) of `4-serving_layer_merge`: how fresh the unified
    /// tables, dashboards, alerts and analytics are. `* * * * *` serves every minute.
    ///
    /// Default `*/10 * * * *`.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Live serving under `up` and `serve`: serving also runs whenever speed-layer objects have
    /// landed, at most every `min_interval` seconds. Default true.
    #[serde(default = "default_live")]
    pub live: bool,
    /// Least time between two live serving runs, in seconds (0.1 to 3600). Default 1.
    #[serde(default = "default_min_interval")]
    pub min_interval: f64,
}

fn default_live() -> bool {
    true
}

fn default_min_interval() -> f64 {
    1.0
}

impl ServingConfig {
    /// [`Self::min_interval`] as a duration.
    pub fn min_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.min_interval.clamp(0.1, 3600.0))
    }
}

fn default_schedule() -> String {
    DEFAULT_SERVING_SCHEDULE.to_string()
}

impl Default for ServingConfig {
    fn default() -> Self {
        ServingConfig {
            schedule: default_schedule(),
            live: default_live(),
            min_interval: default_min_interval(),
        }
    }
}

/// Checks `[serving]`: the schedule is a cron expression the scheduler accepts.
pub(super) fn validate(s: &ServingConfig) -> Result<()> {
    if !(0.1..=3600.0).contains(&s.min_interval) {
        return Err(Error::Invalid {
            key: "serving.min_interval",
            message: format!("{} seconds: must be between 0.1 and 3600", s.min_interval),
        });
    }
    crate::scheduler::Schedule::cron(&s.schedule)
        .map(|_| ())
        .map_err(|message| Error::Invalid {
            key: "serving.schedule",
            message,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_a_toml_literal_and_validation() {
        let d: ServingConfig = toml::from_str("").unwrap();
        assert_eq!(d.schedule, "*/10 * * * *");
        assert!(validate(&d).is_ok());
        let s: ServingConfig = toml::from_str("schedule = \"* * * * *\"\n").unwrap();
        assert!(validate(&s).is_ok());
        assert!(d.live);
        assert_eq!(d.min_interval(), std::time::Duration::from_secs(1));
        let fast: ServingConfig = toml::from_str("min_interval = 0.25\nlive = false\n").unwrap();
        assert_eq!(fast.min_interval(), std::time::Duration::from_millis(250));
        assert!(!fast.live);
        let e = validate(&ServingConfig {
            min_interval: 0.0,
            ..ServingConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("serving.min_interval"), "{e}");
        let bad = ServingConfig {
            schedule: "every minute".into(),
            ..ServingConfig::default()
        };
        let e = validate(&bad).unwrap_err().to_string();
        assert!(e.contains("serving.schedule"), "{e}");
        assert!(toml::from_str::<ServingConfig>("cron = \"* * * * *\"\n").is_err());
    }
}
