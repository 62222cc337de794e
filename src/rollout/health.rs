//! Health gates: run the target's HTTP checks every interval and decide. A gate passes
//! after each check's `healthy_threshold` consecutive successes; it fails after any
//! check's `unhealthy_threshold` consecutive failures, or at its deadline. A watch (a
//! bake) passes when its time is up without such a failure run.
//!
//! The decision logic is pure over the [`Probe`] trait and `tokio::time`, so tests drive
//! it with a scripted probe and paused time; [`HttpProbe`] is the real one.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::HealthCheck;

/// What one check request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub ok: bool,
    /// `200 in 12 ms`, `status 503 (expected 200-299)`, `timed out after 2s`, ...
    pub detail: String,
}

/// Runs one check against one URL. The request's own timeout is the probe's job.
#[allow(async_fn_in_trait)]
pub trait Probe {
    async fn probe(&self, check: &HealthCheck, url: &str) -> ProbeResult;
}

/// Until healthy (a gate), or for a while (a bake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    UntilHealthy,
    Watch(Duration),
}

/// One check's outcome, as reported to the engine's event stream.
#[derive(Debug, Clone)]
pub struct Sample {
    pub url: String,
    pub ok: bool,
    pub detail: String,
    /// Consecutive successes (when ok) or failures (when not), this one included.
    pub streak: u32,
    /// The streak that decides: the healthy or the unhealthy threshold.
    pub needed: u32,
}

/// Why a gate failed: which check, what it answered, and for how long it had been failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateFailure {
    pub url: String,
    pub detail: String,
    pub failures: u32,
    pub failing_for: Duration,
    /// The deadline passed before the checks decided.
    pub deadline: bool,
}

impl std::fmt::Display for GateFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.deadline {
            write!(f, "{} was not healthy before the phase deadline", self.url)?;
            if !self.detail.is_empty() {
                write!(f, "; last answer: {}", self.detail)?;
            }
            Ok(())
        } else {
            write!(
                f,
                "{} failed {} consecutive checks over {}: {}",
                self.url,
                self.failures,
                humantime::format_duration(round_ms(self.failing_for)),
                self.detail
            )
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// `{url}` in a check stands for the endpoint being gated.
pub fn resolve(check: &HealthCheck, base: &str) -> String {
    check.url.replace("{url}", base.trim_end_matches('/'))
}

struct State {
    next: Instant,
    ok_streak: u32,
    fail_streak: u32,
    first_failure: Option<Instant>,
    last_detail: String,
}

/// Runs `checks` against `base` until they decide, `mode` ends, or `deadline` passes.
pub async fn gate<P: Probe>(
    probe: &P,
    checks: &[HealthCheck],
    base: &str,
    mode: Mode,
    deadline: Instant,
    mut on_sample: impl FnMut(Sample),
) -> Result<(), GateFailure> {
    let start = Instant::now();
    let end = match mode {
        Mode::Watch(d) => Some(start + d),
        Mode::UntilHealthy => None,
    };
    if checks.is_empty() {
        if let Some(end) = end {
            tokio::time::sleep_until(end.min(deadline)).await;
        }
        return Ok(());
    }
    let mut states: Vec<State> = checks
        .iter()
        .map(|_| State { next: start, ok_streak: 0, fail_streak: 0, first_failure: None, last_detail: String::new() })
        .collect();
    loop {
        let (i, due) = states.iter().enumerate().map(|(i, s)| (i, s.next)).min_by_key(|(_, t)| *t).expect("checks");
        let stop = end.map_or(deadline, |e| e.min(deadline));
        if due >= stop {
            tokio::time::sleep_until(stop).await;
            if end.is_some_and(|e| e <= deadline) {
                return Ok(());
            }
            let worst = states.iter().zip(checks).min_by_key(|(s, c)| s.ok_streak * 100 / c.healthy_threshold);
            let (s, c) = worst.expect("checks");
            return Err(GateFailure {
                url: resolve(c, base),
                detail: s.last_detail.clone(),
                failures: s.fail_streak,
                failing_for: s.first_failure.map(|t| t.elapsed()).unwrap_or_default(),
                deadline: true,
            });
        }
        tokio::time::sleep_until(due).await;
        let check = &checks[i];
        let url = resolve(check, base);
        let result = probe.probe(check, &url).await;
        let now = Instant::now();
        let state = &mut states[i];
        state.next = now + check.interval.get();
        state.last_detail.clone_from(&result.detail);
        let (streak, needed) = if result.ok {
            state.ok_streak += 1;
            state.fail_streak = 0;
            state.first_failure = None;
            (state.ok_streak, check.healthy_threshold)
        } else {
            state.fail_streak += 1;
            state.ok_streak = 0;
            state.first_failure.get_or_insert(now);
            (state.fail_streak, check.unhealthy_threshold)
        };
        on_sample(Sample { url: url.clone(), ok: result.ok, detail: result.detail.clone(), streak, needed });
        if !result.ok && state.fail_streak >= check.unhealthy_threshold {
            return Err(GateFailure {
                url,
                detail: result.detail,
                failures: state.fail_streak,
                failing_for: now - state.first_failure.unwrap_or(now),
                deadline: false,
            });
        }
        if end.is_none() && states.iter().zip(checks).all(|(s, c)| s.ok_streak >= c.healthy_threshold) {
            return Ok(());
        }
    }
}

/// The real probe: one HTTP request per check, with the check's timeout.
///
/// The full build sends it with `reqwest` (HTTP and HTTPS, redirects followed). A build
/// without the `cloud` feature (`make demo`'s) has no TLS stack and no `reqwest`: it speaks
/// plain HTTP/1.1 with `hyper` alone, which is all a `local` target's health URLs need.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    #[cfg(feature = "cloud")]
    client: reqwest::Client,
}

