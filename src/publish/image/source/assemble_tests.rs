//! Tests of assembly: the config a base and the image's settings make, and that the same
//! files give the same manifest digest in any folder, at any time.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::publish::image::registry::{Credentials, Registry};

fn image(toml_text: &str) -> config::Image {
    toml::from_str(toml_text).unwrap()
}

#[test]
fn scratch_config_is_linux_amd64_with_the_settings() {
    let img = image(
        "repository = 'r'\ninputs = ['x']\nbase = 'scratch'\nentrypoint = ['/app/run']\ncmd = ['--port', '80']\n\
         env = { B = '2', A = '1' }\nlabels = { team = 'ops' }\nworkdir = '/app'\nuser = '1000'\n",
    );
    let d = Digest::of(b"layer");
    let cfg = image_config(None, &img, std::slice::from_ref(&d), &["gantry: a -> /app".into()], 0);
    assert_eq!(cfg["architecture"], "amd64");
    assert_eq!(cfg["os"], "linux");
    assert_eq!(cfg["created"], "1970-01-01T00:00:00Z");
    assert_eq!(cfg["config"]["Entrypoint"], json!(["/app/run"]));
    assert_eq!(cfg["config"]["Cmd"], json!(["--port", "80"]));
    assert_eq!(cfg["config"]["Env"], json!(["A=1", "B=2"]));
    assert_eq!(cfg["config"]["Labels"], json!({ "team": "ops" }));
    assert_eq!(cfg["config"]["WorkingDir"], "/app");
    assert_eq!(cfg["config"]["User"], "1000");
    assert_eq!(cfg["rootfs"], json!({ "type": "layers", "diff_ids": [d.as_str()] }));
    assert_eq!(cfg["history"][0]["created_by"], "gantry: a -> /app");
}

#[test]
fn base_config_is_merged_not_replaced() {
    let base = json!({
        "architecture": "arm64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": { "Env": ["PATH=/usr/bin", "A=old"], "Cmd": ["sh"], "Labels": { "base": "yes" } },
        "rootfs": { "type": "layers", "diff_ids": ["sha256:aa"] },
    });
    let img = image(
        "repository = 'r'\ninputs = ['x']\nbase = 'scratch'\nentrypoint = ['/run']\nenv = { A = 'new' }\n\
         labels = { team = 'ops' }\n",
    );
    let cfg = image_config(Some(&base), &img, &[Digest::of(b"l")], &["h".into()], 1_700_000_000);
    assert_eq!(cfg["architecture"], "arm64", "the base decides the platform");
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
    assert_eq!(cfg["config"]["Env"], json!(["PATH=/usr/bin", "A=new"]));
    assert!(cfg["config"].get("Cmd").is_none(), "entrypoint without cmd clears the base's Cmd");
    assert_eq!(cfg["config"]["Labels"], json!({ "base": "yes", "team": "ops" }));
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert!(cfg.get("history").is_none(), "no history added when the base kept none");
}

async fn assemble_in(dir: &Path, scratch: &Path, epoch: i64) -> LocalImage {
    std::fs::create_dir_all(dir.join("app/bin")).unwrap();
    std::fs::write(dir.join("app/main.py"), "print('hi')\n").unwrap();
    std::fs::write(dir.join("app/bin/start"), "#!/bin/sh\n").unwrap();
    std::fs::write(dir.join("VERSION"), "1\n").unwrap();
    let img = image(
        "repository = 'r'\ninputs = ['app/']\nbase = 'scratch'\ncmd = ['/app/bin/start']\n\
         layers = [{ src = 'app', dest = '/app' }, { src = 'VERSION', dest = '/etc/' }]\n",
    );
    let target = Arc::new(Registry::new("127.0.0.1:9", Credentials::Anonymous).unwrap());
    let cancel = Arc::new(AtomicBool::new(false));
    let ctx = Context {
        image: "demo",
        project_dir: dir,
        scratch,
        source_date_epoch: epoch,
        target: &target,
        cancel: &cancel,
    };
    assemble("scratch", &img, &ctx).await.unwrap()
}

#[tokio::test]
async fn same_files_same_digest_in_any_folder() {
    let (a, b, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = assemble_in(a.path(), scratch.path(), 0).await;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = tempfile::tempdir().unwrap();
    let second = assemble_in(b.path(), again.path(), 0).await;
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.manifest, second.manifest);
    assert_eq!(first.blobs.len(), 3, "config and two layers");
    assert_eq!(first.source, "scratch + 2 layers");
    let later = assemble_in(b.path(), again.path(), 1_700_000_000).await;
    assert_ne!(first.digest, later.digest, "the source date is part of the image");
}
