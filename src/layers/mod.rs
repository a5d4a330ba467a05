//! The Lambda layers: speed (5-minute ingest of the five event streams into `realtime/`),
//! batch (daily bronze → silver → gold Delta tables) and serving (unified tables, dashboards,
//! analytics, alerts).
//!
//! Layers read generated events from [`crate::sources`], do all I/O through
//! [`crate::store::Store`], and register their task bodies in the scheduler's
//! [`crate::scheduler::Registry`].

pub mod batch;
pub mod serving;
pub mod speed;
