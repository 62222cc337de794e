//! Which registry failures are retried, and how long to wait. Written down once:
//!
//! - transient, retried with exponential backoff: failing to connect, timeouts, a
//!   connection dropped mid-request, HTTP 5xx, 408 and 429 (honouring `Retry-After`);
//! - permanent, never retried: every other 4xx (bad credentials, denied, not found,
//!   invalid manifest), because asking again cannot change the answer.
//!
//! Every registry request gantry makes is safe to repeat: reads, HEADs, PUTs of content
//! addressed by digest, and upload starts (an abandoned upload session expires on its own).

use std::time::Duration;

use reqwest::{Response, StatusCode};

/// Attempts per request, the first included.
pub const MAX_ATTEMPTS: u32 = 5;

const BASE: Duration = Duration::from_millis(200);
const CAP: Duration = Duration::from_secs(8);

pub fn transient_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

pub fn transient_error(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

/// The wait before attempt `attempt + 1`: 200 ms doubling up to 8 s, plus up to 25%
/// jitter so parallel uploads do not retry in step, or the server's `Retry-After`.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(CAP * 4);
    }
    let exp = BASE.saturating_mul(1 << attempt.saturating_sub(1).min(10)).min(CAP);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    exp + exp.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// `Retry-After` in seconds, when the server sent one.
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_split_into_transient_and_permanent() {
        for s in [500, 502, 503, 504, 429, 408] {
            assert!(transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 412] {
            assert!(!transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff(1, None);
        assert!(first >= BASE && first <= BASE.mul_f64(1.25), "{first:?}");
        assert!(backoff(3, None) >= BASE * 4);
        assert!(backoff(30, None) <= CAP.mul_f64(1.25));
        assert_eq!(backoff(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
    }
}
