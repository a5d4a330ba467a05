//! `silver_<stream>`: recomputes `batch/silver/<stream>` and `batch/quarantine/<stream>` for
//! every event date the run's files touch, from all bronze rows of those dates.
//!
//! A line bronze kept as bytes because it was not landed as valid UTF-8 breaks `valid_utf8`
//! (the value names the offset of the first bad byte). Each raw line is parsed (into the
//! stream's fields only, strings borrowed from the line: [`crate::sources::scalar`]), trimmed,
//! enum values normalised to their canonical spelling (cosmetic noise is fixed, not rejected),
//! typed by the stream's schema (`sources`), and checked against the stream's [`expectations`]
//! — declared as data, each with an action in the style of Delta Live Tables: `warn` (kept,
//! counted), `drop` (to quarantine with the rule, the offending value, the raw line and its
//! lineage) or `fail` (the task fails with the row).
//! One pass over bronze feeds both tables: cleaning runs in every partition of the bronze scan,
//! typed rows flow on to silver and quarantine rows go through a channel to the quarantine
//! write, which runs at the same time. Valid rows get the derived columns of [`derived`] and
//! are written at once, the cleaning partitions taking turns at the table's one Parquet writer
//! ([`super::replace`]); their keys alone (id, ingest run, file, line) are de-duplicated by the
//! stream's id, first landed wins, by a grace hash spilled to disk ([`super::dedup`]), and the
//! later copies it finds are dropped from the files written before anything is committed.
//! Both tables are replaced for the affected dates only (Delta replace-where).
//!
//! The task checks `bronze = silver + quarantine + duplicates` on the committed tables for
//! those dates and fails if it does not hold.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray as _, BooleanBuilder, Float64Builder, Int64Array, Int64Builder,
    ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::config::ConfigOptions;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::TaskContext as DfTaskContext;
use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties as _, SendableRecordBatchStream,
};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::delta_datafusion::DeltaSessionContext;
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::mpsc;

use super::lineage;
use super::replace::{RowKeys, Writes};
use crate::clock::rfc3339_micros;
use crate::scheduler::{Fatal, TaskBody, TaskContext, TaskResult};
use crate::sources::scalar::{Scalar, parse_record};
use crate::sources::stream::{Kind, StreamSpec};
use crate::store::{Store, register_delta};
use deltalake::kernel::transaction::CommitProperties;

/// Memory DataFusion may use before sorts and aggregates spill to disk.
pub const MEMORY_LIMIT: usize = 512 << 20;

/// What happens to a row that breaks an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep the row; count it.
    Warn,
    /// Send the row to quarantine.
    Drop,
    /// Fail the task.
    Fail,
}

/// What an expectation checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The line was landed as valid UTF-8 (bronze keeps the bytes of one that was not).
    ValidUtf8,
    /// The line is a JSON object.
    ValidJson,
    /// The id is a non-empty string.
    IdPresent,
    /// `event_time` is an RFC 3339 time.
    EventTimeParses,
    /// `event_time` is not after the batch run.
    NotFuture,
    /// `event_time` is not before the day the run closes (late data).
    OnTime,
    /// The field with this index in the stream's schema has its type and allowed values.
    Field(usize),
}

/// One expectation: rule name, check, action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Rule name, as written to quarantine.
    pub rule: String,
    /// What it checks.
    pub check: Check,
    /// What a violation does.
    pub action: Action,
}

/// The expectations of a stream, in evaluation order (a row is quarantined under the first
/// `drop` rule it breaks).
pub fn expectations(spec: &StreamSpec) -> Vec<Expectation> {
    let e = |rule: &str, check, action| Expectation {
        rule: rule.into(),
        check,
        action,
    };
    let mut v = vec![
        e("valid_utf8", Check::ValidUtf8, Action::Drop),
        e("valid_json", Check::ValidJson, Action::Drop),
        e("id_present", Check::IdPresent, Action::Drop),
        e("event_time_parses", Check::EventTimeParses, Action::Drop),
        e("event_time_not_future", Check::NotFuture, Action::Drop),
        e("event_time_on_time", Check::OnTime, Action::Warn),
    ];
    for (i, f) in spec.fields.iter().enumerate() {
        v.push(e(
            &format!("{}_valid", f.name),
            Check::Field(i),
            Action::Drop,
        ));
    }
    v
}

/// Derived silver columns per stream: (name, SQL expression over the typed columns).
pub fn derived(spec: &StreamSpec) -> Vec<(String, String)> {
    let d = |n: &str, sql: String| (n.to_string(), sql);
    match spec.name {
        "iot_sensors" => {
            use crate::sources::iot_sensors::{SENSOR_TYPES, VALUE_RANGES};
            // Normal band: the middle two thirds of the type's range (mean ± 2σ of the
            // generator's distribution).
            let arms: Vec<String> = SENSOR_TYPES
                .iter()
                .zip(VALUE_RANGES)
                .map(|(t, (lo, hi))| {
                    let w = (hi - lo) / 6.0;
                    format!("WHEN '{t}' THEN value < {} OR value > {}", lo + w, hi - w)
                })
                .collect();
            vec![
                d("is_anomaly", format!("CASE sensor_type {} ELSE false END", arms.join(" "))),
                d("battery_low", "battery_level < 20".into()),
            ]
        }
        "api_logs" => vec![
            d("is_error", "status_code >= 400".into()),
            d("is_server_error", "status_code >= 500".into()),
            d("is_slow", "response_time_ms > 1000".into()),
            d(
                "response_category",
                "concat(CAST(status_code / 100 AS VARCHAR), 'xx')".into(),
            ),
        ],
        "social_media" => vec![d(
            "engagement_tier",
            "CASE WHEN engagement_score < 30 THEN 'low' WHEN engagement_score < 70 THEN 'medium' ELSE 'high' END".into(),
        )],
        "ecommerce_clickstream" => vec![
            d("cart_value", "price * quantity".into()),
            d(
                "funnel_stage",
                "CASE event_type WHEN 'page_view' THEN 'awareness' WHEN 'product_view' THEN 'interest' \
                 WHEN 'add_to_cart' THEN 'consideration' WHEN 'remove_from_cart' THEN 'consideration' \
                 WHEN 'checkout_start' THEN 'intent' WHEN 'checkout_complete' THEN 'conversion' END"
                    .into(),
            ),
        ],
        "financial_transactions" => {
            use crate::sources::financial_transactions::{CURRENCIES, PER_USD};
            let arms: Vec<String> = CURRENCIES
                .iter()
                .zip(PER_USD)
                .map(|(c, r)| format!("WHEN '{c}' THEN amount / {r}"))
                .collect();
            vec![
                d(
                    "risk_level",
                    "CASE WHEN risk_score < 0.3 THEN 'low' WHEN risk_score < 0.7 THEN 'medium' ELSE 'high' END".into(),
                ),
                d("amount_usd", format!("round(CASE currency {} END, 2)", arms.join(" "))),
            ]
        }
        _ => Vec::new(),
    }
}

