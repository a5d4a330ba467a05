//! Upkeep of the serving tables (`[upkeep]`): when small files are compacted, how often the
//! Delta log is checkpointed, and how long removed files and old log entries are kept.

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// Upkeep settings (`[upkeep]`), read by the `upkeep` task of `4-serving_layer_merge`
/// (docs/upkeep.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpkeepConfig {
    /// Hours a data file stays on storage after a commit removed it, in the serving runs'
    /// logical time: readers holding an older snapshot keep working for that long, and time
    /// travel reaches that far back. Then `vacuum` deletes it.
    ///
    /// 1–168 (Delta drops a removal from its checkpoints once it is 7 days old, after which
    /// vacuum cannot find the file any more, so a longer retention would leave files behind).
    /// Default 24: serving tables are derived and rewritten every few minutes, and a reader's
    /// snapshot is never a day old.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,

    /// Hours a Delta log entry (`_delta_log/*.json`, older checkpoints) is kept, in logical
    /// time; older entries below a checkpoint are deleted. At least `retention_hours`, so that
    /// every version whose files are still kept can be read.
    ///
    /// 1–87600. Default 48 (Delta's `logRetentionDuration` is 30 days): opening or committing
    /// to a table lists its `_delta_log` after the current version, and on a local lake that
    /// listing reads every entry's name (`store/offset_listing.rs`); 30 days of 10-minute runs
    /// are 4,320 entries per table.
    #[serde(default = "default_log_retention_hours")]
    pub log_retention_hours: u64,

    /// A checkpoint is written once the log has grown by this many commits since the last one,
    /// so that opening a table reads one checkpoint and at most this many commits.
    ///
    /// 2–10000. Default 20.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,

    /// A date partition (or an unpartitioned table) is compacted once it holds more than this
    /// many small files (smaller than the writers' target file size).
    ///
    /// 2–10000. Default 16.
    #[serde(default = "default_small_file_threshold")]
    pub small_file_threshold: u64,
}

fn default_retention_hours() -> u64 {
    24
}

fn default_log_retention_hours() -> u64 {
    48
}

fn default_checkpoint_every() -> u64 {
    20
}

fn default_small_file_threshold() -> u64 {
    16
}

impl Default for UpkeepConfig {
    fn default() -> Self {
        UpkeepConfig {
            retention_hours: default_retention_hours(),
            log_retention_hours: default_log_retention_hours(),
            checkpoint_every: default_checkpoint_every(),
            small_file_threshold: default_small_file_threshold(),
        }
    }
}

/// Checks `[upkeep]`: bounds, and a log kept at least as long as the files it describes.
pub(super) fn validate(u: &UpkeepConfig) -> Result<()> {
    let between = |key: &'static str, v: u64, lo: u64, hi: u64, unit: &str| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(Error::Invalid {
                key,
                message: format!("{v} is not between {lo} and {hi}{unit}"),
            })
        }
    };
    between(
        "upkeep.retention_hours",
        u.retention_hours,
        1,
        168,
        " hours",
    )?;
    between(
        "upkeep.log_retention_hours",
        u.log_retention_hours,
        1,
        87_600,
        " hours",
    )?;
    between(
        "upkeep.checkpoint_every",
        u.checkpoint_every,
        2,
        10_000,
        " commits",
    )?;
    between(
        "upkeep.small_file_threshold",
        u.small_file_threshold,
        2,
        10_000,
        " files",
    )?;
    if u.log_retention_hours < u.retention_hours {
        return Err(Error::Invalid {
            key: "upkeep.log_retention_hours",
            message: format!(
                "{} hours is shorter than retention_hours ({}): the log must describe every file still kept",
                u.log_retention_hours, u.retention_hours
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_a_toml_literal_and_validation() {
        let d: UpkeepConfig = toml::from_str("").unwrap();
        assert_eq!(d, UpkeepConfig::default());
        assert_eq!(
            (
                d.retention_hours,
                d.log_retention_hours,
                d.checkpoint_every,
                d.small_file_threshold
            ),
            (24, 48, 20, 16)
        );
        assert!(validate(&d).is_ok());

        let u: UpkeepConfig = toml::from_str(
            "retention_hours = 2\nlog_retention_hours = 3\ncheckpoint_every = 10\nsmall_file_threshold = 4\n",
        )
        .unwrap();
        assert!(validate(&u).is_ok());
        assert_eq!(u.checkpoint_every, 10);

        let refused = |toml: &str| {
            validate(&toml::from_str(toml).unwrap())
                .unwrap_err()
                .to_string()
        };
        let e = refused("retention_hours = 0\n");
        assert!(
            e.contains("upkeep.retention_hours") && e.contains("between 1 and 168 hours"),
            "{e}"
        );
        assert!(refused("retention_hours = 169\n").contains("between 1 and 168 hours"));
        let e = refused("retention_hours = 48\nlog_retention_hours = 24\n");
        assert!(
            e.contains("upkeep.log_retention_hours") && e.contains("shorter than retention_hours"),
            "{e}"
        );
        assert!(refused("checkpoint_every = 1\n").contains("upkeep.checkpoint_every"));
        assert!(refused("small_file_threshold = 1\n").contains("upkeep.small_file_threshold"));
        assert!(toml::from_str::<UpkeepConfig>("retain = 3\n").is_err());
    }
}
