//! The Lambda layers: speed (5-minute ingest of the five event streams into `realtime/`),
//! batch (daily bronze → silver → gold Delta tables) and serving (unified tables, dashboards,
//! analytics, alerts).
//!
//! Layers read generated events from [`crate::sources`] and do all I/O through
//! [`crate::store::Store`]. Built by the scheduler and lambda issues.
