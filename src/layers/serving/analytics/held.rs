//! What `analytics` holds from run to run, per lake and table version: the rows of
//! `stream_dates` (the master summary sums them every run, and a run changes only the rows of its
//! dates) and the quarantine tables' counts by date (they change only when a batch run commits).
//! A version this process did not make or hold is read from the table again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};

use deltalake::arrow::array::{Array as _, AsArray as _, Int64Array, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType};
use deltalake::datafusion::prelude::SessionContext;

use super::STREAM_DATES_PATH;
use super::rows::{StreamDate, utc};
use crate::layers::serving::{Error, Result, collect, json_rows};
use crate::layers::sql;
use crate::store::{Store, register_delta};

/// The rows of `stream_dates` per lake and table, at one version each: the master summary sums
/// them every run, and a run changes only the rows of its dates.
static STREAM_DATES: LazyLock<Mutex<HashMap<String, Held>>> = LazyLock::new(Default::default);

/// Rows of a table at a version.
type Held = (u64, Vec<StreamDate>);

/// Key of `table` (at `path` of `store`) in the process-wide copies: the lake, the path and the
/// table's id (a table made again starts its versions again).
fn held_key(store: &Store, path: &str, table: &deltalake::DeltaTable) -> String {
    let id = table
        .snapshot()
        .map(|s| s.metadata().id().to_string())
        .unwrap_or_default();
    format!("{}\u{0}{path}\u{0}{id}", store.url())
}

/// After this run's commit of `stream_dates` (`written`, made on the version `before`): the held
/// rows of the version before, with those of `dates` replaced by `recomputed`, are those of the
/// new version. Otherwise (rows not held, another writer's commit between, the rows not known)
/// they are dropped, and read again from the table.
pub(super) fn held_rows_replaced(
    store: &Store,
    written: &deltalake::DeltaTable,
    before: Option<u64>,
    dates: &[String],
    recomputed: Option<Vec<StreamDate>>,
) {
    let key = held_key(store, STREAM_DATES_PATH, written);
    let mut held = STREAM_DATES.lock().unwrap_or_else(|p| p.into_inner());
    let old = held.remove(&key);
    if let (Some((v, mut rows)), Some(recomputed), Some(after)) =
        (old, recomputed, written.version())
        && next_held(v, before, after)
    {
        replace_dates(&mut rows, dates, recomputed);
        held.insert(key, (after, rows));
    }
}

/// Whether rows held at version `held` are, with a commit's rows replaced, those of `after`: the
/// commit was made on the version held (`before`, `None` for a table it made) and is the next.
fn next_held(held: u64, before: Option<u64>, after: u64) -> bool {
    before == Some(held) && after == held + 1
}

/// `rows` with those of `dates` replaced by `recomputed` (a replace-where of those dates).
fn replace_dates(rows: &mut Vec<StreamDate>, dates: &[String], recomputed: Vec<StreamDate>) {
    rows.retain(|r| r.date.as_ref().is_none_or(|d| !dates.contains(d)));
    rows.extend(recomputed);
}

/// Every row of `stream_dates` (`table`): those held for its version, else read from it.
pub(super) async fn stream_dates_held(
    store: &Store,
    table: &deltalake::DeltaTable,
) -> Result<Vec<StreamDate>> {
    let key = held_key(store, STREAM_DATES_PATH, table);
    let version = table.version().unwrap_or_default();
    if let Some((v, rows)) = STREAM_DATES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        && *v == version
    {
        return Ok(rows.clone());
    }
    let ctx = SessionContext::new();
    register_delta(&ctx, "stream_dates", table)
        .await
        .map_err(Error::datafusion(format!(
            "registering {STREAM_DATES_PATH}"
        )))?;
    let (_, batches) = collect(
        ctx.sql(
            "SELECT stream, CAST(date AS VARCHAR) AS date, events, from_batch, from_speed,
               quarantined, last_event_time FROM stream_dates",
        )
        .await
        .map_err(Error::datafusion(format!("reading {STREAM_DATES_PATH}")))?,
    )
    .await?;
    let mut rows = Vec::new();
    for b in &batches {
        let text = |i: usize| -> Result<StringArray> {
            let c = cast(b.column(i), &DataType::Utf8).map_err(Error::arrow(STREAM_DATES_PATH))?;
            Ok(c.as_string::<i32>().clone())
        };
        let int = |i: usize| -> Result<Int64Array> {
            let c = cast(b.column(i), &DataType::Int64).map_err(Error::arrow(STREAM_DATES_PATH))?;
            Ok(c.as_primitive::<Int64Type>().clone())
        };
        let (stream, date) = (text(0)?, text(1)?);
        let (events, from_batch, from_speed, quarantined) = (int(2)?, int(3)?, int(4)?, int(5)?);
        let last = cast(b.column(6), &utc()).map_err(Error::arrow(STREAM_DATES_PATH))?;
        let last = last.as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            // A row without a stream joins no stream of the summary's.
            if stream.is_null(i) {
                continue;
            }
            let n = |a: &Int64Array| if a.is_null(i) { 0 } else { a.value(i) };
            rows.push(StreamDate {
                stream: stream.value(i).to_string(),
                date: (!date.is_null(i)).then(|| date.value(i).to_string()),
                events: n(&events),
                from_batch: n(&from_batch),
                from_speed: n(&from_speed),
                quarantined: n(&quarantined),
                last_event_time: (!last.is_null(i)).then(|| last.value(i)),
            });
        }
    }
    STREAM_DATES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, (version, rows.clone()));
    Ok(rows)
}

