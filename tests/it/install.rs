//! scripts/install-gantry.sh (what action.yml runs) against fake release assets served over
//! real HTTP (Python's http.server on loopback) laid out as GitHub serves release downloads:
//! `BASE/download/vVERSION/NAME` and `BASE/latest/download/NAME`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

/// The asset name the script downloads on this machine.
fn asset() -> String {
    let os = if cfg!(target_os = "macos") { "apple-darwin" } else { "unknown-linux-gnu" };
    format!("gantry-{}-{os}.tar.gz", std::env::consts::ARCH)
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(root: &Path) -> Server {
    let port = crate::support::free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
        .arg(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "http.server did not start in 10 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Server { child, url: format!("http://127.0.0.1:{port}") }
}

/// A release folder with a fake `gantry` that prints `gantry VERSION`; `sums` decides what
/// SHA256SUMS says: the true digest, a wrong one, or nothing about the asset.
fn release(root: &Path, folder: &str, version: &str, with_asset: bool, sums: Sums) {
    release_of(root, folder, &format!("#!/bin/sh\necho \"gantry {version}\"\n"), with_asset, sums);
}

/// A release folder whose asset's `gantry` is the script `body`.
fn release_of(root: &Path, folder: &str, body: &str, with_asset: bool, sums: Sums) {
    let dir = root.join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("gantry");
    std::fs::write(&bin, body).unwrap();
    std::process::Command::new("chmod").arg("755").arg(&bin).status().unwrap();
    let tarball = work.path().join(asset());
    let ok = Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(work.path()).arg("gantry").status().unwrap();
    assert!(ok.success());
    let digest = sha256(&tarball);
    if with_asset {
        std::fs::copy(&tarball, dir.join(asset())).unwrap();
    }
    let other = format!("{}  gantry-riscv64-unknown-linux-gnu.tar.gz\n", "0".repeat(64));
    let sums = match sums {
        Sums::True => format!("{digest}  {}\n{other}", asset()),
        Sums::Wrong => format!("{}  {}\n{other}", "ab".repeat(32), asset()),
        Sums::Missing => other,
    };
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
}

#[derive(Clone, Copy)]
enum Sums {
    True,
    Wrong,
    Missing,
}

/// Runs scripts/lint-workflows once per test process (it lints every workflow and action.yml,
/// installing actionlint and PyYAML into .tools/venv on first use) and returns actionlint.
pub fn lint_workflows() -> PathBuf {
    static LINT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    LINT.get_or_init(|| {
        let lint = Command::new(root.join("scripts/lint-workflows")).output().unwrap();
        assert!(
            lint.status.success(),
            "{}{}",
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );
    });
    root.join(".tools/venv/bin/actionlint")
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

fn install(version: &str, base: &str, into: &Path, source: Option<&Path>) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-gantry.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script).arg(version).arg(into).env("GANTRY_RELEASES_URL", base).env_remove("GANTRY_SOURCE_DIR");
    if let Some(src) = source {
        cmd.env("GANTRY_SOURCE_DIR", src).env("CARGO_TARGET_DIR", into.join("target"));
    }
    cmd.output().unwrap()
}

fn version_of(bin: &PathBuf) -> String {
    let out = Command::new(bin).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A tiny crate named gantry (no dependencies, its own Cargo.lock), for the source fallback.
fn tiny_source(dir: &Path) {
    crate::support::write_tree(
        dir,
        &[
            ("Cargo.toml", "[package]\nname = \"gantry\"\nversion = \"0.0.0\"\nedition = \"2021\"\n"),
            ("Cargo.lock", "version = 4\n\n[[package]]\nname = \"gantry\"\nversion = \"0.0.0\"\n"),
            ("src/main.rs", "fn main() { println!(\"gantry 0.0.0-from-source\"); }\n"),
        ],
    );
}

#[test]
fn installs_a_verified_release_and_refuses_a_bad_checksum_or_an_unlisted_asset() {
    let root = tempfile::tempdir().unwrap();
    release(root.path(), "download/v1.2.3", "1.2.3", true, Sums::True);
    release(root.path(), "latest/download", "1.3.0", true, Sums::True);
    release(root.path(), "download/v6.6.6", "6.6.6", true, Sums::Wrong);
    release(root.path(), "download/v7.7.7", "7.7.7", true, Sums::Missing);
    let server = serve(root.path());
    let base = server.url.clone();

    let into = tempfile::tempdir().unwrap();
    let out = install("1.2.3", &base, into.path(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(version_of(&into.path().join("bin/gantry")), "gantry 1.2.3");

    let into = tempfile::tempdir().unwrap();
    let out = install("latest", &base, into.path(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(version_of(&into.path().join("bin/gantry")), "gantry 1.3.0");

    // A wrong checksum never installs, and never falls back to a build, even with a source.
    let src = tempfile::tempdir().unwrap();
    tiny_source(src.path());
    let into = tempfile::tempdir().unwrap();
    let out = install("v6.6.6", &base, into.path(), Some(src.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("checksum mismatch for") && stderr.contains("not installed"), "{stderr}");
    assert!(!into.path().join("bin/gantry").exists());

    // An asset that SHA256SUMS does not list is not installed either.
    let into = tempfile::tempdir().unwrap();
    let out = install("7.7.7", &base, into.path(), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lists no") && stderr.contains("unverified"), "{stderr}");
    assert!(!into.path().join("bin/gantry").exists());
}

#[test]
fn a_missing_asset_builds_from_source_when_there_is_one_and_fails_clearly_otherwise() {
    let root = tempfile::tempdir().unwrap();
    release(root.path(), "download/v2.0.0", "2.0.0", false, Sums::True);
    let server = serve(root.path());

    let into = tempfile::tempdir().unwrap();
    let out = install("2.0.0", &server.url, into.path(), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("release 2.0.0 has no asset {}", asset())), "{stderr}");
    assert!(stderr.contains("no source to build from"), "{stderr}");

    let src = tempfile::tempdir().unwrap();
    tiny_source(src.path());
    let out = install("2.0.0", &server.url, into.path(), Some(src.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("building gantry from"), "{stderr}");
    assert_eq!(version_of(&into.path().join("bin/gantry")), "gantry 0.0.0-from-source");

    // No server at all: a clear failure, not a build.
    drop(server);
    let into = tempfile::tempdir().unwrap();
    let out = install("2.0.0", "http://127.0.0.1:9", into.path(), Some(src.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot download") && stderr.contains("HTTP 000"), "{stderr}");
}

/// scripts/check_action.py, the check of action.yml's inside (actionlint checks only how
/// workflows use it): clean on the real file, and it catches each kind of mistake.
#[test]
fn action_yml_is_clean_and_its_checker_catches_broken_references() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Lints every workflow and action.yml, installing actionlint and PyYAML on first use.
    let lint = Command::new(root.join("scripts/lint-workflows")).output().unwrap();
    assert!(
        lint.status.success(),
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let action = std::fs::read_to_string(root.join("action.yml")).unwrap();
    let check = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("action.yml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(root.join(".tools/venv/bin/python"))
            .arg(root.join("scripts/check_action.py"))
            .arg(&path)
            .arg(root.join("src"))
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(check(&action), (Some(0), String::new()));
    let broken = [
        ("steps.gantry.outputs.image-digest", "steps.gantry.outputs.image-digets", "is not an output gantry writes"),
        ("inputs.gantry-version }}", "inputs.gantry-versoin }}", "inputs.gantry-versoin is not a declared input"),
        ("steps.resolve.outputs.key", "steps.resolve.outputs.keys", "step resolve writes no output keys"),
        ("        [ -n \"$GANTRY_ENV\" ]", "        [ -n \"${{ inputs.environment }}\" ]", "pass it through `env`"),
        ("      id: gantry\n      shell: bash\n", "      id: gantry\n", "a run step needs `shell`"),
        ("        fi\n        echo \"$DIR/bin\"", "        echo \"$DIR/bin\"", "bash -n"),
    ];
    for (from, to, expect) in broken {
        assert!(action.contains(from), "action.yml no longer has {from:?}");
        let (code, out) = check(&action.replacen(from, to, 1));
        assert_eq!(code, Some(1), "{to:?} passed the check");
        assert!(out.contains(expect), "{to:?}: {out}");
    }
}

/// action.yml run as a runner runs it (tests/it/run_action.py: its `run` steps in order,
/// expressions, per-step GITHUB_OUTPUT, GITHUB_PATH; no cache, as on a cold runner): the
/// version from the action's ref, the release installed from the (local) release server, then
/// the command, whose outputs become the action's outputs.
#[test]
fn the_action_installs_its_release_runs_the_command_and_exposes_gantrys_outputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    lint_workflows(); // PyYAML in .tools/venv
    // The release's `gantry` runs this test build's gantry.
    let real = assert_cmd::cargo::cargo_bin("gantry");
    let releases = tempfile::tempdir().unwrap();
    release_of(
        releases.path(),
        "download/v1.2.3",
        &format!("#!/bin/sh\nexec '{}' \"$@\"\n", real.display()),
        true,
        Sums::True,
    );
    let server = serve(releases.path());
    let project = tempfile::tempdir().unwrap();
    crate::support::write_tree(
        project.path(),
        &[
            (
                "gantry.toml",
                "[project]\nname = \"shop\"\n\n[artifacts.api]\nroot = \"api\"\n\n[artifacts.web]\nroot = \"web\"\n",
            ),
            ("api/main.py", "print(1)\n"),
            ("web/index.html", "hi\n"),
        ],
    );
    let run = |inputs: serde_json::Value| {
        let mut cmd = Command::new(root.join(".tools/venv/bin/python"));
        cmd.arg(root.join("tests/it/run_action.py"))
            .arg(root)
            .arg(inputs.to_string())
            .env("GITHUB_ACTIONS", "true")
            .env("TEST_ACTION_REF", "v1.2.3")
            .env("GANTRY_RELEASES_URL", &server.url)
            .env_remove("GANTRY_ENV")
            .env_remove("GANTRY_CONFIG")
            .env_remove("GANTRY_VERSION");
        cmd.output().unwrap()
    };
    let dir = project.path().display().to_string();
    let out = run(serde_json::json!({
        "command": "package", "version": "3.1.4", "args": "--artifact api", "working-directory": dir,
    }));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("installed gantry v1.2.3"), "{stderr}");
    let outputs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the action's outputs");
    let sums = std::fs::read_to_string(project.path().join("dist/SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 1, "only the api artifact: {sums}");
    assert_eq!(outputs["version"], "3.1.4");
    assert_eq!(outputs["artifact-sha256"], sums.split_whitespace().next().unwrap());
    assert_eq!(outputs["result"], "ok");
    assert_eq!(outputs["deployment-id"], "");

    // A failing command fails the step with gantry's exit code.
    let out = run(serde_json::json!({"command": "deploy", "environment": "nope", "working-directory": dir}));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("::error title=gantry::no environment named `nope`"), "{stderr}");
}