/// The lineage columns that order the copies of one event, first landed first: ingest run,
/// file, line. Silver's sort and the serving layer's [`first_landed`] both keep the first.
const LANDING_ORDER: [&str; 3] = ["_ingest_run", "_source_key", "_line"];

/// Lineage columns carried from bronze.
const LINEAGE: [&str; 5] = ["_source_key", "_line", "_ingest_run", "_batch_run", "date"];

fn lineage_fields() -> Vec<Field> {
    LINEAGE
        .iter()
        .map(|n| {
            let ty = if *n == "_line" {
                DataType::Int64
            } else {
                DataType::Utf8
            };
            Field::new(*n, ty, false)
        })
        .collect()
}

fn arrow_type(kind: Kind) -> DataType {
    match kind {
        Kind::Str | Kind::Enum(_) => DataType::Utf8,
        Kind::IntEnum(_) | Kind::Int { .. } => DataType::Int64,
        Kind::Float { .. } => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Tags(_) => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
    }
}

/// Schema of the typed rows before de-duplication.
pub fn clean_schema(spec: &StreamSpec) -> SchemaRef {
    let mut fields = vec![
        Field::new(spec.id_field, DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ];
    fields.extend(
        spec.fields
            .iter()
            .map(|f| Field::new(f.name, arrow_type(f.kind), true)),
    );
    fields.extend(lineage_fields());
    Arc::new(Schema::new(fields))
}

/// Schema of quarantine rows.
pub fn quarantine_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("rule", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("raw", DataType::Utf8, false),
    ];
    fields.extend(lineage_fields());
    Arc::new(Schema::new(fields))
}

/// Counters of one pass over bronze.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    /// Bronze rows read.
    pub rows_in: u64,
    /// Rows that passed every `drop` rule.
    pub clean: u64,
    /// Rows sent to quarantine, by rule.
    pub quarantined: BTreeMap<String, u64>,
    /// Rows kept with a `warn` rule broken, by rule.
    pub warnings: BTreeMap<String, u64>,
}

/// A broken rule.
#[derive(Debug, Clone, PartialEq)]
struct Violation {
    rule: String,
    value: String,
    action: Action,
}

/// A row that passed: id, event time (µs) and the parsed slots, of which the fields' (from
/// [`FIELD_SLOTS`] on) hold the checked values, still borrowed from the raw line where they can
/// be (null for a field no rule checked).
type Row<'a> = (Cow<'a, str>, i64, Vec<Scalar<'a>>);

/// Cleans and checks raw lines of one stream for one batch run.
#[derive(Debug)]
pub struct Cleaner {
    spec: &'static StreamSpec,
    rules: Vec<Expectation>,
    /// The keys a line is parsed into: the id, `event_time`, then the stream's fields.
    names: Vec<&'static str>,
    /// The run's logical date, in µs: later events are in the future.
    run_micros: i64,
    /// The event date the run closes: earlier events are late.
    closed: chrono::NaiveDate,
    clean: SchemaRef,
    quarantine: SchemaRef,
}

/// The slots of the id and `event_time` in a parsed line; the fields follow.
const ID_SLOT: usize = 0;
const TIME_SLOT: usize = 1;
const FIELD_SLOTS: usize = 2;

/// What [`Cleaner::apply`] makes of a bronze batch: the typed rows, and the rows that broke a
/// `drop` rule with rule, value and lineage.
#[derive(Debug)]
pub struct Cleaned {
    /// Rows in [`clean_schema`].
    pub clean: RecordBatch,
    /// Rows in [`quarantine_schema`].
    pub quarantine: RecordBatch,
}

/// Where `line` stops being UTF-8 and the bytes there (`invalid UTF-8 at byte 17: ff fe`),
/// if it does.
fn utf8_error(line: &[u8]) -> Option<String> {
    let e = std::str::from_utf8(line).err()?;
    let at = e.valid_up_to();
    // `None`: the line ends inside a character.
    let len = e.error_len().unwrap_or(line.len() - at);
    let bad: Vec<String> = line[at..at + len]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(format!("invalid UTF-8 at byte {at}: {}", bad.join(" ")))
}

/// Canonical spelling of `s` in `set` (trimmed, case-insensitive), if any.
fn canonical(set: &[&'static str], s: &str) -> Option<&'static str> {
    let t = s.trim();
    set.iter().copied().find(|c| c.eq_ignore_ascii_case(t))
}

/// `s` in its canonical spelling if it has one in `set`, else unchanged (the field check
/// rejects it then).
fn in_canonical_spelling<'a>(set: &[&'static str], s: Cow<'a, str>) -> Cow<'a, str> {
    canonical(set, &s).map_or(s, Cow::Borrowed)
}

/// `s` without surrounding white space, still borrowed if it was.
fn trimmed(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    }
}

impl Cleaner {
    /// A cleaner for `spec` in the batch run at `run`.
    pub fn new(spec: &'static StreamSpec, run: DateTime<Utc>, rules: Vec<Expectation>) -> Cleaner {
        let mut names = vec![spec.id_field, "event_time"];
        names.extend(spec.fields.iter().map(|f| f.name));
        Cleaner {
            spec,
            rules,
            names,
            run_micros: run.timestamp_micros(),
            closed: (run - Duration::days(1)).date_naive(),
            clean: clean_schema(spec),
            quarantine: quarantine_schema(),
        }
    }

