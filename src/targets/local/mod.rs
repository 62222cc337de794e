//! The `local` target: the release's app as replica processes on loopback ports, behind
//! the target's own nginx. Everything it knows lives in its state dir, so any later
//! process (after a crash) can observe and converge it:
//!
//! ```text
//! STATE_DIR/state.json            versions, replicas (pid + start time, port, log), routing
//! STATE_DIR/releases/V-DIGEST12/  unpacked artifacts (the ones in use and the 3 newest)
//! STATE_DIR/logs/V-DIGEST12-PORT.log
//! STATE_DIR/nginx/                nginx's prefix: nginx.conf, nginx.pid, error.log, temp/
//! ```
//!
//! Every operation writes the state it is about to create before creating it: a replica
//! is recorded before it is spawned, and replicas leaving the upstream move to `retiring`
//! before nginx is reloaded. Stopping a replica always follows a drain: out of the upstream,
//! graceful reload, old nginx workers finished, then the configured drain time.

mod nginx;
mod process;
mod release;
mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::nginx::{Nginx, Upstreams};
use self::process::ProcessId;
use self::state::{Deployed, Replica, Routing, State};
use crate::targets::{Live, LiveVersion, Release, Target, TargetError};

/// How long a new replica has to accept TCP connections on its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra wait after the drain: none by default, since every request reaches a replica through
/// nginx, and nginx's old workers have finished their requests before a replica is stopped.
const DEFAULT_DRAIN: Duration = Duration::ZERO;
/// Replicas started on a port that another process took first are started again on
/// another port, this many times in all.
const PORT_ATTEMPTS: u32 = 3;
/// Lines of a replica's log quoted in an error.
const LOG_LINES: usize = 10;

pub struct LocalTarget {
    name: String,
    artifact: String,
    command: String,
    replicas: u32,
    listen: SocketAddr,
    preview: SocketAddr,
    drain: Duration,
    dir: PathBuf,
    /// The value of the replicas' marker variable: the canonical state dir.
    marker: String,
    nginx: Nginx,
}

impl LocalTarget {
    /// The target `name` with its settings, keeping its state in `state_dir` (created
    /// when missing). Starts nothing.
    pub fn new(name: &str, config: &crate::config::LocalTarget, state_dir: PathBuf) -> Result<Self, TargetError> {
        let fail = |what: String| TargetError::new(format!("local target `{name}`: {what}"));
        let listen = loopback(&config.listen).map_err(|e| fail(format!("listen: {e}")))?;
        let preview = match &config.preview {
            Some(preview) => loopback(preview).map_err(|e| fail(format!("preview: {e}")))?,
            None => {
                let port = listen
                    .port()
                    .checked_add(1)
                    .ok_or_else(|| fail("listen port 65535 leaves no preview port".into()))?;
                SocketAddr::new(listen.ip(), port)
            }
        };
        if preview == listen {
            return Err(fail(format!("preview and listen are both {listen}")));
        }
        let binary = nginx::find_binary().ok_or_else(|| {
            fail("nginx not found".into())
                .with_hint("install it with `apt-get install nginx`, or run scripts/bootstrap")
        })?;
        // Not created here: `plan` and `status` build targets too, and leave nothing behind.
        resolve(&state_dir)
            .map(|dir| Self {
                name: name.to_owned(),
                artifact: config.artifact.to_string(),
                command: config.command.clone(),
                replicas: config.replicas,
                listen,
                preview,
                drain: config.drain.map_or(DEFAULT_DRAIN, |d| d.get()),
                marker: dir.display().to_string(),
                nginx: Nginx::new(binary, dir.join("nginx"), listen.to_string(), preview.to_string()),
                dir,
            })
            .map_err(|e| fail(format!("cannot resolve the state dir {}", state_dir.display())).with_source(e))
    }

    /// The URL that reaches only the new version.
    pub fn preview_url(&self) -> String {
        format!("http://{}", self.preview)
    }

    /// Stops everything: nginx and every replica this target started. The release
    /// folders stay; the state file then says nothing runs.
    pub fn down(&mut self) -> Result<(), TargetError> {
        self.nginx.stop_blocking();
        let state = self.load()?;
        let mut ids: Vec<ProcessId> = state.all_replicas().filter_map(|r| r.process).collect();
        ids.extend(process::marked(&self.marker).into_iter().map(|m| m.id));
        process::stop_blocking(&ids);
        self.save(&State::default())
    }

