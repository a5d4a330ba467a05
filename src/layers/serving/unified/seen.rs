//! The ids a unified table already holds, for the de-duplication of an append: new speed rows
//! whose id the appended dates hold are dropped (first landed wins).
//!
//! Reading every id of the dates on each append made the appends' cost grow with the day.
//! Instead this process keeps, per lake, stream and date, a split-block Bloom filter of the
//! ids the table holds (parquet's, fixed size: about 1 MiB per stream and date at scale 1),
//! valid for a table version. A new id the filters do not hold is certainly new; the few that
//! they may hold (true duplicates and ~1 % false positives) are looked up in the table, so the
//! result is exact. Filters are built from the table on first use (a new process, a new date)
//! and follow the table's commits: an append or a recompute by anyone else makes the dates it
//! adds to be read again; compactions and vacuums change no ids.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use deltalake::arrow::compute::{cast, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Action;
use deltalake::parquet::bloom_filter::Sbbf;

use crate::layers::serving::{Error, Result, collect};
use crate::layers::sql;
use crate::store::{Store, register_delta};

/// Ids a filter is sized for at least (a date of one stream at scale 1 holds up to ~300,000).
const MIN_IDS: u64 = 1 << 19;
/// False-positive rate a filter is sized for.
const FPP: f64 = 0.01;

/// The filters of one stream's table.
struct Filters {
    /// Table version they describe.
    version: u64,
    /// By date.
    dates: HashMap<String, DateFilter>,
}

struct DateFilter {
    bloom: Sbbf,
    /// Ids inserted.
    ids: u64,
    /// Ids it was sized for: past them its false-positive rate rises, so it is rebuilt larger.
    capacity: u64,
}

impl DateFilter {
    fn new(expected: u64) -> Result<DateFilter> {
        let capacity = (expected * 2).max(MIN_IDS);
        Ok(DateFilter {
            bloom: Sbbf::new_with_ndv_fpp(capacity, FPP).map_err(|e| Error::Arrow {
                what: "sizing an id filter",
                source: ArrowError::ExternalError(Box::new(e)),
            })?,
            ids: 0,
            capacity,
        })
    }

    fn insert(&mut self, id: &str) {
        self.bloom.insert(id);
        self.ids += 1;
    }
}

static KEPT: LazyLock<Mutex<HashMap<String, Filters>>> = LazyLock::new(Default::default);

fn key(store: &Store, stream: &str) -> String {
    format!("{}\u{0}{stream}", store.url())
}

/// What [`drop_held`] found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Held {
    /// Rows dropped: their id is already in the table.
    pub dropped: usize,
    /// Ids the filters may have held, looked up in the table.
    pub looked_up: usize,
    /// Dates whose filter was built from the table in this run.
    pub built: usize,
}

/// The ids of the rows kept, to add to the filters once they are committed ([`remember`]).
pub struct Pending {
    key: String,
    from_version: u64,
    filters: Filters,
    ids: Vec<(String, String)>,
}