    /// Checks one line — `raw`, and `landed`, the bytes of a line that was not valid UTF-8 as
    /// bronze keeps them (`raw` then has U+FFFD in their place); returns the typed row, or the
    /// first `drop`/`fail` violation, plus the `warn` rules it broke.
    fn check<'a>(
        &self,
        raw: &'a str,
        landed: Option<&[u8]>,
    ) -> (Result<Row<'a>, Violation>, Vec<String>) {
        let mut warned = Vec::new();
        let mut slots: Option<Vec<Scalar<'a>>> = None;
        let mut id = Cow::Borrowed("");
        let mut micros = 0i64;
        // The fields that passed their check, by bit: the others go out as nulls.
        let mut checked: u128 = 0;
        for e in &self.rules {
            let broken: Option<String> = match (e.check, slots.as_mut()) {
                (Check::ValidUtf8, _) => landed.and_then(utf8_error),
                (Check::ValidJson, _) => match parse_record(raw, &self.names) {
                    Ok(s) => {
                        slots = Some(s);
                        None
                    }
                    Err(_) => Some(raw.chars().take(200).collect()),
                },
                (_, None) => None, // only reachable if valid_json is not a drop rule
                (Check::IdPresent, Some(s)) => {
                    match std::mem::replace(&mut s[ID_SLOT], Scalar::Null) {
                        Scalar::Str(v) if !v.trim().is_empty() => {
                            id = trimmed(v);
                            None
                        }
                        other => {
                            let text = other.to_string();
                            s[ID_SLOT] = other;
                            Some(text)
                        }
                    }
                }
                (Check::EventTimeParses, Some(s)) => {
                    let v = &s[TIME_SLOT];
                    match v.as_str().and_then(|t| rfc3339_micros(t.trim())) {
                        Some(t) => {
                            micros = t;
                            None
                        }
                        None => Some(v.to_string()),
                    }
                }
                (Check::NotFuture, Some(s)) => {
                    (micros > self.run_micros).then(|| s[TIME_SLOT].to_string())
                }
                (Check::OnTime, _) => {
                    let day = DateTime::from_timestamp_micros(micros).map(|t| t.date_naive());
                    day.filter(|d| *d < self.closed).map(|d| d.to_string())
                }
                (Check::Field(i), Some(s)) => {
                    let f = &self.spec.fields[i];
                    let v = normalise(
                        f.kind,
                        std::mem::replace(&mut s[FIELD_SLOTS + i], Scalar::Null),
                    );
                    match f.check_scalar(&v) {
                        Ok(()) => {
                            s[FIELD_SLOTS + i] = v;
                            checked |= 1 << i;
                            None
                        }
                        Err(_) => Some(v.to_string()),
                    }
                }
            };
            if let Some(value) = broken {
                match e.action {
                    Action::Warn => warned.push(e.rule.clone()),
                    action => {
                        return (
                            Err(Violation {
                                rule: e.rule.clone(),
                                value,
                                action,
                            }),
                            warned,
                        );
                    }
                }
            }
        }
        let Some(mut slots) = slots else {
            return (
                Err(Violation {
                    rule: "valid_json".into(),
                    value: raw.chars().take(200).collect(),
                    action: Action::Drop,
                }),
                warned,
            );
        };
        for (i, v) in slots[FIELD_SLOTS..].iter_mut().enumerate() {
            if checked & (1 << i) == 0 {
                *v = Scalar::Null;
            }
        }
        (Ok((id, micros, slots)), warned)
    }

    /// Splits a bronze batch into typed rows and quarantine rows, counting both.
    pub fn apply(
        &self,
        b: &RecordBatch,
        counts: &Mutex<Counts>,
    ) -> Result<Cleaned, DataFusionError> {
        // Scans may hand out string views: cast to the types this cleaner writes.
        let col = |name: &str| -> Result<ArrayRef, DataFusionError> {
            let a = b
                .column_by_name(name)
                .ok_or_else(|| DataFusionError::Internal(format!("bronze has no column {name}")))?;
            let ty = if name == "_line" {
                DataType::Int64
            } else {
                DataType::Utf8
            };
            Ok(deltalake::arrow::compute::cast(a, &ty)?)
        };
        // The raw lines as string views (what the scan hands out): read in place, not copied.
        let raw_col = b
            .column_by_name("raw")
            .ok_or_else(|| DataFusionError::Internal("bronze has no column raw".into()))?;
        let raw_col = match raw_col.data_type() {
            DataType::Utf8View => Arc::clone(raw_col),
            _ => deltalake::arrow::compute::cast(raw_col, &DataType::Utf8View)?,
        };
        let raw = raw_col
            .as_string_view_opt()
            .ok_or_else(|| DataFusionError::Internal("raw is not a string column".into()))?;
        // The bytes of the lines that were not UTF-8, if any in this batch (a table made before
        // bronze kept them has no such column).
        let landed = match b.column_by_name(super::bronze::RAW_BYTES) {
            Some(a) if a.null_count() < a.len() => {
                Some(deltalake::arrow::compute::cast(a, &DataType::Binary)?)
            }
            _ => None,
        };
        let landed = match &landed {
            Some(a) => Some(a.as_binary_opt::<i32>().ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "{} is not a binary column",
                    super::bronze::RAW_BYTES
                ))
            })?),
            None => None,
        };
        let lineage: Vec<ArrayRef> = LINEAGE.iter().map(|n| col(n)).collect::<Result<_, _>>()?;
        let n = b.num_rows();
        let mut keep: Vec<u32> = Vec::with_capacity(n);
        let mut id = StringBuilder::with_capacity(n, n * 36);
        let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut fields: Vec<Column> = self
            .spec
            .fields
            .iter()
            .map(|f| Column::new(f.kind, n))
            .collect();
        let mut bad: Vec<u32> = Vec::new();
        let (mut rule, mut value, mut raws) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut local = Counts::default();
        for i in 0..n {
            local.rows_in += 1;
            let line = raw.value(i);
            let bytes = landed.filter(|a| a.is_valid(i)).map(|a| a.value(i));
            let (verdict, warned) = self.check(line, bytes);
            for w in warned {
                *local.warnings.entry(w).or_default() += 1;
            }
            match verdict {
                Ok((row_id, micros, values)) => {
                    local.clean += 1;
                    keep.push(i as u32);
                    id.append_value(&row_id);
                    ts.append_value(micros);
                    for (c, v) in fields.iter_mut().zip(&values[FIELD_SLOTS..]) {
                        c.append(v);
                    }
                }
                Err(v) if v.action == Action::Fail => {
                    let key = lineage[0]
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .map(|a| a.value(i).to_string());
                    let line = lineage[1]
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .map(|a| a.value(i));
                    return Err(DataFusionError::External(Box::new(Fatal(format!(
                        "expectation `{}` (action fail) broken by {}:{}: {}",
                        v.rule,
                        key.unwrap_or_default(),
                        line.unwrap_or_default(),
                        v.value
                    )))));
                }
                Err(v) => {
                    *local.quarantined.entry(v.rule.clone()).or_default() += 1;
                    bad.push(i as u32);
                    rule.append_value(&v.rule);
                    value.append_value(&v.value);
                    raws.append_value(line);
                }
            }
        }
        {
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            c.rows_in += local.rows_in;
            c.clean += local.clean;
            for (k, v) in local.quarantined {
                *c.quarantined.entry(k).or_default() += v;
            }
            for (k, v) in local.warnings {
                *c.warnings.entry(k).or_default() += v;
            }
        }
        let take = |idx: Vec<u32>| -> Result<Vec<ArrayRef>, DataFusionError> {
            if idx.len() == n {
                return Ok(lineage.clone());
            }
            let idx = deltalake::arrow::array::UInt32Array::from(idx);
            lineage
                .iter()
                .map(|a| {
                    deltalake::arrow::compute::take(a.as_ref(), &idx, None).map_err(Into::into)
                })
                .collect()
        };
        let mut clean: Vec<ArrayRef> = vec![Arc::new(id.finish()), Arc::new(ts.finish())];
        clean.extend(fields.into_iter().map(Column::finish));
        clean.extend(take(keep)?);
        let mut quarantine: Vec<ArrayRef> = vec![
            Arc::new(rule.finish()),
            Arc::new(value.finish()),
            Arc::new(raws.finish()),
        ];
        quarantine.extend(take(bad)?);
        Ok(Cleaned {
            clean: RecordBatch::try_new(self.clean.clone(), clean)?,
            quarantine: RecordBatch::try_new(self.quarantine.clone(), quarantine)?,
        })
    }
}

