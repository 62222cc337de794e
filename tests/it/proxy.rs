//! A TCP proxy for tests: forwards to an upstream server, logs the HTTP request lines
//! that pass through, and injects faults (connections reset or stalled mid-transfer).
//! Plain threads and blocking sockets, so it works under any test runner.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Faults for the traffic from now on. A connection meets a fault when its client has
/// sent `after_bytes`: the first `resets` such connections are cut there, the next
/// `stalls` hang there for `stall_for` and are then cut. Small requests pass untouched.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub resets: usize,
    pub stalls: usize,
    pub after_bytes: usize,
    pub stall_for: Duration,
    /// Every connection after the first N is refused at once (cut before any byte).
    pub refuse_after: Option<usize>,
    /// Rewrites the value of every `x-amz-checksum-sha256` request header on the way in
    /// (first character changed), as a server that stored something else would report.
    pub corrupt_checksums: bool,
    /// The same for every `x-amz-checksum-crc64nvme` header (the checksums of parts).
    pub corrupt_part_checksums: bool,
    /// Answers every request as S3 does for an unknown access key (403 InvalidAccessKeyId).
    pub deny: bool,
    /// After the resets and stalls, the next `flips` connections to carry `after_bytes`
    /// have the byte there changed on its way to the server (a part body corrupted in
    /// transit), and are otherwise left alone.
    pub flips: usize,
    /// Hides every checksum in the server's answers (`x-amz-checksum-*` headers and
    /// `<Checksum...>` XML elements are renamed), as a server that keeps none would answer.
    pub strip_checksums: bool,
    /// A store without checksums for multipart uploads: every multipart request (create,
    /// part, complete) that carries a checksum header is answered `501 NotImplemented`
    /// (as Cloudflare R2 answered algorithms it lacked) and its connection closed, without
    /// passing it on. Single puts and requests without checksums pass.
    pub refuse_checksum_algorithm: bool,
}

const NOT_IMPLEMENTED_BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NotImplemented</Code>\
<Message>Header 'x-amz-checksum-algorithm' with value 'CRC64NVME' not implemented</Message></Error>";

const DENIED: &str = "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n\
Content-Length: 169\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidAccessKeyId</Code>\
<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>";

#[derive(Default)]
struct State {
    faults: Faults,
    accepted: usize,
    requests: Vec<String>,
}

pub struct Proxy {
    pub addr: String,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`host:port`) on a free loopback port.
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (refuse, deny) = {
                    let mut s = shared.lock().unwrap();
                    s.accepted += 1;
                    (s.faults.refuse_after.is_some_and(|n| s.accepted > n), s.faults.deny)
                };
                if deny {
                    std::thread::spawn(move || answer_denied(client));
                    continue;
                }
                if refuse {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let log = Arc::clone(&shared);
                std::thread::spawn(move || pipe(client, server, log));
            }
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().unwrap().faults = faults;
    }

    /// Request lines seen so far, e.g. `PUT /bucket/key?x-id=PutObject`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.lock().unwrap().accepted
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().requests.clear();
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    Reset,
    Stall(Duration),
    Flip,
}

fn take_fault(f: &mut Faults) -> Fault {
    if f.resets > 0 {
        f.resets -= 1;
        Fault::Reset
    } else if f.stalls > 0 {
        f.stalls -= 1;
        Fault::Stall(f.stall_for)
    } else if f.flips > 0 {
        f.flips -= 1;
        Fault::Flip
    } else {
        Fault::None
    }
}

