//! The one place for the Parquet settings and file sizes of every file the layers write.

use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use deltalake::parquet::schema::types::ColumnPath;

use crate::sources::stream::{Kind, Spread, all_streams};

/// Files the optimizer aims for, and the size at which the writers roll a file.
pub const TARGET_FILE_BYTES: u64 = 128 << 20;

/// Rows per Parquet row group of the lake's tables: a writer holds one row group in memory
/// before it goes out (Parquet's default, 1 Mi rows, is hundreds of MiB of raw lines).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Parquet settings of every file the layers write: Snappy (deltalake's writers' default) in
/// row groups of [`ROW_GROUP_ROWS`]. Compaction passes them too: Delta optimize's own default is
/// zstd, which took about 40 % of a merge's time.
pub fn parquet_properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
}

/// How a column of this name and type spreads ([`Spread`]): floats, timestamps, line numbers
/// and integers whose declared range is wide are distinct; the streams' ids and the fields
/// they declare random are random, and those they declare distinct are distinct.
fn spread(name: &str, ty: &DataType) -> Spread {
    if matches!(
        ty,
        DataType::Float32 | DataType::Float64 | DataType::Timestamp(..)
    ) || name == "_line"
    {
        return Spread::Distinct;
    }
    let declared = all_streams().iter().flat_map(|s| {
        let id = (s.id_field == name).then_some(Spread::Random);
        let fields = s
            .fields
            .iter()
            .filter(|f| f.name == name)
            .map(|f| match f.kind {
                Kind::Int { min, max } if i128::from(max) - i128::from(min) > 1 << 16 => {
                    Spread::Distinct
                }
                _ => f.spread,
            });
        id.into_iter().chain(fields)
    });
    // A name shared by streams is stored for its most distinct use.
    declared.max().unwrap_or(Spread::Repeated)
}

/// [`parquet_properties`] for files of this schema, by each column's [`spread`]: no dictionary
/// for distinct and random columns, and random ones uncompressed.
pub fn parquet_properties_for(schema: &Schema) -> WriterPropertiesBuilder {
    schema.fields().iter().fold(parquet_properties(), |b, f| {
        let column = || ColumnPath::from(f.name().as_str());
        match spread(f.name(), f.data_type()) {
            Spread::Repeated => b,
            Spread::Distinct => b.set_column_dictionary_enabled(column(), false),
            Spread::Random => b
                .set_column_dictionary_enabled(column(), false)
                .set_column_compression(column(), Compression::UNCOMPRESSED),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_only_for_columns_whose_values_repeat() {
        let spec = &crate::sources::api_logs::SPEC;
        let props = parquet_properties_for(&crate::layers::clean::clean_schema(spec)).build();
        let dictionary = |c: &str| props.dictionary_enabled(&ColumnPath::from(c));
        let compression = |c: &str| props.compression(&ColumnPath::from(c));
        // Ids, times, measurements, addresses and wide integer ranges: every value new.
        for c in [
            "log_id",
            "request_id",
            "event_time",
            "response_time_ms",
            "client_ip",
            "bytes_sent",
            "_line",
        ] {
            assert!(!dictionary(c), "{c} should be written without a dictionary");
        }
        // Random ids (the stream's and the declared ones) alone go uncompressed.
        for c in ["log_id", "request_id"] {
            assert_eq!(compression(c), Compression::UNCOMPRESSED, "{c}");
        }
        for c in ["client_ip", "event_time", "method", "_source_key"] {
            assert_eq!(compression(c), Compression::SNAPPY, "{c}");
        }
        // Enumerations, lineage, and free text the writer may still find repetitive.
        for c in [
            "method",
            "endpoint",
            "status_code",
            "api_key_id",
            "_source_key",
            "date",
        ] {
            assert!(dictionary(c), "{c} should keep its dictionary");
        }
        assert_eq!(props.max_row_group_row_count(), Some(ROW_GROUP_ROWS));
    }
}
