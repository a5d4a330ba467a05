//! Stream `api_logs`: requests to about twelve REST endpoints; one endpoint is flaky (slow,
//! 5xx-prone) so that the API alerts fire on something real.

use super::stream::{Ctx, Field, Kind, Record, StreamSpec};

/// HTTP methods.
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Endpoints; the last one is the flaky one.
pub const ENDPOINTS: &[&str] = &[
    "/api/v1/users",
    "/api/v1/users/{id}",
    "/api/v1/orders",
    "/api/v1/orders/{id}",
    "/api/v1/products",
    "/api/v1/products/{id}",
    "/api/v1/cart",
    "/api/v1/search",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/inventory",
    "/api/v1/payments",
];
/// Status codes returned.
pub const STATUS_CODES: &[i64] = &[200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 502, 503];
/// Regions.
pub const REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
    "okhttp/4.12.0",
    "python-requests/2.32.0",
    "curl/8.5.0",
];
const METHOD_WEIGHTS: &[f64] = &[60.0, 20.0, 8.0, 7.0, 5.0];
// 2xx/3xx, then 4xx (about 1 %), then 5xx (1.5 % on healthy endpoints).
const HEALTHY: &[f64] = &[
    80.0, 10.0, 5.0, 2.5, 0.3, 0.15, 0.05, 0.4, 0.1, 0.9, 0.3, 0.3,
];
// The flaky endpoint: 20 % 5xx. Overall 5xx is about 3 %.
const FLAKY: &[f64] = &[
    62.0, 8.0, 4.0, 2.0, 0.3, 0.15, 0.05, 0.4, 0.1, 12.0, 4.0, 4.0,
];

/// The stream's schema and generator.
pub static SPEC: StreamSpec = StreamSpec {
    name: "api_logs",
    id_field: "log_id",
    per_run: 1000,
    fields: &[
        Field::new("request_id", Kind::Str).random(),
        Field::new("method", Kind::Enum(METHODS)),
        Field::new("endpoint", Kind::Enum(ENDPOINTS)),
        Field::new("status_code", Kind::IntEnum(STATUS_CODES)),
        Field::new(
            "response_time_ms",
            Kind::Float {
                min: 5.0,
                max: 5000.0,
            },
        ),
        Field::new("client_ip", Kind::Str).distinct(),
        Field::new("user_agent", Kind::Str),
        Field::new("region", Kind::Enum(REGIONS)),
        Field::new("api_key_id", Kind::Str),
        Field::new(
            "bytes_sent",
            Kind::Int {
                min: 0,
                max: 10_000_000,
            },
        ),
        Field::new(
            "bytes_received",
            Kind::Int {
                min: 0,
                max: 10_000_000,
            },
        ),
    ],
    generate: Some(generate),
    event_time_field: "event_time",
    title: "API Logs",
    derived: &[],
    rules: &[],
};

fn generate(ctx: &mut Ctx<'_>, n: usize) {
    for _ in 0..n {
        let e = ctx.int(0, ENDPOINTS.len() as i64 - 1) as usize;
        let flaky = e == ENDPOINTS.len() - 1;
        let status = ctx.weighted(STATUS_CODES, if flaky { FLAKY } else { HEALTHY });
        let rt = if flaky {
            ctx.lognormal(300.0, 1.2, 5.0, 5000.0, 1)
        } else {
            ctx.lognormal(60.0, 0.9, 5.0, 5000.0, 1)
        };
        let method = ctx.weighted(METHODS, METHOD_WEIGHTS);
        let bytes_sent = if status == 204 {
            0
        } else {
            ctx.int(200, 50_000)
        };
        let request_id = ctx.uuid();
        let client_ip = ctx.ipv4();
        let agent = ctx.pick(USER_AGENTS);
        let region = ctx.pick(REGIONS);
        let key = ctx.pool("KEY", 300, 4);
        let bytes_received = ctx.int(100, 8_000);
        ctx.push(
            Record::new()
                .set("request_id", request_id)
                .set("method", method)
                .set("endpoint", ENDPOINTS[e])
                .set("status_code", status)
                .set("response_time_ms", rt)
                .set("client_ip", client_ip)
                .set("user_agent", agent)
                .set("region", region)
                .set("api_key_id", key)
                .set("bytes_sent", bytes_sent)
                .set("bytes_received", bytes_received),
        );
    }
}
