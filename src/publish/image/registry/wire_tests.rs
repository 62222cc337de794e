//! The client against tiny in-process registries: the Bearer token flow (the `/v2/`
//! challenge, trading Basic credentials for a token per scope, reusing it), and which
//! failures are retried (5xx and dropped connections) and which are not (4xx).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::publish::image::digest::Digest;

/// What a fake registry answers: status line, extra headers, body. `None` drops the connection.
type Handler = dyn Fn(&str, &str, usize) -> Option<(&'static str, String, String)> + Send + Sync;

/// Serves `handler(request line, authorization, request number)`; returns the address and
/// the log of `request line [authorization]`.
async fn serve(handler: Arc<Handler>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (log, count) = (Arc::clone(&seen), Arc::new(AtomicUsize::new(0)));
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 8192];
            let n = socket.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let line = head.lines().next().unwrap_or_default().to_owned();
            let auth = head
                .lines()
                .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
                .unwrap_or_default()
                .to_owned();
            log.lock().unwrap().push(format!("{line} [{auth}]"));
            let Some((status, headers, body)) = handler(&line, &auth, count.fetch_add(1, Ordering::SeqCst)) else {
                continue; // dropped: the socket closes without an answer
            };
            let response = format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (addr, seen)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// A registry whose token endpoint (on itself) accepts `user:pass` and hands out `T1`.
async fn bearer_registry() -> (String, Arc<Mutex<Vec<String>>>) {
    let realm = Arc::new(Mutex::new(String::new()));
    let handler_realm = Arc::clone(&realm);
    let (addr, seen) = serve(Arc::new(move |line: &str, auth: &str, _| {
        Some(if line.starts_with("GET /token") {
            if auth == basic("user", "pass") {
                ("200 OK", String::new(), r#"{"token":"T1","expires_in":300}"#.to_owned())
            } else {
                ("401 Unauthorized", String::new(), r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad"}]}"#.into())
            }
        } else if auth != "Bearer T1" {
            let realm = handler_realm.lock().unwrap().clone();
            (
                "401 Unauthorized",
                format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"\r\n"),
                String::new(),
            )
        } else if line.starts_with("GET /v2/ ") {
            ("200 OK", String::new(), "{}".into())
        } else {
            ("404 Not Found", String::new(), String::new())
        })
    }))
    .await;
    *realm.lock().unwrap() = format!("http://{addr}/token");
    (addr, seen)
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_basic_credentials_and_reused() {
    let (addr, seen) = bearer_registry().await;
    let creds = Credentials::Basic { username: "user".into(), password: "pass".into() };
    let registry = Registry::new(&addr, creds).unwrap();
    registry.login().await.unwrap();
    let digest = Digest::of(b"x");
    assert!(!registry.blob_exists("team/app", &digest).await.unwrap());
    assert!(!registry.blob_exists("team/app", &digest).await.unwrap());
    let seen = seen.lock().unwrap().clone();
    let tokens: Vec<_> = seen.iter().filter(|l| l.starts_with("GET /token")).collect();
    assert_eq!(tokens.len(), 2, "one token for the probe, one for the repository scope: {seen:#?}");
    assert!(tokens[1].contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush"), "{seen:#?}");
    let heads = seen.iter().filter(|l| l.starts_with("HEAD")).count();
    assert_eq!(heads, 2, "the cached token is used on the first try: {seen:#?}");
}

#[tokio::test]
async fn wrong_credentials_fail_the_login_clearly() {
    let (addr, _) = bearer_registry().await;
    let creds = Credentials::Basic { username: "user".into(), password: "nope".into() };
    let err = Registry::new(&addr, creds).unwrap().login().await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("rejected the credentials: UNAUTHORIZED: bad"), "{err}");
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried() {
    // Request 0: 503, 1: dropped, 2: 200.
    let (addr, seen) = serve(Arc::new(|_: &str, _: &str, n| match n {
        0 => Some(("503 Service Unavailable", String::new(), String::new())),
        1 => None,
        _ => Some(("200 OK", String::new(), String::new())),
    }))
    .await;
    let registry = Registry::new(&addr, Credentials::Anonymous).unwrap();
    assert!(registry.blob_exists("app", &Digest::of(b"x")).await.unwrap());
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let body = r#"{"errors":[{"code":"DENIED","message":"no push for you"}]}"#;
    let (addr, seen) =
        serve(Arc::new(move |_: &str, _: &str, _| Some(("403 Forbidden", String::new(), body.into())))).await;
    let registry = Registry::new(&addr, Credentials::Anonymous).unwrap();
    let err = registry.blob_bytes("app", &Digest::of(b"x")).await.unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 1, "a 403 is asked once");
    assert!(err.to_string().contains("HTTP 403: DENIED: no push for you"), "{err}");
    assert!(err.hint().unwrap().contains("push permission"));
}
