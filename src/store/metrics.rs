//! Process-wide counters of S3 requests, for `/metrics`: object_store's HTTP client is wrapped
//! ([`CountingConnector`]) so that every attempt is seen, including the ones its retry policy
//! repeats, which the callers of the store never see; reads whose answer broke off and that
//! lakepipe asks again are counted by [`count_body_retry`].

use std::sync::atomic::{AtomicU64, Ordering};

use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

/// HTTP methods counted separately.
const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "DELETE", "POST"];

static REQUESTS: [AtomicU64; METHODS.len() + 1] = [const { AtomicU64::new(0) }; 6];
static SERVER_ERRORS: AtomicU64 = AtomicU64::new(0);
static THROTTLED: AtomicU64 = AtomicU64::new(0);
static CLIENT_ERRORS: AtomicU64 = AtomicU64::new(0);
static CONNECTION_ERRORS: AtomicU64 = AtomicU64::new(0);
static BODY_RETRIES: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct S3Counters {
    /// Attempts by method (`OTHER` for the rest).
    pub requests: Vec<(&'static str, u64)>,
    /// 5xx answers other than throttling: object_store retries them.
    pub server_errors: u64,
    /// 429 and 503 (SlowDown): retried.
    pub throttled: u64,
    /// 4xx answers other than 404, 304 and 412, which are answers lakepipe expects.
    pub client_errors: u64,
    /// Requests that got no answer (connect, timeout, reset): retried.
    pub connection_errors: u64,
    /// Reads whose answer broke off after a success status, asked again by lakepipe
    /// ([`super::read_retries::ReadRetries`]).
    pub body_retries: u64,
}

impl S3Counters {
    /// Attempts that object_store's retry policy repeats (server, throttling and connection
    /// errors); a request that runs out of retries fails with the last of them.
    pub fn retried(&self) -> u64 {
        self.server_errors + self.throttled + self.connection_errors + self.body_retries
    }
}

/// The counters now.
pub fn s3_counters() -> S3Counters {
    let mut requests: Vec<(&'static str, u64)> = METHODS
        .iter()
        .enumerate()
        .map(|(i, m)| (*m, REQUESTS[i].load(Ordering::Relaxed)))
        .collect();
    requests.push(("OTHER", REQUESTS[METHODS.len()].load(Ordering::Relaxed)));
    S3Counters {
        requests,
        server_errors: SERVER_ERRORS.load(Ordering::Relaxed),
        throttled: THROTTLED.load(Ordering::Relaxed),
        client_errors: CLIENT_ERRORS.load(Ordering::Relaxed),
        connection_errors: CONNECTION_ERRORS.load(Ordering::Relaxed),
        body_retries: BODY_RETRIES.load(Ordering::Relaxed),
    }
}

/// Counts a read asked again because its answer broke off.
pub fn count_body_retry() {
    BODY_RETRIES.fetch_add(1, Ordering::Relaxed);
}

fn count_status(status: u16) {
    let c = match status {
        429 | 503 => &THROTTLED,
        500..=599 => &SERVER_ERRORS,
        304 | 404 | 412 => return,
        400..=499 => &CLIENT_ERRORS,
        _ => return,
    };
    c.fetch_add(1, Ordering::Relaxed);
}

/// object_store's default reqwest client, counting every attempt.
#[derive(Debug, Default)]
pub struct CountingConnector;

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &object_store::ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Counting(inner)))
    }
}

#[derive(Debug)]
struct Counting(HttpClient);

#[async_trait::async_trait]
impl HttpService for Counting {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let i = METHODS
            .iter()
            .position(|m| *m == req.method().as_str())
            .unwrap_or(METHODS.len());
        REQUESTS[i].fetch_add(1, Ordering::Relaxed);
        let res = self.0.execute(req).await;
        match &res {
            Ok(r) => count_status(r.status().as_u16()),
            Err(_) => {
                CONNECTION_ERRORS.fetch_add(1, Ordering::Relaxed);
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_retry_policy_sees_them() {
        let before = s3_counters();
        for s in [200, 404, 412, 304, 403, 500, 502, 503, 429] {
            count_status(s);
        }
        let after = s3_counters();
        assert!(after.server_errors >= before.server_errors + 2);
        assert!(after.throttled >= before.throttled + 2);
        assert!(after.client_errors > before.client_errors);
        assert!(after.retried() >= before.retried() + 4);
    }
}
