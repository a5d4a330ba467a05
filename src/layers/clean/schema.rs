//! The schemas of the typed (clean) rows and of the quarantine rows, and the lineage columns
//! both carry from bronze.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::sources::stream::{Kind, StreamSpec};

/// The lineage columns that order the copies of one event, first landed first: ingest run,
/// file, line. Silver's sort and the serving layer's [`crate::layers::sql::first_landed`] both
/// keep the first.
pub const LANDING_ORDER: [&str; 3] = ["_ingest_run", "_source_key", "_line"];

/// Lineage columns carried from bronze.
pub(crate) const LINEAGE: [&str; 5] = ["_source_key", "_line", "_ingest_run", "_batch_run", "date"];

pub(crate) fn lineage_fields() -> Vec<Field> {
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

pub(crate) fn arrow_type(kind: Kind) -> DataType {
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
