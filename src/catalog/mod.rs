//! Catalog of the lake: partition verification, partition metadata, Athena DDL and operation
//! logs (`lakepipe catalog refresh`, DAG `5-lake_catalog_refresh`).
//!
//! Reads the landing datasets and speed-layer prefixes through [`crate::store::Store`] only;
//! it never writes data objects. Built by the catalog issue; nothing is registered here yet.
