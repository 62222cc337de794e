//! `gantry image push` against moto's ECR (token, repositories, tag mutability) and a real
//! OCI registry (Debian's docker-registry) that accepts exactly the ECR token, with skopeo
//! as the independent client that reads back what was pushed and builds the OCI-layout and
//! docker-archive fixtures. The registry's access log counts what gantry sent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use serde_json::Value;

use crate::services::{Services, aws_env, services, unique};
use crate::support::{gantry, write_tree};

const TOKEN_USER: &str = "AWS";
const TOKEN_PASSWORD: &str = "123456789012-auth-token";

/// Services, with moto's ECR token accepted by the registry (appended once to its htpasswd).
fn setup() -> &'static Services {
    static LOGIN: Once = Once::new();
    let s = services();
    LOGIN.call_once(|| {
        let existing = std::fs::read_to_string(&s.htpasswd).unwrap_or_default();
        if !existing.lines().any(|l| l.starts_with(&format!("{TOKEN_USER}:"))) {
            let out = Command::new("htpasswd").args(["-Bbn", TOKEN_USER, TOKEN_PASSWORD]).output().unwrap();
            assert!(out.status.success());
            let line = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            let mut file = std::fs::OpenOptions::new().append(true).open(&s.htpasswd).unwrap();
            let sep = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
            std::io::Write::write_all(&mut file, format!("{sep}{line}\n").as_bytes()).unwrap();
        }
    });
    s
}

