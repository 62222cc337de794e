//! A CloudWatch stand-in for `DescribeAlarms`. The SDK gantry builds with speaks CloudWatch's
//! current protocol, Smithy RPC v2 CBOR (`POST /service/GraniteServiceVersion20100801/
//! operation/DescribeAlarms`, CBOR bodies, a `smithy-protocol: rpc-v2-cbor` header), which
//! moto 5.2.5 does not serve (it speaks the older query and JSON protocols). So alarms live
//! here, in the test process, and tests (or other stand-ins) set their state directly, as
//! `SetAlarmState` would. Answers follow the API reference: `MetricAlarms` with
//! `AlarmName`, `AlarmArn`, `StateValue` (`OK`, `ALARM`, `INSUFFICIENT_DATA`) and
//! `StateReason`, filtered by the request's `AlarmNames`; `CompositeAlarms` empty.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::stand_in::{self, Response, Server};

#[derive(Clone, Default)]
pub struct Alarms(Arc<Mutex<BTreeMap<String, (String, String)>>>);

impl Alarms {
    /// Creates (or sets) alarm `name` in `state` with `reason`.
    pub fn set(&self, name: &str, state: &str, reason: &str) {
        self.0.lock().unwrap().insert(name.into(), (state.into(), reason.into()));
    }
}

