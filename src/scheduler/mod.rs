//! Embedded scheduler with Airflow's semantics: DAGs as data, cron fire times, data intervals,
//! run and task state kept in the lake.
//!
//! Built by the scheduler issue; the landing streamers are continuous processes, not DAGs.
