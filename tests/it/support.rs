//! Helpers shared by the integration tests.

use std::path::Path;
use std::process::Command;

/// The `gantry` binary built for this test run, with a clean environment for the
/// variables gantry reads, run in `dir`.
pub fn gantry(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("gantry").expect("gantry binary is built");
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("GANTRY_") || key == "SOURCE_DATE_EPOCH" || key == "NO_COLOR" || key == "GITHUB_ACTIONS" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A loopback port for a server a test starts later (nginx, a replica, python's
/// http.server). Ports come from a counter over 15000..24000: below both the kernel's
/// ephemeral range (where `:0` binds and outgoing connections take their local ports) and
/// the range gantry gives its own replicas, so no other test or connection can take the
/// port between this call and the server's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % 9000) as u16;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 9000, "the tests used every port in 15000..24000");
        let port = 15000 + (offset + n) % 9000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// What a finished command wrote to stderr.
pub fn stderr(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

/// What a finished command wrote, stdout then stderr.
pub fn output(out: &assert_cmd::assert::Assert) -> String {
    let o = out.get_output();
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs git in `dir` with a fixed identity and clock.
pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000")
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

/// Writes `files` (path, contents) under `dir`, creating folders.
pub fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }
}

/// S3's form of a hex SHA-256 (from release.json): base64 of its bytes.
pub fn sha256_b64(hex: &str) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
