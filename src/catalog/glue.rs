//! The Glue Data Catalog (`catalog refresh --glue`, `[glue] enabled`): the catalog's tables
//! ([`super::tables`], the same model the Athena DDL is written from) registered through the
//! Glue API, so Athena, Redshift Spectrum, EMR and Glue jobs see them without pasting DDL.
//!
//! Like a delta-rs operation, [`GlueSync`] plans (reads the database and its tables, and works
//! out what to create or update) and then executes, returning [`GlueMetrics`]. It is
//! idempotent: a table whose definition already matches is left alone; one that differs is
//! updated in place (parameters lakepipe does not own are kept); tables lakepipe does not
//! describe are never touched or deleted.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_glue::Client;
use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, Table, TableInput};
use serde::{Deserialize, Serialize};

use super::tables::{RowFormat, TableDef};
use crate::config::GlueTarget;
use crate::store::S3Connection;

/// Hive's input format of text tables.
pub const TEXT_INPUT_FORMAT: &str = "org.apache.hadoop.mapred.TextInputFormat";
/// Hive's output format of text tables.
pub const TEXT_OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat";
/// The OpenX JSON SerDe (JSON lines).
pub const JSON_SERDE: &str = "org.openx.data.jsonserde.JsonSerDe";
/// Hive's delimited-text SerDe (`ROW FORMAT DELIMITED`).
pub const DELIMITED_SERDE: &str = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe";

/// Errors of a Glue sync.
#[derive(Debug, thiserror::Error)]
pub enum GlueError {
    /// A Glue API call failed (denied, throttled past the SDK's retries, unreachable).
    #[error("Glue {operation} of `{target}` failed: {reason}")]
    Call {
        /// The API operation (`GetTables`, `CreateTable`, …).
        operation: &'static str,
        /// The database or table.
        target: String,
        /// The SDK's error with its causes.
        reason: String,
    },
    /// A table could not be described in the API's terms.
    #[error("the Glue definition of `{table}` is invalid: {reason}")]
    Input {
        /// The table.
        table: String,
        /// What the SDK refused.
        reason: String,
    },
}

impl GlueError {
    /// The failed API call `operation` on `target`, with the SDK error's causes in one line.
    fn call(operation: &'static str, target: &str, e: impl std::error::Error + 'static) -> Self {
        GlueError::Call {
            operation,
            target: target.to_string(),
            reason: crate::store::source_chain(&e),
        }
    }
}

/// A Glue client for `target`, with the lake's credentials and region.
pub async fn client(target: &GlueTarget) -> Client {
    let conn = S3Connection::load(&target.s3, target.connect_timeout).await;
    let mut b = aws_sdk_glue::config::Builder::from(&conn.sdk)
        .region(aws_sdk_glue::config::Region::new(conn.region.clone()));
    if let Some(e) = &target.endpoint {
        b = b.endpoint_url(e);
    }
    Client::from_conf(b.build())
}

/// A table as Glue holds it, in the terms lakepipe compares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GlueTable {
    /// Table name.
    pub name: String,
    /// `EXTERNAL_TABLE`.
    pub table_type: Option<String>,
    /// S3 location.
    pub location: Option<String>,
    /// Data columns (name, Hive type).
    pub columns: Vec<(String, String)>,
    /// Partition columns (name, Hive type).
    pub partition_keys: Vec<(String, String)>,
    /// SerDe class.
    pub serde_library: Option<String>,
    /// SerDe parameters.
    pub serde_parameters: BTreeMap<String, String>,
    /// Input format class.
    pub input_format: Option<String>,
    /// Output format class.
    pub output_format: Option<String>,
    /// Table parameters (`TBLPROPERTIES`, and `EXTERNAL`).
    pub parameters: BTreeMap<String, String>,
}

impl GlueTable {
    /// Whether the table parameter `key` is lakepipe's: one this definition sets, or one of
    /// the kinds lakepipe sets even if this definition no longer does (a parameter of these
    /// kinds left over from an older definition is removed by an update). Others belong to
    /// whoever added them: never compared, kept by an update.
    fn owns(&self, key: &str) -> bool {
        self.parameters.contains_key(key)
            || key.starts_with("projection.")
            || matches!(
                key,
                "EXTERNAL" | "table_type" | "storage.location.template" | "skip.header.line.count"
            )
    }