impl HttpProbe {
    pub fn new() -> Self {
        // Health endpoints are the target's own: never through a proxy, never cached.
        #[cfg(feature = "cloud")]
        let probe = Self {
            client: reqwest::Client::builder().no_proxy().pool_max_idle_per_host(2).build().expect("HTTP client"),
        };
        #[cfg(not(feature = "cloud"))]
        let probe = Self {};
        probe
    }
}

impl Default for HttpProbe {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a request got no answer.
enum Unanswered {
    Timeout,
    Refused,
    Failed(String),
}

impl HttpProbe {
    /// One request: the status and the body, within `timeout` in all.
    #[cfg(feature = "cloud")]
    async fn fetch(&self, method: http::Method, url: &str, timeout: Duration) -> Result<(u16, String), Unanswered> {
        let started = std::time::Instant::now();
        let response = self.client.request(method, url).timeout(timeout).send().await.map_err(|e| {
            if e.is_timeout() {
                Unanswered::Timeout
            } else if e.is_connect() {
                Unanswered::Refused
            } else {
                Unanswered::Failed(format!("request failed: {e}"))
            }
        })?;
        let status = response.status().as_u16();
        match tokio::time::timeout(timeout.saturating_sub(started.elapsed()), response.text()).await {
            Ok(Ok(body)) => Ok((status, body)),
            Ok(Err(e)) => Err(Unanswered::Failed(format!("status {status}, body unreadable: {e}"))),
            Err(_) => Err(Unanswered::Failed(format!("status {status}, body timed out"))),
        }
    }

    /// One request over plain HTTP/1.1 (`hyper`'s client connection), within `timeout`.
    #[cfg(not(feature = "cloud"))]
    async fn fetch(&self, method: http::Method, url: &str, timeout: Duration) -> Result<(u16, String), Unanswered> {
        use http_body_util::BodyExt;
        let uri: http::Uri = url.parse().map_err(|e| Unanswered::Failed(format!("bad URL {url}: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(Unanswered::Failed(format!(
                "{url}: this build of gantry checks plain http:// URLs only (it was built without the `cloud` feature)"
            )));
        }
        let host = uri.host().unwrap_or("localhost").trim_start_matches('[').trim_end_matches(']').to_owned();
        let authority = uri.authority().map_or_else(|| host.clone(), ToString::to_string);
        let port = uri.port_u16().unwrap_or(80);
        let path = uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str).to_owned();
        let exchange = async move {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    Unanswered::Refused
                } else {
                    Unanswered::Failed(format!("request failed: {e}"))
                }
            })?;
            let failed = |e: hyper::Error| Unanswered::Failed(format!("request failed: {e}"));
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(failed)?;
            let driver = tokio::spawn(connection);
            let request = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, authority)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .map_err(|e| Unanswered::Failed(format!("request failed: {e}")))?;
            let response = sender.send_request(request).await.map_err(failed)?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Unanswered::Failed(format!("status {status}, body unreadable: {e}")))?
                .to_bytes();
            driver.abort();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(Unanswered::Timeout))
    }
}