fn aws(s: &Services, env: &[(&str, String)], args: &[&str]) -> Value {
    let out = Command::new(&s.aws_cli)
        .args(args)
        .args(["--output", "json"])
        .envs(aws_env(s))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A new ECR repository in moto.
fn repository(s: &Services, prefix: &str, immutable: bool) -> String {
    let name = unique(prefix);
    let mutability = if immutable { "IMMUTABLE" } else { "MUTABLE" };
    aws(s, &[], &["ecr", "create-repository", "--repository-name", &name, "--image-tag-mutability", mutability]);
    name
}

/// gantry.toml with image `app` (`image` is the rest of its table) and environment `dev`.
fn project(dir: &Path, repository: &str, image: &str) {
    let config = format!(
        "[project]\nname = \"shop\"\n\n[images.app]\nrepository = \"{repository}\"\n{image}\n\n\
         [environments.dev]\nregion = \"us-east-1\"\n"
    );
    write_tree(dir, &[("gantry.toml", &config)]);
}

/// An assembled image: two layers from `app/` and `VERSION`, on `base`.
fn assembled(dir: &Path, repository: &str, base: &str, salt: &str) {
    write_tree(
        dir,
        &[("app/main.py", &format!("print('{salt}')\n")), ("app/lib/util.py", "X = 1\n"), ("VERSION", "1\n")],
    );
    project(
        dir,
        repository,
        &format!(
            "inputs = [\"app/\", \"VERSION\"]\nbase = \"{base}\"\ncmd = [\"python3\", \"/app/main.py\"]\n\
             env = {{ MODE = \"prod\" }}\nlayers = [{{ src = \"app\", dest = \"/app\" }}, {{ src = \"VERSION\", dest = \"/etc/\" }}]"
        ),
    );
}

/// `app/data.bin`: `bytes` of incompressible noise, the same every time.
fn noise(dir: &Path, bytes: usize) {
    let mut x: u64 = 7;
    let data: Vec<u8> = (0..bytes)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect();
    std::fs::write(dir.join("app/data.bin"), data).unwrap();
}

fn push_cmd(dir: &Path, s: &Services, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = gantry(dir);
    cmd.args(["image", "push", "--env", "dev"])
        .args(args)
        .envs(aws_env(s))
        .env("GANTRY_ENVIRONMENTS__DEV__REGISTRY", &s.registry)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    cmd
}

/// Pushes with `--output json` and returns the document.
fn push(dir: &Path, s: &Services, args: &[&str]) -> Value {
    let out = push_cmd(dir, s, &[&["--output", "json"], args].concat()).assert().success();
    serde_json::from_slice(&out.get_output().stdout).expect("one JSON document")
}

fn skopeo(s: &Services, args: &[&str]) -> std::process::Output {
    let creds = format!("{TOKEN_USER}:{TOKEN_PASSWORD}");
    let mut cmd = Command::new("skopeo");
    match args[0] {
        "copy" => cmd.args(["copy", "--src-tls-verify=false", "--src-creds", &creds]).args(&args[1..]),
        verb => cmd.args([verb, "--tls-verify=false", "--creds", &creds]).args(&args[1..]),
    };
    let _ = s;
    cmd.output().unwrap()
}

/// What an independent client sees at `repo:tag`: the raw manifest's digest and skopeo's view.
fn inspect(s: &Services, repo: &str, tag: &str) -> (String, Value) {
    let image = format!("docker://{}/{repo}:{tag}", s.registry);
    let raw = skopeo(s, &["inspect", "--raw", &image]);
    assert!(raw.status.success(), "skopeo inspect --raw {image}: {}", String::from_utf8_lossy(&raw.stderr));
    let digest = format!("sha256:{}", sha256_hex(&raw.stdout));
    let out = skopeo(s, &["inspect", &image]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (digest, serde_json::from_slice(&out.stdout).unwrap())
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// The registry's access-log lines for `repo` matching `needle`, once the log has settled
/// (a line is written just after its response is sent).
fn requests(s: &Services, repo: &str, needle: &str) -> Vec<String> {
    let log = PathBuf::from(&s.htpasswd).with_file_name("registry.log");
    let read = || -> Vec<String> {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().filter(|l| l.contains(&format!("/v2/{repo}/")) && l.contains(needle)).map(str::to_owned).collect()
    };
    let mut last = read();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

fn stderr(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

#[test]
fn assembled_from_scratch_is_pushed_and_reads_back_the_same() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(s, "img-scratch", false);
    assembled(dir.path(), &repo, "scratch", "a");

    let report = push(dir.path(), s, &["app", "--version", "1.2.0+build.7"]);
    assert_eq!(report["status"], "pushed");
    assert_eq!(report["image"], "app");
    assert_eq!(report["repository"], repo.as_str());
    assert_eq!(report["registry"], s.registry.as_str());
    let inputs_tag = format!("inputs-{}", &report["inputs_hash"].as_str().unwrap()[..16]);
    assert_eq!(report["tags"], serde_json::json!(["1.2.0_build.7", inputs_tag]));
    assert_eq!(report["blobs"], serde_json::json!({ "uploaded": 3, "skipped": 0, "mounted": 0 }));
    assert!(report["bytes_uploaded"].as_u64().unwrap() > 0);
    assert!(report["elapsed_seconds"].as_f64().is_some());
    let digest = report["digest"].as_str().unwrap();
    assert_eq!(report["reference"], format!("{}/{repo}@{digest}", s.registry));

    for tag in ["1.2.0_build.7", inputs_tag.as_str()] {
        let (seen, view) = inspect(s, &repo, tag);
        assert_eq!(seen, digest, "skopeo reads {tag} as the digest gantry computed");
        assert_eq!(view["Architecture"], "amd64");
        assert_eq!(view["Os"], "linux");
        assert_eq!(view["Created"], "2023-11-14T22:13:20Z");
        assert_eq!(view["Layers"].as_array().unwrap().len(), 2);
    }
    let config = skopeo(s, &["inspect", "--config", &format!("docker://{}/{repo}:{inputs_tag}", s.registry)]);
    let config: Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["python3", "/app/main.py"]));
    assert_eq!(config["config"]["Env"], serde_json::json!(["MODE=prod"]));
}

#[test]
fn human_output_names_each_step_on_stderr_and_nothing_on_stdout() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(s, "img-human", false);
    assembled(dir.path(), &repo, "scratch", "h");
    let first = push_cmd(dir.path(), s, &[]).assert().success();
    assert!(first.get_output().stdout.is_empty());
    let text = stderr(&first);
    for word in ["Logged in", "Hashed", "Prepared", "Uploaded", "Tagged", "Pushed"] {
        assert!(text.contains(word), "{word}: {text}");
    }
    let again = stderr(&push_cmd(dir.path(), s, &[]).assert().success());
    assert!(again.contains("Skipped") && again.contains("app unchanged"), "{again}");
    assert!(!again.contains("Uploaded"), "{again}");
}

#[test]
fn same_inputs_give_the_same_digest_in_two_folders() {
    let s = setup();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (repo_a, repo_b) = (repository(s, "img-repro", false), repository(s, "img-repro", false));
    assembled(a.path(), &repo_a, "scratch", "same");
    assembled(b.path(), &repo_b, "scratch", "same");
    let first = push(a.path(), s, &[]);
    let second = push(b.path(), s, &[]);
    assert_eq!(first["images"][0]["digest"], second["images"][0]["digest"]);
    assert_eq!(first["images"][0]["inputs_hash"], second["images"][0]["inputs_hash"]);
    let tag = format!("inputs-{}", &first["images"][0]["inputs_hash"].as_str().unwrap()[..16]);
    assert_eq!(inspect(s, &repo_b, &tag).0, first["images"][0]["digest"].as_str().unwrap());
}

#[test]
fn unchanged_inputs_push_no_blob_and_only_add_a_missing_version_tag() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(s, "img-again", false);
    assembled(dir.path(), &repo, "scratch", "again");
    let first = push(dir.path(), s, &["app"]);
    let blob_requests = requests(s, &repo, "/blobs/").len();
    assert!(blob_requests >= 6, "the first push checks and uploads 3 blobs");

    let started = std::time::Instant::now();
    let second = push(dir.path(), s, &["app", "--version", "2.0.0"]);
    let elapsed = started.elapsed();
    assert_eq!(second["status"], "unchanged");
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(second["blobs"], serde_json::json!({ "uploaded": 0, "skipped": 0, "mounted": 0 }));
    assert_eq!(second["bytes_uploaded"], 0);
    assert_eq!(requests(s, &repo, "/blobs/").len(), blob_requests, "no blob request at all the second time");
    assert_eq!(inspect(s, &repo, "2.0.0").0, first["digest"].as_str().unwrap(), "the new version tag was added");
    assert!(elapsed.as_secs_f64() < 2.0, "an unchanged push is quick: {elapsed:?}");

    // Changing an input makes a new image.
    write_tree(dir.path(), &[("app/main.py", "print('changed')\n")]);
    let third = push(dir.path(), s, &["app"]);
    assert_eq!(third["status"], "pushed");
    assert_ne!(third["digest"], first["digest"]);
    assert_eq!(third["blobs"]["skipped"], 1, "the unchanged VERSION layer is already there");
}

mod failures;
mod faults;
mod sources;
