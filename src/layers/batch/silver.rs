//! `silver_<stream>`: recomputes `batch/silver/<stream>` and `batch/quarantine/<stream>` for
//! every event date the run's files touch, from all bronze rows of those dates.
//!
//! Each raw line is parsed, trimmed, enum values normalised to their canonical spelling
//! (cosmetic noise is fixed, not rejected), typed by the stream's schema (`sources`), and
//! checked against the stream's [`expectations`] — declared as data, each with an action in
//! the style of Delta Live Tables: `warn` (kept, counted), `drop` (to quarantine with the rule,
//! the offending value, the raw line and its lineage) or `fail` (the task fails with the row).
//! Valid rows are de-duplicated by the stream's id, first landed wins (ingest run, file, line),
//! with a DataFusion window that spills to disk, and get the derived columns of [`derived`].
//! Both tables are replaced for the affected dates only (Delta replace-where).
//!
//! The task checks `bronze = silver + quarantine + duplicates` on the committed tables for
//! those dates and fails if it does not hold.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::TaskContext as DfTaskContext;
use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::physical_plan::SendableRecordBatchStream;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use deltalake::delta_datafusion::DeltaSessionContext;
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::Value;

use super::lineage;
use crate::scheduler::{Fatal, TaskBody, TaskContext};
use crate::sources::stream::{Kind, StreamSpec};
use crate::store::{Store, register_delta};

/// Memory DataFusion may use before sorts spill to disk.
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

/// A typed value of one field.
#[derive(Debug, Clone, PartialEq)]
enum Typed {
    Null,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Tags(Vec<String>),
}

/// A row that passed: id, event time (µs) and typed fields.
type Row = (String, i64, Vec<Typed>);

/// Cleans and checks raw lines of one stream for one batch run.
#[derive(Debug)]
pub struct Cleaner {
    spec: &'static StreamSpec,
    rules: Vec<Expectation>,
    /// The run's logical date, in µs: later events are in the future.
    run_micros: i64,
    /// The event date the run closes: earlier events are late.
    closed: chrono::NaiveDate,
    clean: SchemaRef,
    quarantine: SchemaRef,
}

