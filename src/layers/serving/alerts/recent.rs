//! The alerts of the last day, kept from run to run: the ids raised on the dates a run at T
//! checks new alerts against (from T − 24 h's date to T's), and the newest [`LAST_DAY_MAX`] of
//! those rows, which `latest.json` lists.
//!
//! Like the windows ([`super::super::window`]), what is held is a function of the alerts
//! table's version: a run follows the commits made since the version held, and a commit that
//! only re-files rows (`dataChange: false`: a compaction) keeps it, as do this process's own
//! appends, which add their rows as they are written. Any other commit, a commit gone from the
//! log, a run at an earlier T than the one held or a new process rebuilds it from the table,
//! with one read of the last day's dates. So a run reads from the table only what no run of this
//! process wrote, never the last day again; `LAKEPIPE_SERVING_VERIFY=1` compares what is held
//! with the table's rows every run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Duration, Utc};
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, ArrayRef, AsArray as _, RecordBatch};
use deltalake::arrow::compute::kernels::cmp::{gt, lt_eq};
use deltalake::arrow::compute::{
    SortColumn, SortOptions, cast, concat, filter_record_batch, interleave_record_batch,
    lexsort_to_indices,
};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Action;
use futures::StreamExt as _;

use super::{ALERTS_PATH, alerts_schema, conform};
use crate::layers::serving::{Error, Result, dates_between, json_rows, verify};
use crate::layers::sql;
use crate::store::{Store, commit_actions, register_delta};

/// Most alerts `latest.json` lists from the last 24 hours.
pub const LAST_DAY_MAX: usize = 200;

/// The newest rows pushed so far, by `triggered_at` descending then `alert_id`, at most
/// `limit` of them, copied into arrays of their own: no batch they came from is kept.
#[derive(Debug)]
struct Newest {
    limit: usize,
    rows: Option<RecordBatch>,
}

impl Newest {
    fn new(limit: usize) -> Newest {
        Newest { limit, rows: None }
    }

    /// Keeps, of the rows kept so far and those of `b` (in [`alerts_schema`]), the newest.
    fn push(&mut self, b: &RecordBatch) -> Result<()> {
        if b.num_rows() == 0 || self.limit == 0 {
            return Ok(());
        }
        let sources: Vec<&RecordBatch> = self.rows.iter().chain([b]).collect();
        let key = |name: &str| -> Result<ArrayRef> {
            let cols = sources
                .iter()
                .map(|s| {
                    s.column_by_name(name)
                        .map(|c| c.as_ref())
                        .ok_or_else(|| Error::NoAlertColumn {
                            column: name.to_string(),
                        })
                })
                .collect::<Result<Vec<&dyn Array>>>()?;
            concat(&cols).map_err(Error::arrow("the newest alerts"))
        };
        let order = lexsort_to_indices(
            &[
                SortColumn {
                    values: key("triggered_at")?,
                    options: Some(SortOptions {
                        descending: true,
                        nulls_first: false,
                    }),
                },
                SortColumn {
                    values: key("alert_id")?,
                    options: Some(SortOptions {
                        descending: false,
                        nulls_first: false,
                    }),
                },
            ],
            Some(self.limit),
        )
        .map_err(Error::arrow("the newest alerts"))?;
        // Row i of the keys is row i of the kept rows, then of `b`.
        let kept = self.rows.as_ref().map_or(0, RecordBatch::num_rows);
        let last = sources.len() - 1;
        let picks: Vec<(usize, usize)> = order
            .values()
            .iter()
            .map(|&i| {
                let i = i as usize;
                if i < kept { (0, i) } else { (last, i - kept) }
            })
            .collect();
        self.rows = Some(
            interleave_record_batch(&sources, &picks).map_err(Error::arrow("the newest alerts"))?,
        );
        Ok(())
    }

    #[cfg(test)]
    fn into_batches(self) -> Vec<RecordBatch> {
        self.rows.into_iter().collect()
    }
}