    fn error(&self, what: impl std::fmt::Display) -> TargetError {
        TargetError::new(format!("local target `{}`: {what}", self.name))
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn load(&self) -> Result<State, TargetError> {
        State::load(&self.state_file()).map_err(|e| self.error("cannot read state.json").with_source(e))
    }

    fn save(&self, state: &State) -> Result<(), TargetError> {
        state.save(&self.state_file()).map_err(|e| self.error("cannot write state.json").with_source(e))
    }

    /// Writes nginx's config for `state` and applies it; returns the workers from before.
    async fn route(&self, state: &State) -> Result<Vec<i32>, TargetError> {
        let live = |d: &Option<Deployed>| -> Vec<u16> {
            d.iter()
                .flat_map(|d| &d.replicas)
                .filter(|r| r.process.is_some_and(|p| p.is_alive()))
                .map(|r| r.port)
                .collect()
        };
        let (stable, new) = (live(&state.stable), live(&state.new));
        let public = match state.routing {
            Routing::Stable => stable.iter().map(|&p| (p, 1)).collect(),
            Routing::Weighted { percent } => nginx::weights(&stable, &new, percent),
            Routing::Rolling { old } => stable.iter().take(old as usize).chain(&new).map(|&p| (p, 1)).collect(),
        };
        let config = self.nginx.render(&Upstreams { public, preview: new });
        tracing::debug!(target = %self.name, "applying nginx config:\n{config}");
        self.nginx.apply(&config).await.map_err(|e| {
            let log = tail(&self.nginx.error_log(), LOG_LINES);
            let error = self.error(format!("nginx: {e}\n{}:\n{log}", self.nginx.error_log().display()));
            if e.contains("Address already in use") {
                error.with_hint(format!(
                    "another process listens on {} or {}: stop it, or set `listen` and `preview` to free ports",
                    self.listen, self.preview
                ))
            } else {
                error
            }
        })
    }

    /// Drains and stops the replicas in `state.retiring`, then forgets them. `old_workers`
    /// are the nginx workers that may still be sending them requests.
    async fn retire(&self, state: &mut State, old_workers: &[i32]) -> Result<(), TargetError> {
        if state.retiring.is_empty() {
            return Ok(());
        }
        self.nginx.drained(old_workers).await;
        tokio::time::sleep(self.drain).await;
        let ids: Vec<ProcessId> = state.retiring.iter().filter_map(|r| r.process).collect();
        tracing::debug!(target = %self.name, "stopping drained replicas {ids:?}");
        process::stop(&ids).await;
        state.retiring.clear();
        self.save(state)
    }

    /// Stops processes carrying this target's marker that belong to no replica in
    /// `state`: left behind by a crash between spawning and recording.
    async fn stop_strays(&self, state: &State) {
        let known: Vec<i32> =
            state.all_replicas().filter_map(|r| r.process).filter(ProcessId::is_alive).map(|p| p.pid).collect();
        let strays: Vec<ProcessId> =
            process::marked(&self.marker).into_iter().filter(|m| !known.contains(&m.session)).map(|m| m.id).collect();
        if !strays.is_empty() {
            tracing::debug!(target = %self.name, "stopping stray processes {strays:?}");
            process::stop(&strays).await;
        }
    }

    /// Brings the stable (`new == false`) or new version up to `count` live replicas,
    /// recording them before spawning them, and waits until every one accepts connections.
    async fn scale_up(&self, state: &mut State, new: bool, count: u32) -> Result<(), TargetError> {
        let Some(deployed) = (if new { state.new.as_mut() } else { state.stable.as_mut() }) else { return Ok(()) };
        deployed.replicas.retain(|r| r.process.is_some_and(|p| p.is_alive()));
        let missing = count.saturating_sub(u32::try_from(deployed.replicas.len()).unwrap_or(u32::MAX));
        let (dir, label) = (deployed.dir.clone(), format!("{}", deployed.version));
        std::fs::create_dir_all(self.dir.join("logs")).map_err(|e| self.error("cannot create logs/").with_source(e))?;
        let mut pending: Vec<Starting> = self
            .spawn_replicas(state, new, &dir, &label, missing)?
            .into_iter()
            .map(|(id, port, log)| Starting { id, port, log, attempts: 1 })
            .collect();
        // All replicas start at once and are waited for together, so a deploy waits about
        // as long as the slowest replica's own start-up.
        let deadline = Instant::now() + START_TIMEOUT;
        while !pending.is_empty() {
            // A cheap connect first; the scan of /proc (which proves the listener is the
            // replica, not a stranger on its port) only for replicas that accept, once per
            // round for all of them: it reads every socket of the machine.
            let accepting: Vec<usize> =
                (0..pending.len()).filter(|&i| accepts(pending[i].port) && pending[i].id.is_alive()).collect();
            let owners = process::listeners(
                &accepting.iter().map(|&i| (pending[i].id.pid, pending[i].port)).collect::<Vec<_>>(),
            );
            let ready: Vec<usize> = accepting
                .iter()
                .zip(owners)
                .filter(|(_, o)| *o == process::Listener::Session)
                .map(|(&i, _)| i)
                .collect();
            let mut still = Vec::new();
            // Attempts so far of replicas to start again on another port.
            let mut retry: Vec<u32> = Vec::new();
            for (i, starting) in pending.into_iter().enumerate() {
                if ready.contains(&i) {
                    continue;
                }
                if starting.id.is_alive() {
                    still.push(starting);
                    continue;
                }
                let taken = process::listener(starting.id.pid, starting.port) == process::Listener::Other;
                if taken && starting.attempts < PORT_ATTEMPTS {
                    // Another process took the port between our pick and the replica's bind.
                    tracing::debug!(target = %self.name, "port {} was taken; starting the replica again", starting.port);
                    retry.push(starting.attempts);
                    continue;
                }
                let why =
                    if taken { "exited: another process listens on its port" } else { "exited before it listened" };
                return Err(self.startup_error(&starting, &label, why));
            }
            pending = still;
            if !retry.is_empty() {
                let started = self.spawn_replicas(state, new, &dir, &label, u32::try_from(retry.len()).unwrap_or(1))?;
                pending.extend(started.into_iter().zip(retry).map(|((id, port, log), attempts)| Starting {
                    id,
                    port,
                    log,
                    attempts: attempts + 1,
                }));
            }
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(self.startup_error(
                    &pending[0],
                    &label,
                    &format!("did not listen within {START_TIMEOUT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Records `count` replicas of the stable or new version on free ports (one state
    /// write), spawns them, and records their processes (one more).
    fn spawn_replicas(
        &self,
        state: &mut State,
        new: bool,
        dir: &Path,
        label: &str,
        count: u32,
    ) -> Result<Vec<(ProcessId, u16, PathBuf)>, TargetError> {
        fn replicas(s: &mut State, new: bool) -> &mut Vec<Replica> {
            let deployed = if new { s.new.as_mut() } else { s.stable.as_mut() };
            deployed.map(|d| &mut d.replicas).expect("the version is in the state")
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let stem = dir.file_name().map_or_else(|| label.to_owned(), |n| n.to_string_lossy().into_owned());
        let first = replicas(state, new).len();
        for _ in 0..count {
            let port = self.free_port(state)?;
            let log = self.dir.join("logs").join(format!("{stem}-{port}.log"));
            replicas(state, new).push(Replica { port, log, process: None });
        }
        self.save(state)?;
        let mut started = Vec::new();
        let mut failure = None;
        for replica in &mut replicas(state, new)[first..] {
            match process::spawn(&self.command, dir, replica.port, &replica.log, &self.marker) {
                Ok(id) => {
                    replica.process = Some(id);
                    tracing::debug!(target = %self.name, "started {label} replica on port {}: {id:?}", replica.port);
                    started.push((id, replica.port, replica.log.clone()));
                }
                Err(e) => {
                    failure = Some(
                        self.error(format!("cannot start `{}` in {}", self.command, dir.display())).with_source(e),
                    );
                    break;
                }
            }
        }
        self.save(state)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(started),
        }
    }

    /// A replica that did not come up, naming its command and the end of its log.
    fn startup_error(&self, starting: &Starting, label: &str, why: &str) -> TargetError {
        self.error(format!(
            "replica of {label} on port {} {why}; command: `{}`\nlast lines of {}:\n{}",
            starting.port,
            self.command,
            starting.log.display(),
            tail(&starting.log, LOG_LINES)
        ))
    }

    /// A loopback port free now and used by no replica in `state`, taken from just below
    /// the kernel's ephemeral range: ports bound with `:0` and the local ends of outgoing
    /// connections come from that range, so between this check and the replica's own bind
    /// no connection can take the port (only another program binding it by number).
    fn free_port(&self, state: &State) -> Result<u16, TargetError> {
        let range = replica_ports();
        let span = u32::from(range.end - range.start);
        // A random start, so two gantry runs do not probe the same ports in the same order.
        let start = (crate::state::rand_u64() % u64::from(span)) as u32;
        for i in 0..span.min(200) {
            let port = range.start + ((start + i * 7919) % span) as u16;
            let taken = state.all_replicas().any(|r| r.port == port)
                || [self.listen.port(), self.preview.port()].contains(&port);
            if !taken && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        Err(self.error(format!("cannot find a free loopback port in {}..{}", range.start, range.end)).with_hint(
            "stop whatever holds these ports, or widen the kernel's range in /proc/sys/net/ipv4/ip_local_port_range",
        ))
    }

    fn prune(&self, state: &State) {
        let in_use: Vec<&Path> = [&state.stable, &state.new].into_iter().flatten().map(|d| d.dir.as_path()).collect();
        match release::prune(&self.dir.join("releases"), &in_use) {
            // A removed release's replica logs go with it: they are named `FOLDER-PORT.log`.
            Ok(removed) => {
                let logs = std::fs::read_dir(self.dir.join("logs")).into_iter().flatten().flatten();
                for log in logs
                    .filter(|l| removed.iter().any(|r| l.file_name().to_string_lossy().starts_with(&format!("{r}-"))))
                {
                    let _ = std::fs::remove_file(log.path());
                }
            }
            Err(e) => tracing::debug!(target = %self.name, "pruning releases failed: {e}"),
        }
    }
}

impl Target for LocalTarget {
    fn replicas(&self) -> u32 {
        self.replicas
    }

    fn public_url(&self) -> String {
        format!("http://{}", self.listen)
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        let state = self.load()?;
        let live = |d: &Option<Deployed>| {
            d.as_ref().map(|d| LiveVersion {
                version: d.version.clone(),
                digest: d.digest.clone(),
                replicas: u32::try_from(d.replicas.iter().filter(|r| r.process.is_some_and(|p| p.is_alive())).count())
                    .unwrap_or(u32::MAX),
            })
        };
        let (stable, new) = (live(&state.stable), live(&state.new));
        let new_weight = match (state.routing, &new) {
            (_, None) | (Routing::Stable, _) => 0,
            (Routing::Weighted { percent }, _) => percent,
            (Routing::Rolling { old }, Some(new)) => {
                let total = u64::from(new.replicas) + u64::from(old.min(stable.as_ref().map_or(0, |s| s.replicas)));
                u8::try_from((u64::from(new.replicas) * 100).checked_div(total).unwrap_or(0)).unwrap_or(100)
            }
        };
        Ok(Live { stable, new, new_weight })
    }

    async fn start_new(&mut self, release: &Release, replicas: u32) -> Result<String, TargetError> {
        let mut state = self.load()?;
        if let Some(new) = &state.new
            && (new.version != release.version || new.digest != release.digest)
        {
            return Err(self
                .error(format!("version {} is already being deployed", new.version))
                .with_hint("roll it back first (`gantry rollback`)"));
        }
        self.stop_strays(&state).await;
        let zip = release
            .artifacts
            .get(&self.artifact)
            .ok_or_else(|| self.error(format!("release {} has no artifact `{}`", release.label(), self.artifact)))?;
        let dir = release::folder(&self.dir.join("releases"), release);
        release::unpack(zip, &dir).map_err(|e| self.error(e))?;
        if state.new.is_none() {
            state.new = Some(Deployed {
                version: release.version.clone(),
                digest: release.digest.clone(),
                dir,
                replicas: Vec::new(),
            });
            self.save(&state)?;
        }
        self.scale_up(&mut state, true, replicas).await?;
        let old_workers = self.route(&state).await?;
        // Replicas a crashed operation left retiring are stopped now, after their drain.
        self.retire(&mut state, &old_workers).await?;
        Ok(self.preview_url())
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        let mut state = self.load()?;
        if state.new.is_none() {
            return Err(self.error("no new version to shift traffic to"));
        }
        state.routing = Routing::Weighted { percent: percent.min(100) };
        self.save(&state)?;
        let old_workers = self.route(&state).await?;
        self.retire(&mut state, &old_workers).await
    }

    async fn replace(&mut self, old: u32) -> Result<(), TargetError> {
        let mut state = self.load()?;
        if state.new.is_none() {
            return Err(self.error("no new version to replace the stable one with"));
        }
        state.routing = Routing::Rolling { old };
        if let Some(stable) = state.stable.as_mut() {
            stable.replicas.retain(|r| r.process.is_some_and(|p| p.is_alive()));
            let beyond = stable.replicas.split_off(stable.replicas.len().min(old as usize));
            state.retiring.extend(beyond);
        }
        self.save(&state)?;
        let old_workers = self.route(&state).await?;
        self.retire(&mut state, &old_workers).await
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        let mut state = self.load()?;
        if let Some(new) = state.new.take() {
            if let Some(stable) = state.stable.take() {
                state.retiring.extend(stable.replicas);
            }
            state.stable = Some(new);
            state.routing = Routing::Stable;
            self.save(&state)?;
        }
        let old_workers = self.route(&state).await?;
        self.retire(&mut state, &old_workers).await?;
        self.stop_strays(&state).await;
        self.prune(&state);
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        let mut state = self.load()?;
        self.stop_strays(&state).await;
        if state.stable.is_none() && state.new.is_none() && state.retiring.is_empty() && self.nginx.master().is_none() {
            return Ok(());
        }
        self.scale_up(&mut state, false, self.replicas).await?;
        if let Some(new) = state.new.take() {
            state.retiring.extend(new.replicas);
        }
        state.routing = Routing::Stable;
        self.save(&state)?;
        let old_workers = self.route(&state).await?;
        self.retire(&mut state, &old_workers).await?;
        self.prune(&state);
        Ok(())
    }
}

/// A replica spawned and not yet accepting connections.
struct Starting {
    id: ProcessId,
    port: u16,
    log: PathBuf,
    attempts: u32,
}

/// `path` made absolute with its symlinks resolved, whether or not it exists yet: the
/// deepest existing ancestor canonicalized, the rest appended. The same folder always gives
/// the same string (it marks the target's processes), before and after it is created.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(base) => return Ok(rest.iter().rev().fold(base, |p, part| p.join(part))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                rest.push(existing.file_name().ok_or(e)?.to_owned());
                existing = existing.parent().expect("a path with a file name has a parent");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether something accepts connections on loopback `port` (IPv4 or IPv6).
fn accepts(port: u16) -> bool {
    [std::net::IpAddr::from([127, 0, 0, 1]), std::net::IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])]
        .into_iter()
        .any(|ip| std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_millis(100)).is_ok())
}

/// Parses a loopback `IP:PORT`.
fn loopback(addr: &str) -> Result<SocketAddr, String> {
    let parsed: SocketAddr = addr.parse().map_err(|_| format!("`{addr}` is not an address like 127.0.0.1:8080"))?;
    if parsed.ip().is_loopback() {
        Ok(parsed)
    } else {
        Err(format!("`{addr}` is not a loopback address; the local target listens on 127.0.0.1 only"))
    }
}

/// The last `n` lines of a file, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Ports for replicas: the 8192 below the kernel's ephemeral range (`ip_local_port_range`,
/// 32768 on Linux by default, so 24576..32768).
fn replica_ports() -> std::ops::Range<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|low| *low > 2048)
        .unwrap_or(32768);
    low.saturating_sub(8192).max(1024)..low
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ports_sit_below_the_ports_the_kernel_hands_out() {
        let range = replica_ports();
        assert!(range.start >= 1024 && range.end - range.start >= 1024, "{range:?}");
        for _ in 0..50 {
            let kernel = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            assert!(!range.contains(&kernel), "the kernel gave out {kernel}, inside {range:?}");
        }
    }

    #[test]
    fn a_folder_resolves_the_same_before_and_after_it_exists() {
        let base = tempfile::tempdir().unwrap();
        let link = base.path().join("link");
        std::fs::create_dir(base.path().join("real")).unwrap();
        std::os::unix::fs::symlink(base.path().join("real"), &link).unwrap();
        let path = link.join("state/dev/web");
        let before = resolve(&path).unwrap();
        assert!(!path.exists(), "resolving creates nothing");
        std::fs::create_dir_all(&path).unwrap();
        assert_eq!(before, path.canonicalize().unwrap());
        assert!(before.starts_with(base.path().canonicalize().unwrap().join("real")), "{before:?}");
    }
}
