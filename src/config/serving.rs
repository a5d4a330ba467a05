//! The serving layer's settings (`[serving]`): when `4-serving_layer_merge` runs.

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
}

fn default_schedule() -> String {
    DEFAULT_SERVING_SCHEDULE.to_string()
}

impl Default for ServingConfig {
    fn default() -> Self {
        ServingConfig {
            schedule: default_schedule(),
        }
    }
}

/// Checks `[serving]`: the schedule is a cron expression the scheduler accepts.
pub(super) fn validate(s: &ServingConfig) -> Result<()> {
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
        let bad = ServingConfig {
            schedule: "every minute".into(),
        };
        let e = validate(&bad).unwrap_err().to_string();
        assert!(e.contains("serving.schedule"), "{e}");
        assert!(toml::from_str::<ServingConfig>("cron = \"* * * * *\"\n").is_err());
    }
}