/// Canonical spelling of `s` in `set` (trimmed, case-insensitive), if any.
fn canonical(set: &[&'static str], s: &str) -> Option<&'static str> {
    let t = s.trim();
    set.iter().copied().find(|c| c.eq_ignore_ascii_case(t))
}

impl Cleaner {
    /// A cleaner for `spec` in the batch run at `run`.
    pub fn new(spec: &'static StreamSpec, run: DateTime<Utc>, rules: Vec<Expectation>) -> Cleaner {
        Cleaner {
            spec,
            rules,
            run_micros: run.timestamp_micros(),
            closed: (run - Duration::days(1)).date_naive(),
            clean: clean_schema(spec),
            quarantine: quarantine_schema(),
        }
    }

    /// Checks one line; returns the typed row, or the first `drop`/`fail` violation, plus the
    /// `warn` rules it broke.
    fn check(&self, raw: &str) -> (Result<Row, Violation>, Vec<String>) {
        let mut warned = Vec::new();
        let mut obj = None;
        let mut id = String::new();
        let mut micros = 0i64;
        let mut values: Vec<Typed> = vec![Typed::Null; self.spec.fields.len()];
        for e in &self.rules {
            let broken: Option<String> = match e.check {
                Check::ValidJson => match serde_json::from_str::<Value>(raw) {
                    Ok(Value::Object(m)) => {
                        obj = Some(m);
                        None
                    }
                    _ => Some(raw.chars().take(200).collect()),
                },
                _ if obj.is_none() => None, // only reachable if valid_json is not a drop rule
                Check::IdPresent => {
                    let v = field_of(obj.as_ref(), self.spec.id_field);
                    match v.as_str().map(str::trim) {
                        Some(s) if !s.is_empty() => {
                            id = s.to_string();
                            None
                        }
                        _ => Some(v.to_string()),
                    }
                }
                Check::EventTimeParses => {
                    let v = field_of(obj.as_ref(), "event_time");
                    match v
                        .as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
                    {
                        Some(t) => {
                            micros = t.with_timezone(&Utc).timestamp_micros();
                            None
                        }
                        None => Some(v.to_string()),
                    }
                }
                Check::NotFuture => (micros > self.run_micros)
                    .then(|| field_of(obj.as_ref(), "event_time").to_string()),
                Check::OnTime => {
                    let day = DateTime::from_timestamp_micros(micros).map(|t| t.date_naive());
                    day.filter(|d| *d < self.closed).map(|d| d.to_string())
                }
                Check::Field(i) => {
                    let f = &self.spec.fields[i];
                    let v = field_of(obj.as_ref(), f.name).clone();
                    let v = normalise(f.kind, v);
                    match f.check(&v) {
                        Ok(()) => {
                            values[i] = typed(f.kind, &v);
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
        if obj.is_none() {
            return (
                Err(Violation {
                    rule: "valid_json".into(),
                    value: raw.chars().take(200).collect(),
                    action: Action::Drop,
                }),
                warned,
            );
        }
        (Ok((id, micros, values)), warned)
    }

    /// Splits a bronze batch into typed rows (`want_clean`) or quarantine rows, counting.
    pub fn apply(
        &self,
        b: &RecordBatch,
        want_clean: bool,
        counts: &Mutex<Counts>,
    ) -> Result<RecordBatch, DataFusionError> {
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
        let raw_col = col("raw")?;
        let raw = raw_col
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| DataFusionError::Internal("raw is not a string column".into()))?
            .clone();
        let lineage: Vec<ArrayRef> = LINEAGE.iter().map(|n| col(n)).collect::<Result<_, _>>()?;
        let mut keep: Vec<u32> = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        let mut bad: Vec<(u32, Violation)> = Vec::new();
        let mut local = Counts::default();
        for i in 0..b.num_rows() {
            local.rows_in += 1;
            let (verdict, warned) = self.check(raw.value(i));
            for w in warned {
                *local.warnings.entry(w).or_default() += 1;
            }
            match verdict {
                Ok(row) => {
                    local.clean += 1;
                    keep.push(i as u32);
                    rows.push(row);
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
                    bad.push((i as u32, v));
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
        let take = |idx: &[u32]| -> Result<Vec<ArrayRef>, DataFusionError> {
            let idx = deltalake::arrow::array::UInt32Array::from(idx.to_vec());
            lineage
                .iter()
                .map(|a| {
                    deltalake::arrow::compute::take(a.as_ref(), &idx, None).map_err(Into::into)
                })
                .collect()
        };
        if want_clean {
            let mut cols = self.typed_columns(&rows);
            cols.extend(take(&keep)?);
            Ok(RecordBatch::try_new(self.clean.clone(), cols)?)
        } else {
            let idx: Vec<u32> = bad.iter().map(|(i, _)| *i).collect();
            let mut rule = StringBuilder::new();
            let mut value = StringBuilder::new();
            let mut raws = StringBuilder::new();
            for (i, v) in &bad {
                rule.append_value(&v.rule);
                value.append_value(&v.value);
                raws.append_value(raw.value(*i as usize));
            }
            let mut cols: Vec<ArrayRef> = vec![
                Arc::new(rule.finish()),
                Arc::new(value.finish()),
                Arc::new(raws.finish()),
            ];
            cols.extend(take(&idx)?);
            Ok(RecordBatch::try_new(self.quarantine.clone(), cols)?)
        }
    }

    fn typed_columns(&self, rows: &[Row]) -> Vec<ArrayRef> {
        let mut id = StringBuilder::new();
        let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        for (i, t, _) in rows {
            id.append_value(i);
            ts.append_value(*t);
        }
        let mut cols: Vec<ArrayRef> = vec![Arc::new(id.finish()), Arc::new(ts.finish())];
        for (fi, f) in self.spec.fields.iter().enumerate() {
            let vals = rows.iter().map(|(_, _, v)| &v[fi]);
            let col: ArrayRef = match arrow_type(f.kind) {
                DataType::Utf8 => Arc::new(StringArray::from_iter(vals.map(|v| match v {
                    Typed::Str(s) => Some(s.as_str()),
                    _ => None,
                }))),
                DataType::Int64 => Arc::new(Int64Array::from_iter(vals.map(|v| match v {
                    Typed::Int(x) => Some(*x),
                    _ => None,
                }))),
                DataType::Float64 => Arc::new(Float64Array::from_iter(vals.map(|v| match v {
                    Typed::Float(x) => Some(*x),
                    _ => None,
                }))),
                DataType::Boolean => Arc::new(BooleanArray::from_iter(vals.map(|v| match v {
                    Typed::Bool(x) => Some(*x),
                    _ => None,
                }))),
                _ => {
                    let mut b = ListBuilder::new(StringBuilder::new());
                    for v in vals {
                        match v {
                            Typed::Tags(tags) => {
                                for t in tags {
                                    b.values().append_value(t);
                                }
                                b.append(true);
                            }
                            _ => b.append(false),
                        }
                    }
                    Arc::new(b.finish())
                }
            };
            cols.push(col);
        }
        cols
    }
}

/// A member of the parsed object; JSON null when absent.
fn field_of<'a>(obj: Option<&'a serde_json::Map<String, Value>>, name: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    obj.and_then(|o| o.get(name)).unwrap_or(&NULL)
}

/// Fixes cosmetic noise: trims strings, maps enum values to their canonical spelling.
fn normalise(kind: Kind, v: Value) -> Value {
    match (kind, v) {
        (Kind::Enum(set), Value::String(s)) => match canonical(set, &s) {
            Some(c) => Value::from(c),
            None => Value::String(s),
        },
        (Kind::Str, Value::String(s)) => Value::from(s.trim()),
        (Kind::Tags(set), Value::Array(a)) => Value::Array(
            a.into_iter()
                .map(|t| match t {
                    Value::String(s) => canonical(set, &s).map_or(Value::String(s), Value::from),
                    other => other,
                })
                .collect(),
        ),
        (_, v) => v,
    }
}

/// The typed form of a checked value.
fn typed(kind: Kind, v: &Value) -> Typed {
    if v.is_null() {
        return Typed::Null;
    }
    match kind {
        Kind::Str | Kind::Enum(_) => Typed::Str(v.as_str().unwrap_or_default().to_string()),
        Kind::IntEnum(_) | Kind::Int { .. } => Typed::Int(v.as_i64().unwrap_or_default()),
        Kind::Float { .. } => Typed::Float(v.as_f64().unwrap_or_default()),
        Kind::Bool => Typed::Bool(v.as_bool().unwrap_or_default()),
        Kind::Tags(_) => Typed::Tags(
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        ),
    }
}

/// Bronze rows of some dates, cleaned on the fly: a DataFusion partition stream, so the
/// cleaning is part of a streaming plan (one pass per output).
#[derive(Debug)]
struct CleanedBronze {
    input: DataFrame,
    cleaner: Arc<Cleaner>,
    want_clean: bool,
    counts: Arc<Mutex<Counts>>,
    schema: SchemaRef,
}

impl PartitionStream for CleanedBronze {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<DfTaskContext>) -> SendableRecordBatchStream {
        let input = self.input.clone();
        let cleaner = Arc::clone(&self.cleaner);
        let counts = Arc::clone(&self.counts);
        let want_clean = self.want_clean;
        let stream = futures::stream::once(async move { input.execute_stream().await })
            .try_flatten()
            .map(move |b| b.and_then(|b| cleaner.apply(&b, want_clean, &counts)));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// A DataFusion session with deltalake's planner (for writes from plans) and a memory limit
/// (sorts spill to disk beyond it).
pub fn session() -> Result<SessionContext, DataFusionError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(MEMORY_LIMIT)))
        .build_arc()?;
    Ok(DeltaSessionContext::with_runtime_env(runtime).into_inner())
}

/// SQL keeping, of the rows of `input`, the first landed one of each `id` (by ingest run, file,
/// line): silver's de-duplication rule, which the serving layer applies too.
pub fn first_landed(id: &str, input: &str) -> String {
    format!(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY \"{id}\" ORDER BY _ingest_run, _source_key, _line) AS _rn FROM ({input})) WHERE _rn = 1"
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
    async fn run(&self, ctx: &TaskContext) -> anyhow::Result<serde_json::Value> {
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
        let input = df_ctx
            .sql(&format!(
                "SELECT raw, _source_key, _line, _ingest_run, _batch_run, date FROM bronze WHERE {}",
                in_dates(&dates)
            ))
            .await?;
        let pass = |want_clean: bool,
                    counts: Arc<Mutex<Counts>>|
         -> Result<Arc<StreamingTable>, DataFusionError> {
            let schema = if want_clean {
                cleaner.clean.clone()
            } else {
                cleaner.quarantine.clone()
            };
            let part = CleanedBronze {
                input: input.clone(),
                cleaner: Arc::clone(&cleaner),
                want_clean,
                counts,
                schema: schema.clone(),
            };
            Ok(Arc::new(StreamingTable::try_new(
                schema,
                vec![Arc::new(part)],
            )?))
        };

        // Silver: typed rows, first landed wins, derived columns.
        let counts = Arc::new(Mutex::new(Counts::default()));
        df_ctx.register_table("clean", pass(true, Arc::clone(&counts))?)?;
        let id = spec.id_field;
        let base: Vec<String> = cleaner
            .clean
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .collect();
        let derived: Vec<String> = derived(spec)
            .into_iter()
            .map(|(n, sql)| format!("{sql} AS \"{n}\""))
            .collect();
        let silver_sql = format!(
            "SELECT {cols}{sep}{derived} FROM ({})",
            first_landed(id, "SELECT * FROM clean"),
            cols = base.join(", "),
            sep = if derived.is_empty() { "" } else { ", " },
            derived = derived.join(", "),
        );
        let silver_plan = df_ctx.sql(&silver_sql).await?.into_unoptimized_plan();
        super::replace_dates(store, &silver_path, &df_ctx, silver_plan, &dates)
            .await
            .map_err(|e| unwrap_fatal(e.into()))?;
        let counts = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();

        // Quarantine: the rows that broke a drop rule, with rule, value and lineage.
        let q_counts = Arc::new(Mutex::new(Counts::default()));
        df_ctx.register_table("quarantined", pass(false, Arc::clone(&q_counts))?)?;
        let q_plan = df_ctx
            .sql("SELECT * FROM quarantined")
            .await?
            .into_unoptimized_plan();
        super::replace_dates(store, &quarantine_path, &df_ctx, q_plan, &dates)
            .await
            .map_err(|e| unwrap_fatal(e.into()))?;

        // The identity, on the committed tables.
        let b = count_by_date(store, &bronze_path, &dates).await?;
        let s = count_by_date(store, &silver_path, &dates).await?;
        let q = count_by_date(store, &quarantine_path, &dates).await?;
        let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        let duplicates = counts.clean.saturating_sub(total(&s));
        let quarantined: u64 = counts.quarantined.values().sum();
        if total(&b) != total(&s) + total(&q) + duplicates
            || total(&q) != quarantined
            || counts.rows_in != total(&b)
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
            "{stream}: bronze {} = silver {} + quarantine {} + duplicates {duplicates}; late {late}",
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
        c.check(line).0.err().map(|v| v.rule)
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
        let (row, _) = c.check(&with("method", Value::from(" Get ")));
        let row = row.unwrap();
        assert_eq!(
            row.2[1],
            Typed::Str("GET".into()),
            "method is the second field"
        );
        // Late rows are kept with a warning.
        let (row, warned) = c.check(&with("event_time", Value::from("2026-01-30T00:00:00Z")));
        assert!(row.is_ok());
        assert_eq!(warned, ["event_time_on_time"]);
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
        let (v, warned) = c.check(&api_line(&[
            ("log_id", Value::Null),
            ("endpoint", Value::from("/x")),
        ]));
        assert_eq!(warned, ["id_present"]);
        assert_eq!(
            v.unwrap_err().rule,
            "endpoint_valid",
            "drop still applies after a warning"
        );
        let (v, _) = c.check(&api_line(&[("status_code", Value::from(299))]));
        assert_eq!(v.unwrap_err().action, Action::Fail);
    }

    #[test]
    fn country_code_na_and_the_string_none_are_values_not_nulls() {
        assert_eq!(normalise(Kind::Str, Value::from(" NA ")), Value::from("NA"));
        assert_eq!(
            typed(Kind::Str, &Value::from("None")),
            Typed::Str("None".into())
        );
    }
}
