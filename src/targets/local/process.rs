//! Replica processes: spawning them detached, telling whether a recorded pid is still
//! the process gantry started, finding strays by their marker, and stopping them.
//!
//! A replica runs `sh -c COMMAND` in its own session (so Ctrl-C to gantry does not reach
//! it and it outlives gantry), with `PORT` and a marker variable naming the target's state
//! dir in its environment. The marker finds processes whose pid never reached the state
//! file (a crash between spawn and write) and their children.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The environment variable that marks a replica with its target's state dir.
pub const MARKER: &str = "GANTRY_LOCAL_STATE";

/// How long a replica gets between SIGTERM and SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// A pid plus its start time (field 22 of `/proc/PID/stat`, in clock ticks since boot):
/// together they name one process, even after the pid is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    /// The process with this pid now, when there is one.
    pub fn current(pid: i32) -> Option<Self> {
        stat(pid).map(|s| Self { pid, start_time: s.start_time })
    }

    /// Whether this exact process still runs (a zombie does not count). Reaps it first
    /// when it is gantry's own exited child.
    pub fn is_alive(&self) -> bool {
        let _ = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG));
        stat(self.pid).is_some_and(|s| s.state != 'Z' && s.start_time == self.start_time)
    }
}

struct Stat {
    state: char,
    ppid: i32,
    session: i32,
    start_time: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so cut after the last `)`.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Pids of the live children of `parent`.
pub fn children(parent: i32) -> Vec<i32> {
    all_pids().filter(|&pid| stat(pid).is_some_and(|s| s.ppid == parent && s.state != 'Z')).collect()
}

/// The process title of `pid` (`/proc/PID/cmdline` with its NULs as spaces).
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_owned())
}

fn all_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// Starts `sh -c command` in `dir` with `PORT=port`, in a new session, output to `log`.
pub fn spawn(command: &str, dir: &Path, port: u16, log: &Path, marker: &str) -> std::io::Result<ProcessId> {
    let out = File::options().create(true).append(true).open(log)?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env(MARKER, marker)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).expect("pids fit in i32");
    // Dropping `child` neither waits nor kills; `is_alive` reaps it later.
    Ok(ProcessId::current(pid).unwrap_or(ProcessId { pid, start_time: 0 }))
}

/// A process found by its marker, and the session it belongs to (a replica's session
/// id is the pid of the `sh` that leads it).
#[derive(Debug, Clone, Copy)]
pub struct Marked {
    pub id: ProcessId,
    pub session: i32,
}

/// Live processes whose environment carries `MARKER=marker`: every process this
/// target started, and their children, whether or not the state file names them.
pub fn marked(marker: &str) -> Vec<Marked> {
    let entry = format!("{MARKER}={marker}");
    all_pids()
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
        })
        .filter_map(|pid| {
            let s = stat(pid)?;
            let id = ProcessId { pid, start_time: s.start_time };
            (s.state != 'Z').then_some(Marked { id, session: s.session })
        })
        .collect()
}

/// Who listens on a loopback TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Nobody,
    /// A process in the session `leader` leads: the replica (or a child of its `sh`).
    Session,
    Other,
}

/// Who listens on `port` (any local address, IPv4 or IPv6): the replica whose `sh` is
/// `leader`, another process, or nobody. See [`listeners`].
pub fn listener(leader: i32, port: u16) -> Listener {
    listeners(&[(leader, port)])[0]
}

/// [`listener`] for many `(leader, port)` pairs at once, in one read of `/proc/net/tcp*`
/// and one walk of the processes: each pair's listening socket must be among the open
/// files of a process in the session `leader` leads, so a port taken by someone else
/// never passes for a replica that is ready.
pub fn listeners(pairs: &[(i32, u16)]) -> Vec<Listener> {
    // The listening sockets' inodes on each asked-for port.
    let mut inodes: Vec<Vec<String>> = vec![Vec::new(); pairs.len()];
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else { continue };
            if *state != "0A" {
                continue;
            }
            let Some(local_port) = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) else {
                continue;
            };
            for (i, &(_, port)) in pairs.iter().enumerate() {
                if port == local_port {
                    inodes[i].push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    let mut found = vec![false; pairs.len()];
    if inodes.iter().any(|i| !i.is_empty()) {
        for pid in all_pids() {
            let Some(session) = stat(pid).map(|s| s.session) else { continue };
            let wanted: Vec<usize> =
                (0..pairs.len()).filter(|&i| !found[i] && pairs[i].0 == session && !inodes[i].is_empty()).collect();
            if wanted.is_empty() {
                continue;
            }
            for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
                let Ok(link) = std::fs::read_link(fd.path()) else { continue };
                for &i in &wanted {
                    if inodes[i].iter().any(|inode| link.as_os_str() == inode.as_str()) {
                        found[i] = true;
                    }
                }
            }
        }
    }
    (0..pairs.len())
        .map(|i| match (inodes[i].is_empty(), found[i]) {
            (true, _) => Listener::Nobody,
            (false, true) => Listener::Session,
            (false, false) => Listener::Other,
        })
        .collect()
}

/// Sends `signal` to each live process and its process group (a replica leads its own).
fn signal_all(ids: &[ProcessId], signal: Signal) {
    for id in ids.iter().filter(|id| id.is_alive()) {
        let _ = killpg(Pid::from_raw(id.pid), signal);
        let _ = kill(Pid::from_raw(id.pid), signal);
    }
}

/// SIGTERM to every process, then SIGKILL to those still running after a timeout.
pub async fn stop(ids: &[ProcessId]) {
    signal_all(ids, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while ids.iter().any(ProcessId::is_alive) && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    signal_all(ids, Signal::SIGKILL);
}

/// [`stop`] for callers outside an async context (`down`, drop guards).
pub fn stop_blocking(ids: &[ProcessId]) {
    signal_all(ids, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while ids.iter().any(ProcessId::is_alive) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    signal_all(ids, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_pid_and_start_time() {
        let me = ProcessId::current(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        assert!(!ProcessId { start_time: me.start_time + 1, ..me }.is_alive());
    }

    #[test]
    fn a_listening_socket_is_told_apart_by_owner() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        let my_session = stat(me).unwrap().session;
        assert_eq!(listener(my_session, port), Listener::Session);
        assert_eq!(listener(1, port), Listener::Other);
        drop(socket);
        assert_eq!(listener(my_session, port), Listener::Nobody);
    }

    #[tokio::test]
    async fn spawned_replicas_carry_the_marker_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().display().to_string();
        let id = spawn("sleep 30", dir.path(), 1, &dir.path().join("log"), &marker).unwrap();
        assert!(id.is_alive());
        // Until the child has exec'd, /proc shows the parent's environment and session.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !marked(&marker).iter().any(|m| m.id.pid == id.pid && m.session == id.pid) {
            assert!(Instant::now() < deadline, "the replica never showed its marker");
            tokio::time::sleep(POLL).await;
        }
        stop(&[id]).await;
        assert!(!id.is_alive());
        assert!(marked(&marker).is_empty());
    }
}