/// Starts the stand-in; `AWS_ENDPOINT_URL_CLOUDWATCH` points gantry at its URL.
pub fn start(alarms: Alarms) -> Server {
    stand_in::serve(Arc::new(move |req| {
        if req.method != "POST" {
            return Response::text(405, "RPC v2 operations are POSTs");
        }
        let Some(op) = req.path.strip_prefix("/service/GraniteServiceVersion20100801/operation/") else {
            return Response::text(404, "not a CloudWatch RPC v2 path");
        };
        if op != "DescribeAlarms" {
            return cbor_response(
                400,
                &Value::Map(vec![
                    ("__type".into(), Value::Text("UnknownOperationException".into())),
                    ("message".into(), Value::Text(format!("{op} is not emulated"))),
                ]),
            );
        }
        let input = decode(&mut &req.body[..]).unwrap_or(Value::Map(Vec::new()));
        let wanted: Option<Vec<String>> = input.get("AlarmNames").map(|v| match v {
            Value::Array(items) => items.iter().filter_map(Value::text).map(str::to_owned).collect(),
            _ => Vec::new(),
        });
        let alarms = alarms.0.lock().unwrap();
        let metric: Vec<Value> = alarms
            .iter()
            .filter(|(name, _)| wanted.as_ref().is_none_or(|w| w.contains(name)))
            .map(|(name, (state, reason))| {
                Value::Map(vec![
                    ("AlarmName".into(), Value::Text(name.clone())),
                    ("AlarmArn".into(), Value::Text(format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"))),
                    ("StateValue".into(), Value::Text(state.clone())),
                    ("StateReason".into(), Value::Text(reason.clone())),
                ])
            })
            .collect();
        cbor_response(
            200,
            &Value::Map(vec![
                ("MetricAlarms".into(), Value::Array(metric)),
                ("CompositeAlarms".into(), Value::Array(Vec::new())),
            ]),
        )
    }))
}

fn cbor_response(status: u16, value: &Value) -> Response {
    let mut body = Vec::new();
    encode(value, &mut body);
    let mut response = Response::new(status, "application/cbor", body);
    response.headers.push(("smithy-protocol".into(), "rpc-v2-cbor".into()));
    response
}

/// The CBOR values these messages use (RFC 8949).
#[derive(Debug, Clone)]
enum Value {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
    Simple(u8),
    Float(f64),
}

impl Value {
    fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match n {
        0..24 => out.push(m | n as u8),
        24..0x100 => out.extend([m | 24, n as u8]),
        0x100..0x10000 => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x10000..0x1_0000_0000 => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Int(n) if *n >= 0 => head(0, *n as u64, out),
        Value::Int(n) => head(1, (-1 - *n) as u64, out),
        Value::Bytes(b) => {
            head(2, b.len() as u64, out);
            out.extend(b);
        }
        Value::Text(s) => {
            head(3, s.len() as u64, out);
            out.extend(s.as_bytes());
        }
        Value::Array(items) => {
            head(4, items.len() as u64, out);
            items.iter().for_each(|i| encode(i, out));
        }
        Value::Map(entries) => {
            head(5, entries.len() as u64, out);
            for (k, v) in entries {
                encode(&Value::Text(k.clone()), out);
                encode(v, out);
            }
        }
        Value::Simple(s) => out.push(0xe0 | s),
        Value::Float(f) => {
            out.push(0xfb);
            out.extend(f.to_be_bytes());
        }
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (taken, rest) = input.split_at(n);
    *input = rest;
    Some(taken)
}

/// The argument of a head byte: `None` for indefinite length.
fn argument(info: u8, input: &mut &[u8]) -> Option<Option<u64>> {
    Some(Some(match info {
        0..24 => u64::from(info),
        24 => u64::from(take(input, 1)?[0]),
        25 => u64::from(u16::from_be_bytes(take(input, 2)?.try_into().ok()?)),
        26 => u64::from(u32::from_be_bytes(take(input, 4)?.try_into().ok()?)),
        27 => u64::from_be_bytes(take(input, 8)?.try_into().ok()?),
        31 => return Some(None),
        _ => return None,
    }))
}

fn decode(input: &mut &[u8]) -> Option<Value> {
    let byte = take(input, 1)?[0];
    let (major, info) = (byte >> 5, byte & 0x1f);
    if major == 7 {
        return match info {
            25 => take(input, 2).map(|_| Value::Float(0.0)),
            26 => Some(Value::Float(f64::from(f32::from_be_bytes(take(input, 4)?.try_into().ok()?)))),
            27 => Some(Value::Float(f64::from_be_bytes(take(input, 8)?.try_into().ok()?))),
            24 => take(input, 1).map(|b| Value::Simple(b[0])),
            s => Some(Value::Simple(s)),
        };
    }
    let arg = argument(info, input)?;
    let until_break = |input: &mut &[u8]| {
        if input.first() == Some(&0xff) {
            *input = &input[1..];
            true
        } else {
            false
        }
    };
    match (major, arg) {
        (0, Some(n)) => Some(Value::Int(i128::from(n))),
        (1, Some(n)) => Some(Value::Int(-1 - i128::from(n))),
        (2 | 3, Some(n)) => {
            let bytes = take(input, usize::try_from(n).ok()?)?.to_vec();
            Some(if major == 2 { Value::Bytes(bytes) } else { Value::Text(String::from_utf8(bytes).ok()?) })
        }
        (2 | 3, None) => {
            let mut bytes = Vec::new();
            while !until_break(input) {
                match decode(input)? {
                    Value::Bytes(b) => bytes.extend(b),
                    Value::Text(t) => bytes.extend(t.into_bytes()),
                    _ => return None,
                }
            }
            Some(if major == 2 { Value::Bytes(bytes) } else { Value::Text(String::from_utf8(bytes).ok()?) })
        }
        (4, n) => {
            let mut items = Vec::new();
            match n {
                Some(n) => {
                    for _ in 0..n {
                        items.push(decode(input)?);
                    }
                }
                None => {
                    while !until_break(input) {
                        items.push(decode(input)?);
                    }
                }
            }
            Some(Value::Array(items))
        }
        (5, n) => {
            let mut entries = Vec::new();
            let mut entry = |input: &mut &[u8]| -> Option<()> {
                let key = decode(input)?.text()?.to_owned();
                entries.push((key, decode(input)?));
                Some(())
            };
            match n {
                Some(n) => {
                    for _ in 0..n {
                        entry(input)?;
                    }
                }
                None => {
                    while !until_break(input) {
                        entry(input)?;
                    }
                }
            }
            Some(Value::Map(entries))
        }
        (6, Some(_)) => decode(input),
        _ => None,
    }
}

#[test]
fn cbor_round_trips_what_describe_alarms_uses() {
    let value = Value::Map(vec![
        ("AlarmNames".into(), Value::Array(vec![Value::Text("a".repeat(300)), Value::Text("b".into())])),
        ("MaxRecords".into(), Value::Int(100)),
        ("Neg".into(), Value::Int(-500)),
    ]);
    let mut bytes = Vec::new();
    encode(&value, &mut bytes);
    let back = decode(&mut &bytes[..]).unwrap();
    let names = match back.get("AlarmNames").unwrap() {
        Value::Array(items) => items.iter().map(|i| i.text().unwrap().len()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names, [300, 1]);
    assert!(matches!(back.get("Neg"), Some(Value::Int(-500))));
    // Indefinite-length map and text, as some encoders write them.
    let indefinite = [0xbf, 0x61, b'k', 0x7f, 0x61, b'a', 0x61, b'b', 0xff, 0xff];
    assert_eq!(decode(&mut &indefinite[..]).unwrap().get("k").unwrap().text(), Some("ab"));
}
