//! `gantry package` end to end: reproducibility, zip layout, tools that read it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{gantry, git, write_tree};

const CONFIG: &str = r#"
[project]
name = "shop"

[artifacts.api]
root = "api"
exclude = ["*.log"]

[artifacts.web]
root = "web/dist"
"#;

/// A small project: text, an executable, a nested folder, an ignored file, a log.
fn project(dir: &Path) {
    write_tree(
        dir,
        &[
            ("gantry.toml", CONFIG),
            ("api/main.py", "print('hi')\n"),
            ("api/lib/util.py", &"x = 1\n".repeat(500)),
            ("api/debug.log", "noise"),
            ("api/.gitignore", "cache/\n"),
            ("api/cache/tmp.bin", "cached"),
            ("api/Zeta.txt", "capital Z sorts first"),
            ("web/dist/index.html", "<html></html>"),
            ("web/dist/assets/app.3f2a.js", &"console.log(1);".repeat(100)),
        ],
    );
    let run = dir.join("api/run.sh");
    std::fs::write(&run, "#!/bin/sh\necho run\n").unwrap();
    set_mode(&run, 0o775);
    std::os::unix::fs::symlink("lib/util.py", dir.join("api/util-link.py")).unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn package(dir: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    gantry(dir).args(["package", "--version", "1.4.0"]).args(extra).env("SOURCE_DATE_EPOCH", "1700000000").assert()
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn same_inputs_give_identical_bytes_in_other_folders_and_times() {
    let a = tempfile::tempdir().unwrap();
    let b_parent = tempfile::tempdir().unwrap();
    let b = b_parent.path().join("deeper/checkout-two");
    std::fs::create_dir_all(&b).unwrap();
    project(a.path());
    project(&b);
    // The second checkout differs in everything a zip must not record: file times,
    // group/other permission bits, and the order files were created in.
    for f in ["api/main.py", "web/dist/index.html", "api/lib/util.py"] {
        let status = Command::new("touch").args(["-d", "2001-02-03 04:05:06"]).arg(b.join(f)).status().unwrap();
        assert!(status.success());
    }
    set_mode(&b.join("api/main.py"), 0o600);
    set_mode(&b.join("api/run.sh"), 0o700);

    package(a.path(), &[]).success();
    package(&b, &[]).success();
    // Later, again, into the same folder: still the same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    package(&b, &["--out", "dist-again"]).success();

    for file in ["api-1.4.0.zip", "web-1.4.0.zip", "SHA256SUMS", "release.json"] {
        let first = read(a.path().join("dist").join(file));
        assert_eq!(first, read(b.join("dist").join(file)), "{file} differs between folders");
        assert_eq!(first, read(b.join("dist-again").join(file)), "{file} differs between runs");
    }
}

#[test]
fn zips_pass_unzip_and_python_with_order_modes_and_times_as_promised() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    package(dir.path(), &[]).success();
    let zip = dir.path().join("dist/api-1.4.0.zip");

    let unzip = Command::new("unzip").arg("-t").arg(&zip).output().expect("unzip is installed");
    assert!(unzip.status.success(), "unzip -t: {}", String::from_utf8_lossy(&unzip.stdout));
    assert!(String::from_utf8_lossy(&unzip.stdout).contains("No errors detected"));

    // Python's zipfile reads every entry, checks CRCs, and reports what we stored.
    let script = r#"
import sys, zipfile, json
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
print(json.dumps([[i.filename, oct(i.external_attr >> 16), list(i.date_time), i.create_system, len(i.extra)] for i in z.infolist()]))
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(&zip).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entries: Vec<(String, String, Vec<u32>, u32, usize)> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    // Byte order of names; gitignored cache/ and excluded *.log are absent.
    assert_eq!(names, [".gitignore", "Zeta.txt", "lib/util.py", "main.py", "run.sh", "util-link.py"]);
    for (name, mode, date, system, extra) in &entries {
        let expected = match name.as_str() {
            "run.sh" => "0o100755",
            "util-link.py" => "0o120777",
            _ => "0o100644",
        };
        assert_eq!(mode, expected, "mode of {name}");
        assert_eq!(date, &[2023, 11, 14, 22, 13, 20], "time of {name} is SOURCE_DATE_EPOCH in UTC");
        assert_eq!(*system, 3, "{name} made on Unix");
        assert_eq!(*extra, 0, "{name} has no extra fields");
    }
    let link = Command::new("unzip").arg("-p").arg(&zip).arg("util-link.py").output().unwrap();
    assert_eq!(link.stdout, b"lib/util.py", "a symlink is stored as its target");
}

#[test]
fn manifest_and_checksums_describe_the_zips() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let out = package(dir.path(), &["--output", "json"]).success();
    let stdout: serde_json::Value =
        serde_json::from_slice(&out.get_output().stdout).expect("stdout is one JSON document");
    let manifest: serde_json::Value = serde_json::from_slice(&read(dir.path().join("dist/release.json"))).unwrap();
    assert_eq!(stdout["artifacts"], manifest["artifacts"]);
    assert_eq!(manifest["project"], "shop");
    assert_eq!(manifest["version"], "1.4.0");
    assert_eq!(manifest["created"], "2023-11-14T22:13:20Z");
    assert_eq!(manifest["commit"], serde_json::Value::Null, "not a git checkout");
    let artifacts = manifest["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2);
    for a in artifacts {
        let file = dir.path().join("dist").join(a["file"].as_str().unwrap());
        assert_eq!(a["size"], std::fs::metadata(&file).unwrap().len());
    }
    let check = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(dir.path().join("dist"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    assert_eq!(String::from_utf8_lossy(&check.stdout).lines().count(), 2);
}

#[test]
fn version_and_time_come_from_git_when_not_given() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "first"]);
    git(dir.path(), &["tag", "v2.0.0"]);
    gantry(dir.path()).arg("package").assert().success();
    let manifest: serde_json::Value = serde_json::from_slice(&read(dir.path().join("dist/release.json"))).unwrap();
    assert_eq!(manifest["version"], "2.0.0");
    assert_eq!(manifest["source_date_epoch"], 1_700_000_000, "the commit time");
    assert_eq!(manifest["commit"].as_str().map(str::len), Some(40));
    assert!(dir.path().join("dist/api-2.0.0.zip").is_file());
}

