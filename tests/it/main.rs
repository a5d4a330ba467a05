//! Integration tests: the real `lakepipe` binary against temp local lakes and the S3 servers
//! that `scripts/test` starts (moto and Garage).
//!
//! libtest starts tests in name order as its threads come free, so the longest ones sit in
//! modules that sort early: `bounded` (two simulated days of serving at a 1-minute tick, the
//! longest test) starts at the beginning instead of last.

mod airflow;
mod batch;
mod bootstrap;
mod bounded;
mod catalog;
mod cli;
mod delivery;
mod disk;
mod evolution;
mod faults;
mod glue;
mod inbox;
mod ingest;
mod ingest_flow;
mod landing;
mod lease;
mod lineage;
mod pipeline;
mod readers;
mod s3;
mod scheduler;
mod serving;
mod util;
mod web;