impl Probe for HttpProbe {
    async fn probe(&self, check: &HealthCheck, url: &str) -> ProbeResult {
        let method = match check.method {
            crate::config::HttpMethod::Get => http::Method::GET,
            crate::config::HttpMethod::Head => http::Method::HEAD,
            crate::config::HttpMethod::Post => http::Method::POST,
        };
        let started = std::time::Instant::now();
        let timeout = check.timeout.get();
        let (status, body) = match self.fetch(method, url, timeout).await {
            Ok(answer) => answer,
            Err(Unanswered::Timeout) => {
                return ProbeResult {
                    ok: false,
                    detail: format!("no answer within {}", humantime::format_duration(timeout)),
                };
            }
            Err(Unanswered::Refused) => return ProbeResult { ok: false, detail: "connection refused".into() },
            Err(Unanswered::Failed(detail)) => return ProbeResult { ok: false, detail },
        };
        match judge(check, status, &body) {
            Ok(summary) => {
                ProbeResult { ok: true, detail: format!("{summary} in {} ms", started.elapsed().as_millis()) }
            }
            Err(detail) => ProbeResult { ok: false, detail },
        }
    }
}

/// Whether a response passes the check: `Ok(summary)` or `Err(what was wrong)`.
pub fn judge(check: &HealthCheck, status: u16, body: &str) -> Result<String, String> {
    if !check.expect_status.contains(status) {
        return Err(format!("status {status} (expected {}){}", check.expect_status, excerpt(body)));
    }
    if let Some(text) = &check.body_contains
        && !body.contains(text.as_str())
    {
        return Err(format!("status {status} but the body does not contain {text:?}{}", excerpt(body)));
    }
    if let Some(m) = &check.json {
        let expected = serde_json::to_value(&m.equals).unwrap_or(serde_json::Value::Null);
        let found = serde_json::from_str::<serde_json::Value>(body).ok();
        let actual = found.as_ref().and_then(|v| v.pointer(&m.pointer));
        if actual != Some(&expected) {
            let got = match (found.is_some(), actual) {
                (false, _) => "the body is not JSON".to_owned(),
                (true, None) => format!("{} is missing", m.pointer),
                (true, Some(v)) => format!("{} is {v}", m.pointer),
            };
            return Err(format!("status {status} but {got} (expected {expected})"));
        }
    }
    Ok(format!("status {status}"))
}