fn pipe(client: TcpStream, server: TcpStream, state: Arc<Mutex<State>>) {
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut s_read, mut c_write) = (server, client);
    let answers = Arc::clone(&state);
    let back = std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match s_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if answers.lock().unwrap().faults.strip_checksums {
                hide_checksums(&mut buf[..n]);
            }
            if c_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c_write.shutdown(Shutdown::Both);
    });
    let mut buf = vec![0; 64 * 1024];
    let mut sent = 0;
    let mut carry = String::new();
    loop {
        let n = match c_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        log_request_lines(&buf[..n], &mut carry, &state);
        let faults = state.lock().unwrap().faults.clone();
        if faults.refuse_checksum_algorithm && multipart_with_checksum(&buf[..n]) {
            let answer = format!(
                "HTTP/1.1 501 Not Implemented\r\nContent-Type: application/xml\r\nConnection: close\r\n\
                 Content-Length: {}\r\n\r\n{}",
                NOT_IMPLEMENTED_BODY.len(),
                NOT_IMPLEMENTED_BODY
            );
            // The server never sees the request, so it answers nothing on this connection
            // meanwhile: this answer cannot interleave with one of its own.
            let _ = c_read.write_all(answer.as_bytes());
            let _ = c_read.shutdown(Shutdown::Both);
            let _ = s_write.shutdown(Shutdown::Both);
            break;
        }
        if faults.corrupt_checksums {
            corrupt_header(&mut buf[..n], b"x-amz-checksum-sha256:");
        }
        if faults.corrupt_part_checksums {
            corrupt_header(&mut buf[..n], b"x-amz-checksum-crc64nvme:");
        }
        let after = faults.after_bytes;
        if after > 0 && sent + n > after && sent <= after {
            let fault = take_fault(&mut state.lock().unwrap().faults);
            if let Fault::Flip = fault {
                buf[after - sent] ^= 0x01;
            } else if !matches!(fault, Fault::None) {
                let _ = s_write.write_all(&buf[..after - sent]);
                if let Fault::Stall(pause) = fault {
                    std::thread::sleep(pause);
                }
                let _ = c_read.shutdown(Shutdown::Both);
                let _ = s_write.shutdown(Shutdown::Both);
                break;
            }
        }
        if s_write.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = s_write.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// Whether `bytes` hold the head of a multipart request (`POST ?uploads`, `PUT
/// ?partNumber=`, `POST ?uploadId=`) carrying a checksum header. A head split across two
/// reads is missed; these are small.
fn multipart_with_checksum(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let line = head.lines().next().unwrap_or_default();
    let multipart = (line.starts_with("post ") || line.starts_with("put "))
        && ["?uploads", "partnumber=", "uploadid="].iter().any(|p| line.contains(p));
    multipart
        && ["\r\nx-amz-checksum-", "\r\nx-amz-sdk-checksum-algorithm:", "\r\nx-amz-trailer:"]
            .iter()
            .any(|h| head.contains(h))
}

/// Reads one request's head and answers it with `DENIED`.
fn answer_denied(mut client: TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let _ = client.write_all(DENIED.as_bytes());
    let _ = client.shutdown(Shutdown::Write);
}

/// Changes the first character of each `name` header value in place.
fn corrupt_header(bytes: &mut [u8], name: &[u8]) {
    let mut i = 0;
    while i + name.len() < bytes.len() {
        if bytes[i..i + name.len()].eq_ignore_ascii_case(name) {
            let mut v = i + name.len();
            while v < bytes.len() && bytes[v] == b' ' {
                v += 1;
            }
            if v < bytes.len() {
                bytes[v] = if bytes[v] == b'A' { b'B' } else { b'A' };
            }
            i = v;
        }
        i += 1;
    }
}

/// Renames `x-amz-checksum-` headers and `<Checksum`/`</Checksum` elements in place (same
/// lengths), so the client finds no checksum in the answer. A name split across two
/// reads is missed; the answers that carry checksums are small.
fn hide_checksums(bytes: &mut [u8]) {
    for pattern in [&b"x-amz-checksum-"[..], b"<Checksum", b"</Checksum"] {
        let mut i = 0;
        while i + pattern.len() <= bytes.len() {
            if bytes[i..i + pattern.len()].eq_ignore_ascii_case(pattern) {
                // `checksum` becomes `checksxm`
                let u = pattern.iter().rposition(|&b| b == b'u').expect("the pattern has a u");
                bytes[i + u] = b'x';
                i += pattern.len();
            } else {
                i += 1;
            }
        }
    }
}

/// Finds `METHOD /path HTTP/1.1` lines in the client's bytes (bodies seldom hold one).
fn log_request_lines(bytes: &[u8], carry: &mut String, state: &Mutex<State>) {
    carry.push_str(&String::from_utf8_lossy(bytes));
    let mut lines: Vec<&str> = carry.split("\r\n").collect();
    let rest = lines.pop().unwrap_or_default().to_owned();
    let mut found = Vec::new();
    for line in lines {
        for method in ["GET ", "PUT ", "POST ", "HEAD ", "DELETE ", "PATCH "] {
            if let Some(pos) = line.find(method) {
                let candidate = &line[pos..];
                if candidate.ends_with(" HTTP/1.1") {
                    found.push(candidate.trim_end_matches(" HTTP/1.1").to_owned());
                }
            }
        }
    }
    *carry = if rest.len() > 4096 { String::new() } else { rest };
    state.lock().unwrap().requests.extend(found);
}
