//! The `local` target against real nginx and the real example app (examples/hello):
//! blue-green, canary and rolling cutovers, rollback from every intermediate state and
//! after a crash, and the failures a user meets first. Each test has its own state dir
//! and ports, and a guard that stops everything it started.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::support::free_port;
use gantry::targets::local::LocalTarget;
use gantry::targets::{Release, Target};
use tempfile::TempDir;

/// A target in a temp state dir, stopped (nginx and every replica) when dropped.
struct Local {
    target: LocalTarget,
    dir: TempDir,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.target.down();
    }
}

impl std::ops::Deref for Local {
    type Target = LocalTarget;
    fn deref(&self) -> &LocalTarget {
        &self.target
    }
}

impl std::ops::DerefMut for Local {
    fn deref_mut(&mut self) -> &mut LocalTarget {
        &mut self.target
    }
}

impl Local {
    fn new(replicas: u32, command: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (listen, preview) = (free_port(), free_port());
        let toml = format!(
            "artifact = 'app'\ncommand = '''{command}'''\nreplicas = {replicas}\nlisten = '127.0.0.1:{listen}'\n\
             preview = '127.0.0.1:{preview}'\ndrain = '100ms'\n"
        );
        let target = LocalTarget::new("web", &config(&toml), dir.path().join("state")).unwrap();
        Self { target, dir }
    }

    /// A second `LocalTarget` on the same state dir and settings, as a new gantry
    /// process after a crash would build it.
    fn reopen(&self, replicas: u32) -> LocalTarget {
        let toml = format!(
            "artifact = 'app'\ncommand = 'python3 server.py'\nreplicas = {replicas}\nlisten = '{}'\npreview = '{}'\n",
            self.public_url().trim_start_matches("http://"),
            self.preview_url().trim_start_matches("http://"),
        );
        LocalTarget::new("web", &config(&toml), self.dir.path().join("state")).unwrap()
    }

    fn release(&self, version: &str) -> Release {
        release(self.dir.path(), version)
    }

    /// Deploys `version` as the first, stable one.
    async fn first(&mut self, version: &str) {
        let release = self.release(version);
        let replicas = self.replicas();
        self.start_new(&release, replicas).await.unwrap();
        self.shift(100).await.unwrap();
        self.retire_old().await.unwrap();
    }

    /// Pids of live processes started by this target that run `version`'s release.
    fn processes_of(&self, version: &str) -> Vec<i32> {
        let marker = format!("GANTRY_LOCAL_STATE={}", self.dir.path().join("state").canonicalize().unwrap().display());
        let folder = format!("/releases/{version}-");
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
                let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "));
                !zombie
                    && env.split(|&b| b == 0).any(|e| e == marker.as_bytes())
                    && cwd.display().to_string().contains(&folder)
            })
            .collect()
    }

    /// Asserts the target serves only `version`, at full count, with nothing new left.
    async fn assert_only(&mut self, version: &str) {
        let live = self.observe().await.unwrap();
        let stable = live.stable.expect("a stable version");
        assert_eq!(stable.version.to_string(), version);
        assert_eq!(stable.replicas, self.replicas());
        assert_eq!((live.new, live.new_weight), (None, 0));
        let answers = versions(&self.public_url(), 20).await;
        assert_eq!(answers.get(version), Some(&20), "{answers:?}");
    }
}

fn config(toml: &str) -> gantry::config::LocalTarget {
    toml::from_str(toml).unwrap()
}

