//! Delta Lake tables in the lake. deltalake is built without its S3 feature: on S3, tables live
//! under the `lakepipe://lake/<path>` URL scheme, whose log store is the default one over
//! [`Store::object_store`] — so Delta I/O shares the store's client, credentials, retries and
//! lake prefix. On a local lake they are plain `file://` tables (the Delta kernel sorts local
//! listings itself, which only it knows to do for `file://`).
//!
//! Commits are create-only writes of `_delta_log/<version>.json`. On a store that ignores
//! create-only PUT (Garage, see `_lakepipe/capabilities.json`) two concurrent writers could
//! overwrite each other's commit: there [`OwnWrites`](super::own_writes::OwnWrites) reads each
//! commit back and refuses one that another writer overwrote, as a concurrent commit.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Once};

use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use deltalake::{DeltaResult, DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use super::Store;

/// The snapshots this process keeps, by lake and table path ([`Store::delta_table`]).
static KEPT: LazyLock<Mutex<HashMap<String, DeltaTable>>> = LazyLock::new(Default::default);

/// Where a kept snapshot stands ([`Store::delta_table`]).
enum Probe {
    /// Its version is the table's newest.
    Current,
    /// Newer commits exist.
    Behind,
    /// Its version's commit is gone: another table is at the path.
    Gone,
}

/// URL scheme of lake-relative table locations.
pub const SCHEME: &str = "lakepipe";

#[derive(Debug)]
struct LakeLogStoreFactory;

impl LogStoreFactory for LakeLogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_scheme() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let url = Url::parse(&format!("{SCHEME}://")).expect("static URL");
        logstore_factories().insert(url, Arc::new(LakeLogStoreFactory));
    });
}

/// A builder for the table at `url` (`lakepipe://lake/<path>`) over `store`, the lake's root.
pub(super) fn builder_over(
    store: Arc<dyn object_store::ObjectStore>,
    url: Url,
) -> DeltaResult<DeltaTableBuilder> {
    register_scheme();
    Ok(DeltaTableBuilder::from_url(url.clone())?.with_storage_backend(store, url))
}

impl Store {
    /// The URL of the table at lake path `path` (e.g. `batch/bronze/api_logs`).
    pub fn table_url(&self, path: &str) -> DeltaResult<Url> {
        let path = path.trim_matches('/');
        match self.local_root() {
            Some(root) => {
                let abs = std::path::absolute(root.join(path))
                    .map_err(|e| DeltaTableError::InvalidTableLocation(e.to_string()))?;
                Url::from_directory_path(&abs)
                    .map_err(|()| DeltaTableError::InvalidTableLocation(abs.display().to_string()))
            }
            None => Url::parse(&format!("{SCHEME}://lake/{path}"))
                .map_err(|e| DeltaTableError::InvalidTableLocation(e.to_string())),
        }
    }

    /// A builder for the table at `path`.
    pub fn table_builder(&self, path: &str) -> DeltaResult<DeltaTableBuilder> {
        let url = self.table_url(path)?;
        if self.is_local() {
            // The local file system, with listings of the log from a version that read only
            // the entries after it.
            return builder_over(super::offset_listing::OffsetListing::shared(), url);
        }
        // Commits on S3 recognise their own create-only write refused on a retry.
        builder_over(Arc::new(super::own_writes::OwnWrites::for_lake(self)), url)
    }

    /// The table at `path` (its newest version), or `None` if there is no table there.
    ///
    /// Tables this process has loaded are kept (one snapshot per lake and path) and brought up
    /// to date incrementally: only the commits made since are read, not the checkpoint and the
    /// log again, and with none made since, two lookups are all the I/O. A kept snapshot whose
    /// newest commit is gone (the table was deleted, or replaced by another one) is dropped and
    /// the table loaded afresh.
    pub async fn delta_table(&self, path: &str) -> DeltaResult<Option<DeltaTable>> {
        if let Some(root) = self.local_root()
            && !root.join(path).join("_delta_log").is_dir()
        {
            self.forget_table(path);
            return Ok(None);
        }
        if let Some(mut table) = self.kept_table(path) {
            match self.probe(path, &table).await {
                // The usual case: nothing committed since. Checked with two lookups, not by
                // listing the log (a local listing reads every entry of `_delta_log`).
                Probe::Current => return Ok(Some(table)),
                Probe::Behind => {
                    if table.update_state().await.is_ok() {
                        self.keep_table(path, &table);
                        return Ok(Some(table));
                    }
                }
                Probe::Gone => {}
            }
            self.forget_table(path);
        }
        match self.table_builder(path)?.load().await {
            Ok(t) => {
                self.keep_table(path, &t);
                Ok(Some(t))
            }
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Keeps `table` (just loaded or written) as the snapshot of `path` that the next
    /// [`Store::delta_table`] of this process brings up to date.
    pub fn keep_table(&self, path: &str, table: &DeltaTable) {
        if table.version().is_none() {
            return;
        }
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        let key = self.kept_key(path);
        // Never replace a newer snapshot by an older one (two tasks of one process).
        if kept
            .get(&key)
            .is_some_and(|k| k.version() > table.version())
        {
            return;
        }
        kept.insert(key, table.clone());
    }

    /// Drops the kept snapshot of `path`.
    pub fn forget_table(&self, path: &str) {
        KEPT.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.kept_key(path));
    }

    fn kept_table(&self, path: &str) -> Option<DeltaTable> {
        KEPT.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.kept_key(path))
            .cloned()
    }