#[test]
fn large_files_are_streamed_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("gantry.toml", "[project]\nname = \"big\"\n[artifacts.blob]\nroot = \"data\"\n")]);
    // 9 MiB of text and 9 MiB of noise: both above the streaming threshold.
    let text = "line of very compressible text\n".repeat(9 << 20 >> 5);
    let mut x: u32 = 7;
    let noise: Vec<u8> = (0..9 << 20)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/text.txt"), &text).unwrap();
    std::fs::write(dir.path().join("data/noise.bin"), &noise).unwrap();
    package(dir.path(), &[]).success();
    let zip = dir.path().join("dist/blob-1.4.0.zip");
    let unzip = Command::new("unzip").arg("-t").arg(&zip).output().unwrap();
    assert!(unzip.status.success());
    let got = Command::new("unzip").arg("-p").arg(&zip).arg("noise.bin").output().unwrap().stdout;
    assert!(got == noise, "noise.bin round-trips");
    let size = std::fs::metadata(&zip).unwrap().len();
    assert!(size < (9 << 20) + (1 << 20), "text compressed and noise stored, not inflated: {size}");
    package(dir.path(), &["--out", "dist-again"]).success();
    assert!(read(zip) == read(dir.path().join("dist-again/blob-1.4.0.zip")), "large entries are reproducible too");
    assert_dist_has_no_temp_files(dir.path());
}

#[test]
fn a_link_out_of_the_root_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    std::os::unix::fs::symlink("../../etc/passwd", dir.path().join("api/lib/passwd")).unwrap();
    let out = package(dir.path(), &[]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("symlink lib/passwd points outside the artifact root"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(!dir.path().join("dist/release.json").exists());
    assert_dist_has_no_temp_files(dir.path());
}

#[test]
fn a_failing_build_command_fails_before_any_release_is_written() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let config = format!("{CONFIG}build = \"echo building >&2; exit 7\"\n");
    std::fs::write(dir.path().join("gantry.toml"), config).unwrap();
    let out = package(dir.path(), &[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("build command of artifact `web` failed (exit status: 7)"), "{stderr}");
    assert!(out.get_output().stdout.is_empty(), "build output goes to stderr");
    assert!(!dir.path().join("dist/release.json").exists());
    assert!(!dir.path().join("dist/api-1.4.0.zip").exists(), "builds run before any archive is written");
    assert_dist_has_no_temp_files(dir.path());
}

#[test]
fn bad_version_and_unknown_artifact_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let out = gantry(dir.path()).args(["package", "--version", "1.2"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("invalid version `1.2`"), "{stderr}");
    assert!(stderr.contains("hint: write a semantic version"), "{stderr}");

    let out = package(dir.path(), &["--artifact", "wbe"]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("no artifact named `wbe`"), "{stderr}");
    assert!(stderr.contains("artifacts in gantry.toml: api, web"), "{stderr}");
    assert!(!dir.path().join("dist").exists(), "a usage error writes nothing");
}

#[test]
fn outside_git_without_a_version_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let out = gantry(dir.path()).arg("package").assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("not inside a git repository"), "{stderr}");
    assert!(stderr.contains("--version"), "{stderr}");
}

#[test]
fn only_selected_artifacts_are_packaged() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    package(dir.path(), &["-a", "web"]).success();
    let manifest: serde_json::Value = serde_json::from_slice(&read(dir.path().join("dist/release.json"))).unwrap();
    let names: Vec<&str> =
        manifest["artifacts"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web"]);
    assert!(!dir.path().join("dist/api-1.4.0.zip").exists());
}

fn assert_dist_has_no_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir.join("dist")) else {
        return;
    };
    let temps: Vec<_> =
        entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
    assert!(temps.is_empty(), "temporary files left behind: {temps:?}");
}
