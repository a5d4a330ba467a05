//! The datasets the catalog knows, as data: where each lives, its partition layout, the file
//! names it may contain, its format and columns. One table drives verification, partition
//! metadata, Athena DDL and the query engine's external tables.

use chrono::{DateTime, Duration, NaiveDate, TimeZone as _, Utc};
use deltalake::arrow::datatypes::{DataType, Field};
use regex::Regex;

use crate::landing::DATASETS as LANDING;
use crate::sources::iot::DEVICES;
use crate::sources::stream::{Kind, all_streams};

/// How partitions are named below a dataset (or below its fan-out folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `year=YYYY/month=MM/day=DD` (the landing datasets).
    YearMonthDay,
    /// `date=YYYY-MM-DD/hour=HH` (the speed layer).
    DateHour,
}

impl Layout {
    /// Path segments of a partition.
    pub fn depth(self) -> usize {
        self.keys().len()
    }

    /// Partition column names.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Layout::YearMonthDay => &["year", "month", "day"],
            Layout::DateHour => &["date", "hour"],
        }
    }

    /// The template, for messages.
    pub fn template(self) -> &'static str {
        match self {
            Layout::YearMonthDay => "year=YYYY/month=MM/day=DD",
            Layout::DateHour => "date=YYYY-MM-DD/hour=HH",
        }
    }

    /// The start time of a partition, if `segs` name a real one in canonical form
    /// (zero-padded, existing date).
    pub fn parse(self, segs: &[&str]) -> Option<DateTime<Utc>> {
        if segs.len() != self.depth() {
            return None;
        }
        let value = |i: usize| {
            segs[i]
                .strip_prefix(self.keys()[i])
                .and_then(|s| s.strip_prefix('='))
        };
        let t = match self {
            Layout::YearMonthDay => {
                let (y, m, d) = (value(0)?, value(1)?, value(2)?);
                if y.len() != 4 || m.len() != 2 || d.len() != 2 {
                    return None;
                }
                let date =
                    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
                Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?)
            }
            Layout::DateHour => {
                let (d, h) = (value(0)?, value(1)?);
                let date = NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
                let hour: u32 = h.parse().ok()?;
                if h.len() != 2 || d.len() != 10 {
                    return None;
                }
                Utc.from_utc_datetime(&date.and_hms_opt(hour, 0, 0)?)
            }
        };
        (self.format(t) == segs.join("/")).then_some(t)
    }

    /// The partition holding time `t`.
    pub fn format(self, t: DateTime<Utc>) -> String {
        match self {
            Layout::YearMonthDay => t.format("year=%Y/month=%m/day=%d").to_string(),
            Layout::DateHour => t.format("date=%Y-%m-%d/hour=%H").to_string(),
        }
    }
}

/// A fan-out level above the partitions (IoT: one folder per device).
#[derive(Debug, Clone)]
pub struct Fanout {
    /// Partition column name (`device_id`).
    pub key: &'static str,
    /// Valid values.
    pub values: Vec<String>,
    /// Pattern of a valid folder name (`device_id=sensor_NNN`).
    pub pattern: Regex,
}

/// One dataset of the catalog.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Name in the metadata and as a table (`text_files`, `realtime_iot_sensors`).
    pub name: String,
    /// Key prefix, no trailing `/`.
    pub prefix: String,
    /// Optional fan-out level above the partitions.
    pub fanout: Option<Fanout>,
    /// Partition layout.
    pub layout: Layout,
    /// Valid file names.
    pub file: Regex,
    /// The file-name template, for messages.
    pub file_hint: String,
    /// `txt`, `csv` or `jsonl`.
    pub format: &'static str,
    /// File extension, with the dot.
    pub extension: &'static str,
    /// Columns of the files (partition columns excluded).
    pub columns: Vec<Field>,
    /// How far back an incremental refresh re-lists from the newest partition it has seen
    /// (the speed layer lands late events up to 72 h back).
    pub lookback: Duration,
}