/// The last day of alerts of one lake, as of a version of its alerts table.
#[derive(Debug)]
pub(super) struct Recent {
    /// The table's version this holds the rows of (`None`: no table yet).
    version: Option<u64>,
    /// The logical time of the run that last used it.
    t: DateTime<Utc>,
    /// Alert ids by the date they were raised on, from the first date a run at `t` checks.
    ids: BTreeMap<String, HashSet<String>>,
    /// The newest of those rows raised at or before `t`.
    newest: Newest,
    /// Whether the table held rows raised after `t` when this was read (a run at an earlier T):
    /// then the newest rows of a later run may be among them, and this is not kept.
    ahead: bool,
    /// Whether this run read it from the table (else it was held).
    pub(super) read_from_table: bool,
}

/// What this process holds, by lake.
static HELD: LazyLock<Mutex<HashMap<String, Recent>>> = LazyLock::new(Default::default);

/// The first date of the ids a run at `t` checks against.
fn first_date(t: DateTime<Utc>) -> String {
    (t - Duration::days(1)).date_naive().to_string()
}

impl Recent {
    /// The last day of `table` (`None`: there is none yet) for the run at `t`: what this
    /// process holds, brought forward over the commits since, or read again from the table.
    pub(super) async fn of(
        store: &Store,
        df_ctx: &SessionContext,
        table: Option<&DeltaTable>,
        t: DateTime<Utc>,
    ) -> Result<Recent> {
        let held = HELD
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&store.url().to_string());
        let Some(table) = table else {
            return Ok(Recent::empty(t));
        };
        let version = table.version();
        if let Some(mut held) = held
            && held.t <= t
            && held.follows(table, version).await?
        {
            held.advance(t, version);
            held.read_from_table = false;
            return Ok(held);
        }
        Recent::read(df_ctx, table, t).await
    }

    fn empty(t: DateTime<Utc>) -> Recent {
        Recent {
            version: None,
            t,
            ids: BTreeMap::new(),
            newest: Newest::new(LAST_DAY_MAX),
            ahead: false,
            read_from_table: false,
        }
    }

    /// Whether the commits after the version held up to `to` leave the rows as they are.
    async fn follows(&self, table: &DeltaTable, to: Option<u64>) -> Result<bool> {
        let (Some(from), Some(to)) = (self.version, to) else {
            return Ok(false);
        };
        for v in from + 1..=to {
            let Some(actions) = commit_actions(table, v)
                .await
                .map_err(Error::delta(ALERTS_PATH))?
            else {
                return Ok(false);
            };
            let rows_changed = actions.iter().any(|a| match a {
                Action::Add(a) => a.data_change,
                Action::Remove(r) => r.data_change,
                Action::Metadata(_) | Action::Protocol(_) => true,
                _ => false,
            });
            if rows_changed {
                return Ok(false);
            }
        }
        Ok(from <= to)
    }

    /// Moves to the run at `t` on `version`: the dates before its first leave.
    fn advance(&mut self, t: DateTime<Utc>, version: Option<u64>) {
        let first = first_date(t);
        self.ids.retain(|date, _| *date >= first);
        self.version = version;
        self.t = t;
    }

    /// Reads the last day for the run at `t` from `table`: the rows of its dates are streamed,
    /// so memory is their ids, the newest rows and one batch, however many alerts the day
    /// holds. Not `ORDER BY … LIMIT` in SQL: DataFusion's TopK keeps every input batch that
    /// still has a row among the newest (a batch per small file here) and charges their whole
    /// buffers to the session's pool, which grew through the day until the pool was exhausted.
    async fn read(df_ctx: &SessionContext, table: &DeltaTable, t: DateTime<Utc>) -> Result<Recent> {
        let what = || "the last day of alerts".to_string();
        // (A run that verifies reads twice in one session.)
        df_ctx
            .deregister_table("alerts_recent")
            .map_err(Error::datafusion(what()))?;
        register_delta(df_ctx, "alerts_recent", table)
            .await
            .map_err(Error::datafusion(format!("registering {ALERTS_PATH}")))?;
        let mut rows = df_ctx
            .sql(&format!(
                "SELECT * FROM alerts_recent WHERE {}",
                sql::in_dates(&dates_between(
                    t - Duration::days(1),
                    t + Duration::seconds(1)
                ))
            ))
            .await
            .map_err(Error::datafusion(what()))?
            .execute_stream()
            .await
            .map_err(Error::datafusion(what()))?;
        let schema = alerts_schema();
        let mut recent = Recent::empty(t);
        recent.version = table.version();
        recent.read_from_table = true;
        while let Some(b) = rows.next().await {
            let b = conform(&b.map_err(Error::datafusion(what()))?, &schema)?;
            recent.ids_of(&b)?;
            let until_t = at_or_before(&b, t)?;
            recent.ahead |= until_t.num_rows() < b.num_rows();
            recent.newest.push(&until_t)?;
        }
        Ok(recent)
    }

    /// Adds the ids of `b` (rows in [`alerts_schema`]).
    fn ids_of(&mut self, b: &RecordBatch) -> Result<()> {
        let column = |name: &str| -> Result<ArrayRef> {
            let c = b.column_by_name(name).ok_or_else(|| Error::NoAlertColumn {
                column: name.to_string(),
            })?;
            cast(c, &DataType::Utf8).map_err(Error::arrow("alert ids"))
        };
        let (ids, dates) = (column("alert_id")?, column("date")?);
        let (ids, dates) = (ids.as_string::<i32>(), dates.as_string::<i32>());
        for (id, date) in ids.iter().zip(dates.iter()) {
            if let (Some(id), Some(date)) = (id, date) {
                self.ids
                    .entry(date.to_string())
                    .or_default()
                    .insert(id.to_string());
            }
        }
        Ok(())
    }

    /// Whether `id` was raised in the last day.
    pub(super) fn knows(&self, id: &str) -> bool {
        self.ids.values().any(|ids| ids.contains(id))
    }

    /// Adds the alerts a run appended (rows in [`alerts_schema`]), committed as `version`. If
    /// another commit came between (the append was retried at a later version), the next run
    /// reads the table again.
    pub(super) fn appended(&mut self, batches: &[RecordBatch], version: Option<u64>) -> Result<()> {
        for b in batches {
            self.ids_of(b)?;
            self.newest.push(&at_or_before(b, self.t)?)?;
        }
        let next = self.version.map_or(0, |v| v + 1);
        self.version = version.filter(|v| *v == next);
        Ok(())
    }

    /// The alerts raised in (`t` − 24 h, `t`], newest first (`triggered_at` descending, then
    /// `alert_id`), at most [`LAST_DAY_MAX`], in [`alerts_schema`].
    pub(super) fn last_day(&self) -> Result<Vec<RecordBatch>> {
        let start = self.t - Duration::days(1);
        self.newest
            .rows
            .iter()
            .map(|b| {
                let triggered =
                    b.column_by_name("triggered_at")
                        .ok_or_else(|| Error::NoAlertColumn {
                            column: "triggered_at".to_string(),
                        })?;
                let after =
                    gt(triggered, &timestamp(start)).map_err(Error::arrow("the last day"))?;
                filter_record_batch(b, &after).map_err(Error::arrow("the last day"))
            })
            .collect()
    }

    /// Keeps this for the next run of this process, unless it was read ahead of its run.
    pub(super) fn keep(self, store: &Store) {
        if !self.ahead {
            HELD.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(store.url().to_string(), self);
        }
    }

    /// With `LAKEPIPE_SERVING_VERIFY`: fails unless what is held equals the same rows read from
    /// `table` (the ids of the last day's dates, and the last day's newest rows).
    pub(super) async fn verify(&self, df_ctx: &SessionContext, table: &DeltaTable) -> Result<()> {
        let read = Recent::read(df_ctx, table, self.t).await?;
        let ids = |r: &Recent| -> Vec<serde_json::Value> {
            let mut all: Vec<&String> = r.ids.values().flatten().collect();
            all.sort();
            all.into_iter().map(|id| id.as_str().into()).collect()
        };
        verify::same_rows("the alert ids of the last day", &ids(self), &ids(&read))?;
        verify::same_rows(
            "the last day of alerts",
            &json_rows(&self.last_day()?)?,
            &json_rows(&read.last_day()?)?,
        )
    }
}

