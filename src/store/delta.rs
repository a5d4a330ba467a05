//! Delta Lake tables in the lake. deltalake is built without its S3 feature: on S3, tables live
//! under the `lakepipe://lake/<path>` URL scheme, whose log store is the default one over
//! [`Store::object_store`] — so Delta I/O shares the store's client, credentials, retries and
//! lake prefix. On a local lake they are plain `file://` tables (the Delta kernel sorts local
//! listings itself, which only it knows to do for `file://`).
//!
//! Commits are create-only writes of `_delta_log/<version>.json`. On a store that ignores
//! create-only PUT (Garage, see `_lakepipe/capabilities.json`) two concurrent writers could
//! overwrite each other's commit: there the scheduler lease makes lakepipe the only writer.

use std::sync::{Arc, Once};

use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use deltalake::{DeltaResult, DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use super::Store;

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
            return DeltaTableBuilder::from_url(url);
        }
        register_scheme();
        Ok(
            DeltaTableBuilder::from_url(url.clone())?
                .with_storage_backend(self.object_store(), url),
        )
    }

    /// The table at `path` (its newest version), or `None` if there is no table there.
    pub async fn delta_table(&self, path: &str) -> DeltaResult<Option<DeltaTable>> {
        if let Some(root) = self.local_root()
            && !root.join(path).join("_delta_log").is_dir()
        {
            return Ok(None);
        }
        match self.table_builder(path)?.load().await {
            Ok(t) => Ok(Some(t)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e),
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