/// Drops from `batches` (new rows with columns `id` and `date`) the rows whose id the table
/// holds on any of their dates. `table` is the unified table the rows will be appended to.
pub async fn drop_held(
    store: &Store,
    stream: &str,
    id: &str,
    table: &DeltaTable,
    batches: Vec<RecordBatch>,
) -> Result<(Vec<RecordBatch>, Held, Pending)> {
    let path = super::unified_path(stream);
    let key = key(store, stream);
    let version = table.version().unwrap_or_default();
    let taken = KEPT.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    let mut filters = match taken {
        Some(f) => follow(f, table, version, &path).await?,
        None => Filters {
            version,
            dates: HashMap::new(),
        },
    };

    // The rows' ids and dates.
    let mut rows: Vec<Vec<(String, String)>> = Vec::with_capacity(batches.len());
    let mut dates: BTreeSet<String> = BTreeSet::new();
    for b in &batches {
        let ids = strings(b, id)?;
        let ds = strings(b, "date")?;
        let mut r = Vec::with_capacity(b.num_rows());
        for i in 0..b.num_rows() {
            let d = ds.value(i).to_string();
            dates.insert(d.clone());
            r.push((ids.value(i).to_string(), d));
        }
        rows.push(r);
    }
    let dates: Vec<String> = dates.into_iter().collect();

    // The table is read only to build a filter or to look ids up.
    let ctx = SessionContext::new();
    let mut registered = false;
    let mut held = Held::default();
    for d in &dates {
        let full = filters.dates.get(d).is_some_and(|f| f.ids > f.capacity);
        if full || !filters.dates.contains_key(d) {
            register_once(&ctx, table, &path, &mut registered).await?;
            let f = build(&ctx, id, d).await?;
            filters.dates.insert(d.clone(), f);
            held.built += 1;
        }
    }

    // Ids the filters may hold, looked up in the table.
    let candidates: HashSet<&str> = rows
        .iter()
        .flatten()
        .filter(|(i, _)| {
            dates.iter().any(|d| {
                filters
                    .dates
                    .get(d)
                    .is_some_and(|f| f.bloom.check(i.as_str()))
            })
        })
        .map(|(i, _)| i.as_str())
        .collect();
    held.looked_up = candidates.len();
    let in_table: HashSet<String> = if candidates.is_empty() {
        HashSet::new()
    } else {
        register_once(&ctx, table, &path, &mut registered).await?;
        look_up(&ctx, id, &dates, candidates.into_iter().collect()).await?
    };

    let mut kept_batches = Vec::with_capacity(batches.len());
    let mut kept_ids = Vec::new();
    for (b, r) in batches.iter().zip(rows) {
        let keep: BooleanArray = r.iter().map(|(i, _)| Some(!in_table.contains(i))).collect();
        held.dropped += keep.false_count();
        let kept = filter_record_batch(b, &keep).map_err(Error::arrow("dropping held ids"))?;
        if kept.num_rows() > 0 {
            kept_batches.push(kept);
        }
        kept_ids.extend(r.into_iter().filter(|(i, _)| !in_table.contains(i)));
    }
    Ok((
        kept_batches,
        held,
        Pending {
            key,
            from_version: version,
            filters,
            ids: kept_ids,
        },
    ))
}

/// Adds the ids of `pending` to the filters once its rows are committed as `version`.
pub fn remember(pending: Pending, version: Option<u64>) {
    let Pending {
        key,
        from_version,
        mut filters,
        ids,
    } = pending;
    // Someone else committed in between: the filters stay at the version they describe, and
    // the next run follows the commits since — ours among them, so the dates it added to are
    // read again. Correct, and rare.
    filters.version = if version == Some(from_version + 1) {
        from_version + 1
    } else {
        from_version
    };
    for (id, date) in ids {
        if let Some(f) = filters.dates.get_mut(&date) {
            f.insert(&id);
        }
    }
    KEPT.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, filters);
}

/// Drops the filters of `stream` (its dates were replaced).
pub fn forget(store: &Store, stream: &str) {
    KEPT.lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key(store, stream));
}

/// Brings `filters` to `version`: the dates that data-changing commits since added to are
/// dropped (read again when needed); compactions and vacuums change no ids.
async fn follow(
    mut filters: Filters,
    table: &DeltaTable,
    version: u64,
    path: &str,
) -> Result<Filters> {
    if filters.version > version {
        filters.dates.clear();
    }
    while filters.version < version {
        let next = filters.version + 1;
        let Some(actions) = crate::store::commit_actions(table, next)
            .await
            .map_err(Error::delta(path))?
        else {
            filters.dates.clear();
            break;
        };
        for a in actions {
            if let Action::Add(a) = a
                && a.data_change
            {
                match a.partition_values.get("date").cloned().flatten() {
                    Some(d) => {
                        filters.dates.remove(&d);
                    }
                    None => filters.dates.clear(),
                }
            }
        }
        filters.version = next;
    }
    filters.version = version;
    Ok(filters)
}

/// Registers `table` in `ctx` as `unified`, unless it is already.
async fn register_once(
    ctx: &SessionContext,
    table: &DeltaTable,
    path: &str,
    registered: &mut bool,
) -> Result<()> {
    if !*registered {
        register_delta(ctx, "unified", table)
            .await
            .map_err(Error::datafusion(format!("registering {path}")))?;
        *registered = true;
    }
    Ok(())
}

/// A filter of the ids the table holds on `date`.
async fn build(ctx: &SessionContext, id: &str, date: &str) -> Result<DateFilter> {
    let df = ctx
        .sql(&format!(
            "SELECT CAST(\"{id}\" AS VARCHAR) AS id FROM unified WHERE {}",
            sql::in_dates(&[date.to_string()])
        ))
        .await
        .map_err(Error::datafusion("the ids of a unified date"))?;
    let (_, batches) = collect(df).await?;
    let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut f = DateFilter::new(n as u64)?;
    for_each_id(&batches, |id| f.insert(id))?;
    Ok(f)
}

