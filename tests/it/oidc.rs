//! GitHub Actions' OIDC token service, as the runner exposes it to a job with
//! `permissions: id-token: write` (GitHub's "Configuring OpenID Connect in cloud providers"):
//! `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
//! `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` answers `{"value": "<JWT>"}`.
//! A request without the bearer token gets 401, one without an audience 400. Each answer
//! is a new token (`ID_TOKEN-N`), as every request gets a freshly signed JWT.
//!
//! Plain threads and a minimal HTTP/1.1 loop (one request per connection), like the
//! CodePipeline emulator: tests read what it saw directly.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct TokenService {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// One request, as the service judged it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authorized: bool,
    pub audience: Option<String>,
    pub status: u16,
}

impl TokenService {
    /// Serves tokens `{id_token}-1`, `{id_token}-2`, ... to requests bearing `request_token`.
    pub fn start(request_token: &str, id_token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/_apis/distributedtask/hubs/build/plans/p/jobs/j/idtoken?api-version=2.0",
            listener.local_addr().unwrap()
        );
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
        let (request_token, id_token, log) = (request_token.to_owned(), id_token.to_owned(), Arc::clone(&seen));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let target = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let mut authorized = false;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("authorization")
                    {
                        let value = value.trim();
                        authorized = value.len() > 7
                            && value[..7].eq_ignore_ascii_case("bearer ")
                            && value[7..] == *request_token;
                    }
                }
                let audience = target
                    .split_once('?')
                    .map(|(_, q)| q)
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("audience="))
                    .map(str::to_owned);
                let mut log = log.lock().unwrap();
                let (status, body) = match (authorized, &audience) {
                    (false, _) => (401, r#"{"message":"Bad credentials"}"#.to_owned()),
                    (true, None) => (400, r#"{"message":"audience is required"}"#.to_owned()),
                    (true, Some(_)) => {
                        let n = log.iter().filter(|s| s.status == 200).count() + 1;
                        (200, serde_json::json!({ "value": format!("{id_token}-{n}") }).to_string())
                    }
                };
                log.push(Seen { authorized, audience, status });
                drop(log);
                let reason = match status {
                    200 => "OK",
                    400 => "Bad Request",
                    _ => "Unauthorized",
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Tokens handed out.
    pub fn issued(&self) -> usize {
        self.seen().iter().filter(|s| s.status == 200).count()
    }
}