/// The start of a body, for failure messages: one line, at most 80 characters.
fn excerpt(body: &str) -> String {
    let line = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if line.is_empty() {
        return String::new();
    }
    let cut: String = line.chars().take(80).collect();
    format!(": {cut}{}", if line.chars().count() > 80 { "…" } else { "" })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;
    use crate::config::Duration as CfgDuration;

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        let mut c: HealthCheck = toml::from_str("url = '{url}/healthz'").unwrap();
        c.interval = CfgDuration::from_secs(1);
        c.healthy_threshold = healthy;
        c.unhealthy_threshold = unhealthy;
        c
    }

    /// Answers from a script, then repeats the last answer; records when it was asked.
    struct Scripted {
        answers: RefCell<VecDeque<bool>>,
        last: RefCell<bool>,
        asked: RefCell<Vec<Duration>>,
        start: Instant,
    }

    impl Scripted {
        fn new(answers: &[bool]) -> Self {
            Self {
                answers: RefCell::new(answers.iter().copied().collect()),
                last: RefCell::new(true),
                asked: RefCell::new(Vec::new()),
                start: Instant::now(),
            }
        }
    }

    impl Probe for Scripted {
        async fn probe(&self, _: &HealthCheck, _: &str) -> ProbeResult {
            self.asked.borrow_mut().push(self.start.elapsed());
            let ok = self.answers.borrow_mut().pop_front().unwrap_or(*self.last.borrow());
            *self.last.borrow_mut() = ok;
            ProbeResult { ok, detail: if ok { "status 200".into() } else { "status 503 (expected 200-299)".into() } }
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test(start_paused = true)]
    async fn passes_after_the_healthy_threshold_in_a_row() {
        let probe = Scripted::new(&[true, false, true, true, true]);
        let mut samples = Vec::new();
        gate(&probe, &[check(3, 3)], "http://x", Mode::UntilHealthy, far(), |s| samples.push(s.streak)).await.unwrap();
        assert_eq!(samples, [1, 1, 1, 2, 3]);
        assert_eq!(probe.asked.borrow().last().copied(), Some(Duration::from_secs(4)));
    }

    #[tokio::test(start_paused = true)]
    async fn fails_after_the_unhealthy_threshold_in_a_row_and_says_for_how_long() {
        let probe = Scripted::new(&[true, false, false, false]);
        let err = gate(&probe, &[check(5, 3)], "http://x", Mode::UntilHealthy, far(), |_| {}).await.unwrap_err();
        assert_eq!(err.failures, 3);
        assert_eq!(err.failing_for, Duration::from_secs(2));
        assert_eq!(err.url, "http://x/healthz");
        assert!(!err.deadline);
        assert_eq!(
            err.to_string(),
            "http://x/healthz failed 3 consecutive checks over 2s: status 503 (expected 200-299)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_gate_that_never_decides_fails_at_the_deadline() {
        let probe = Scripted::new(&[true, false, true, false, true, false, true, false]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = gate(&probe, &[check(3, 3)], "http://x", Mode::UntilHealthy, deadline, |_| {}).await.unwrap_err();
        assert!(err.deadline);
        assert_eq!(Instant::now(), deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_lasts_its_duration_when_healthy() {
        let probe = Scripted::new(&[]);
        let start = Instant::now();
        gate(&probe, &[check(1, 2)], "http://x", Mode::Watch(Duration::from_secs(10)), far(), |_| {}).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(probe.asked.borrow().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_fails_as_soon_as_the_threshold_is_reached() {
        let probe = Scripted::new(&[true, true, false, true, false, false]);
        let start = Instant::now();
        let err = gate(&probe, &[check(1, 2)], "http://x", Mode::Watch(Duration::from_secs(60)), far(), |_| {})
            .await
            .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(err.failures, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_checks_pass_a_gate_at_once_and_a_watch_still_waits() {
        let probe = Scripted::new(&[]);
        let start = Instant::now();
        gate(&probe, &[], "http://x", Mode::UntilHealthy, far(), |_| {}).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        gate(&probe, &[], "http://x", Mode::Watch(Duration::from_secs(3)), far(), |_| {}).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[test]
    fn responses_are_judged_by_status_body_and_json() {
        let mut c = check(1, 1);
        assert!(judge(&c, 200, "").is_ok());
        assert_eq!(judge(&c, 503, "down\n").unwrap_err(), "status 503 (expected 200-299): down");
        c.body_contains = Some("ok".into());
        assert!(judge(&c, 200, "all ok").is_ok());
        assert!(judge(&c, 200, "nope").unwrap_err().contains("does not contain"));
        c.body_contains = None;
        c.json = Some(toml::from_str("pointer = '/status'\nequals = 'OK'").unwrap());
        assert!(judge(&c, 200, r#"{"status":"OK"}"#).is_ok());
        assert_eq!(
            judge(&c, 200, r#"{"status":"DOWN"}"#).unwrap_err(),
            r#"status 200 but /status is "DOWN" (expected "OK")"#
        );
        assert_eq!(judge(&c, 200, "<html>").unwrap_err(), r#"status 200 but the body is not JSON (expected "OK")"#);
    }
}