    /// What Glue should hold for `def` (what Athena stores for the DDL of the same table).
    pub fn from_def(def: &TableDef) -> GlueTable {
        let mut parameters = def.property_map();
        parameters.insert("EXTERNAL".into(), "TRUE".into());
        let (serde_library, serde_parameters) = match def.row_format {
            None => (None, BTreeMap::new()),
            Some(RowFormat::JsonLines) => (
                Some(JSON_SERDE.to_string()),
                BTreeMap::from([("ignore.malformed.json".into(), "true".into())]),
            ),
            Some(RowFormat::Delimited(c)) => (
                Some(DELIMITED_SERDE.to_string()),
                BTreeMap::from([
                    ("field.delim".into(), c.to_string()),
                    ("serialization.format".into(), c.to_string()),
                ]),
            ),
        };
        let text = def.row_format.is_some();
        GlueTable {
            name: def.name.clone(),
            table_type: Some("EXTERNAL_TABLE".into()),
            location: Some(def.location.clone()),
            columns: def.columns.clone(),
            partition_keys: def
                .partition_keys
                .iter()
                .map(|k| (k.clone(), "string".to_string()))
                .collect(),
            serde_library,
            serde_parameters,
            input_format: text.then(|| TEXT_INPUT_FORMAT.to_string()),
            output_format: text.then(|| TEXT_OUTPUT_FORMAT.to_string()),
            parameters,
        }
    }

