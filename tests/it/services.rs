//! The local cloud stand-ins (scripts/test-services): moto for S3/ECR/STS and
//! docker-registry for the OCI data plane. Started once per test process and shared;
//! every test uses its own bucket and repository names, so tests run in parallel.

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

/// Endpoints of the running services.
#[derive(Debug)]
pub struct Services {
    /// moto's endpoint, e.g. `http://127.0.0.1:45100` (every AWS service on one port).
    pub moto: String,
    /// docker-registry's `host:port` (plain HTTP, htpasswd Basic auth).
    pub registry: String,
    /// The registry's htpasswd file (re-read by the registry on change).
    pub htpasswd: String,
    /// The AWS CLI from the tools virtualenv: an independent client for wire checks.
    pub aws_cli: String,
}

/// Starts the services on first use (installing them if needed) and returns their endpoints.
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-services");
        let out = Command::new(script).arg("start").output().expect("scripts/test-services runs");
        assert!(out.status.success(), "scripts/test-services start failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        let var = |k: &str| vars.get(k).unwrap_or_else(|| panic!("test-services printed no {k}")).clone();
        Services {
            moto: var("GANTRY_TEST_MOTO"),
            registry: var("GANTRY_TEST_REGISTRY"),
            htpasswd: var("GANTRY_TEST_HTPASSWD"),
            aws_cli: var("GANTRY_TEST_AWS"),
        }
    })
}

/// A name no other test (or earlier run) uses: `prefix-<pid>-<counter>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{n}-{}", std::process::id(), nanos % 100_000)
}

/// Environment for a gantry process (or SDK client) that talks to moto.
pub fn aws_env(s: &Services) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", s.moto.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}
