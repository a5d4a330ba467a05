//! The tables the catalog describes — one external table per landing dataset and speed-layer
//! stream, one per Delta table of the Lambda layers — as one model that both the Athena DDL
//! ([`super::athena`]) and the Glue Data Catalog ([`super::glue`]) are rendered from, so the
//! two can never say different things.

use std::collections::BTreeMap;

use deltalake::arrow::datatypes::DataType;

use super::datasets::{Dataset, Layout};
use crate::store::Store;

/// The Glue / Athena database of the DDL (`[glue] database` names the Glue one).
pub const DATABASE: &str = "lakepipe";

/// A Delta table found in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaTable {
    /// Query name (`silver_iot_sensors`, `gold_fact_api_hourly`, `serving_unified_api_logs`).
    pub name: String,
    /// Key prefix of the table (`batch/silver/iot_sensors`).
    pub path: String,
}

/// Query name of the Delta table at `path`: `batch/<layer>/<t>` is `<layer>_<t>`,
/// `serving/<kind>/<t>` is `serving_<kind>_<t>`.
pub fn delta_table_name(path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        ["batch", layer, t] => Some(format!("{layer}_{t}")),
        ["serving", kind, t] => Some(format!("serving_{kind}_{t}")),
        _ => None,
    }
}

/// The Delta tables under `batch/*/*` and `serving/*/*` (folders holding a `_delta_log`).
pub async fn delta_tables(store: &Store) -> Result<Vec<DeltaTable>, crate::store::Error> {
    let mut out = Vec::new();
    for top in ["batch", "serving"] {
        let (groups, _) = store.list_dir(top).await?;
        for group in groups {
            let (tables, _) = store.list_dir(&group).await?;
            for path in tables {
                if let (true, Some(name)) = (
                    holds_delta_log(store, &path).await?,
                    delta_table_name(&path),
                ) {
                    out.push(DeltaTable { name, path });
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether the folder `path` holds a `_delta_log` folder: on a local lake one `stat` of it (a
/// listing of the folder would `stat` each of its data files, hundreds in a serving table kept
/// for a day), elsewhere one listing of the folder. A `stat` that fails other than for a missing
/// folder is an error, as a failed listing is.
async fn holds_delta_log(store: &Store, path: &str) -> Result<bool, crate::store::Error> {
    if let Some(root) = store.local_root() {
        return match tokio::fs::metadata(root.join(path).join("_delta_log")).await {
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(crate::store::Error::Request {
                op: "stat",
                key: format!("{path}/_delta_log"),
                message: e.to_string(),
            }),
        };
    }
    let (inner, _) = store.list_dir(path).await?;
    Ok(inner.iter().any(|d| d.ends_with("/_delta_log")))
}

/// How the rows of a text table are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// One JSON document per line (the OpenX JSON SerDe, malformed lines read as nulls).
    JsonLines,
    /// Fields separated by one character (Hive's LazySimpleSerDe).
    Delimited(char),
}

/// One table of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Table name.
    pub name: String,
    /// Data columns and their Hive types (partition columns excluded).
    pub columns: Vec<(String, String)>,
    /// Partition columns, all `string`, outermost first.
    pub partition_keys: Vec<String>,
    /// S3 location, ending in `/`.
    pub location: String,
    /// How rows are read; `None` for a Delta table (its log says).
    pub row_format: Option<RowFormat>,
    /// Table properties, in DDL order (`TBLPROPERTIES`, Glue's table parameters).
    pub properties: Vec<(String, String)>,
}

impl TableDef {
    /// Whether this is a Delta table.
    pub fn is_delta(&self) -> bool {
        self.row_format.is_none()
    }

    /// The properties as a map.
    pub fn property_map(&self) -> BTreeMap<String, String> {
        self.properties.iter().cloned().collect()
    }
}

/// Hive type of an Arrow type.
fn hive_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 => "string".into(),
        DataType::Float64 => "double".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "int".into(),
        DataType::Boolean => "boolean".into(),
        DataType::List(f) => format!("array<{}>", hive_type(f.data_type())),
        other => unreachable!("no Hive type for {other} in the catalog's datasets"),
    }
}

/// Every table of the catalog at `location` (`s3://bucket[/prefix]`): the datasets' external
/// tables, then the Delta tables.
pub fn tables(datasets: &[Dataset], delta: &[DeltaTable], location: &str) -> Vec<TableDef> {
    let location = location.trim_end_matches('/');
    let mut out: Vec<TableDef> = datasets.iter().map(|d| external(d, location)).collect();
    out.extend(delta.iter().map(|t| TableDef {
        name: t.name.clone(),
        columns: Vec::new(),
        partition_keys: Vec::new(),
        location: format!("{location}/{}/", t.path),
        row_format: None,
        properties: vec![("table_type".into(), "DELTA".into())],
    }));
    out
}

/// The external table of a dataset: partitioned by its keys with partition projection (no
/// `MSCK REPAIR TABLE` or partition registration needed).
fn external(ds: &Dataset, location: &str) -> TableDef {
    let keys = ds.partition_keys();
    let row_format = match ds.format {
        "jsonl" => RowFormat::JsonLines,
        "csv" => RowFormat::Delimited(','),
        // One row per line: a field delimiter that never occurs in the text.
        _ => RowFormat::Delimited('\u{1}'),
    };
    let base = format!("{location}/{}/", ds.prefix);
    let mut props: Vec<(String, String)> = Vec::new();
    if ds.format == "csv" {
        props.push(("skip.header.line.count".into(), "1".into()));
    }
    props.push(("projection.enabled".into(), "true".into()));
    if let Some(f) = &ds.fanout {
        props.push((format!("projection.{}.type", f.key), "enum".into()));
        props.push((format!("projection.{}.values", f.key), f.values.join(",")));
    }
    let int = |props: &mut Vec<(String, String)>, k: &str, range: &str, digits: usize| {
        props.push((format!("projection.{k}.type"), "integer".into()));
        props.push((format!("projection.{k}.range"), range.into()));
        props.push((format!("projection.{k}.digits"), digits.to_string()));
    };
    match ds.layout {
        Layout::YearMonthDay => {
            int(&mut props, "year", "2020,2100", 4);
            int(&mut props, "month", "1,12", 2);
            int(&mut props, "day", "1,31", 2);
        }
        Layout::DateHour => {
            props.push(("projection.date.type".into(), "date".into()));
            props.push(("projection.date.format".into(), "yyyy-MM-dd".into()));
            props.push(("projection.date.range".into(), "2020-01-01,NOW".into()));
            props.push(("projection.date.interval".into(), "1".into()));
            props.push(("projection.date.interval.unit".into(), "DAYS".into()));
            int(&mut props, "hour", "0,23", 2);
        }
    }
    let template: Vec<String> = keys.iter().map(|k| format!("{k}=${{{k}}}")).collect();
    props.push((
        "storage.location.template".into(),
        format!("{base}{}", template.join("/")),
    ));
    TableDef {
        name: ds.name.clone(),
        columns: ds
            .columns
            .iter()
            .map(|f| (f.name().clone(), hive_type(f.data_type())))
            .collect(),
        partition_keys: keys.iter().map(|k| k.to_string()).collect(),
        location: base,
        row_format: Some(row_format),
        properties: props,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::datasets;

    #[test]
    fn delta_tables_are_named_by_layer() {
        assert_eq!(
            delta_table_name("batch/silver/iot_sensors").unwrap(),
            "silver_iot_sensors"
        );
        assert_eq!(
            delta_table_name("serving/unified/api_logs").unwrap(),
            "serving_unified_api_logs"
        );
        assert_eq!(delta_table_name("batch/x"), None);
    }

    #[tokio::test]
    async fn delta_tables_are_the_folders_with_a_log() {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "batch/silver/iot_sensors/_delta_log",
            "batch/silver/empty",
            "batch/bronze/api_logs/date=2026-02-01",
            "serving/unified/api_logs/_delta_log",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        // A file named like the log is not one.
        std::fs::write(dir.path().join("batch/silver/empty/_delta_log"), b"").unwrap();
        let store = crate::store::local_store(dir.path()).await;
        let found: Vec<String> = delta_tables(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|t| format!("{} {}", t.name, t.path))
            .collect();
        assert_eq!(
            found,
            [
                "serving_unified_api_logs serving/unified/api_logs",
                "silver_iot_sensors batch/silver/iot_sensors",
            ]
        );
    }

    #[test]
    fn every_dataset_is_partitioned_by_its_keys_with_projection() {
        let all = datasets();
        let defs = tables(&all, &[], "s3://bkt/lake/");
        assert_eq!(defs.len(), all.len());
        let iot = defs.iter().find(|d| d.name == "iot_data").unwrap();
        assert_eq!(iot.partition_keys, ["device_id", "year", "month", "day"]);
        assert!(!iot.columns.iter().any(|(c, _)| c == "device_id"));
        assert_eq!(iot.row_format, Some(RowFormat::JsonLines));
        let csv = defs.iter().find(|d| d.name == "csv_files").unwrap();
        assert_eq!(csv.location, "s3://bkt/lake/data/csv_files/");
        assert_eq!(csv.property_map()["skip.header.line.count"], "1");
        for d in &defs {
            assert_eq!(d.property_map()["projection.enabled"], "true", "{}", d.name);
        }
    }
}
