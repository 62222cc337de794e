//! The HTTP/1.1 side of the GitHub emulator: one thread per connection, keep-alive,
//! `Content-Length` and `chunked` request bodies. Two listeners: the API host and the
//! uploads host (as `api.github.com` and `uploads.github.com` are two hosts). Faults that
//! live on the wire (rate limits, a connection dropped part way through an upload) are
//! applied here, before a request reaches the model.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::model::{Reply, Request, State};

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Api,
    Uploads,
}

/// Binds a loopback port for `host` and serves it on background threads; returns its URL.
pub fn serve(host: Host, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let state = Arc::clone(&state);
            std::thread::spawn(move || connection(host, stream, &state));
        }
    });
    url
}

fn connection(host: Host, stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the socket"));
    let mut writer = stream;
    loop {
        let Some(head) = read_head(&mut reader) else { return };
        // A fault: the connection drops after part of an upload's body (the client sees a
        // reset; GitHub keeps the asset in state `starter`, which blocks its name).
        let cut = if host == Host::Uploads {
            let name = head.query.get("name").cloned().unwrap_or_default();
            let mut s = state.lock().unwrap();
            match s.faults.cut_uploads.get_mut(&name) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    s.requests.push(format!("{} {} (cut)", head.method, head.path));
                    s.broken_upload(&head.path, &name);
                    true
                }
                _ => false,
            }
        } else {
            false
        };
        if cut {
            let mut some = vec![0; head.length.unwrap_or(0).min(1024)];
            let _ = reader.read_exact(&mut some);
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
        let Some(body) = read_body(&mut reader, &head) else { return };
        let request =
            Request { host, method: head.method, path: head.path, query: head.query, headers: head.headers, body };
        let reply = state.lock().unwrap().handle(&request);
        if write_reply(&mut writer, &reply).is_err() {
            return;
        }
    }
}

struct Head {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    length: Option<usize>,
    chunked: bool,
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q),
        None => (target.clone(), ""),
    };
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length = headers.get("content-length").and_then(|v| v.parse().ok());
    let chunked = headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    Some(Head { method, path, query, headers, length, chunked })
}

fn read_body(reader: &mut BufReader<TcpStream>, head: &Head) -> Option<Vec<u8>> {
    if !head.chunked {
        let mut body = vec![0; head.length.unwrap_or(0)];
        reader.read_exact(&mut body).ok()?;
        return Some(body);
    }
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn write_reply(writer: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
    writer.write_all(head.as_bytes())?;
    writer.write_all(&reply.body)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        _ => "Other",
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