/// Counts by date of quarantine tables, per lake and table, for one table version each: the
/// quarantine changes only when a batch run commits, while the figures of today are recomputed
/// at every serving run.
static QUARANTINED: LazyLock<Mutex<HashMap<String, Counted>>> = LazyLock::new(Default::default);

/// Rows by date of a table at a version.
type Counted = (Option<u64>, BTreeMap<String, u64>);

/// The quarantined rows of each of `dates` in `table` (at `path`): counted for the dates this
/// process has not counted at the table's version.
pub(super) async fn quarantined_by_date(
    store: &Store,
    path: &str,
    table: &deltalake::DeltaTable,
    dates: &[String],
) -> Result<BTreeMap<String, u64>> {
    let key = held_key(store, path, table);
    let version = table.version();
    let known = {
        let kept = QUARANTINED.lock().unwrap_or_else(|p| p.into_inner());
        match kept.get(&key) {
            Some((v, counts)) if *v == version => counts.clone(),
            _ => BTreeMap::new(),
        }
    };
    let missing: Vec<String> = dates
        .iter()
        .filter(|d| !known.contains_key(*d))
        .cloned()
        .collect();
    let mut counts = known;
    if !missing.is_empty() {
        let ctx = SessionContext::new();
        register_delta(&ctx, "q", table)
            .await
            .map_err(Error::datafusion(format!("registering {path}")))?;
        let (_, batches) = collect(
            ctx.sql(&format!(
                "SELECT CAST(date AS VARCHAR) AS date, count(*) AS n FROM q WHERE {} GROUP BY date",
                sql::in_dates(&missing)
            ))
            .await
            .map_err(Error::datafusion(format!("counting {path}")))?,
        )
        .await?;
        counts.extend(missing.iter().map(|d| (d.clone(), 0)));
        for r in json_rows(&batches)? {
            if let (Some(d), Some(n)) = (r["date"].as_str(), r["n"].as_u64()) {
                counts.insert(d.to_string(), n);
            }
        }
        QUARANTINED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (version, counts.clone()));
    }
    Ok(dates
        .iter()
        .map(|d| (d.clone(), counts.get(d).copied().unwrap_or(0)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_held_rows_follow_this_process_commits_only() {
        let row = |date: &str, events: i64| StreamDate {
            stream: "api_logs".into(),
            date: Some(date.into()),
            events,
            from_batch: 0,
            from_speed: events,
            quarantined: 0,
            last_event_time: None,
        };
        let mut held = vec![row("2026-02-01", 5), row("2026-02-02", 1)];
        replace_dates(
            &mut held,
            &["2026-02-02".to_string()],
            vec![row("2026-02-02", 4)],
        );
        assert_eq!(held, [row("2026-02-01", 5), row("2026-02-02", 4)]);
        assert!(next_held(3, Some(3), 4));
        // Another writer's commit between, or a table made anew: read it again.
        assert!(!next_held(3, Some(4), 5));
        assert!(!next_held(3, Some(3), 5));
        assert!(!next_held(3, None, 0));
    }
}
