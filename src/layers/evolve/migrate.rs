//! `lakepipe pipeline migrate [--rewrite]`: compares the active declaration with every existing
//! silver and unified table ([`super::diff`]) and, on request, rewrites a table whose columns
//! the declaration changed or removed, in one Delta commit.

use std::future::IntoFuture;

use deltalake::arrow::datatypes::Schema;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::*;
use crate::sources::stream::StreamSpec;
use crate::store::Store;

/// What `lakepipe pipeline migrate` found (and did) for one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableMigration {
    /// The table (lake path).
    pub table: String,
    /// Columns the next run adds, `name type`.
    pub added: Vec<String>,
    /// Changes refused until the table is rewritten.
    pub refused: Vec<Change>,
    /// Rows rewritten (`--rewrite` of a table with refused changes); `None`: not rewritten.
    pub rows_rewritten: Option<u64>,
}

/// What `lakepipe pipeline migrate` found (and did): the existing per-stream tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrateMetrics {
    /// One entry per existing table, in stream order (silver then unified).
    pub tables: Vec<TableMigration>,
}

impl MigrateMetrics {
    /// Refused changes left (none after a rewrite).
    pub fn refused(&self) -> usize {
        self.tables
            .iter()
            .filter(|t| t.rows_rewritten.is_none())
            .map(|t| t.refused.len())
            .sum()
    }

    /// One line per table and change, for people.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if self.tables.is_empty() {
            out.push_str("no per-stream table yet: nothing to migrate\n");
        }
        for t in &self.tables {
            if t.added.is_empty() && t.refused.is_empty() {
                out.push_str(&format!("{}: up to date\n", t.table));
                continue;
            }
            let (by, verdict) = match t.rows_rewritten {
                Some(_) => ("the rewrite", "rewritten"),
                None => ("the next run", "refused"),
            };
            for a in &t.added {
                out.push_str(&format!("{}: add {a} (done by {by})\n", t.table));
            }
            for c in &t.refused {
                out.push_str(&format!("{}: {verdict}: {c}\n", t.table));
            }
            if let Some(n) = t.rows_rewritten {
                out.push_str(&format!(
                    "{}: rewritten with the declared columns: {n} row(s)\n",
                    t.table
                ));
            }
        }
        if self.refused() > 0 {
            out.push_str(
                "refused changes: restore the declaration, or run `lakepipe pipeline migrate --rewrite` (values that do not cast become null)\n",
            );
        }
        out
    }
}

/// The schema each per-stream table of `spec` is written with: `(path, schema)`.
async fn written_schemas(spec: &'static StreamSpec) -> Result<Vec<(String, Schema)>, Error> {
    let silver = crate::layers::batch::table_path("silver", spec.name);
    let unified = crate::layers::serving::unified::unified_path(spec.name);
    let s = crate::layers::batch::silver::written_schema(spec)
        .await
        .map_err(Error::datafusion(&silver))?;
    let u = crate::layers::serving::unified::written_schema(spec)
        .await
        .map_err(Error::datafusion(&unified))?;
    Ok(vec![(silver, s), (unified, u)])
}

/// `lakepipe pipeline migrate [--rewrite]`: compares the active declaration with every
/// existing silver and unified table; with rewrite, rewrites each table with a refused change
/// in one commit (removed columns dropped, changed ones cast, a value that does not cast null).
pub struct MigrateBuilder<'a> {
    store: &'a Store,
    rewrite: bool,
}

impl<'a> MigrateBuilder<'a> {
    /// A comparison of the lake of `store` with the active declaration.
    pub fn new(store: &'a Store) -> MigrateBuilder<'a> {
        MigrateBuilder {
            store,
            rewrite: false,
        }
    }

    /// Rewrites the tables with refused changes.
    pub fn with_rewrite(self, rewrite: bool) -> MigrateBuilder<'a> {
        MigrateBuilder { rewrite, ..self }
    }

    async fn run(self) -> Result<MigrateMetrics, Error> {
        let mut out = MigrateMetrics::default();
        for spec in crate::sources::stream::all_streams() {
            let stream = stream_columns(spec);
            for (path, wanted) in written_schemas(spec).await? {
                let Some(table) = self
                    .store
                    .delta_table(&path)
                    .await
                    .map_err(Error::delta(&path))?
                else {
                    continue;
                };
                let existing = table_schema(&path, &table)?;
                let d = diff(&path, &existing, &kernel_schema(&path, &wanted)?, &stream)?;
                let rows_rewritten = match self.rewrite && !d.refused.is_empty() {
                    true => Some(rewrite(table, &path, &wanted).await?),
                    false => None,
                };
                out.tables.push(TableMigration {
                    added: d
                        .added
                        .iter()
                        .map(|f| format!("{} {}", f.name(), type_name(f.data_type())))
                        .collect(),
                    table: path,
                    refused: d.refused,
                    rows_rewritten,
                });
            }
        }
        Ok(out)
    }
}

impl<'a> IntoFuture for MigrateBuilder<'a> {
    type Output = Result<MigrateMetrics, Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Rewrites `table` (at `path`) with the columns of `wanted`, in its order: kept columns as
/// they are, changed ones cast (null where a value does not cast), missing ones null; one
/// commit (overwrite, schema overwrite). Returns the rows rewritten.
async fn rewrite(table: DeltaTable, path: &str, wanted: &Schema) -> Result<u64, Error> {
    let ctx = crate::layers::sql::session().map_err(Error::datafusion(path))?;
    crate::store::register_delta(&ctx, "rewritten", &table)
        .await
        .map_err(Error::datafusion(path))?;
    let df = ctx
        .table("rewritten")
        .await
        .map_err(Error::datafusion(path))?;
    let have: BTreeMap<String, deltalake::arrow::datatypes::DataType> = df
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let exprs: Vec<Expr> = wanted
        .fields()
        .iter()
        .map(|f| {
            let to = f.data_type().clone();
            let column = Expr::Column(Column::from_name(f.name()));
            match have.get(f.name()) {
                Some(t) if t == &to => column,
                Some(t) if can_cast_types(t, &to) => try_cast(column, to),
                _ => cast(lit(ScalarValue::Null), to),
            }
            .alias(f.name())
        })
        .collect();
    let df = df.select(exprs).map_err(Error::datafusion(path))?;
    let rows = df.clone().count().await.map_err(Error::datafusion(path))? as u64;
    let plan = df.into_unoptimized_plan();
    let writer_properties =
        crate::layers::write::parquet_properties_for(plan.schema().as_arrow()).build();
    table
        .write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(ctx.state()))
        .with_writer_properties(writer_properties)
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .with_partition_columns(["date"])
        .await
        .map_err(Error::delta(path))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_each_table() {
        let m = MigrateMetrics {
            tables: vec![
                TableMigration {
                    table: "batch/silver/orders".into(),
                    added: vec!["coupon string".into()],
                    refused: vec![Change {
                        column: "amount".into(),
                        old: "float".into(),
                        new: Some("string".into()),
                    }],
                    rows_rewritten: None,
                },
                TableMigration {
                    table: "serving/unified/orders".into(),
                    added: vec![],
                    refused: vec![],
                    rows_rewritten: None,
                },
            ],
        };
        assert_eq!(m.refused(), 1);
        assert_eq!(
            m.summary(),
            "batch/silver/orders: add coupon string (done by the next run)\n\
             batch/silver/orders: refused: column amount changes type from float to string\n\
             serving/unified/orders: up to date\n\
             refused changes: restore the declaration, or run `lakepipe pipeline migrate --rewrite` (values that do not cast become null)\n"
        );
    }
}