/// An Arrow column being built from checked values of one field.
enum Column {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Tags(ListBuilder<StringBuilder>),
}

impl Column {
    fn new(kind: Kind, rows: usize) -> Column {
        match arrow_type(kind) {
            DataType::Utf8 => Column::Str(StringBuilder::with_capacity(rows, rows * 8)),
            DataType::Int64 => Column::Int(Int64Builder::with_capacity(rows)),
            DataType::Float64 => Column::Float(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
            _ => Column::Tags(ListBuilder::new(StringBuilder::new())),
        }
    }

    /// Appends a value that passed its field's check (so of the column's type, or null).
    fn append(&mut self, v: &Scalar<'_>) {
        match self {
            Column::Str(b) => b.append_option(v.as_str()),
            Column::Int(b) => b.append_option(v.as_i64()),
            Column::Float(b) => b.append_option(v.as_f64()),
            Column::Bool(b) => b.append_option(v.as_bool()),
            Column::Tags(b) => match v {
                Scalar::List(tags) => {
                    for t in tags {
                        if let Some(s) = t.as_str() {
                            b.values().append_value(s);
                        }
                    }
                    b.append(true);
                }
                _ => b.append(false),
            },
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Str(mut b) => Arc::new(b.finish()),
            Column::Int(mut b) => Arc::new(b.finish()),
            Column::Float(mut b) => Arc::new(b.finish()),
            Column::Bool(mut b) => Arc::new(b.finish()),
            Column::Tags(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Fixes cosmetic noise: trims strings, maps enum values to their canonical spelling.
fn normalise(kind: Kind, v: Scalar<'_>) -> Scalar<'_> {
    match (kind, v) {
        (Kind::Enum(set), Scalar::Str(s)) => Scalar::Str(in_canonical_spelling(set, s)),
        (Kind::Str, Scalar::Str(s)) => Scalar::Str(trimmed(s)),
        (Kind::Tags(set), Scalar::List(a)) => Scalar::List(
            a.into_iter()
                .map(|t| match t {
                    Scalar::Str(s) => Scalar::Str(in_canonical_spelling(set, s)),
                    other => other,
                })
                .collect(),
        ),
        (_, v) => v,
    }
}

/// Bronze rows of some dates, cleaned on the fly: one DataFusion partition stream per
/// partition of the bronze scan (so cleaning runs on every core), yielding the typed rows and
/// sending the quarantine rows to [`QuarantineRows`] — one pass over bronze for both tables.
#[derive(Debug)]
struct CleanedBronze {
    scan: Arc<dyn ExecutionPlan>,
    partition: usize,
    cleaner: Arc<Cleaner>,
    counts: Arc<Mutex<Counts>>,
    quarantine: Arc<QuarantineChannel>,
}

/// Where the cleaning partitions send quarantine rows. Each partition holds its own sender and
/// drops it when its stream ends or is dropped, so the channel closes once they all stopped;
/// the reader tells a finished pass from one that stopped early by [`Self::complete`].
#[derive(Debug)]
struct QuarantineChannel {
    /// The sender partitions clone theirs from, until every partition has one.
    tx: Mutex<Option<mpsc::Sender<RecordBatch>>>,
    rx: Mutex<Option<mpsc::Receiver<RecordBatch>>>,
    /// Partitions that have not yet taken their sender.
    unstarted: AtomicUsize,
    /// Partitions that have not yet read their whole input.
    unfinished: AtomicUsize,
}

impl QuarantineChannel {
    fn new(partitions: usize) -> Arc<QuarantineChannel> {
        let (tx, rx) = mpsc::channel(4);
        Arc::new(QuarantineChannel {
            // No partitions: nothing will be sent, the channel is closed from the start.
            tx: Mutex::new((partitions > 0).then_some(tx)),
            rx: Mutex::new(Some(rx)),
            unstarted: AtomicUsize::new(partitions),
            unfinished: AtomicUsize::new(partitions),
        })
    }

    /// A partition's sender; the last partition to take one leaves no other behind.
    fn sender(&self) -> Option<mpsc::Sender<RecordBatch>> {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let mine = tx.clone();
        let left = self
            .unstarted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if left == Ok(1) {
            tx.take();
        }
        mine
    }

    /// One partition read all its input.
    fn finished(&self) {
        self.unfinished.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether every partition read all its input.
    fn complete(&self) -> bool {
        self.unfinished.load(Ordering::SeqCst) == 0
    }
}

impl PartitionStream for CleanedBronze {
    fn schema(&self) -> &SchemaRef {
        &self.cleaner.clean
    }

    fn execute(&self, ctx: Arc<DfTaskContext>) -> SendableRecordBatchStream {
        let cleaner = Arc::clone(&self.cleaner);
        let counts = Arc::clone(&self.counts);
        let channel = Arc::clone(&self.quarantine);
        // Dropped with this stream, or at the end of its input after counting it finished.
        let tx = Arc::new(Mutex::new(channel.sender()));
        let batch_tx = Arc::clone(&tx);
        let input = futures::stream::once(futures::future::ready(
            self.scan.execute(self.partition, ctx),
        ))
        .try_flatten();
        let cleaned = input.and_then(move |b| {
            let tx = batch_tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let cleaned = cleaner.apply(&b, &counts);
            async move {
                let Cleaned { clean, quarantine } = cleaned?;
                if quarantine.num_rows() > 0 {
                    let tx = tx.ok_or_else(|| {
                        DataFusionError::Internal("quarantine channel already closed".into())
                    })?;
                    tx.send(quarantine).await.map_err(|_| {
                        DataFusionError::Execution("the quarantine writer stopped".into())
                    })?;
                }
                Ok(clean)
            }
        });
        let end = futures::stream::once(async move {
            channel.finished();
            tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        })
        .filter_map(|()| futures::future::ready(None));
        Box::pin(RecordBatchStreamAdapter::new(
            self.cleaner.clean.clone(),
            cleaned.chain(end),
        ))
    }
}

/// The quarantine rows of a pass, read from [`QuarantineChannel`]: ends when every cleaning
/// partition has read its whole input, and fails if the channel closes before.
#[derive(Debug)]
struct QuarantineRows {
    channel: Arc<QuarantineChannel>,
    schema: SchemaRef,
}

impl PartitionStream for QuarantineRows {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<DfTaskContext>) -> SendableRecordBatchStream {
        let rx = self
            .channel
            .rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let channel = Arc::clone(&self.channel);
        let stream: futures::stream::BoxStream<'static, Result<RecordBatch, DataFusionError>> =
            match rx {
                None => futures::stream::once(futures::future::ready(Err(
                    DataFusionError::Internal("quarantine rows read twice".into()),
                )))
                .boxed(),
                // The state is gone after an error: the stream ends there.
                Some(rx) => futures::stream::unfold(Some(rx), move |state| {
                    let channel = Arc::clone(&channel);
                    async move {
                        let mut rx = state?;
                        match rx.recv().await {
                            Some(b) => Some((Ok(b), Some(rx))),
                            None if channel.complete() => None,
                            None => Some((
                                Err(DataFusionError::Execution(
                                    "the silver pass stopped before the end of bronze".into(),
                                )),
                                None,
                            )),
                        }
                    }
                })
                .boxed(),
            };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// A DataFusion session with deltalake's planner (for writes from plans) and a memory limit
/// (sorts and aggregates spill to disk beyond it, where they can).
pub fn session() -> Result<SessionContext, DataFusionError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(MEMORY_LIMIT)))
        .build_arc()?;
    Ok(DeltaSessionContext::with_runtime_env(runtime).into_inner())
}

/// Changes the options of the session of `ctx` (for the plans made after).
pub fn set_options(ctx: &SessionContext, change: impl FnOnce(&mut ConfigOptions)) {
    change(ctx.state_ref().write().config_mut().options_mut());
}

/// SQL keeping, of the rows of `input`, the first landed one of each `id` (by ingest run, file,
/// line): silver's de-duplication rule, which the serving layer applies too.
pub fn first_landed(id: &str, input: &str) -> String {
    format!(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY \"{id}\" ORDER BY {order}) AS _rn FROM ({input})) WHERE _rn = 1",
        order = LANDING_ORDER.join(", ")
    )
}

/// SQL predicate `date IN (…)`.
pub fn in_dates(dates: &[String]) -> String {
    let list: Vec<String> = dates.iter().map(|d| format!("'{d}'")).collect();
    format!("date IN ({})", list.join(", "))
}

/// Count of rows per date of the table at `path` for `dates`.
pub async fn count_by_date(
    store: &Store,
    path: &str,
    dates: &[String],
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, u64> = dates.iter().map(|d| (d.clone(), 0)).collect();
    let Some(table) = store.delta_table(path).await? else {
        return Ok(out);
    };
    let ctx = SessionContext::new();
    register_delta(&ctx, "t", &table).await?;
    let batches = ctx
        .sql(&format!(
            "SELECT date, count(*) AS n FROM t WHERE {} GROUP BY date",
            in_dates(dates)
        ))
        .await?
        .collect()
        .await?;
    for b in batches {
        let d = deltalake::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let n = deltalake::arrow::compute::cast(b.column(1), &DataType::Int64)?;
        let d = d.as_any().downcast_ref::<StringArray>();
        let n = n.as_any().downcast_ref::<Int64Array>();
        if let (Some(d), Some(n)) = (d, n) {
            for i in 0..b.num_rows() {
                out.insert(d.value(i).to_string(), n.value(i) as u64);
            }
        }
    }
    Ok(out)
}

/// The body of `silver_<stream>`.
pub struct Silver {
    /// The stream.
    pub spec: &'static StreamSpec,
}

#[async_trait::async_trait]
impl TaskBody for Silver {
    async fn run(&self, ctx: &TaskContext) -> TaskResult {
        Ok(self.body(ctx).await?)
    }
}

impl Silver {
    async fn body(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
        let spec = self.spec;
        let stream = spec.name;
        let store = &ctx.store;
        let manifest = lineage::plan(store, stream, ctx.logical_date).await?;
        let dates = manifest.dates();
        let bronze_path = super::table_path("bronze", stream);
        let silver_path = super::table_path("silver", stream);
        let quarantine_path = super::table_path("quarantine", stream);
        if dates.is_empty() {
            ctx.log
                .info("no files consumed by this run: nothing to recompute");
            return Ok(serde_json::json!({ "stream": stream, "dates": dates }));
        }
        let bronze = store.delta_table(&bronze_path).await?.ok_or_else(|| {
            Fatal(format!(
                "{bronze_path} does not exist: run bronze_{stream} first"
            ))
        })?;
        ctx.log.info(format!(
            "recomputing {silver_path} and {quarantine_path} for {dates:?}"
        ));
        let cleaner = Arc::new(Cleaner::new(spec, ctx.logical_date, expectations(spec)));
        let df_ctx = session()?;
        register_delta(&df_ctx, "bronze", &bronze).await?;
        // A table made before bronze kept the bytes of lines that are not UTF-8 has no such
        // column: read without it, every line as valid.
        let raw_bytes = match bronze.snapshot()?.schema().field(super::bronze::RAW_BYTES) {
            Some(_) => format!(", {}", super::bronze::RAW_BYTES),
            None => String::new(),
        };
        let scan = df_ctx
            .sql(&format!(
                "SELECT raw{raw_bytes}, _source_key, _line, _ingest_run, _batch_run, date FROM bronze WHERE {}",
                in_dates(&dates)
            ))
            .await?
            .create_physical_plan()
            .await?;

        // One pass over bronze: typed rows to silver, broken ones to quarantine, both written
        // at once (the quarantine rows travel through a channel).
        let partitions = scan.output_partitioning().partition_count();
        let counts = Arc::new(Mutex::new(Counts::default()));
        let channel = QuarantineChannel::new(partitions);
        let cleaning: Vec<Arc<dyn PartitionStream>> = (0..partitions)
            .map(|partition| {
                Arc::new(CleanedBronze {
                    scan: Arc::clone(&scan),
                    partition,
                    cleaner: Arc::clone(&cleaner),
                    counts: Arc::clone(&counts),
                    quarantine: Arc::clone(&channel),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let clean_schema = cleaner.clean.clone();
        df_ctx.register_table(
            "clean",
            Arc::new(StreamingTable::try_new(clean_schema.clone(), cleaning)?),
        )?;

        // Silver: the typed rows with their derived columns, written as they are cleaned (one
        // writer for the table, no row held back); the keys of the rows alone are
        // de-duplicated (first landed of each id wins: a grace hash spilled to disk, `dedup`),
        // and the later copies it finds are dropped from the files written, before the commit.
        let base: Vec<String> = clean_schema
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .collect();
        let derived: Vec<String> = derived(spec)
            .into_iter()
            .map(|(n, sql)| format!("{sql} AS \"{n}\""))
            .collect();
        let silver_sql = format!(
            "SELECT {cols}{sep}{derived} FROM clean",
            cols = base.join(", "),
            sep = if derived.is_empty() { "" } else { ", " },
            derived = derived.join(", "),
        );
        let silver_rows = df_ctx
            .sql(&silver_sql)
            .await?
            .create_physical_plan()
            .await?;
        let silver_schema = silver_rows.schema();
        let writes = Arc::new(Writes::open(store, &silver_path, silver_schema.clone()).await?);
        let keys = [
            spec.id_field,
            LANDING_ORDER[0],
            LANDING_ORDER[1],
            LANDING_ORDER[2],
        ]
        .iter()
        .map(|c| silver_schema.index_of(c))
        .collect::<Result<Vec<_>, _>>()?;
        let writing = (0..silver_rows.output_partitioning().partition_count())
            .map(|p| writes.writing(Arc::clone(&silver_rows), p, keys.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        df_ctx.register_table(
            "written",
            Arc::new(StreamingTable::try_new(
                Arc::new(silver_schema.project(&keys)?),
                writing,
            )?),
        )?;
        let written = df_ctx
            .table("written")
            .await?
            .create_physical_plan()
            .await?;
        let bronze_rows = count_by_date(store, &bronze_path, &dates).await?;
        let key = super::dedup::Columns {
            id: 0,
            ingest_run: 1,
            source_key: 2,
            line: 3,
            repeated: Vec::new(),
        };
        let first_landed = Arc::new(
            super::dedup::FirstLanded::new(
                written,
                key.clone(),
                bronze_rows.values().sum(),
                partitions,
            )
            .yielding_later_copies(),
        );
        let silver = async {
            // The later copies come once every row is written; held a bounded number at once.
            let mut later = first_landed.merged().execute(df_ctx.task_ctx());
            let mut held = RowKeys::default();
            let mut dropped = 0;
            while let Some(b) = later.try_next().await? {
                held.add(&b, key.source_key, key.line)?;
                if held.len() >= super::replace::ROWS_HELD {
                    dropped += writes.drop_rows(&held).await?;
                    held.clear();
                }
            }
            dropped += writes.drop_rows(&held).await?;
            anyhow::Ok(dropped)
        };

        // Quarantine: the rows that broke a drop rule, with rule, value and lineage.
        df_ctx.register_table(
            "quarantined",
            Arc::new(StreamingTable::try_new(
                cleaner.quarantine.clone(),
                vec![Arc::new(QuarantineRows {
                    channel,
                    schema: cleaner.quarantine.clone(),
                })],
            )?),
        )?;
        let q_plan = df_ctx
            .sql("SELECT * FROM quarantined")
            .await?
            .into_unoptimized_plan();
        let (dropped, _) = tokio::try_join!(silver, async {
            super::replace_dates(store, &quarantine_path, &df_ctx, q_plan, &dates)
                .await
                .map_err(anyhow::Error::from)
        })
        .map_err(unwrap_fatal)?;
        let duplicates = first_landed.duplicates();
        if dropped != duplicates {
            return Err(anyhow::anyhow!(
                "{silver_path}: the de-duplication found {duplicates} later copies, but {dropped} rows were dropped from the files written; nothing committed"
            ));
        }
        writes
            .commit_replacing(&dates, CommitProperties::default())
            .await?;
        let counts = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let read_twice = first_landed.buckets_read_twice();

        // The identity, on the committed tables.
        let b = bronze_rows;
        let s = count_by_date(store, &silver_path, &dates).await?;
        let q = count_by_date(store, &quarantine_path, &dates).await?;
        let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        let quarantined: u64 = counts.quarantined.values().sum();
        if total(&b) != total(&s) + total(&q) + duplicates
            || total(&q) != quarantined
            || counts.rows_in != total(&b)
            || counts.clean != total(&s) + duplicates
        {
            return Err(anyhow::anyhow!(
                "row accounting broken for {stream} on {dates:?}: bronze {} != silver {} + quarantine {} + duplicates {duplicates} (read {}, quarantined by the cleaner {quarantined})",
                total(&b),
                total(&s),
                total(&q),
                counts.rows_in
            ));
        }
        // The serving layer reads these files from silver from now on.
        let mut manifest = manifest;
        manifest.silver_committed = true;
        lineage::record(store, ctx.logical_date, &manifest).await?;
        let late = counts
            .warnings
            .get("event_time_on_time")
            .copied()
            .unwrap_or(0);
        ctx.log.info(format!(
            "{stream}: bronze {} = silver {} + quarantine {} + duplicates {duplicates}; late {late}; de-duplication buckets read twice {read_twice}",
            total(&b),
            total(&s),
            total(&q)
        ));
        Ok(serde_json::json!({
            "stream": stream,
            "dates": dates,
            "rows_in": total(&b),
            "silver": total(&s),
            "quarantined": total(&q),
            "duplicates": duplicates,
            "dedup_buckets_read_twice": read_twice,
            "late": late,
            "quarantined_by_rule": counts.quarantined,
            "warnings": counts.warnings,
            "by_date": dates.iter().map(|d| (d.clone(), serde_json::json!({
                "bronze": b[d], "silver": s[d], "quarantine": q[d],
            }))).collect::<serde_json::Map<_, _>>(),
        }))
    }
}

/// A `fail` expectation surfaces through DataFusion and deltalake as an external error: give
/// it back its [`Fatal`] kind so the task is not retried.
fn unwrap_fatal(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("(action fail)") {
        let msg = text
            .split("expectation `")
            .nth(1)
            .map(|rest| format!("expectation `{rest}"))
            .unwrap_or(text);
        return Fatal(msg).into();
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_utc;
    use crate::sources::stream::stream_by_name;
    use serde_json::Value;

    fn cleaner(stream: &str) -> Cleaner {
        let spec = stream_by_name(stream).unwrap();
        Cleaner::new(
            spec,
            parse_utc("2026-02-02T02:00:00Z").unwrap(),
            expectations(spec),
        )
    }

    fn api_line(overrides: &[(&str, Value)]) -> String {
        let mut v = serde_json::json!({
            "log_id": "a1", "event_time": "2026-02-01T10:00:00Z", "request_id": "r",
            "method": "GET", "endpoint": "/api/v1/users", "status_code": 200,
            "response_time_ms": 12.5, "client_ip": "10.0.0.1", "user_agent": "ua",
            "region": "us-east-1", "api_key_id": "k", "bytes_sent": 10, "bytes_received": 5
        });
        for (k, x) in overrides {
            v[*k] = x.clone();
        }
        v.to_string()
    }

    fn rule_of(c: &Cleaner, line: &str) -> Option<String> {
        c.check(line, None).0.err().map(|v| v.rule)
    }

    #[test]
    fn each_rule_catches_its_fault_and_noise_is_normalised() {
        let c = cleaner("api_logs");
        let endpoint = crate::sources::api_logs::SPEC
            .fields
            .iter()
            .find(|f| f.name == "endpoint")
            .map(|f| match f.kind {
                Kind::Enum(set) => set[0],
                _ => unreachable!(),
            })
            .unwrap();
        let ok = api_line(&[("endpoint", Value::from(endpoint))]);
        assert_eq!(rule_of(&c, &ok), None, "{ok}");
        assert_eq!(rule_of(&c, "{\"log_id\": \"a"), Some("valid_json".into()));
        assert_eq!(
            rule_of(&c, &api_line(&[("log_id", Value::Null)])),
            Some("id_present".into())
        );
        assert_eq!(
            rule_of(&c, &api_line(&[("event_time", Value::from("yesterday"))])),
            Some("event_time_parses".into())
        );
        assert_eq!(
            rule_of(
                &c,
                &api_line(&[("event_time", Value::from("2026-02-03T00:00:00Z"))])
            ),
            Some("event_time_not_future".into())
        );
        let with = |k: &str, v: Value| {
            let mut o = vec![("endpoint", Value::from(endpoint))];
            o.push((k, v));
            api_line(&o.iter().map(|(a, b)| (*a, b.clone())).collect::<Vec<_>>())
        };
        assert_eq!(
            rule_of(&c, &with("status_code", Value::from(299))),
            Some("status_code_valid".into())
        );
        assert_eq!(
            rule_of(&c, &with("status_code", Value::from("200x"))),
            Some("status_code_valid".into())
        );
        assert_eq!(
            rule_of(&c, &with("method", Value::from("unknown_value"))),
            Some("method_valid".into())
        );
        // Cosmetic noise is fixed, not rejected.
        let line = with("method", Value::from(" Get "));
        let (row, _) = c.check(&line, None);
        let row = row.unwrap();
        assert_eq!(
            row.2[FIELD_SLOTS + 1],
            Scalar::Str("GET".into()),
            "method is the second field"
        );
        // Late rows are kept with a warning.
        let line = with("event_time", Value::from("2026-01-30T00:00:00Z"));
        let (row, warned) = c.check(&line, None);
        assert!(row.is_ok());
        assert_eq!(warned, ["event_time_on_time"]);
    }

    #[test]
    fn every_stream_fits_the_bits_that_mark_checked_fields() {
        for spec in crate::sources::stream::all_streams() {
            assert!(spec.fields.len() <= 128, "{}", spec.name);
        }
    }

    #[test]
    fn actions_warn_drop_and_fail_do_what_they_say() {
        let spec = stream_by_name("api_logs").unwrap();
        let mut rules = expectations(spec);
        for r in &mut rules {
            if r.rule == "id_present" {
                r.action = Action::Warn;
            }
            if r.rule == "status_code_valid" {
                r.action = Action::Fail;
            }
        }
        let c = Cleaner::new(spec, parse_utc("2026-02-02T02:00:00Z").unwrap(), rules);
        let line = api_line(&[("log_id", Value::Null), ("endpoint", Value::from("/x"))]);
        let (v, warned) = c.check(&line, None);
        assert_eq!(warned, ["id_present"]);
        assert_eq!(
            v.unwrap_err().rule,
            "endpoint_valid",
            "drop still applies after a warning"
        );
        let line = api_line(&[("status_code", Value::from(299))]);
        let (v, _) = c.check(&line, None);
        assert_eq!(v.unwrap_err().action, Action::Fail);
        // Bytes that are not UTF-8 break `valid_utf8` first, under its action.
        let line = api_line(&[("log_id", Value::from("x"))]);
        let (v, _) = c.check(&line, Some(b"\xff"));
        let v = v.unwrap_err();
        assert_eq!((v.rule.as_str(), v.action), ("valid_utf8", Action::Drop));
        let mut rules = expectations(spec);
        for r in rules.iter_mut().filter(|r| r.rule == "valid_utf8") {
            r.action = Action::Warn;
        }
        let c = Cleaner::new(spec, parse_utc("2026-02-02T02:00:00Z").unwrap(), rules);
        let line = api_line(&[("endpoint", Value::from("/api/v1/users"))]);
        let (v, warned) = c.check(&line, Some(b"\xff"));
        assert!(v.is_ok());
        assert_eq!(warned, ["valid_utf8"]);
    }

    #[test]
    fn country_code_na_and_the_string_none_are_values_not_nulls() {
        assert_eq!(
            normalise(Kind::Str, Scalar::Str(" NA ".into())),
            Scalar::Str("NA".into())
        );
        let c = cleaner("api_logs");
        let (batch, _) = apply_lines(&c, &[&api_line(&[("user_agent", Value::from("None"))])]);
        let ua = batch.clean.column_by_name("user_agent").unwrap();
        let ua = ua.as_any().downcast_ref::<StringArray>().unwrap();
        assert!(ua.is_valid(0));
        assert_eq!(ua.value(0), "None");
    }

    /// Runs `lines` (as one landed file) through the cleaner.
    fn apply_lines(c: &Cleaner, lines: &[&str]) -> (Cleaned, Counts) {
        apply_body(c, lines.join("\n").as_bytes())
    }

    /// Runs `body` (as one landed file) through the cleaner.
    fn apply_body(c: &Cleaner, body: &[u8]) -> (Cleaned, Counts) {
        let f = lineage::ConsumedFile {
            key: "realtime/api_logs/date=2026-02-01/hour=10/f.jsonl".into(),
            date: "2026-02-01".into(),
            ingest_run: "2026-02-01T10:05:00Z".into(),
            bytes: 0,
        };
        let b = super::super::bronze::file_batch(&f, body, "2026-02-02T02:00:00Z").unwrap();
        let counts = Mutex::new(Counts::default());
        let out = c.apply(&b, &counts).unwrap();
        (out, counts.into_inner().unwrap())
    }

    #[test]
    fn a_line_landed_as_invalid_utf8_is_quarantined_with_its_rule_and_offset() {
        let c = cleaner("api_logs");
        let ok = api_line(&[("endpoint", Value::from("/api/v1/users"))]);
        // The same event but for bytes that are not UTF-8 inside a string: its text, with
        // U+FFFD in their place, is valid JSON and would pass every other rule.
        let marked = api_line(&[
            ("endpoint", Value::from("/api/v1/users")),
            ("log_id", Value::from("b")),
            ("user_agent", Value::from("x@@y")),
        ]);
        let at = marked.find("@@").unwrap();
        let mut bad = marked.as_bytes()[..at].to_vec();
        bad.extend_from_slice(b"\xff\xfe\xc3\x28");
        bad.extend_from_slice(&marked.as_bytes()[at + 2..]);
        let mut body = ok.clone().into_bytes();
        body.push(b'\n');
        body.extend_from_slice(&bad);
        body.push(b'\n');
        let lossy = String::from_utf8_lossy(&bad).into_owned();
        assert_eq!(rule_of(&c, &lossy), None, "the text alone passes");

        let (out, counts) = apply_body(&c, &body);
        assert_eq!(strings(&out.clean, "log_id"), ["a1"]);
        assert_eq!(strings(&out.quarantine, "rule"), ["valid_utf8"]);
        assert_eq!(
            strings(&out.quarantine, "value"),
            [format!("invalid UTF-8 at byte {at}: ff")]
        );
        assert_eq!(strings(&out.quarantine, "raw"), [lossy]);
        assert_eq!(strings(&out.quarantine, "_line"), ["2"]);
        assert_eq!(
            strings(&out.quarantine, "_source_key"),
            ["realtime/api_logs/date=2026-02-01/hour=10/f.jsonl"]
        );
        assert_eq!(counts.rows_in, 2);
        assert_eq!(counts.clean, 1);
        assert_eq!(
            counts.quarantined,
            BTreeMap::from([("valid_utf8".to_string(), 1)])
        );
        // A line cut inside a character: the offset of its first byte.
        assert_eq!(
            utf8_error(b"ab\xc3").as_deref(),
            Some("invalid UTF-8 at byte 2: c3")
        );
        assert_eq!(utf8_error("é".as_bytes()), None);
    }

    fn strings(b: &RecordBatch, col: &str) -> Vec<String> {
        let a = b.column_by_name(col).unwrap();
        let a = deltalake::arrow::compute::cast(a, &DataType::Utf8).unwrap();
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        (0..a.len()).map(|i| a.value(i).to_string()).collect()
    }

    #[test]
    fn apply_types_clean_rows_and_quarantines_the_rest_with_rule_value_and_lineage() {
        let c = cleaner("api_logs");
        let ok = api_line(&[
            ("endpoint", Value::from("/api/v1/users")),
            ("method", Value::from(" post ")),
            ("log_id", Value::from(" a1 ")),
        ]);
        let bad_status = api_line(&[
            ("endpoint", Value::from("/api/v1/users")),
            ("status_code", Value::from(299)),
        ]);
        let (out, counts) = apply_lines(&c, &[&ok, "{\"log_id\": 1", &bad_status]);
        assert_eq!(out.clean.num_rows(), 1);
        assert_eq!(strings(&out.clean, "log_id"), ["a1"]);
        assert_eq!(strings(&out.clean, "method"), ["POST"]);
        assert_eq!(strings(&out.clean, "_line"), ["1"]);
        let rt = out.clean.column_by_name("response_time_ms").unwrap();
        let rt = rt
            .as_any()
            .downcast_ref::<deltalake::arrow::array::Float64Array>()
            .unwrap();
        assert_eq!(rt.value(0), 12.5);
        assert_eq!(
            strings(&out.quarantine, "rule"),
            ["valid_json", "status_code_valid"]
        );
        assert_eq!(strings(&out.quarantine, "value"), ["{\"log_id\": 1", "299"]);
        assert_eq!(strings(&out.quarantine, "raw")[1], bad_status);
        assert_eq!(strings(&out.quarantine, "_line"), ["2", "3"]);
        assert_eq!(counts.rows_in, 3);
        assert_eq!(counts.clean, 1);
        assert_eq!(counts.quarantined.values().sum::<u64>(), 2);
    }

    /// The quarantine rows a [`QuarantineRows`] stream yields, or its error.
    async fn read_quarantine(channel: Arc<QuarantineChannel>) -> Result<usize, DataFusionError> {
        let rows = QuarantineRows {
            channel,
            schema: quarantine_schema(),
        };
        let batches: Vec<RecordBatch> = rows
            .execute(Arc::new(DfTaskContext::default()))
            .try_collect()
            .await?;
        Ok(batches.iter().map(RecordBatch::num_rows).sum())
    }

    #[tokio::test]
    async fn quarantine_rows_end_only_when_every_partition_read_its_input() {
        let batch = || RecordBatch::new_empty(quarantine_schema());
        // Both partitions finish: the rows sent arrive, then the stream ends.
        let channel = QuarantineChannel::new(2);
        let (a, b) = (channel.sender().unwrap(), channel.sender().unwrap());
        let reader = tokio::spawn(read_quarantine(Arc::clone(&channel)));
        a.send(batch()).await.unwrap();
        for tx in [a, b] {
            channel.finished();
            drop(tx);
        }
        assert_eq!(reader.await.unwrap().unwrap(), 0);
        // One partition stops early (its stream is dropped): an error, not a short table.
        let channel = QuarantineChannel::new(2);
        let (a, b) = (channel.sender().unwrap(), channel.sender().unwrap());
        channel.finished();
        drop((a, b));
        let err = read_quarantine(Arc::clone(&channel)).await.unwrap_err();
        assert!(err.to_string().contains("stopped before the end"), "{err}");
        // A second read is refused.
        assert!(read_quarantine(channel).await.is_err());
        // No partitions at all: nothing to wait for.
        assert_eq!(read_quarantine(QuarantineChannel::new(0)).await.unwrap(), 0);
    }
}
