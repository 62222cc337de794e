//! The HTTP/1.1 side: one thread per connection, keep-alive, `Content-Length` bodies, and
//! the JSON 1.1 envelope. Faults that live on the wire (throttling, dropped connections)
//! are applied here, before an operation reaches the model.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::model::{ApiError, State};

const TARGET_PREFIX: &str = "CodePipeline_20150709.";

/// Binds a loopback port and serves on background threads; returns the endpoint URL.
pub fn serve(state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let state = Arc::clone(&state);
            std::thread::spawn(move || connection(stream, &state));
        }
    });
    url
}

fn connection(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the socket"));
    let mut writer = stream;
    loop {
        let Some((target, body)) = read_request(&mut reader) else { return };
        let reply = {
            let mut state = state.lock().unwrap();
            state.requests.push(target.clone());
            let op = target.strip_prefix(TARGET_PREFIX).unwrap_or(&target).to_owned();
            if state.faults.drop_connections > 0 {
                state.faults.drop_connections -= 1;
                None
            } else if state.faults.throttle.get(&op).copied().unwrap_or(0) > 0 {
                *state.faults.throttle.get_mut(&op).unwrap() -= 1;
                Some(Err(ApiError::new("ThrottlingException", "Rate exceeded")))
            } else if !target.starts_with(TARGET_PREFIX) {
                Some(Err(ApiError::new("UnknownOperationException", format!("unknown target `{target}`"))))
            } else {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(input) => Some(state.handle(&op, &input)),
                    Err(e) => Some(Err(ApiError::new("SerializationException", e.to_string()))),
                }
            }
        };
        let Some(reply) = reply else { return };
        let (status, body) = match reply {
            Ok(value) => ("200 OK", value.to_string()),
            Err(e) => ("400 Bad Request", serde_json::json!({"__type": e.kind, "message": e.message}).to_string()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: emulator\r\n\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(body.as_bytes())).is_err() {
            return;
        }
    }
}

/// Reads one request; returns its `X-Amz-Target` and body, or `None` at end of stream.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let (mut target, mut length) = (String::new(), 0usize);
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
        match name.trim().to_ascii_lowercase().as_str() {
            "x-amz-target" => target = value.trim().to_owned(),
            "content-length" => length = value.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((target, body))
}