    fn kept_key(&self, path: &str) -> String {
        format!("{}\u{0}{}", self.url(), path.trim_matches('/'))
    }

    /// Where `table`'s version stands in the log at `path`. Log clean-up only deletes commits
    /// older than a checkpoint, never the newest one, so a missing commit of the kept version
    /// means the table is not the one the snapshot was taken of; versions are contiguous, so
    /// without the next commit there is no newer one.
    async fn probe(&self, path: &str, table: &DeltaTable) -> Probe {
        let Some(version) = table.version() else {
            return Probe::Gone;
        };
        let commit = |v: u64| format!("{}/_delta_log/{v:020}.json", path.trim_matches('/'));
        if !matches!(self.head(&commit(version)).await, Ok(Some(_))) {
            return Probe::Gone;
        }
        match self.head(&commit(version + 1)).await {
            Ok(None) => Probe::Current,
            _ => Probe::Behind,
        }
    }

    /// The table at `path`, uninitialised if it does not exist yet (for create / first write).
    pub async fn delta_table_or_new(&self, path: &str) -> DeltaResult<DeltaTable> {
        if let Some(t) = self.delta_table(path).await? {
            return Ok(t);
        }
        if self.is_local() {
            // deltalake wants the folder of a new local table to exist.
            self.create_folder(path)
                .await
                .map_err(|e| DeltaTableError::InvalidTableLocation(e.to_string()))?;
        }
        self.table_builder(path)?.build()
    }

    /// Creates `table` (not yet made, from [`Store::delta_table_or_new`] of `path`) with
    /// `fields`, partitioned by `date` — or, when another writer created the table at the same
    /// moment (runs of one task for several dates started together, as an Airflow backfill
    /// with concurrency starts them), the table that writer made: its commit refused ours, and
    /// the callers check the schema they find as they do for any existing table.
    pub async fn create_dated_table(
        &self,
        table: DeltaTable,
        path: &str,
        fields: Vec<deltalake::kernel::StructField>,
    ) -> DeltaResult<DeltaTable> {
        let refused = match table
            .create()
            .with_columns(fields)
            .with_partition_columns(["date"])
            .await
        {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        self.forget_table(path);
        match self.delta_table(path).await {
            Ok(Some(t)) => {
                tracing::info!(
                    table = path,
                    "created by another writer at the same time ({refused}): writing to that table"
                );
                Ok(t)
            }
            _ => Err(refused),
        }
    }
}

/// The actions of commit `version` of `table`'s log; `None` if that commit is not in the log
/// (not made yet, or cleaned up after a checkpoint). The one reader of single commits for
/// what follows a table from version to version (windows, id filters, vacuum since a cut,
/// the alerts' last day).
pub async fn commit_actions(
    table: &DeltaTable,
    version: u64,
) -> DeltaResult<Option<Vec<deltalake::kernel::Action>>> {
    match table.log_store().read_commit_entry(version).await? {
        Some(bytes) => deltalake::logstore::get_actions(version, &bytes).map(Some),
        None => Ok(None),
    }
}

/// The columns of `table` and their Delta types (`long`, `string`, `timestamp`, …); none for a
/// table without a loaded snapshot.
pub fn table_fields(table: &DeltaTable) -> Vec<(String, String)> {
    table
        .snapshot()
        .map(|s| {
            s.schema()
                .fields()
                .map(|f| (f.name().to_string(), f.data_type().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes `table` readable in `ctx` as `name`: registers its object store with the session and
/// the table as a provider.
pub async fn register_delta(
    ctx: &SessionContext,
    name: &str,
    table: &DeltaTable,
) -> Result<(), DataFusionError> {
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table(name, table.table_provider().await?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::protocol::SaveMode;
    use std::sync::Arc;

    async fn write(store: &super::Store, path: &str, n: i64, mode: SaveMode) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![n]))]).unwrap();
        store
            .delta_table_or_new(path)
            .await
            .unwrap()
            .write(vec![b])
            .with_save_mode(mode)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_kept_table_follows_new_commits_and_a_replaced_table_is_loaded_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_store(dir.path()).await;
        assert!(store.delta_table("t").await.unwrap().is_none());
        write(&store, "t", 1, SaveMode::Append).await;
        let v0 = store.delta_table("t").await.unwrap().unwrap();
        assert_eq!(v0.version(), Some(0));
        // Commits made behind the kept snapshot's back are read.
        write(&store, "t", 2, SaveMode::Append).await;
        write(&store, "t", 3, SaveMode::Append).await;
        let t = store.delta_table("t").await.unwrap().unwrap();
        assert_eq!(t.version(), Some(2));
        assert_eq!(t.snapshot().unwrap().log_data().num_files(), 3);
        // The table is deleted and another one made at the same path: its version 0 is not
        // the kept version 2's successor.
        write(&store, "u", 4, SaveMode::Append).await;
        std::fs::remove_dir_all(dir.path().join("t")).unwrap();
        std::fs::rename(dir.path().join("u"), dir.path().join("t")).unwrap();
        let t = store.delta_table("t").await.unwrap().unwrap();
        assert_eq!(t.version(), Some(0));
        assert_eq!(t.snapshot().unwrap().log_data().num_files(), 1);
    }
}
