//! `lakepipe produce`: send the seed streams' generated events to an ingest API.

use std::time::Duration;

use crate::config::ValidatedConfig;
use crate::landing::producer::{ProduceBuilder, ProduceOptions, streams_named};

/// `lakepipe produce`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// The stream whose events to send (iot_sensors, api_logs, social_media,
    /// ecommerce_clickstream, financial_transactions), or `all` (requests alternate)
    pub stream: String,
    /// Base URL of the ingest API (`lakepipe up` / `serve`)
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub url: String,
    /// Events per second [default: as fast as the server answers]
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Records per request
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Concurrent connections
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Stop after this many seconds
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Stop after this many events
    #[arg(long)]
    pub count: Option<u64>,
    /// Event time of the first event (RFC 3339) [default: now]
    #[arg(long, value_parser = super::parse_time)]
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// Probability (0-1) that an event carries a fault (malformed, duplicate, late, …)
    #[arg(long, default_value_t = 0.0, value_parser = super::parse_fraction)]
    pub fault_rate: f64,
    /// Send an Idempotency-Key with every request: no retry lands a record twice (the server
    /// then gives each request objects of its own)
    #[arg(long)]
    pub idempotency_keys: bool,
    /// Bearer token for a server off loopback
    #[arg(long, env = "LAKEPIPE_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v > 0.0 && v <= 10_000_000.0 {
        Ok(v)
    } else {
        Err(format!("{v} must be > 0 and <= 10000000 events/s"))
    }
}

/// Runs `produce`.
pub(super) async fn produce(
    config: &ValidatedConfig,
    p: &ProduceArgs,
    json: bool,
) -> anyhow::Result<()> {
    let Some(streams) = streams_named(&p.stream) else {
        let generated: Vec<&str> = crate::sources::stream::generated_streams()
            .map(|s| s.name)
            .collect();
        match crate::sources::stream::stream_by_name(&p.stream) {
            Some(_) => anyhow::bail!(
                "no generator for stream `{}`: a declared stream without one takes events from \
                 your producers only (streams with a generator: {})",
                p.stream,
                generated.join(", ")
            ),
            None => anyhow::bail!(
                "unknown stream `{}`: one of {} or `all`",
                p.stream,
                generated.join(", ")
            ),
        }
    };
    if p.duration.is_none() && p.count.is_none() {
        eprintln!("produce: no --duration or --count: sending until Ctrl-C");
    }
    let opts = ProduceOptions {
        url: p.url.clone(),
        streams,
        seed: config.config.seed,
        fault_rate: p.fault_rate,
        rate: p.rate,
        batch: p.batch as usize,
        connections: p.connections as usize,
        duration: p
            .duration
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9))),
        count: p.count,
        start: p.start.unwrap_or_else(crate::clock::wall_now),
        token: p.token.clone(),
        idempotency_keys: p.idempotency_keys,
    };
    let m = ProduceBuilder::new(opts).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        println!("{}", m.summary());
    }
    if m.failed > 0 {
        anyhow::bail!("{} requests failed after retries", m.failed);
    }
    Ok(())
}
