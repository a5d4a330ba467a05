//! Integration tests: the real `lakepipe` binary against temp local lakes and the S3 servers
//! that `scripts/test` starts (moto and Garage).

mod airflow;
mod batch;
mod bootstrap;
mod catalog;
mod cli;
mod delivery;
mod disk;
mod evolution;
mod faults;
mod inbox;
mod ingest;
mod ingest_flow;
mod landing;
mod lease;
mod pipeline;
mod readers;
mod s3;
mod scheduler;
mod serving;
mod upkeep;
mod util;
mod web;
