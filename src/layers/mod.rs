//! The Lambda layers: speed (5-minute ingest of the five event streams into `realtime/`),
//! batch (daily bronze → silver → gold Delta tables) and serving (unified tables, dashboards,
//! analytics, alerts).
//!
//! Layers read generated events from [`crate::sources`], do all I/O through
//! [`crate::store::Store`], and declare their DAGs with the task bodies attached (`dag` in
//! each layer), which [`crate::pipeline`] hands to the scheduler. What batch and serving share
//! lives beside them: the cleaning rules of the streams ([`clean`]), the DataFusion session and
//! SQL helpers ([`sql`]), and how Delta tables are written ([`write`]).

pub mod batch;
pub(crate) mod clean;
pub mod evolve;
pub mod serving;
pub mod speed;
pub(crate) mod sql;
pub(crate) mod write;
