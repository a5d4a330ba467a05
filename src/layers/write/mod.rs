//! How the layers write Delta tables: the Parquet settings and file sizes of every file
//! ([`parquet`]), writes of DataFusion plans through deltalake and commits of prepared actions
//! ([`plan`]), and the streaming writer that replaces date partitions with rows written straight
//! from a plan's partitions ([`stream`]).

pub mod parquet;
pub mod plan;
pub mod stream;

pub use parquet::{TARGET_FILE_BYTES, parquet_properties_for};
pub use plan::{Replace, Write, commit, date_partition, replace_dates, write_batches, write_plan};
pub use stream::{ROWS_HELD, RowKeys, Writes};

use deltalake::DeltaTableError;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;
use deltalake::parquet::errors::ParquetError;

/// Why a streaming write ([`Writes`]) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The table exists with other columns than the rows to write.
    #[error(
        "{path} has columns {current:?}, but this version of lakepipe writes {wanted:?}: the table was made by another version; move it aside and re-run the batch to rebuild it"
    )]
    SchemaMismatch {
        /// The table.
        path: String,
        /// Its columns, `name type`.
        current: Vec<String>,
        /// The columns written, `name type`.
        wanted: Vec<String>,
    },
    /// The table's stream columns cannot evolve to the rows' (a refused change).
    #[error(transparent)]
    Evolve(Box<crate::layers::evolve::Error>),
    /// A file written has no `date` partition value.
    #[error("{path} has no date partition")]
    NoDatePartition {
        /// The file.
        path: String,
    },
    /// The `_line` column read back is not 64-bit integers.
    #[error("_line is not Int64")]
    LineNotInt64,
    /// Delta Lake (the table, its log, its writer).
    #[error(transparent)]
    Delta(#[from] DeltaTableError),
    /// DataFusion (the plan written).
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// Delta Lake's kernel (reading the table's schema).
    #[error(transparent)]
    Kernel(#[from] delta_kernel::Error),
    /// Arrow (converting, filtering rows).
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// Reading back a written file.
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    /// The object store (deleting a rewritten file).
    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),
    /// A file's path in the table.
    #[error(transparent)]
    Path(#[from] object_store::path::Error),
}

impl From<crate::layers::evolve::Error> for Error {
    fn from(e: crate::layers::evolve::Error) -> Error {
        Error::Evolve(Box::new(e))
    }
}
