//! lakepipe: a lakehouse pipeline in one binary.
//!
//! Data flows `sources` (generators, schemas as data) → `landing` (streamers into the lake)
//! → `layers` (speed, batch, serving) → `catalog`, with `scheduler`, `store` (all lake I/O),
//! `bootstrap` (the bucket and its settings) and `web` beside them; `pipeline` wires the
//! layers' DAGs into the scheduler. The binary (`main.rs`) only
//! parses arguments and calls [`run`].

pub mod bootstrap;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error_chain;
pub(crate) mod hex;
pub mod landing;
pub mod layers;
pub mod pipeline;
pub(crate) mod progress;
pub mod scheduler;
pub mod sources;
pub mod store;
pub mod web;

pub use cli::{Args, run};
