//! Schema evolution of the per-stream tables (`batch/silver/<stream>`,
//! `serving/unified/<stream>`) when the pipeline declaration changes.
//!
//! Only the stream's own columns evolve — its fields and derived columns; the id, the event
//! time, the lineage columns and `date` are lakepipe's and must be as this version writes them.
//! - A column the declaration adds is added to the table's metadata (nullable: older rows read
//!   as null) in a metadata-only commit before the write ([`evolve`]).
//! - A stream column the table holds whose type the declaration changes, or that it no longer
//!   declares, is refused before anything is written ([`Error::Refused`]), unless the table is
//!   rewritten with `lakepipe pipeline migrate --rewrite` ([`MigrateBuilder`], `migrate.rs`).
//! - The order of the columns does not matter: rows are matched to the table by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use delta_kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::arrow::compute::can_cast_types;
use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::common::{Column, ScalarValue};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, cast, lit, try_cast};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{DataType, PrimitiveType, StructField, StructType};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use serde::{Deserialize, Serialize};

use crate::sources::stream::StreamSpec;

/// The declaration's name of a Delta type (`string`, `int`, `float`, `bool`, `tags`), else
/// Delta's own.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Primitive(PrimitiveType::String) => "string".into(),
        DataType::Primitive(PrimitiveType::Long) => "int".into(),
        DataType::Primitive(PrimitiveType::Double) => "float".into(),
        DataType::Primitive(PrimitiveType::Boolean) => "bool".into(),
        DataType::Array(a) if a.element_type() == &DataType::Primitive(PrimitiveType::String) => {
            "tags".into()
        }
        other => other.to_string(),
    }
}

/// A change of a column the table holds, refused unless the table is rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The column.
    pub column: String,
    /// Its type in the table.
    pub old: String,
    /// Its declared type; `None`: the declaration no longer has it.
    pub new: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.new {
            Some(new) => write!(
                f,
                "column {} changes type from {} to {new}",
                self.column, self.old
            ),
            None => write!(f, "column {} ({}) is removed", self.column, self.old),
        }
    }
}

/// Why a table's schema cannot evolve, or a migration failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The declaration changes the type of a column the table holds, or removes it.
    #[error(
        "{table}: {}; a Delta table keeps its columns' types: restore the declaration, or run `lakepipe pipeline migrate --rewrite` to rewrite {table} with the declared columns (values that do not cast become null)",
        Change { column: column.clone(), old: old.clone(), new: new.clone() }
    )]
    Refused {
        /// The table (lake path).
        table: String,
        /// The column.
        column: String,
        /// Its type in the table.
        old: String,
        /// Its declared type; `None`: removed.
        new: Option<String>,
    },
    /// A column that is lakepipe's, not the stream's, differs: another version made the table.
    #[error(
        "{table}: column {column} is {found} but this version of lakepipe writes {wanted}: the table was made by another version; move it aside and re-run the batch to rebuild it"
    )]
    NotThisVersion {
        /// The table (lake path).
        table: String,
        /// The column.
        column: String,
        /// Its type in the table (`missing` if absent).
        found: String,
        /// The type written (`nothing` if not written).
        wanted: String,
    },
    /// Delta Lake (reading, adding columns, rewriting `table`).
    #[error("{table}: {source}")]
    Delta {
        /// The table.
        table: String,
        /// What deltalake said.
        #[source]
        source: DeltaTableError,
    },
    /// Planning or running the rewrite of `table`, or the schema a table is written with.
    #[error("{table}: {source}")]
    DataFusion {
        /// The table.
        table: String,
        /// What DataFusion said.
        #[source]
        source: DataFusionError,
    },
    /// A schema Delta cannot hold.
    #[error("{table}: {source}")]
    Kernel {
        /// The table.
        table: String,
        /// What the kernel said.
        #[source]
        source: delta_kernel::Error,
    },
}

impl Error {
    fn delta(table: &str) -> impl FnOnce(DeltaTableError) -> Error + '_ {
        move |source| Error::Delta {
            table: table.to_string(),
            source,
        }
    }

    fn datafusion(table: &str) -> impl FnOnce(DataFusionError) -> Error + '_ {
        move |source| Error::DataFusion {
            table: table.to_string(),
            source,
        }
    }

    /// Whether this error is a refused change (the task must not be retried).
    pub fn is_refused(&self) -> bool {
        matches!(self, Error::Refused { .. } | Error::NotThisVersion { .. })
    }
}

