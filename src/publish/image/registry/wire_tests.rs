//! The Bearer token flow against a tiny in-process registry: the `/v2/` probe's challenge,
//! trading Basic credentials for a token at the realm, and using it per scope.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::publish::image::digest::Digest;

/// Serves a registry whose token endpoint accepts `user:pass`; records each request line.
async fn fake_registry() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (log, realm) = (Arc::clone(&seen), format!("http://{addr}/token"));
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
            let (status, headers, body) = if line.starts_with("GET /token") {
                if auth == basic_header_for_test("user", "pass") {
                    ("200 OK", String::new(), r#"{"token":"T1","expires_in":300}"#.to_owned())
                } else {
                    (
                        "401 Unauthorized",
                        String::new(),
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad"}]}"#.into(),
                    )
                }
            } else if auth != "Bearer T1" {
                let challenge = format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"\r\n");
                ("401 Unauthorized", challenge, String::new())
            } else if line.starts_with("GET /v2/ ") {
                ("200 OK", String::new(), "{}".into())
            } else {
                ("404 Not Found", String::new(), String::new())
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

fn basic_header_for_test(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_basic_credentials_and_reused() {
    let (addr, seen) = fake_registry().await;
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
    let (addr, _) = fake_registry().await;
    let creds = Credentials::Basic { username: "user".into(), password: "nope".into() };
    let err = Registry::new(&addr, creds).unwrap().login().await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("rejected the credentials: UNAUTHORIZED: bad"), "{err}");
}
