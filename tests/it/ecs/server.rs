//! The HTTP/1.1 side of the ECS emulator: one thread per connection, keep-alive,
//! `Content-Length` bodies, and the JSON 1.1 envelope
//! (`X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`, errors as HTTP 400 with
//! `{"__type": ..., "message": ...}`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::model::{ApiError, State};

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

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
    while let Some((target, body)) = read_request(&mut reader) {
        let reply = {
            let mut state = state.lock().unwrap();
            match target.strip_prefix(TARGET_PREFIX) {
                None => Err(ApiError::new("UnknownOperationException", format!("unknown target `{target}`"))),
                Some(op) => match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(input) => state.call(op, &input),
                    Err(e) => Err(ApiError::new("SerializationException", e.to_string())),
                },
            }
        };
        let (status, body) = match reply {
            Ok(value) => ("200 OK", value.to_string()),
            Err(e) => ("400 Bad Request", serde_json::json!({"__type": e.kind, "message": e.message}).to_string()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: ecs-emulator\r\n\r\n",
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