/// The columns of a declared stream that may evolve: its fields and derived columns.
pub fn stream_columns(spec: &StreamSpec) -> Vec<String> {
    spec.fields
        .iter()
        .map(|f| f.name.to_string())
        .chain(spec.derived.iter().map(|d| d.name.to_string()))
        .collect()
}

/// How the schema `wanted` about to be written differs from the table's `existing`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    /// Stream columns to add (nullable), in the order written.
    pub added: Vec<StructField>,
    /// Stream columns changed or removed, in the table's order.
    pub refused: Vec<Change>,
}

/// Compares the table's schema `existing` with `wanted`; `stream` lists the columns that may
/// evolve (the others must be as written). Columns are matched by name: order does not count.
pub fn diff(
    table: &str,
    existing: &StructType,
    wanted: &StructType,
    stream: &[String],
) -> Result<Diff, Error> {
    let is_stream = |n: &str| stream.iter().any(|s| s == n);
    let mut out = Diff::default();
    for e in existing.fields() {
        match wanted.field(e.name()) {
            Some(w) if w.data_type() == e.data_type() => {}
            Some(w) if is_stream(w.name()) => out.refused.push(Change {
                column: e.name().clone(),
                old: type_name(e.data_type()),
                new: Some(type_name(w.data_type())),
            }),
            Some(w) => {
                return Err(Error::NotThisVersion {
                    table: table.to_string(),
                    column: e.name().clone(),
                    found: type_name(e.data_type()),
                    wanted: type_name(w.data_type()),
                });
            }
            // A column no longer written: a field or derived column removed.
            None => out.refused.push(Change {
                column: e.name().clone(),
                old: type_name(e.data_type()),
                new: None,
            }),
        }
    }
    for w in wanted.fields() {
        if existing.field(w.name()).is_some() {
            continue;
        }
        if !is_stream(w.name()) {
            return Err(Error::NotThisVersion {
                table: table.to_string(),
                column: w.name().clone(),
                found: "missing".into(),
                wanted: type_name(w.data_type()),
            });
        }
        out.added
            .push(StructField::new(w.name(), w.data_type().clone(), true));
    }
    Ok(out)
}

/// [`diff`], refusing the first change it finds: the columns to add.
pub fn compare(
    table: &str,
    existing: &StructType,
    wanted: &StructType,
    stream: &[String],
) -> Result<Vec<StructField>, Error> {
    let d = diff(table, existing, wanted, stream)?;
    match d.refused.into_iter().next() {
        Some(c) => Err(Error::Refused {
            table: table.to_string(),
            column: c.column,
            old: c.old,
            new: c.new,
        }),
        None => Ok(d.added),
    }
}

/// The Delta schema of rows of `schema`.
pub fn kernel_schema(table: &str, schema: &Schema) -> Result<StructType, Error> {
    schema.try_into_kernel().map_err(|e| Error::Kernel {
        table: table.to_string(),
        source: e.into(),
    })
}

fn table_schema(path: &str, table: &DeltaTable) -> Result<StructType, Error> {
    let snapshot = table.snapshot().map_err(Error::delta(path))?;
    snapshot
        .metadata()
        .parse_schema()
        .map_err(|e| Error::Kernel {
            table: path.to_string(),
            source: e,
        })
}

/// Before rows of `wanted` are written to `table` (at `path`, existing): refuses a change of
/// its stream columns ([`compare`]), and adds the declared columns it lacks in a metadata-only
/// commit with `props`. Returns the table (reloaded if columns were added) and their names.
pub async fn evolve(
    table: DeltaTable,
    path: &str,
    wanted: &Schema,
    stream: &[String],
    props: CommitProperties,
) -> Result<(DeltaTable, Vec<String>), Error> {
    if table.version().is_none() {
        return Ok((table, Vec::new()));
    }
    let existing = table_schema(path, &table)?;
    let added = compare(path, &existing, &kernel_schema(path, wanted)?, stream)?;
    if added.is_empty() {
        return Ok((table, Vec::new()));
    }
    let names = added.iter().map(|f| f.name().clone()).collect();
    let table = table
        .add_columns()
        .with_fields(added)
        .with_commit_properties(props)
        .await
        .map_err(Error::delta(path))?;
    Ok((table, names))
}

mod migrate;