/// The rows of `b` raised at or before `t`.
fn at_or_before(b: &RecordBatch, t: DateTime<Utc>) -> Result<RecordBatch> {
    let triggered = b
        .column_by_name("triggered_at")
        .ok_or_else(|| Error::NoAlertColumn {
            column: "triggered_at".to_string(),
        })?;
    let keep = lt_eq(triggered, &timestamp(t)).map_err(Error::arrow("the last day"))?;
    filter_record_batch(b, &keep).map_err(Error::arrow("the last day"))
}

/// `t` as a scalar of `triggered_at`'s type.
fn timestamp(t: DateTime<Utc>) -> deltalake::arrow::array::Scalar<ArrayRef> {
    let a: ArrayRef = Arc::new(
        deltalake::arrow::array::TimestampMicrosecondArray::from(vec![t.timestamp_micros()])
            .with_timezone("UTC"),
    );
    deltalake::arrow::array::Scalar::new(a)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{keys, raised};
    use super::*;
    use crate::clock::parse_utc;
    use deltalake::datafusion::common::utils::memory::get_record_batch_memory_size;
    use deltalake::datafusion::execution::memory_pool::FairSpillPool;
    use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use deltalake::delta_datafusion::DeltaSessionContext;
    use deltalake::protocol::SaveMode;

    #[test]
    fn newest_keeps_the_latest_rows_in_arrays_of_their_own_whatever_the_order() {
        let at = |s: &str| parse_utc(s).unwrap();
        let mut newest = Newest::new(4);
        newest
            .push(&raised(at("2026-02-01T10:00:00Z"), 3, 1))
            .unwrap();
        let wide = raised(at("2026-02-01T12:00:00Z"), 40, 100);
        newest.push(&wide).unwrap();
        newest
            .push(&raised(at("2026-02-01T11:00:00Z"), 2, 1))
            .unwrap();
        newest
            .push(&raised(at("2026-02-01T09:00:00Z"), 5, 1))
            .unwrap();
        let kept = newest.into_batches();
        let want: Vec<(String, String)> = (1..=4)
            .map(|s| {
                (
                    "2026-02-01T12:00:00Z".to_string(),
                    format!("iot_battery_low:SENS-{s:04}:20260201T120000Z"),
                )
            })
            .collect();
        assert_eq!(keys(&kept), want);
        // The 4 rows were copied out of the batch of 40, not referenced: what is kept holds
        // their 400 ids, not the 4000 of the batch.
        assert_eq!(kept.len(), 1);
        let ids = kept[0]
            .column_by_name("triggering_ids")
            .unwrap()
            .as_list::<i32>()
            .values()
            .len();
        assert_eq!(ids, 400);
        let held = get_record_batch_memory_size(&kept[0]);
        let whole = get_record_batch_memory_size(&wide);
        assert!(held * 5 < whole, "{held} bytes kept of {whole}");
    }

    /// The case: a day of serving runs, each appending one small file of alerts (one
    /// batch each when read back, which DataFusion charges for buffers sized for 8192 rows),
    /// then the last-day document under a memory pool far below what `ORDER BY … LIMIT 200`
    /// over those files reserved (its TopK kept the batches of the newest 200 rows whole: with
    /// the production pool of 512 MB it failed from about 19:00 at `--scale 0.2`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_day_document_is_bounded_by_its_rows_not_by_the_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let start = parse_utc("2026-02-01T03:00:00Z").unwrap();
        let t = parse_utc("2026-02-02T03:00:00Z").unwrap();
        let mut planted = Vec::new();
        // Every 10 minutes from 24 h 10 min before T to 20 minutes after it: the first run and
        // the two after T are outside (T − 24 h, T].
        let mut at = start - Duration::minutes(10);
        let mut run = 0usize;
        while at <= t + Duration::minutes(20) {
            let b = raised(at, 3 + run % 7, 20);
            if at > start && at <= t {
                planted.extend(keys(std::slice::from_ref(&b)));
            }
            append(&store, b).await;
            at += Duration::minutes(10);
            run += 1;
        }
        assert_eq!(run, 148);
        planted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        planted.truncate(LAST_DAY_MAX);

        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(16 << 20)))
            .build_arc()
            .unwrap();
        let df_ctx = DeltaSessionContext::with_runtime_env(runtime).into_inner();
        let table = store.delta_table(ALERTS_PATH).await.unwrap().unwrap();
        let read = Recent::read(&df_ctx, &table, t).await.unwrap();
        // Rows raised after T were in the table: what was read is not kept for a later run.
        assert!(read.ahead);
        let got = read.last_day().unwrap();
        assert_eq!(keys(&got), planted);
        let rows = json_rows(&got).unwrap();
        assert_eq!(rows[0]["triggered_at"], "2026-02-02T03:00:00Z");
        for r in &rows {
            assert_eq!(r["triggering_ids"].as_array().unwrap().len(), 20, "{r}");
        }
    }

    /// Appends `b` to the alerts table of `store`, as a run does: the table after it.
    async fn append(store: &Store, b: RecordBatch) -> DeltaTable {
        store
            .delta_table_or_new(ALERTS_PATH)
            .await
            .unwrap()
            .write(vec![b])
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(["date"])
            .await
            .unwrap()
    }

    /// Two days of runs, every 20 minutes, each taking the held state, appending its
    /// alerts as a run does and keeping it, with an hourly compaction between runs as upkeep
    /// makes; the table is read once, by the first run. At every run what is held equals the
    /// same rows read from the table; a commit of rows another writer made is noticed.
    #[tokio::test]
    async fn what_is_held_follows_the_runs_appends_and_compactions_and_equals_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let df_ctx = SessionContext::new();
        let mut t = parse_utc("2026-02-01T00:00:00Z").unwrap();
        let end = parse_utc("2026-02-03T01:00:00Z").unwrap();
        let mut run = 0usize;
        while t <= end {
            let table = store.delta_table(ALERTS_PATH).await.unwrap();
            let mut recent = Recent::of(&store, &df_ctx, table.as_ref(), t)
                .await
                .unwrap();
            // Held from the run before: the first run had no table to read.
            assert!(!recent.read_from_table, "run {run} at {t}");
            assert_eq!(recent.version, table.as_ref().and_then(DeltaTable::version));
            let b = raised(t, 1 + run % 3, 2);
            assert!(!recent.knows(&keys(std::slice::from_ref(&b))[0].1));
            let written = append(&store, b.clone()).await;
            recent.appended(&[b], written.version()).unwrap();
            recent.verify(&df_ctx, &written).await.unwrap();
            assert!(recent.knows(&keys(&recent.last_day().unwrap())[0].1));
            recent.keep(&store);
            if t.format("%M").to_string() == "40" {
                crate::layers::batch::compact::compact_table(&store, ALERTS_PATH, None, None)
                    .await
                    .unwrap();
            }
            t += Duration::minutes(20);
            run += 1;
        }
        let table = store.delta_table(ALERTS_PATH).await.unwrap().unwrap();
        let recent = Recent::of(&store, &df_ctx, Some(&table), t).await.unwrap();
        assert!(!recent.read_from_table, "held over the compactions");
        recent.verify(&df_ctx, &table).await.unwrap();
        // The ids of the dates before the last day's first left.
        assert_eq!(
            recent.ids.keys().collect::<Vec<_>>(),
            ["2026-02-02", "2026-02-03"]
        );
        recent.keep(&store);

        // Rows another writer appended: the held state does not follow them.
        let other = append(&store, raised(t, 2, 1)).await;
        let recent = Recent::of(&store, &df_ctx, Some(&other), t).await.unwrap();
        assert!(recent.read_from_table);
        assert!(recent.knows(&keys(&[raised(t, 2, 1)])[0].1));
        recent.verify(&df_ctx, &other).await.unwrap();
    }
}