/// Which of `candidates` the table holds on any of `dates`.
async fn look_up(
    ctx: &SessionContext,
    id: &str,
    dates: &[String],
    candidates: Vec<&str>,
) -> Result<HashSet<String>> {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(candidates))],
    )
    .map_err(Error::arrow("the ids to look up"))?;
    let mem = MemTable::try_new(schema, vec![vec![batch]])
        .map_err(Error::datafusion("the ids to look up"))?;
    ctx.register_table("candidates", Arc::new(mem))
        .map_err(Error::datafusion("the ids to look up"))?;
    let df = ctx
        .sql(&format!(
            "SELECT DISTINCT CAST(u.\"{id}\" AS VARCHAR) AS id FROM unified u \
             JOIN candidates c ON CAST(u.\"{id}\" AS VARCHAR) = c.id WHERE u.{}",
            sql::in_dates(dates)
        ))
        .await
        .map_err(Error::datafusion("looking up ids in the unified table"))?;
    let (_, batches) = collect(df).await?;
    let mut out = HashSet::new();
    for_each_id(&batches, |id| {
        out.insert(id.to_string());
    })?;
    Ok(out)
}

/// Calls `f` with each non-null value of the column `id` of `batches`.
fn for_each_id(batches: &[RecordBatch], mut f: impl FnMut(&str)) -> Result<()> {
    for b in batches {
        strings(b, "id")?.iter().flatten().for_each(&mut f);
    }
    Ok(())
}

/// Column `name` of `b` as strings.
fn strings(b: &RecordBatch, name: &str) -> Result<StringArray> {
    let col = b.column_by_name(name).ok_or_else(|| Error::Arrow {
        what: "reading ids",
        source: ArrowError::SchemaError(format!("no column {name}")),
    })?;
    let col = cast(col, &DataType::Utf8).map_err(Error::arrow("reading ids"))?;
    col.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| Error::Arrow {
            what: "reading ids",
            source: ArrowError::CastError(format!("column {name} is not text after a cast")),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::protocol::SaveMode;

    fn rows(ids: &[&str], date: &str) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("log_id", DataType::Utf8, false),
            Field::new("date", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(StringArray::from(vec![date; ids.len()])),
            ],
        )
        .unwrap()
    }

    async fn append(store: &Store, b: RecordBatch) -> DeltaTable {
        let path = super::super::unified_path("api_logs");
        let t = store
            .delta_table_or_new(&path)
            .await
            .unwrap()
            .write(vec![b])
            .with_partition_columns(["date"])
            .with_save_mode(SaveMode::Append)
            .await
            .unwrap();
        store.keep_table(&path, &t);
        t
    }

    fn ids(batches: &[RecordBatch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                let a = strings(b, "log_id").unwrap();
                (0..a.len()).map(move |i| a.value(i).to_string())
            })
            .collect()
    }

    #[tokio::test]
    async fn held_ids_are_dropped_new_ones_kept_and_other_writers_followed() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let d = "2026-02-01";
        let table = append(&store, rows(&["a", "b"], d)).await;

        // First use: the date's filter is built from the table.
        let (kept, held, pending) = drop_held(
            &store,
            "api_logs",
            "log_id",
            &table,
            vec![rows(&["b", "c"], d)],
        )
        .await
        .unwrap();
        assert_eq!(ids(&kept), ["c"]);
        assert_eq!((held.dropped, held.built), (1, 1));
        assert!(held.looked_up >= 1, "b was looked up in the table");
        let table = append(&store, kept[0].clone()).await;
        remember(pending, table.version());

        // The filter now holds c: a re-run of the same rows keeps nothing, without a rebuild.
        let (kept, held, _) = drop_held(
            &store,
            "api_logs",
            "log_id",
            &table,
            vec![rows(&["c", "b"], d)],
        )
        .await
        .unwrap();
        assert!(kept.is_empty());
        assert_eq!((held.dropped, held.built), (2, 0));

        // Another writer appends x: the date is read again, so x is dropped too.
        let table = append(&store, rows(&["x"], d)).await;
        let (kept, held, _) = drop_held(
            &store,
            "api_logs",
            "log_id",
            &table,
            vec![rows(&["x", "y"], d), rows(&["z"], "2026-02-02")],
        )
        .await
        .unwrap();
        assert_eq!(ids(&kept), ["y", "z"]);
        assert_eq!((held.dropped, held.built), (1, 2));
    }
}
