//! One delivery to one receiver: a POST retried with exponential back-off within the run, and
//! what its answer means ([`classify`]).

use std::time::{Duration, Instant};

use crate::config::ReceiverConfig;

/// Tries of one POST within a run.
pub const TRIES: u32 = 3;
/// Wait before the second try; doubled before each later one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// No try starts later than this after the first (the run goes on; later runs retry).
pub const BUDGET: Duration = Duration::from_secs(10);

/// What an answer (or its absence) means for the alerts of the POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the receiver has them.
    Delivered { status: u16 },
    /// 5xx, 408, 429, a timeout or a connection error: try again (this run, then later runs).
    Retry { status: Option<u16>, reason: String },
    /// Any other answer (4xx, 3xx, 1xx): trying again will not help.
    Permanent { status: u16, reason: String },
}

/// The meaning of the HTTP status `status`.
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered { status },
        408 | 429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            reason: format!("HTTP {status}"),
        },
        _ => Outcome::Permanent {
            status,
            reason: format!("HTTP {status}"),
        },
    }
}

/// The reason of a request that got no answer. Never the error's text: it may show the URL,
/// and a URL may hold a credential.
fn no_answer(e: &reqwest::Error) -> Outcome {
    let reason = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    Outcome::Retry {
        status: None,
        reason: reason.into(),
    }
}

/// The result of [`post`]: the last outcome and the tries it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub outcome: Outcome,
    pub tries: u32,
}

/// POSTs `body` (JSON) to `receiver` until it is delivered, fails for good, or [`TRIES`] or
/// [`BUDGET`] are spent.
pub async fn post(client: &reqwest::Client, receiver: &ReceiverConfig, body: Vec<u8>) -> Posted {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut tries = 0;
    loop {
        tries += 1;
        let mut req = client
            .post(&receiver.url)
            .timeout(Duration::from_secs(receiver.timeout_s))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        for (k, v) in &receiver.headers.0 {
            req = req.header(k.as_str(), v.as_str());
        }
        let outcome = match req.send().await {
            Ok(resp) => classify(resp.status().as_u16()),
            Err(e) => no_answer(&e),
        };
        let again = matches!(outcome, Outcome::Retry { .. })
            && tries < TRIES
            && started.elapsed() + backoff < BUDGET;
        if !again {
            return Posted { outcome, tries };
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hundreds_deliver_server_errors_retry_client_errors_do_not() {
        assert_eq!(classify(200), Outcome::Delivered { status: 200 });
        assert_eq!(classify(204), Outcome::Delivered { status: 204 });
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(
                matches!(classify(s), Outcome::Retry { status: Some(x), .. } if x == s),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 410, 422, 301] {
            assert!(
                matches!(classify(s), Outcome::Permanent { status: x, .. } if x == s),
                "{s}"
            );
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_retried_then_left_for_a_later_run() {
        // A port that was just free: connection refused, three tries, a few hundred ms.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r: ReceiverConfig = toml::from_str(&format!(
            "name = \"x\"\nurl = \"http://127.0.0.1:{port}/\"\n"
        ))
        .unwrap();
        let got = post(&reqwest::Client::new(), &r, b"{}".to_vec()).await;
        assert_eq!(got.tries, TRIES);
        assert!(
            matches!(&got.outcome, Outcome::Retry { status: None, reason } if reason == "connection failed"),
            "{got:?}"
        );
    }
}
