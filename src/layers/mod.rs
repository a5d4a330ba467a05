//! The Lambda layers: speed (5-minute ingest of the five event streams into `realtime/`),
//! batch (daily bronze → silver → gold Delta tables) and serving (unified tables, dashboards,
//! analytics, alerts).
//!
//! Layers read generated events from [`crate::sources`], do all I/O through
//! [`crate::store::Store`], and register their task bodies in the scheduler's
//! [`crate::scheduler::Registry`]. The batch layer has its bronze stage; silver, gold and
//! serving come with the rest of the lambda issue.

pub mod batch;
pub mod speed;
