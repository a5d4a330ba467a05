//! Landing: the text, CSV and IoT streamers that write date-partitioned files into the lake,
//! and the ways real events reach the speed layer: the HTTP ingest API ([`api`]) and the
//! inboxes other producers write to ([`inbox`]); [`producer`] is a client of the API.
//!
//! `naming` holds the datasets as a table (cadence, key template, content type, metadata),
//! `streamer` runs them live on a [`crate::clock::Clock`] or over an event-time range. All
//! writes go through [`crate::store::Store::put_new`], so re-running a slot writes nothing new.

pub mod api;
pub mod inbox;
mod naming;
pub mod producer;
pub mod records;
mod streamer;

pub use naming::{DATASETS, Dataset, LandingObject, dataset, partition_path, slots};
pub use streamer::{DatasetMetrics, LandingMetrics, StreamOptions, run_live, run_range};

/// Errors of a landing run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be used at all.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Too many uploads failed; the run stopped early.
    #[error("landing stopped after {failed} failed uploads; last error: {last}")]
    Aborted { failed: u64, last: String },
    /// Some uploads failed after retries.
    #[error("{failed} uploads failed after retries; first error: {first}")]
    Failed { failed: u64, first: String },
    /// The requested range is empty or reversed.
    #[error("--from {from} must be before --to {to}")]
    EmptyRange { from: String, to: String },
}

/// Result with the landing [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
