//! The target's own nginx: a prefix folder in the state dir with its config, pid file,
//! error log and temp paths, never the system's. Every config is checked with `nginx -t`
//! before it replaces the last good one, and applied with a graceful reload (SIGHUP to
//! the master, which starts new workers and lets the old ones finish their requests).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::process::{self, ProcessId};

/// How long nginx may take to start or to apply a reload.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest an old worker may keep serving in-flight requests after a reload.
pub const WORKER_SHUTDOWN: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);

/// Who serves what: `(port, weight)` for users, ports for the preview address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstreams {
    pub public: Vec<(u16, u32)>,
    pub preview: Vec<u16>,
}

pub struct Nginx {
    binary: PathBuf,
    prefix: PathBuf,
    listen: String,
    preview: String,
}

impl Nginx {
    /// `prefix` is the folder nginx keeps everything in.
    pub fn new(binary: PathBuf, prefix: PathBuf, listen: String, preview: String) -> Self {
        Self { binary, prefix, listen, preview }
    }

    fn conf(&self) -> PathBuf {
        self.prefix.join("nginx.conf")
    }

    pub fn error_log(&self) -> PathBuf {
        self.prefix.join("error.log")
    }

    /// The config for `upstreams`, with every path under the prefix.
    pub fn render(&self, upstreams: &Upstreams) -> String {
        let p = |name: &str| format!("\"{}\"", self.prefix.join(name).display());
        let mut c = String::from("# Written by gantry on every change; edits are lost.\n");
        if nix::unistd::geteuid().is_root() {
            // Workers would otherwise run as `nobody` and could not write the temp paths.
            c.push_str("user root;\n");
        }
        let _ = write!(
            c,
            "daemon on;\nworker_processes 1;\npid {pid};\nerror_log {log} warn;\nworker_shutdown_timeout {shutdown}s;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {body};\n    proxy_temp_path {proxy};\n    \
             fastcgi_temp_path {fastcgi};\n    uwsgi_temp_path {uwsgi};\n    scgi_temp_path {scgi};\n    \
             keepalive_timeout 0;\n    proxy_http_version 1.1;\n    proxy_set_header Host $http_host;\n    \
             proxy_connect_timeout 2s;\n    proxy_next_upstream error timeout http_502;\n    proxy_next_upstream_tries 3;\n",
            pid = p("nginx.pid"),
            log = p("error.log"),
            shutdown = WORKER_SHUTDOWN.as_secs(),
            body = p("temp/client_body"),
            proxy = p("temp/proxy"),
            fastcgi = p("temp/fastcgi"),
            uwsgi = p("temp/uwsgi"),
            scgi = p("temp/scgi"),
        );
        let preview: Vec<(u16, u32)> = upstreams.preview.iter().map(|&port| (port, 1)).collect();
        server(&mut c, "gantry_public", &self.listen, &upstreams.public);
        server(&mut c, "gantry_preview", &self.preview, &preview);
        c.push_str("}\n");
        c
    }

    /// Checks `config` with `nginx -t`, makes it the current config, and applies it:
    /// reloads a running nginx or starts one. Returns the workers that served before
    /// the reload, which finish their in-flight requests and exit (see [`Self::drained`]).
    pub async fn apply(&self, config: &str) -> Result<Vec<i32>, String> {
        std::fs::create_dir_all(self.prefix.join("temp"))
            .map_err(|e| format!("cannot create {}: {e}", self.prefix.display()))?;
        let candidate = self.prefix.join("nginx.conf.new");
        std::fs::write(&candidate, config).map_err(|e| format!("cannot write {}: {e}", candidate.display()))?;
        self.run(&["-t", "-q", "-c"], &candidate).await.map_err(|e| format!("`nginx -t` rejected the config: {e}"))?;
        std::fs::rename(&candidate, self.conf()).map_err(|e| format!("cannot replace nginx.conf: {e}"))?;
        match self.master() {
            Some(master) => self.reload(master).await,
            None => self.start().await.map(|()| Vec::new()),
        }
    }

    /// The running master, when its pid file names a live nginx.
    pub fn master(&self) -> Option<ProcessId> {
        let pid: i32 = std::fs::read_to_string(self.prefix.join("nginx.pid")).ok()?.trim().parse().ok()?;
        let id = ProcessId::current(pid)?;
        (id.is_alive() && process::cmdline(pid)?.contains("nginx: master")).then_some(id)
    }