impl Dataset {
    /// All partition columns, fan-out first.
    pub fn partition_keys(&self) -> Vec<&'static str> {
        self.fanout
            .iter()
            .map(|f| f.key)
            .chain(self.layout.keys().iter().copied())
            .collect()
    }

    /// The full partition template, for messages.
    pub fn template(&self) -> String {
        match &self.fanout {
            Some(f) => format!("{}=…/{}", f.key, self.layout.template()),
            None => self.layout.template().to_string(),
        }
    }
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn f64col(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

/// The landing datasets and the speed layer of every stream.
pub fn datasets() -> Vec<Dataset> {
    let prefix = |name: &str| {
        LANDING
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.prefix.to_string())
            .expect("landing dataset exists")
    };
    let re = |s: &str| Regex::new(s).expect("static pattern");
    let mut out = vec![
        Dataset {
            name: "text_files".into(),
            prefix: prefix("text"),
            fanout: None,
            layout: Layout::YearMonthDay,
            file: re(r"^document_\d+_\d{6}\.txt$"),
            file_hint: "document_{n}_{HHMMSS}.txt".into(),
            format: "txt",
            extension: ".txt",
            columns: vec![utf8("line")],
            lookback: Duration::zero(),
        },
        Dataset {
            name: "csv_files".into(),
            prefix: prefix("csv"),
            fanout: None,
            layout: Layout::YearMonthDay,
            file: re(r"^data_\d+_\d{6}\.csv$"),
            file_hint: "data_{n}_{HHMMSS}.csv".into(),
            format: "csv",
            extension: ".csv",
            columns: crate::sources::csv::HEADER
                .split(',')
                .map(|c| if c == "value" { f64col(c) } else { utf8(c) })
                .collect(),
            lookback: Duration::zero(),
        },
        Dataset {
            name: "iot_data".into(),
            prefix: prefix("iot"),
            fanout: Some(Fanout {
                key: "device_id",
                values: DEVICES.iter().map(|d| d.to_string()).collect(),
                pattern: re(r"^device_id=sensor_\d{3}$"),
            }),
            layout: Layout::YearMonthDay,
            file: re(r"^readings_\d{6}_[0-9a-f]{8}\.jsonl$"),
            file_hint: "readings_{HHMMSS}_{hex8}.jsonl".into(),
            format: "jsonl",
            extension: ".jsonl",
            // `device_id` is the partition column (Hive forbids a data column of the same name).
            columns: vec![
                utf8("location"),
                utf8("sensor_type"),
                utf8("timestamp"),
                f64col("temperature"),
                f64col("humidity"),
                f64col("pressure"),
                utf8("status"),
                utf8("reading_id"),
            ],
            lookback: Duration::zero(),
        },
    ];
    for s in all_streams() {
        let mut columns = vec![utf8(s.id_field), utf8(s.event_time_field)];
        columns.extend(s.fields.iter().map(|f| {
            let ty = match f.kind {
                Kind::Str | Kind::Enum(_) => DataType::Utf8,
                Kind::IntEnum(_) | Kind::Int { .. } => DataType::Int64,
                Kind::Float { .. } => DataType::Float64,
                Kind::Bool => DataType::Boolean,
                Kind::Tags(_) => DataType::List(std::sync::Arc::new(Field::new(
                    "item",
                    DataType::Utf8,
                    true,
                ))),
            };
            Field::new(f.name, ty, true)
        }));
        out.push(Dataset {
            name: format!("realtime_{}", s.name),
            prefix: format!("{}/{}", crate::layers::speed::PREFIX, s.name),
            fanout: None,
            layout: Layout::DateHour,
            file: re(&format!(
                r"^{}_\d{{8}}T\d{{6}}Z(_late|_future|_api-[0-9a-f]{{16}}-\d{{6,}}|_inbox-[0-9a-f]{{16}})?\.jsonl$",
                s.name
            )),
            file_hint: format!(
                "{}_{{YYYYMMDDTHHMMSSZ}}[_late|_future|_api-{{writer}}|_inbox-{{digest}}].jsonl",
                s.name
            ),
            format: "jsonl",
            extension: ".jsonl",
            columns,
            lookback: Duration::hours(73),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_accept_only_canonical_real_partitions() {
        let ymd = Layout::YearMonthDay;
        assert!(ymd.parse(&["year=2026", "month=02", "day=01"]).is_some());
        assert!(ymd.parse(&["year=2026", "month=2", "day=01"]).is_none());
        assert!(ymd.parse(&["year=2026", "month=02", "day=30"]).is_none());
        assert!(ymd.parse(&["yr=2026", "month=02", "day=01"]).is_none());
        assert!(ymd.parse(&["year=2026", "month=02"]).is_none());
        let dh = Layout::DateHour;
        let t = dh.parse(&["date=2026-02-01", "hour=05"]).unwrap();
        assert_eq!(
            dh.format(t - Duration::hours(73)),
            "date=2026-01-29/hour=04"
        );
        assert!(dh.parse(&["date=2026-02-01", "hour=24"]).is_none());
        assert!(dh.parse(&["date=2026-2-01", "hour=05"]).is_none());
    }

    #[test]
    fn file_patterns_match_what_the_writers_name() {
        let ds = datasets();
        let get = |n: &str| ds.iter().find(|d| d.name == n).unwrap();
        assert!(get("text_files").file.is_match("document_719_235955.txt"));
        assert!(!get("text_files").file.is_match("document_1.txt"));
        assert!(get("csv_files").file.is_match("data_0_000000.csv"));
        assert!(
            get("iot_data")
                .file
                .is_match("readings_000015_0a1b2c3d.jsonl")
        );
        assert!(
            !get("iot_data")
                .file
                .is_match("readings_000015_0A1B2C3D.jsonl")
        );
        let rt = get("realtime_api_logs");
        assert!(rt.file.is_match("api_logs_20260201T000500Z.jsonl"));
        assert!(rt.file.is_match("api_logs_20260201T000500Z_late.jsonl"));
        assert!(!rt.file.is_match("iot_sensors_20260201T000500Z.jsonl"));
        assert_eq!(ds.len(), 8);
    }
}