/// A release of the example app stamped with `version`, its zip written under `dir`.
fn release(dir: &Path, version: &str) -> Release {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello/app/server.py");
    let zip_path: PathBuf = dir.join(format!("app-{version}.zip"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("server.py", options).unwrap();
    zip.write_all(&std::fs::read(app).unwrap()).unwrap();
    zip.start_file("build_info.json", options).unwrap();
    zip.write_all(format!("{{\"version\": \"{version}\"}}\n").as_bytes()).unwrap();
    zip.finish().unwrap();
    let digest: String = version.bytes().map(|b| format!("{b:02x}")).collect::<String>().repeat(8);
    Release { version: version.parse().unwrap(), digest, artifacts: BTreeMap::from([("app".to_owned(), zip_path)]) }
}

/// How many of `n` requests to `url`/version each version answered.
async fn versions(url: &str, n: usize) -> BTreeMap<String, usize> {
    let client = reqwest::Client::new();
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let response = client.get(format!("{url}/version")).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {url}/version");
        let body: serde_json::Value = response.json().await.unwrap();
        *seen.entry(body["version"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    seen
}

fn gone(pids: &[i32]) -> bool {
    pids.iter().all(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z ")))
}

#[tokio::test]
async fn blue_green_switches_users_to_the_new_version_and_stops_the_old() {
    let mut t = Local::new(2, "python3 server.py");
    t.first("1.0.0").await;
    t.assert_only("1.0.0").await;
    let v1 = t.processes_of("1.0.0");
    assert_eq!(v1.len(), 2 * 2, "each replica is sh plus python: {v1:?}");

    let release = t.release("2.0.0");
    let preview = t.start_new(&release, 2).await.unwrap();
    assert_eq!(preview, t.preview_url());
    assert_eq!(versions(&preview, 10).await, BTreeMap::from([("2.0.0".to_owned(), 10)]));
    assert_eq!(versions(&t.public_url(), 10).await, BTreeMap::from([("1.0.0".to_owned(), 10)]));
    let live = t.observe().await.unwrap();
    assert_eq!(live.new.as_ref().map(|n| n.replicas), Some(2));

    t.shift(100).await.unwrap();
    assert_eq!(versions(&t.public_url(), 10).await, BTreeMap::from([("2.0.0".to_owned(), 10)]));
    assert_eq!(t.processes_of("1.0.0").len(), 4, "the old version stays up until it is retired");
    t.retire_old().await.unwrap();
    t.assert_only("2.0.0").await;
    assert!(gone(&v1), "old replicas still running: {v1:?}");
    // Idempotent: again is a no-op.
    t.retire_old().await.unwrap();
    t.assert_only("2.0.0").await;

    // down stops nginx and every replica.
    let v2 = t.processes_of("2.0.0");
    t.down().unwrap();
    assert!(gone(&v2), "replicas still running after down: {v2:?}");
    assert!(reqwest::get(t.public_url()).await.is_err(), "nginx still answers after down");
    assert_eq!(t.observe().await.unwrap(), gantry::targets::Live::default());
}

#[tokio::test]
async fn canary_sends_about_its_share_to_the_new_version() {
    let mut t = Local::new(2, "python3 server.py");
    t.first("1.0.0").await;
    let release = t.release("1.1.0");
    t.start_new(&release, 2).await.unwrap();
    t.shift(10).await.unwrap();
    assert_eq!(t.observe().await.unwrap().new_weight, 10);
    let seen = versions(&t.public_url(), 200).await;
    let new = seen.get("1.1.0").copied().unwrap_or(0);
    assert!((4..=50).contains(&new), "10% canary gave {new} of 200 to the new version: {seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 200);

    t.shift(50).await.unwrap();
    let seen = versions(&t.public_url(), 100).await;
    let new = seen.get("1.1.0").copied().unwrap_or(0);
    assert!((30..=70).contains(&new), "50% canary gave {new} of 100: {seen:?}");

    t.shift(100).await.unwrap();
    t.retire_old().await.unwrap();
    t.assert_only("1.1.0").await;
}

#[tokio::test]
async fn rolling_replaces_the_stable_replicas_batch_by_batch() {
    let mut t = Local::new(4, "python3 server.py");
    t.first("1.0.0").await;
    let release = t.release("2.0.0");

    t.start_new(&release, 2).await.unwrap();
    t.replace(2).await.unwrap();
    let live = t.observe().await.unwrap();
    assert_eq!(live.stable.as_ref().map(|s| s.replicas), Some(2));
    assert_eq!(live.new.as_ref().map(|n| n.replicas), Some(2));
    assert_eq!(live.new_weight, 50);
    assert_eq!(t.processes_of("1.0.0").len(), 2 * 2);
    let seen = versions(&t.public_url(), 40).await;
    assert_eq!(seen.get("1.0.0"), Some(&20), "equal shares per replica: {seen:?}");
    assert_eq!(seen.get("2.0.0"), Some(&20), "equal shares per replica: {seen:?}");

    t.start_new(&release, 4).await.unwrap();
    t.replace(0).await.unwrap();
    assert!(t.processes_of("1.0.0").is_empty());
    assert_eq!(versions(&t.public_url(), 10).await, BTreeMap::from([("2.0.0".to_owned(), 10)]));
    t.retire_old().await.unwrap();
    t.assert_only("2.0.0").await;
}

#[tokio::test]
async fn rollback_restores_the_stable_version_from_every_intermediate_state() {
    let mut t = Local::new(2, "python3 server.py");
    t.first("1.0.0").await;
    let release = t.release("2.0.0");
    let steps: &[&[&str]] = &[
        &[],
        &["start1"],
        &["start2"],
        &["start2", "shift10"],
        &["start2", "shift100"],
        &["start1", "replace1"],
        &["start1", "replace1", "start2", "replace0"],
    ];
    for ops in steps {
        for op in *ops {
            match *op {
                "start1" => drop(t.start_new(&release, 1).await.unwrap()),
                "start2" => drop(t.start_new(&release, 2).await.unwrap()),
                "shift10" => t.shift(10).await.unwrap(),
                "shift100" => t.shift(100).await.unwrap(),
                "replace1" => t.replace(1).await.unwrap(),
                "replace0" => t.replace(0).await.unwrap(),
                _ => unreachable!(),
            }
        }
        t.rollback().await.unwrap();
        t.assert_only("1.0.0").await;
        assert!(t.processes_of("2.0.0").is_empty(), "new replicas left after rollback from {ops:?}");
        // Rolling back again changes nothing.
        t.rollback().await.unwrap();
        t.assert_only("1.0.0").await;
    }
}

#[tokio::test]
async fn a_new_process_on_the_same_state_dir_observes_and_rolls_back() {
    let mut t = Local::new(2, "python3 server.py");
    t.first("1.0.0").await;
    let release = t.release("2.0.0");
    t.start_new(&release, 2).await.unwrap();
    t.shift(50).await.unwrap();
    // A replica whose pid never reached the state file (a crash between spawn and write).
    let marker = t.dir.path().join("state").canonicalize().unwrap();
    let mut stray = std::process::Command::new("sleep")
        .arg("300")
        .env("GANTRY_LOCAL_STATE", &marker)
        .current_dir(t.dir.path().join("state/releases").read_dir().unwrap().next().unwrap().unwrap().path())
        .spawn()
        .unwrap();

    let mut after_crash = t.reopen(2);
    let live = after_crash.observe().await.unwrap();
    assert_eq!(live.stable.as_ref().map(|s| (s.version.to_string(), s.replicas)), Some(("1.0.0".into(), 2)));
    assert_eq!(live.new.as_ref().map(|n| (n.version.to_string(), n.replicas)), Some(("2.0.0".into(), 2)));
    assert_eq!(live.new_weight, 50);
    after_crash.rollback().await.unwrap();
    let stray_pid = i32::try_from(stray.id()).unwrap();
    assert!(gone(&[stray_pid]), "the unrecorded replica {stray_pid} was not stopped");
    let _ = stray.wait(); // gantry may have reaped it already
    t.assert_only("1.0.0").await;
    assert!(t.processes_of("2.0.0").is_empty());
}

/// A deployment cut off at an await point (as by kill -9: its replicas live on in their
/// own sessions) is converged by a fresh target on the same state dir. The cut lands
/// anywhere from before the first step to after the last; every place must converge.
#[tokio::test]
async fn an_operation_cut_off_anywhere_is_converged_by_a_new_process() {
    let mut t = Local::new(2, "python3 server.py");
    t.first("1.0.0").await;
    let release = t.release("2.0.0");
    for cut_ms in [0, 5, 20, 50, 100, 200, 400] {
        let cut = std::time::Duration::from_millis(cut_ms);
        let mut doomed = t.reopen(2);
        let deploy = async {
            doomed.start_new(&release, 2).await.unwrap();
            doomed.shift(50).await.unwrap();
            doomed.rollback().await.unwrap();
        };
        let _ = tokio::time::timeout(cut, deploy).await;
        drop(doomed);
        let mut after_crash = t.reopen(2);
        after_crash.observe().await.unwrap();
        after_crash.rollback().await.unwrap();
        t.assert_only("1.0.0").await;
        assert!(t.processes_of("2.0.0").is_empty(), "new replicas left after a cut at {cut_ms}ms");
    }

    // Cut during a whole blue-green deploy: the recovery keeps whichever version the
    // state names as stable, at full count, and nothing of the other.
    for cut_ms in [100, 300, 600, 900, 1200] {
        let cut = std::time::Duration::from_millis(cut_ms);
        let mut doomed = t.reopen(2);
        let deploy = async {
            doomed.start_new(&release, 2).await.unwrap();
            doomed.shift(100).await.unwrap();
            doomed.retire_old().await.unwrap();
        };
        let _ = tokio::time::timeout(cut, deploy).await;
        drop(doomed);
        let mut after_crash = t.reopen(2);
        let before = after_crash.observe().await.unwrap();
        after_crash.rollback().await.unwrap();
        let kept = before.stable.expect("a stable version").version.to_string();
        let other = if kept == "1.0.0" { "2.0.0" } else { "1.0.0" };
        t.assert_only(&kept).await;
        assert!(t.processes_of(other).is_empty(), "{other} left after a cut at {cut_ms}ms");
        if kept == "2.0.0" {
            t.first("1.0.0").await;
        }
    }
}

#[tokio::test]
async fn old_releases_and_their_logs_are_pruned() {
    let mut t = Local::new(1, "python3 server.py");
    for version in ["1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0"] {
        t.first(version).await;
    }
    t.assert_only("5.0.0").await;
    let names = |folder: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(t.dir.path().join("state").join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let releases = names("releases");
    assert_eq!(releases.len(), 3, "{releases:?}");
    assert!(releases.iter().all(|r| ["3.0.0-", "4.0.0-", "5.0.0-"].iter().any(|v| r.starts_with(v))), "{releases:?}");
    let logs = names("logs");
    assert!(logs.iter().all(|l| releases.iter().any(|r| l.starts_with(r.as_str()))), "{logs:?}");
}

#[tokio::test]
async fn a_replica_that_exits_at_once_fails_with_its_log() {
    let mut t = Local::new(2, "echo 'boom: no such module' >&2; exit 3");
    let release = t.release("1.0.0");
    let err = t.start_new(&release, 2).await.unwrap_err().to_string();
    assert!(err.contains("local target `web`"), "{err}");
    assert!(err.contains("exited before it listened"), "{err}");
    assert!(err.contains("boom: no such module"), "{err}");
    assert!(err.contains("echo 'boom"), "the command is named: {err}");
    t.rollback().await.unwrap();
    assert!(t.processes_of("1.0.0").is_empty());
    assert_eq!(t.observe().await.unwrap().new, None);
}

/// The first attempt loses its port to another process (its own session, like any
/// stranger) and exits; the replica is started again on another port.
#[tokio::test]
async fn a_replica_whose_port_was_taken_starts_again_on_another() {
    let steal = "setsid python3 -m http.server $PORT --bind 127.0.0.1 >/dev/null 2>&1 & \
                 until python3 -c \"import socket; socket.create_connection(('127.0.0.1', $PORT))\" 2>/dev/null; \
                 do sleep 0.05; done; exit 1";
    let mut t = Local::new(1, &format!("if [ -e tried ]; then exec python3 server.py; else touch tried; {steal}; fi"));
    let release = t.release("1.0.0");
    let preview = t.start_new(&release, 1).await.unwrap();
    assert_eq!(versions(&preview, 5).await, BTreeMap::from([("1.0.0".to_owned(), 5)]));
    let logs = std::fs::read_dir(t.dir.path().join("state/logs")).unwrap().count();
    assert_eq!(logs, 2, "one log per attempt");
}

#[tokio::test]
async fn a_config_nginx_rejects_is_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "artifact = 'app'\ncommand = 'python3 server.py'\nreplicas = 1\nlisten = '127.0.0.1:0'\npreview = '127.0.0.1:{}'\n",
        free_port()
    );
    let target = LocalTarget::new("web", &config(&toml), dir.path().join("state")).unwrap();
    let mut t = Local { target, dir };
    let release = t.release("1.0.0");
    let err = t.start_new(&release, 1).await.unwrap_err().to_string();
    assert!(err.contains("`nginx -t` rejected the config"), "{err}");
    assert!(err.contains("invalid port"), "nginx's own message is kept: {err}");
    assert!(!t.dir.path().join("state/nginx/nginx.conf").exists(), "the rejected config replaced nothing");
}

#[tokio::test]
async fn a_public_address_in_use_fails_with_a_hint() {
    let mut t = Local::new(1, "python3 server.py");
    let squatter = std::net::TcpListener::bind(t.public_url().trim_start_matches("http://")).unwrap();
    let release = t.release("1.0.0");
    let err = t.start_new(&release, 1).await.unwrap_err();
    assert!(err.message.contains("nginx did not start"), "{err}");
    assert!(err.message.contains("Address already in use"), "{err}");
    assert!(err.hint.as_deref().is_some_and(|h| h.contains("another process listens")), "{err:?}");
    drop(squatter);
    // Once the address is free, the same call converges.
    t.start_new(&release, 1).await.unwrap();
    assert_eq!(t.observe().await.unwrap().new.map(|n| n.replicas), Some(1));
}

#[test]
fn addresses_must_be_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let bad = config("artifact = 'app'\ncommand = 'x'\nlisten = '0.0.0.0:8080'\n");
    let err = LocalTarget::new("web", &bad, dir.path().to_owned()).err().unwrap().to_string();
    assert!(err.contains("not a loopback address"), "{err}");
}

/// Not run by default (it loads the machine): `cargo test --test it local::load -- --ignored
/// --nocapture`. wrk drives the public address through each cutover and must see no
/// socket errors and no non-2xx answers.
#[tokio::test]
#[ignore = "load test: run by hand, needs wrk"]
async fn load_during_cutovers_gives_no_errors() {
    let mut t = Local::new(4, "python3 server.py");
    t.first("1.0.0").await;
    for (version, strategy) in [("2.0.0", "blue-green"), ("3.0.0", "canary"), ("4.0.0", "rolling")] {
        let wrk = std::process::Command::new("wrk")
            .args(["-t2", "-c8", "-d6s", &format!("{}/", t.public_url())])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("wrk is installed");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let release = t.release(version);
        match strategy {
            "blue-green" => {
                t.start_new(&release, 4).await.unwrap();
                t.shift(100).await.unwrap();
            }
            "canary" => {
                t.start_new(&release, 4).await.unwrap();
                for step in [10, 50, 100] {
                    t.shift(step).await.unwrap();
                }
            }
            _ => {
                for k in 1..=2 {
                    t.start_new(&release, k * 2).await.unwrap();
                    t.replace(4 - k * 2).await.unwrap();
                }
            }
        }
        t.retire_old().await.unwrap();
        let out = wrk.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        println!("{strategy}:\n{report}");
        assert!(!report.contains("Socket errors") && !report.contains("Non-2xx"), "{strategy}: {report}");
    }
}
