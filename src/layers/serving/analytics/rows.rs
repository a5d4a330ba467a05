//! The rows of `stream_dates` and of the master summary as Rust values and Arrow batches: what
//! their SQL ([`super::AnalyticsPlan::stream_dates_sql`], [`super::master_summary_sql`]) gives,
//! in the same columns, types and nullability, made without planning a query.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::{MASTER_SUMMARY_PATH, STREAM_DATES_PATH};
use crate::layers::serving::{Error, Result};
use crate::sources::stream::all_streams;

/// One row of `stream_dates`: a stream's figures on one event date.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StreamDate {
    pub(super) stream: String,
    /// The event date (a partition value: null only in a table another writer made so).
    pub(super) date: Option<String>,
    pub(super) events: i64,
    pub(super) from_batch: i64,
    pub(super) from_speed: i64,
    pub(super) quarantined: i64,
    /// The newest event time (micros since the epoch).
    pub(super) last_event_time: Option<i64>,
}

/// The type of the timestamp columns: micros, UTC.
pub(super) fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A timestamp column ([`utc`]) of `values`.
pub(super) fn utc_micros(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

/// `rows` as `stream_dates` holds them, published at `t`: the columns, types and nullability of
/// [`AnalyticsPlan::stream_dates_sql`]'s result.
pub(super) fn stream_dates_batch(rows: &[StreamDate], t: DateTime<Utc>) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("stream", DataType::Utf8, false),
        Field::new("events", DataType::Int64, false),
        Field::new("from_batch", DataType::Int64, true),
        Field::new("from_speed", DataType::Int64, true),
        Field::new("quarantined", DataType::Int64, false),
        Field::new("last_event_time", utc(), true),
        Field::new("published_at", utc(), false),
        Field::new("date", DataType::Utf8, true),
    ]));
    let int = |f: fn(&StreamDate) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| &r.stream),
            )),
            int(|r| r.events),
            int(|r| r.from_batch),
            int(|r| r.from_speed),
            int(|r| r.quarantined),
            utc_micros(rows.iter().map(|r| r.last_event_time)),
            utc_micros(rows.iter().map(|_| Some(t.timestamp_micros()))),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.date.as_deref()),
            )),
        ],
    )
    .map_err(Error::arrow(STREAM_DATES_PATH))
}

/// The master summary at `t` of the rows of `stream_dates`: what [`master_summary_sql`] gives,
/// one row per stream by name, in its columns, types and nullability.
pub(super) fn master_summary_batch(rows: &[StreamDate], t: DateTime<Utc>) -> Result<RecordBatch> {
    let mut streams: Vec<(&str, &str)> = all_streams().iter().map(|s| (s.name, s.title)).collect();
    streams.sort_unstable();
    let mut sums = Vec::with_capacity(streams.len());
    for (name, _) in &streams {
        let mut sum = StreamDate {
            stream: name.to_string(),
            date: None,
            events: 0,
            from_batch: 0,
            from_speed: 0,
            quarantined: 0,
            last_event_time: None,
        };
        let mut latest: Option<&str> = None;
        for r in rows.iter().filter(|r| r.stream == *name) {
            sum.events += r.events;
            sum.from_batch += r.from_batch;
            sum.from_speed += r.from_speed;
            sum.quarantined += r.quarantined;
            sum.last_event_time = sum.last_event_time.max(r.last_event_time);
            latest = latest.max(r.date.as_deref());
        }
        sums.push((sum, latest));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("domain", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("total_records", DataType::Int64, false),
        Field::new("latest_date", DataType::Utf8, true),
        Field::new("from_batch", DataType::Int64, false),
        Field::new("from_speed", DataType::Int64, false),
        Field::new("quarantined", DataType::Int64, false),
        Field::new("last_event_time", utc(), true),
        Field::new("published_at", utc(), false),
    ]));
    let int = |f: fn(&StreamDate) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(sums.iter().map(|(s, _)| f(s))))
    };
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(streams.iter().map(|s| s.1))),
            Arc::new(StringArray::from_iter_values(streams.iter().map(|s| s.0))),
            int(|s| s.events),
            Arc::new(StringArray::from_iter(sums.iter().map(|(_, d)| *d))),
            int(|s| s.from_batch),
            int(|s| s.from_speed),
            int(|s| s.quarantined),
            utc_micros(sums.iter().map(|(s, _)| s.last_event_time)),
            utc_micros(sums.iter().map(|_| Some(t.timestamp_micros()))),
        ],
    )
    .map_err(Error::arrow(MASTER_SUMMARY_PATH))
}