    async fn start(&self) -> Result<(), String> {
        self.run(&["-c"], &self.conf()).await.map_err(|e| format!("nginx did not start: {e}"))?;
        let deadline = Instant::now() + APPLY_TIMEOUT;
        while self.master().is_none() {
            if Instant::now() > deadline {
                return Err(format!("nginx started but wrote no pid file in {}", self.prefix.display()));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Sends SIGHUP and waits until the new config is in force: every worker from before
    /// is gone or shutting down (it closed its listening sockets).
    async fn reload(&self, master: ProcessId) -> Result<Vec<i32>, String> {
        let old = process::children(master.pid);
        kill(Pid::from_raw(master.pid), Signal::SIGHUP).map_err(|e| format!("cannot signal nginx: {e}"))?;
        let deadline = Instant::now() + APPLY_TIMEOUT;
        loop {
            let serving = old.iter().any(|&pid| process::cmdline(pid).is_some_and(|c| !c.contains("shutting down")));
            let fresh = process::children(master.pid).iter().any(|pid| !old.contains(pid));
            if !serving && fresh {
                return Ok(old);
            }
            if Instant::now() > deadline {
                return Err(format!("nginx did not apply the new config within {APPLY_TIMEOUT:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the workers from before a reload have finished their in-flight
    /// requests and exited (nginx ends them after `worker_shutdown_timeout` at most).
    pub async fn drained(&self, old_workers: &[i32]) {
        let deadline = Instant::now() + WORKER_SHUTDOWN + APPLY_TIMEOUT;
        while old_workers.iter().any(|&pid| process::cmdline(pid).is_some_and(|c| c.contains("nginx"))) {
            if Instant::now() > deadline {
                tracing::debug!("nginx workers {old_workers:?} still running after the drain deadline");
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops nginx: fast shutdown, then SIGKILL for the master and its workers.
    pub fn stop_blocking(&self) {
        if let Some(master) = self.master() {
            let workers: Vec<ProcessId> =
                process::children(master.pid).into_iter().filter_map(ProcessId::current).collect();
            let _ = kill(Pid::from_raw(master.pid), Signal::SIGTERM);
            let deadline = Instant::now() + APPLY_TIMEOUT;
            while master.is_alive() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            for id in workers.iter().chain([&master]).filter(|id| id.is_alive()) {
                let _ = kill(Pid::from_raw(id.pid), Signal::SIGKILL);
            }
        }
    }

    /// Runs nginx with the prefix, `args` and `conf`, and returns its stderr on failure.
    async fn run(&self, args: &[&str], conf: &Path) -> Result<(), String> {
        let out = tokio::process::Command::new(&self.binary)
            .arg("-p")
            .arg(&self.prefix)
            .arg("-e")
            .arg(self.error_log())
            .args(args)
            .arg(conf)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
    }
}

/// An upstream and the server that proxies `listen` to it; with no servers, a 503.
fn server(c: &mut String, name: &str, listen: &str, servers: &[(u16, u32)]) {
    if servers.is_empty() {
        let _ = writeln!(
            c,
            "    server {{\n        listen {listen};\n        location / {{ return 503 \"no replicas\\n\"; }}\n    }}"
        );
        return;
    }
    let _ = writeln!(c, "    upstream {name} {{");
    for (port, weight) in servers {
        let _ = writeln!(c, "        server 127.0.0.1:{port} weight={weight};");
    }
    let _ = writeln!(c, "    }}");
    let _ = writeln!(
        c,
        "    server {{\n        listen {listen};\n        location / {{ proxy_pass http://{name}; }}\n    }}"
    );
}

/// Finds the nginx binary on `PATH` or in `/usr/sbin` (not on a normal user's `PATH`).
pub fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// Per-server weights giving the new version `percent` of requests: each stable replica
/// gets `(100 - percent) * new`, each new one `percent * stable`, reduced by their gcd.
/// A side with no share is left out (nginx has no `weight=0`).
pub fn weights(stable: &[u16], new: &[u16], percent: u8) -> Vec<(u16, u32)> {
    let percent = u32::from(percent.min(100));
    let (s, n) = (u32::try_from(stable.len()).unwrap_or(u32::MAX), u32::try_from(new.len()).unwrap_or(u32::MAX));
    if n == 0 || percent == 0 {
        return stable.iter().map(|&p| (p, 1)).collect();
    }
    if s == 0 || percent == 100 {
        return new.iter().map(|&p| (p, 1)).collect();
    }
    let (ws, wn) = ((100 - percent) * n, percent * s);
    let g = gcd(ws, wn);
    stable.iter().map(|&p| (p, ws / g)).chain(new.iter().map(|&p| (p, wn / g))).collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_split_by_replica_counts() {
        assert_eq!(weights(&[1, 2], &[3, 4], 10), [(1, 9), (2, 9), (3, 1), (4, 1)]);
        // 3 stable, 1 new, 50%: each new request share must equal all stable ones.
        assert_eq!(weights(&[1, 2, 3], &[4], 50), [(1, 1), (2, 1), (3, 1), (4, 3)]);
        assert_eq!(weights(&[1], &[2], 0), [(1, 1)]);
        assert_eq!(weights(&[1], &[2], 100), [(2, 1)]);
        assert_eq!(weights(&[], &[2], 10), [(2, 1)]);
        assert_eq!(weights(&[1], &[], 10), [(1, 1)]);
    }

    #[test]
    fn config_stays_under_the_prefix_and_leaves_out_empty_upstreams() {
        let nginx = Nginx::new("nginx".into(), "/s/nginx".into(), "127.0.0.1:8080".into(), "127.0.0.1:8081".into());
        let conf = nginx.render(&Upstreams { public: vec![(4000, 9), (4001, 1)], preview: vec![] });
        assert!(conf.contains("server 127.0.0.1:4000 weight=9;"));
        assert!(conf.contains("listen 127.0.0.1:8081;\n        location / { return 503"));
        assert!(conf.contains("pid \"/s/nginx/nginx.pid\";"));
        assert!(!conf.contains("/var/") && !conf.contains("/etc/"));
    }
}
