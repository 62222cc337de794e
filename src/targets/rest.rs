//! What the token-authenticated REST targets (`render`, `staticwebapp`) share: a [`Secret`]
//! that never prints, and [`send`], the one request loop. Every attempt has a timeout; a
//! throttled answer (429) waits as long as the provider asks (`Retry-After`, else a
//! `Ratelimit-Reset`/`X-RateLimit-Reset` header), and server errors and dropped connections
//! are retried with backoff only where that is safe ([`Retry`]). The caller's deadline
//! (the engine's phase deadline) bounds the whole loop.

use std::time::Duration;

/// Tokens and keys: the one `Secret` type (`Debug` and `Display` print `***`).
pub use crate::github::oidc::Secret;

/// Which failures a request may be sent again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: 429, 5xx and transport errors.
    Idempotent,
    /// A write that must not happen twice: only answers that say it was not processed
    /// (429, 503).
    NotProcessed,
}

/// An answer that is not retried any more (success or not): the caller reads it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text, cut to 300 characters (for error messages).
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(300) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.to_owned(),
        }
    }
}

/// Attempts per request (the first included).
const ATTEMPTS: u32 = 6;
/// The longest single wait a rate-limit header may ask for; beyond it the answer is returned.
const LONGEST_WAIT: Duration = Duration::from_secs(120);

/// An HTTP client with the timeouts every provider call uses.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// Sends the request `build` makes (called again for each attempt) and returns the first
/// answer that is not retried. `progress` hears about each wait.
pub async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    retry: Retry,
    progress: &dyn Fn(String),
) -> Result<Answer, reqwest::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= ATTEMPTS;
        match build().send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let wait = throttle_wait(response.headers());
                let retryable = match retry {
                    Retry::Idempotent => status == 429 || status >= 500,
                    Retry::NotProcessed => status == 429 || status == 503,
                };
                let body = response.bytes().await.map_err(reqwest::Error::without_url)?.to_vec();
                if !retryable || last || wait.is_some_and(|w| w > LONGEST_WAIT) {
                    return Ok(Answer { status, retry_after: wait, body });
                }
                let pause = wait.unwrap_or_else(|| backoff(attempt));
                tracing::info!(status, wait_ms = pause.as_millis() as u64, "the API answered {status}; trying again");
                progress(format!(
                    "the API answered {status}{}; trying again in {}",
                    if status == 429 { " (rate limited)" } else { "" },
                    humantime::format_duration(Duration::from_millis(pause.as_millis() as u64))
                ));
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                let safe = retry == Retry::Idempotent || e.is_connect();
                if last || !safe {
                    return Err(e.without_url());
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
}

/// 0.5 s, 1 s, 2 s, ... up to 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.saturating_sub(1).min(4))
}

/// How long a throttled answer asks to wait: `Retry-After` in seconds, else the reset
/// header of the rate limit, as seconds from now or as a Unix time (both are in use).
fn throttle_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| *v >= 0.0);
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs_f64(seconds));
    }
    let reset = number("ratelimit-reset").or_else(|| number("x-ratelimit-reset"))?;
    if reset > 1_000_000_000.0 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
        Some(Duration::from_secs_f64((reset - now).max(0.0)))
    } else {
        Some(Duration::from_secs_f64(reset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("rnd_abc");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "rnd_abc");
    }

    #[test]
    fn waits_follow_retry_after_then_the_reset_header() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(throttle_wait(&h), None);
        h.insert("ratelimit-reset", "3".parse().unwrap());
        assert_eq!(throttle_wait(&h), Some(Duration::from_secs(3)));
        let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 30;
        h.insert("ratelimit-reset", soon.to_string().parse().unwrap());
        let wait = throttle_wait(&h).unwrap();
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30), "{wait:?}");
        h.insert("retry-after", "1".parse().unwrap());
        assert_eq!(throttle_wait(&h), Some(Duration::from_secs(1)));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(9), Duration::from_secs(8));
    }
}