    /// The table as Glue answered it.
    pub fn from_glue(t: &Table) -> GlueTable {
        let columns = |cs: &[Column]| {
            cs.iter()
                .map(|c| (c.name().to_string(), c.r#type().unwrap_or("").to_string()))
                .collect::<Vec<_>>()
        };
        let sorted = |m: Option<&HashMap<String, String>>| {
            m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        };
        let sd = t.storage_descriptor();
        let serde = sd.and_then(|s| s.serde_info());
        GlueTable {
            name: t.name().to_string(),
            table_type: t.table_type().map(str::to_string),
            location: sd.and_then(|s| s.location()).map(str::to_string),
            columns: sd.map(|s| columns(s.columns())).unwrap_or_default(),
            partition_keys: columns(t.partition_keys()),
            serde_library: serde
                .and_then(|s| s.serialization_library())
                .map(str::to_string),
            serde_parameters: sorted(serde.and_then(|s| s.parameters())),
            input_format: sd.and_then(|s| s.input_format()).map(str::to_string),
            output_format: sd.and_then(|s| s.output_format()).map(str::to_string),
            parameters: sorted(t.parameters()),
        }
    }

    /// What differs between `self` (wanted) and `actual`, by field; parameters lakepipe does
    /// not own are not compared.
    pub fn differences(&self, actual: &GlueTable) -> Vec<&'static str> {
        let mut out = Vec::new();
        let ours = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            m.iter()
                .filter(|(k, _)| self.owns(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let checks: [(&'static str, bool); 8] = [
            ("table_type", self.table_type == actual.table_type),
            ("location", self.location == actual.location),
            ("columns", self.columns == actual.columns),
            (
                "partition_keys",
                self.partition_keys == actual.partition_keys,
            ),
            ("serde", self.serde_library == actual.serde_library),
            (
                "serde_parameters",
                self.serde_parameters == actual.serde_parameters,
            ),
            (
                "formats",
                self.input_format == actual.input_format
                    && self.output_format == actual.output_format,
            ),
            (
                "parameters",
                ours(&self.parameters) == ours(&actual.parameters),
            ),
        ];
        for (field, same) in checks {
            if !same {
                out.push(field);
            }
        }
        out
    }

    /// The API's input for this table; parameters of `keep` that lakepipe does not own are
    /// carried over (an update replaces the whole definition).
    fn input(&self, keep: Option<&GlueTable>) -> Result<TableInput, GlueError> {
        let invalid = |e: aws_sdk_glue::error::BuildError| GlueError::Input {
            table: self.name.clone(),
            reason: e.to_string(),
        };
        let column = |(name, ty): &(String, String)| {
            Column::builder()
                .name(name)
                .r#type(ty)
                .build()
                .map_err(invalid)
        };
        let mut parameters: HashMap<String, String> = keep
            .map(|k| {
                k.parameters
                    .iter()
                    .filter(|(key, _)| !self.owns(key))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        parameters.extend(self.parameters.clone());
        let mut sd = StorageDescriptor::builder()
            .set_location(self.location.clone())
            .set_columns(Some(
                self.columns.iter().map(column).collect::<Result<_, _>>()?,
            ))
            .set_input_format(self.input_format.clone())
            .set_output_format(self.output_format.clone());
        if let Some(lib) = &self.serde_library {
            sd = sd.serde_info(
                SerDeInfo::builder()
                    .serialization_library(lib)
                    .set_parameters(Some(self.serde_parameters.clone().into_iter().collect()))
                    .build(),
            );
        }
        TableInput::builder()
            .name(&self.name)
            .set_table_type(self.table_type.clone())
            .storage_descriptor(sd.build())
            .set_partition_keys(Some(
                self.partition_keys
                    .iter()
                    .map(column)
                    .collect::<Result<_, _>>()?,
            ))
            .set_parameters(Some(parameters))
            .build()
            .map_err(invalid)
    }
}

/// Figures of a sync.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GlueMetrics {
    /// The database.
    pub database: String,
    /// Whether this sync created it.
    pub database_created: bool,
    /// Tables created.
    pub created: Vec<String>,
    /// Tables updated, with the fields that differed (`location`, `columns`, …).
    pub updated: BTreeMap<String, Vec<String>>,
    /// Tables already as described.
    pub unchanged: usize,
}

/// Registers tables in a Glue database: [`GlueSync::plan`], then [`GluePlan::execute`].
#[derive(Debug)]
pub struct GlueSync {
    client: Client,
    database: String,
    catalog_id: Option<String>,
    description: Option<String>,
    tables: Vec<TableDef>,
}

/// What a sync will do, read from Glue by [`GlueSync::plan`].
#[derive(Debug)]
pub struct GluePlan {
    sync: GlueSync,
    /// The database does not exist yet.
    pub create_database: bool,
    /// Per table: what it should be and what Glue holds now, if anything.
    pub tables: Vec<(GlueTable, Option<GlueTable>)>,
}

impl GlueSync {
    /// A sync of no tables into `database`, in the caller's account.
    pub fn new(client: Client, database: impl Into<String>) -> GlueSync {
        GlueSync {
            client,
            database: database.into(),
            catalog_id: None,
            description: None,
            tables: Vec::new(),
        }
    }

    /// Another account's catalog.
    pub fn with_catalog_id(mut self, id: Option<String>) -> Self {
        self.catalog_id = id;
        self
    }

    /// The description a created database gets.
    pub fn with_description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// The tables to register.
    pub fn with_tables(mut self, tables: Vec<TableDef>) -> Self {
        self.tables = tables;
        self
    }

    /// Reads the database and its tables and pairs each wanted table with what Glue holds.
    pub async fn plan(self) -> Result<GluePlan, GlueError> {
        let db = self
            .client
            .get_database()
            .set_catalog_id(self.catalog_id.clone())
            .name(&self.database)
            .send()
            .await;
        let create_database = match db {
            Ok(_) => false,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                true
            }
            Err(e) => return Err(GlueError::call("GetDatabase", &self.database, e)),
        };
        let mut existing: BTreeMap<String, GlueTable> = BTreeMap::new();
        if !create_database {
            let mut token = None;
            loop {
                let page = self
                    .client
                    .get_tables()
                    .set_catalog_id(self.catalog_id.clone())
                    .database_name(&self.database)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| GlueError::call("GetTables", &self.database, e))?;
                for t in page.table_list() {
                    let t = GlueTable::from_glue(t);
                    existing.insert(t.name.to_lowercase(), t);
                }
                token = page.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        let tables = self
            .tables
            .iter()
            .map(|d| {
                let want = GlueTable::from_def(d);
                let have = existing.remove(&want.name.to_lowercase());
                (want, have)
            })
            .collect();
        Ok(GluePlan {
            sync: self,
            create_database,
            tables,
        })
    }
}

impl GluePlan {
    /// Creates the database if missing, then each missing table, and updates each table that
    /// differs. A table another writer created meanwhile is updated instead.
    pub async fn execute(self) -> Result<GlueMetrics, GlueError> {
        let s = &self.sync;
        let mut m = GlueMetrics {
            database: s.database.clone(),
            ..GlueMetrics::default()
        };
        if self.create_database {
            let input = DatabaseInput::builder()
                .name(&s.database)
                .set_description(s.description.clone())
                .build()
                .map_err(|e| GlueError::Input {
                    table: s.database.clone(),
                    reason: e.to_string(),
                })?;
            match s
                .client
                .create_database()
                .set_catalog_id(s.catalog_id.clone())
                .database_input(input)
                .send()
                .await
            {
                Ok(_) => m.database_created = true,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|x| x.is_already_exists_exception()) => {}
                Err(e) => return Err(GlueError::call("CreateDatabase", &s.database, e)),
            }
        }
        for (want, have) in &self.tables {
            match have {
                None => {
                    let created = s
                        .client
                        .create_table()
                        .set_catalog_id(s.catalog_id.clone())
                        .database_name(&s.database)
                        .table_input(want.input(None)?)
                        .send()
                        .await;
                    match created {
                        Ok(_) => m.created.push(want.name.clone()),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|x| x.is_already_exists_exception()) =>
                        {
                            self.update(want, None).await?;
                            m.updated
                                .insert(want.name.clone(), vec!["created meanwhile".into()]);
                        }
                        Err(e) => return Err(GlueError::call("CreateTable", &want.name, e)),
                    }
                }
                Some(have) => {
                    let diff = want.differences(have);
                    if diff.is_empty() {
                        m.unchanged += 1;
                    } else {
                        self.update(want, Some(have)).await?;
                        m.updated.insert(
                            want.name.clone(),
                            diff.into_iter().map(str::to_string).collect(),
                        );
                    }
                }
            }
        }
        Ok(m)
    }

    async fn update(&self, want: &GlueTable, have: Option<&GlueTable>) -> Result<(), GlueError> {
        let s = &self.sync;
        s.client
            .update_table()
            .set_catalog_id(s.catalog_id.clone())
            .database_name(&s.database)
            .table_input(want.input(have)?)
            .send()
            .await
            .map_err(|e| GlueError::call("UpdateTable", &want.name, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::datasets;
    use crate::catalog::tables::{DeltaTable, tables};

    fn defs() -> Vec<TableDef> {
        tables(
            &datasets(),
            &[DeltaTable {
                name: "gold_fact_api_hourly".into(),
                path: "batch/gold/fact_api_hourly".into(),
            }],
            "s3://bkt/lake",
        )
    }

    #[test]
    fn text_tables_get_the_serde_and_formats_athena_stores_for_their_ddl() {
        let all = defs();
        let get = |n: &str| GlueTable::from_def(all.iter().find(|d| d.name == n).unwrap());
        let csv = get("csv_files");
        assert_eq!(csv.serde_library.as_deref(), Some(DELIMITED_SERDE));
        assert_eq!(csv.serde_parameters["field.delim"], ",");
        assert_eq!(csv.input_format.as_deref(), Some(TEXT_INPUT_FORMAT));
        assert_eq!(csv.parameters["EXTERNAL"], "TRUE");
        assert_eq!(csv.parameters["skip.header.line.count"], "1");
        assert_eq!(get("text_files").serde_parameters["field.delim"], "\u{1}");
        assert_eq!(
            get("iot_data").serde_library.as_deref(),
            Some(JSON_SERDE),
            "JSON lines"
        );
        let delta = get("gold_fact_api_hourly");
        assert_eq!(delta.parameters["table_type"], "DELTA");
        assert_eq!(
            delta.location.as_deref(),
            Some("s3://bkt/lake/batch/gold/fact_api_hourly/")
        );
        assert!(delta.serde_library.is_none() && delta.columns.is_empty());
    }

    #[test]
    fn a_table_built_from_its_own_input_has_no_differences_and_foreign_parameters_are_kept() {
        for def in defs() {
            let want = GlueTable::from_def(&def);
            let mut have = want.clone();
            // Someone else's parameter: not a difference, and kept by an update.
            have.parameters
                .insert("owner_team".into(), "analytics".into());
            assert!(want.differences(&have).is_empty(), "{}", def.name);
            let input = want.input(Some(&have)).unwrap();
            assert_eq!(input.parameters().unwrap()["owner_team"], "analytics");
            // A stale projection key lakepipe no longer sets is a difference, and dropped.
            have.parameters
                .insert("projection.gone.type".into(), "enum".into());
            assert_eq!(want.differences(&have), ["parameters"]);
            let input = want.input(Some(&have)).unwrap();
            assert!(
                !input
                    .parameters()
                    .unwrap()
                    .contains_key("projection.gone.type")
            );
            let mut moved = want.clone();
            moved.location = Some("s3://elsewhere/".into());
            assert_eq!(want.differences(&moved), ["location"]);
        }
    }
}