pub use migrate::{MigrateBuilder, MigrateMetrics, TableMigration};

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use deltalake::kernel::ArrayType;

    fn names(s: &StructType) -> HashSet<String> {
        s.fields().map(|f| f.name().clone()).collect()
    }

    fn tags() -> DataType {
        DataType::Array(Box::new(ArrayType::new(DataType::STRING, true)))
    }

    fn schema(cols: &[(&str, DataType)]) -> StructType {
        StructType::try_new(
            cols.iter()
                .map(|(n, t)| StructField::new(*n, t.clone(), true)),
        )
        .unwrap()
    }

    fn stream() -> Vec<String> {
        ["amount", "status", "coupon", "big"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn orders() -> StructType {
        schema(&[
            ("order_id", DataType::STRING),
            ("amount", DataType::DOUBLE),
            ("status", DataType::STRING),
            ("_line", DataType::LONG),
            ("date", DataType::STRING),
        ])
    }

    #[test]
    fn the_same_columns_in_any_order_are_unchanged() {
        let t = "batch/silver/orders";
        assert_eq!(compare(t, &orders(), &orders(), &stream()).unwrap(), []);
        let reordered = schema(&[
            ("date", DataType::STRING),
            ("status", DataType::STRING),
            ("order_id", DataType::STRING),
            ("_line", DataType::LONG),
            ("amount", DataType::DOUBLE),
        ]);
        assert_eq!(compare(t, &orders(), &reordered, &stream()).unwrap(), []);
    }

    #[test]
    fn added_stream_columns_are_added_nullable() {
        let wanted = schema(&[
            ("order_id", DataType::STRING),
            ("coupon", DataType::STRING),
            ("amount", DataType::DOUBLE),
            ("status", DataType::STRING),
            ("_line", DataType::LONG),
            ("date", DataType::STRING),
            ("big", DataType::BOOLEAN),
        ]);
        let added = compare("batch/silver/orders", &orders(), &wanted, &stream()).unwrap();
        let got: Vec<(String, String, bool)> = added
            .iter()
            .map(|f| (f.name().clone(), type_name(f.data_type()), f.is_nullable()))
            .collect();
        assert_eq!(
            got,
            [
                ("coupon".into(), "string".into(), true),
                ("big".into(), "bool".into(), true)
            ]
        );
    }

    #[test]
    fn a_changed_or_removed_stream_column_is_refused_with_table_column_and_types() {
        let t = "batch/silver/orders";
        let wanted = schema(&[
            ("order_id", DataType::STRING),
            ("amount", DataType::STRING),
            ("_line", DataType::LONG),
            ("date", DataType::STRING),
            ("coupon", tags()),
        ]);
        let d = diff(t, &orders(), &wanted, &stream()).unwrap();
        assert_eq!(
            d.refused,
            [
                Change {
                    column: "amount".into(),
                    old: "float".into(),
                    new: Some("string".into())
                },
                Change {
                    column: "status".into(),
                    old: "string".into(),
                    new: None
                }
            ]
        );
        assert_eq!(names(&StructType::try_new(d.added).unwrap()).len(), 1);
        let e = compare(t, &orders(), &wanted, &stream()).unwrap_err();
        assert!(e.is_refused());
        let m = e.to_string();
        assert!(
            m.starts_with("batch/silver/orders: column amount changes type from float to string;")
                && m.contains("lakepipe pipeline migrate --rewrite"),
            "{m}"
        );
        let removed = schema(&[
            ("order_id", DataType::STRING),
            ("amount", DataType::DOUBLE),
            ("_line", DataType::LONG),
            ("date", DataType::STRING),
        ]);
        let m = compare(t, &orders(), &removed, &stream())
            .unwrap_err()
            .to_string();
        assert!(
            m.starts_with("batch/silver/orders: column status (string) is removed;"),
            "{m}"
        );
    }

    #[test]
    fn lakepipe_columns_do_not_evolve() {
        let t = "batch/silver/orders";
        let wanted = schema(&[
            ("order_id", DataType::STRING),
            ("amount", DataType::DOUBLE),
            ("status", DataType::STRING),
            ("_line", DataType::STRING),
            ("date", DataType::STRING),
        ]);
        let e = compare(t, &orders(), &wanted, &stream()).unwrap_err();
        assert!(matches!(e, Error::NotThisVersion { ref column, .. } if column == "_line"));
        let mut more: Vec<StructField> = orders().fields().cloned().collect();
        more.push(StructField::new("_ingest_run", DataType::STRING, false));
        let e = compare(t, &orders(), &StructType::try_new(more).unwrap(), &stream()).unwrap_err();
        assert!(e.to_string().contains("another version"), "{e}");
    }
}
