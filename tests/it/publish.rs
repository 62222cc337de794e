//! `gantry publish` against a real S3 API (moto), through a logging, fault-injecting
//! proxy, with the AWS CLI as an independent reader of what was stored.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;

use crate::proxy::{Faults, Proxy};
use crate::services::{Services, aws_env, services, unique};
use crate::support::{gantry, write_tree};

/// A project with one small artifact and one of `big_bytes` random bytes (0: none),
/// packaged as `version`, publishing to `bucket` in environment `dev` with a pipeline.
fn project(dir: &Path, bucket: &str, version: &str, big_bytes: usize, salt: &str) {
    let config = format!(
        "[project]\nname = \"shop\"\n\n[artifacts.api]\nroot = \"api\"\n\n[artifacts.blob]\nroot = \"blob\"\n\n\
         [environments.dev]\nrelease_bucket = \"{bucket}\"\npipeline = \"shop-dev\"\n"
    );
    write_tree(
        dir,
        &[("gantry.toml", &config), ("api/main.py", &format!("print('{salt}')\n")), ("blob/README", "blob")],
    );
    if big_bytes > 0 {
        let mut x: u64 = 99;
        let noise: Vec<u8> = (0..big_bytes)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect();
        std::fs::write(dir.join("blob/data.bin"), noise).unwrap();
    }
    gantry(dir).args(["package", "-q", "--version", version]).env("SOURCE_DATE_EPOCH", "1700000000").assert().success();
}

/// A test's own project (see `project`, salt "a") and bucket, with a proxy in front of moto.
struct Proxied {
    s: &'static Services,
    dir: tempfile::TempDir,
    bucket: String,
    proxy: Proxy,
}

fn proxied(version: &str, big_bytes: usize) -> Proxied {
    let (s, dir, bucket) = packaged(version, big_bytes, "a");
    Proxied { s, dir, bucket, proxy: Proxy::start(s.moto.trim_start_matches("http://")) }
}

/// A test's own project (see `project`) in a temporary folder, and its own bucket.
fn packaged(version: &str, big_bytes: usize, salt: &str) -> (&'static Services, tempfile::TempDir, String) {
    let s = services();
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket(s);
    project(dir.path(), &bucket, version, big_bytes, salt);
    (s, dir, bucket)
}

/// A new versioned bucket, created with the AWS CLI.
fn bucket(s: &Services) -> String {
    let name = unique("rel");
    aws(s, &["s3api", "create-bucket", "--bucket", &name]);
    aws(s, &["s3api", "put-bucket-versioning", "--bucket", &name, "--versioning-configuration", "Status=Enabled"]);
    name
}

fn aws(s: &Services, args: &[&str]) -> serde_json::Value {
    let out = Command::new(&s.aws_cli).args(args).args(["--output", "json"]).envs(aws_env(s)).output().unwrap();
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn publish(dir: &Path, endpoint: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    let s = services();
    let mut cmd = gantry(dir);
    cmd.args(["--env", "dev", "publish"]).args(extra).envs(aws_env(s)).env("AWS_ENDPOINT_URL", endpoint);
    cmd.assert()
}

fn keys(s: &Services, bucket: &str) -> Vec<String> {
    let listed = aws(s, &["s3api", "list-objects-v2", "--bucket", bucket]);
    let mut keys: Vec<String> = listed["Contents"]
        .as_array()
        .map(|a| a.iter().map(|o| o["Key"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

fn writes(proxy: &Proxy) -> Vec<String> {
    proxy.requests().into_iter().filter(|r| r.starts_with("PUT ") || r.starts_with("POST ")).collect()
}

#[test]
fn publishes_artifacts_then_source_then_manifest_and_republish_sends_nothing() {
    let Proxied { dir, proxy, .. } = proxied("1.2.0", 0);

    let out = publish(dir.path(), &proxy.url(), &["--output", "json"]).success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("one JSON document");
    let statuses: Vec<(&str, &str)> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["key"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("releases/shop/1.2.0/api-1.2.0.zip", "uploaded"),
            ("releases/shop/1.2.0/blob-1.2.0.zip", "uploaded"),
            ("releases/shop/1.2.0/SHA256SUMS", "uploaded"),
            ("releases/shop/pipeline-source.zip", "uploaded"),
            ("releases/shop/1.2.0/release.json", "uploaded"),
        ]
    );
    assert!(report["objects"].as_array().unwrap().iter().all(|o| o["version_id"].is_string()), "{report}");
    let puts = writes(&proxy);
    assert!(puts.last().unwrap().contains("/release.json"), "release.json is written last: {puts:?}");
    assert!(puts[puts.len() - 2].contains("/pipeline-source.zip"), "then the pipeline source before it: {puts:?}");

    proxy.clear();
    let again = publish(dir.path(), &proxy.url(), &["--output", "json"]).success();
    let report: serde_json::Value = serde_json::from_slice(&again.get_output().stdout).unwrap();
    assert!(report["objects"].as_array().unwrap().iter().all(|o| o["status"] == "unchanged"), "{report}");
    assert_eq!(report["bytes_uploaded"], 0);
    assert!(writes(&proxy).is_empty(), "re-publishing sends nothing: {:?}", proxy.requests());
}

#[test]
fn checksums_read_back_by_the_aws_cli_match_the_manifest() {
    let (s, dir, bucket) = packaged("1.0.0", 40 << 20, "a");
    publish(dir.path(), &s.moto, &[]).success();

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("dist/release.json")).unwrap()).unwrap();
    for artifact in manifest["artifacts"].as_array().unwrap() {
        let key = format!("releases/shop/1.0.0/{}", artifact["file"].as_str().unwrap());
        let head = aws(s, &["s3api", "head-object", "--bucket", &bucket, "--key", &key, "--checksum-mode", "ENABLED"]);
        assert_eq!(head["Metadata"]["gantry-sha256"], artifact["sha256"], "{key}");
        assert_eq!(head["ContentLength"], artifact["size"], "{key}");
        // release.json records each artifact's CRC64NVME in S3's form.
        let bytes = std::fs::read(dir.path().join("dist").join(artifact["file"].as_str().unwrap())).unwrap();
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes());
        assert_eq!(artifact["crc64nvme"], b64.as_str(), "{key}");
        let size = artifact["size"].as_u64().unwrap();
        if size > 16 << 20 {
            // Uploaded in parts: S3 (here moto, computing with the AWS CRT) holds the whole
            // object's CRC64NVME, the full-object checksum gantry sent and compared, and it
            // is the manifest's.
            assert_eq!(head["ChecksumCRC64NVME"], artifact["crc64nvme"], "{key}: {head}");
            assert_eq!(head["ChecksumType"], "FULL_OBJECT", "{key}: {head}");
        } else {
            // Put whole: S3 holds the file's SHA-256, the manifest's.
            let b64 = crate::support::sha256_b64(artifact["sha256"].as_str().unwrap());
            assert_eq!(head["ChecksumSHA256"], b64.as_str(), "{key}: {head}");
        }
    }
    assert!(manifest["artifacts"].as_array().unwrap().iter().any(|a| a["size"].as_u64().unwrap() > 16 << 20));
    // The 40 MiB artifact went up in parts; nothing is left in progress.
    let uploads = aws(s, &["s3api", "list-multipart-uploads", "--bucket", &bucket]);
    assert!(uploads["Uploads"].as_array().is_none_or(Vec::is_empty), "{uploads}");
    // The whole object reads back byte for byte.
    let copy = dir.path().join("copy.zip");
    let blob = manifest["artifacts"][1]["file"].as_str().unwrap();
    aws(
        s,
        &[
            "s3api",
            "get-object",
            "--bucket",
            &bucket,
            "--key",
            &format!("releases/shop/1.0.0/{blob}"),
            copy.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read(&copy).unwrap() == std::fs::read(dir.path().join("dist").join(blob)).unwrap());
}

#[test]
fn a_published_version_is_immutable_unless_forced() {
    let (s, dir, bucket) = packaged("2.0.0", 0, "first");
    publish(dir.path(), &s.moto, &[]).success();

    project(dir.path(), &bucket, "2.0.0", 0, "second");
    let out = publish(dir.path(), &s.moto, &[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("api-2.0.0.zip already holds different bytes"), "{stderr}");
    assert!(stderr.contains("hint: a published version never changes"), "{stderr}");

    let out = publish(dir.path(), &s.moto, &["--force", "--output", "json"]).success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let status =
        |key: &str| report["objects"].as_array().unwrap().iter().find(|o| o["key"] == key).unwrap()["status"].clone();
    assert_eq!(status("releases/shop/2.0.0/api-2.0.0.zip"), "replaced");
    assert_eq!(status("releases/shop/2.0.0/blob-2.0.0.zip"), "unchanged");
}

#[test]
fn an_artifact_changed_after_packaging_is_refused_before_any_upload() {
    let (s, dir, bucket) = packaged("1.0.0", 0, "a");
    let zip = dir.path().join("dist/api-1.0.0.zip");
    let mut bytes = std::fs::read(&zip).unwrap();
    bytes.push(0);
    std::fs::write(&zip, bytes).unwrap();
    let out = publish(dir.path(), &s.moto, &[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("api-1.0.0.zip changed after it was packaged"), "{stderr}");
    assert!(stderr.contains("gantry package"), "{stderr}");
    assert!(keys(s, &bucket).is_empty(), "nothing was uploaded");
}

/// Rewrites the blob artifact's `crc64nvme` in release.json (`None`: removes it, as in a
/// manifest from before gantry recorded one). The zip is untouched, so its SHA-256 still
/// matches and the hash cache spares publish from reading it while planning.
fn edit_blob_crc(dir: &Path, crc: Option<&str>) {
    let path = dir.join("dist/release.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let blob = manifest["artifacts"].as_array_mut().unwrap().iter_mut().find(|a| a["name"] == "blob").unwrap();
    let blob = blob.as_object_mut().unwrap();
    assert!(blob.contains_key("crc64nvme"), "package records it: {blob:?}");
    match crc {
        Some(crc) => blob.insert("crc64nvme".into(), crc.into()),
        None => blob.remove("crc64nvme"),
    };
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn bytes_sent_in_parts_whose_crc64nvme_is_not_the_manifests_are_never_committed() {
    let (s, dir, bucket) = packaged("1.0.0", 20 << 20, "a");
    // The check runs on the bytes as they are sent: release.json says one CRC, the file
    // read during the upload has another.
    edit_blob_crc(dir.path(), Some("AAAAAAAAAAE="));
    let out = publish(dir.path(), &s.moto, &[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("blob-1.0.0.zip changed while it was being uploaded"), "{stderr}");
    assert!(stderr.contains("release.json says crc64nvme AAAAAAAAAAE=, the bytes read have crc64nvme "), "{stderr}");
    assert!(stderr.contains("gantry package"), "{stderr}");
    let stored = keys(s, &bucket);
    assert!(!stored.iter().any(|k| k.ends_with("blob-1.0.0.zip") || k.ends_with("release.json")), "{stored:?}");
    let uploads = aws(s, &["s3api", "list-multipart-uploads", "--bucket", &bucket]);
    assert!(uploads["Uploads"].as_array().is_none_or(Vec::is_empty), "the upload was aborted: {uploads}");

    // A value that is not a CRC64NVME at all is refused before anything is sent.
    edit_blob_crc(dir.path(), Some("not-a-crc"));
    let out = publish(dir.path(), &s.moto, &[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("`not-a-crc` (crc64nvme of blob-1.0.0.zip) is not a CRC64NVME"), "{stderr}");
}

#[test]
fn a_manifest_from_before_crc64nvme_is_published_by_its_sha256() {
    let (s, dir, bucket) = packaged("1.0.0", 20 << 20, "a");
    edit_blob_crc(dir.path(), None);
    let out = publish(dir.path(), &s.moto, &["--output", "json"]).success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let blob = report["objects"].as_array().unwrap().iter().find(|o| o["key"] == "releases/shop/1.0.0/blob-1.0.0.zip");
    assert_eq!(blob.unwrap()["status"], "uploaded", "{report}");
    // Still uploaded in parts with a full-object CRC64NVME, computed from the bytes sent.
    let key = "releases/shop/1.0.0/blob-1.0.0.zip";
    let head = aws(s, &["s3api", "head-object", "--bucket", &bucket, "--key", key, "--checksum-mode", "ENABLED"]);
    let bytes = std::fs::read(dir.path().join("dist/blob-1.0.0.zip")).unwrap();
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &bytes);
    assert_eq!(head["ChecksumCRC64NVME"], base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes()).as_str());
    assert!(keys(s, &bucket).iter().any(|k| k.ends_with("release.json")));
}

#[test]
fn a_store_that_refuses_multipart_checksums_gets_its_parts_checked_by_etag() {
    let Proxied { s, dir, bucket, proxy } = proxied("9.0.0", 20 << 20);
    // Every multipart request carrying a checksum header is refused (501), so the publish
    // only lands if, after the refused CreateMultipartUpload, neither gantry nor the SDK
    // sends one.
    proxy.set_faults(Faults { refuse_checksum_algorithm: true, ..Faults::default() });
    let out = publish(dir.path(), &proxy.url(), &[]).success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("refuses CRC64NVME full-object checksums"), "{stderr}");
    let creates = proxy.requests().into_iter().filter(|r| r.starts_with("POST ") && r.ends_with("?uploads")).count();
    assert_eq!(creates, 2, "asked with the checksum, then without: {:?}", proxy.requests());
    // What is stored is the packaged zip, byte for byte, and nothing is left in progress.
    let key = "releases/shop/9.0.0/blob-9.0.0.zip";
    let copy = dir.path().join("copy.zip");
    aws(s, &["s3api", "get-object", "--bucket", &bucket, "--key", key, copy.to_str().unwrap()]);
    assert!(std::fs::read(&copy).unwrap() == std::fs::read(dir.path().join("dist/blob-9.0.0.zip")).unwrap());
    assert!(keys(s, &bucket).iter().any(|k| k.ends_with("release.json")));
    let uploads = aws(s, &["s3api", "list-multipart-uploads", "--bucket", &bucket]);
    assert!(uploads["Uploads"].as_array().is_none_or(Vec::is_empty), "{uploads}");
    // And the release is whole: publishing it again sends nothing.
    proxy.clear();
    publish(dir.path(), &proxy.url(), &[]).success();
    assert!(writes(&proxy).is_empty(), "{:?}", proxy.requests());
}

#[test]
fn bad_setup_is_named_with_a_hint() {
    let s = services();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), "no-such-bucket-here", "1.0.0", 0, "a");
    let out = publish(dir.path(), &s.moto, &[]).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("bucket `no-such-bucket-here` does not exist"), "{stderr}");
    assert!(stderr.contains("release_bucket"), "{stderr}");

    let out = gantry(dir.path()).arg("publish").assert().code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("needs an environment"));
    let out = gantry(dir.path()).args(["--env", "prod", "publish"]).assert().code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("no environment named `prod`"));
    std::fs::remove_dir_all(dir.path().join("dist")).unwrap();
    let out = publish(dir.path(), &s.moto, &[]).code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("run `gantry package` first"));
}

#[test]
fn concurrent_publishes_of_one_version_commit_exactly_once() {
    let s = services();
    let bucket = bucket(s);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, dir) in dirs.iter().enumerate() {
        project(dir.path(), &bucket, "3.0.0", 0, &format!("builder-{i}"));
    }
    let children: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
            cmd.args(["--env", "dev", "publish"]).current_dir(dir.path()).envs(aws_env(s));
            cmd.stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let results: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let winners: Vec<usize> = (0..2).filter(|&i| results[i].status.success()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one publish wins: {:?}",
        results.iter().map(|r| String::from_utf8_lossy(&r.stderr).into_owned()).collect::<Vec<_>>()
    );
    let loser = &results[1 - winners[0]];
    let stderr = String::from_utf8_lossy(&loser.stderr);
    assert!(
        stderr.contains("already holds different bytes") || stderr.contains("committed"),
        "the loser says what happened: {stderr}"
    );
    let stored = Command::new(&s.aws_cli)
        .args(["s3", "cp", &format!("s3://{bucket}/releases/shop/3.0.0/release.json"), "-"])
        .envs(aws_env(s))
        .output()
        .unwrap();
    let winner_manifest = std::fs::read(dirs[winners[0]].path().join("dist/release.json")).unwrap();
    assert_eq!(stored.stdout, winner_manifest, "the committed release.json is the winner's");
}

#[test]
fn resets_and_stalls_mid_transfer_are_retried_and_the_release_lands_whole() {
    let Proxied { s, dir, bucket, proxy } = proxied("4.0.0", 20 << 20);
    // The first connections are cut 100 kB into their uploads, the next one hangs.
    proxy.set_faults(Faults {
        resets: 2,
        stalls: 1,
        after_bytes: 100_000,
        stall_for: Duration::from_secs(5),
        ..Faults::default()
    });
    let mut cmd = gantry(dir.path());
    cmd.args(["--env", "dev", "publish"])
        .envs(aws_env(s))
        .env("AWS_ENDPOINT_URL", proxy.url())
        .env("GANTRY_AWS_ATTEMPT_TIMEOUT", "2s");
    cmd.assert().success();
    let sent = writes(&proxy);
    eprintln!("accepted {} connections", proxy.accepted());
    let retried = sent.iter().filter(|r| sent.iter().filter(|o| o == r).count() > 1).count();
    assert!(retried >= 2, "the faults fired and the cut requests were sent again: {sent:?}");
    let keys = keys(s, &bucket);
    assert!(keys.contains(&"releases/shop/4.0.0/release.json".to_owned()), "{keys:?}");
    let stored = Command::new(&s.aws_cli)
        .args(["s3", "cp", &format!("s3://{bucket}/releases/shop/4.0.0/blob-4.0.0.zip"), "-"])
        .envs(aws_env(s))
        .output()
        .unwrap();
    assert!(
        stored.stdout == std::fs::read(dir.path().join("dist/blob-4.0.0.zip")).unwrap(),
        "the large artifact is whole"
    );
}

#[test]
fn a_dead_endpoint_fails_cleanly_without_a_release_json() {
    let Proxied { s, dir, bucket, proxy } = proxied("5.0.0", 0);
    // Four connections work (bucket check, first artifact), then the endpoint is gone.
    proxy.set_faults(Faults { refuse_after: Some(4), ..Faults::default() });
    let out = gantry(dir.path())
        .args(["--env", "dev", "publish"])
        .envs(aws_env(s))
        .env("AWS_ENDPOINT_URL", proxy.url())
        .env("GANTRY_AWS_ATTEMPT_TIMEOUT", "2s")
        .timeout(Duration::from_secs(120))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("s3://"), "the failing object is named: {stderr}");
    assert!(
        !keys(s, &bucket).iter().any(|k| k.ends_with("release.json")),
        "no release.json: the release is not visible"
    );
}

#[test]
fn a_stored_checksum_that_differs_fails_the_publish_and_removes_the_object() {
    let Proxied { s, dir, bucket, proxy } = proxied("6.0.0", 0);
    // moto stores whatever checksum it is sent: here, not the one gantry computed.
    proxy.set_faults(Faults { corrupt_checksums: true, ..Faults::default() });
    let out = gantry(dir.path())
        .args(["--env", "dev", "publish"])
        .envs(aws_env(s))
        .env("AWS_ENDPOINT_URL", proxy.url())
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("does not hold what was uploaded"), "{stderr}");
    assert!(stderr.contains("release.json was not written"), "{stderr}");
    assert!(keys(s, &bucket).is_empty(), "the object that failed its check was deleted: {:?}", keys(s, &bucket));

    // Without the fault, the same publish goes through: nothing bad was taken as unchanged.
    proxy.set_faults(Faults::default());
    publish(dir.path(), &proxy.url(), &[]).success();
    assert!(keys(s, &bucket).contains(&"releases/shop/6.0.0/release.json".to_owned()));
}

#[test]
fn a_part_checksum_the_server_reports_differently_aborts_the_upload() {
    let Proxied { s, dir, bucket, proxy } = proxied("6.1.0", 40 << 20);
    // Every part reaches moto with another CRC64NVME than gantry computed: moto keeps and
    // echoes it, so the part is not what gantry sent as far as the server can tell.
    proxy.set_faults(Faults { corrupt_part_checksums: true, ..Faults::default() });
    let out = publish(dir.path(), &proxy.url(), &[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("blob-6.1.0.zip does not hold what was uploaded"), "the object is named: {stderr}");
    assert!(stderr.contains("for part "), "the part is named: {stderr}");
    assert!(stderr.contains("release.json was not written"), "{stderr}");
    assert!(
        !keys(s, &bucket).iter().any(|k| k.contains("blob") || k.ends_with("release.json")),
        "{:?}",
        keys(s, &bucket)
    );
    let uploads = aws(s, &["s3api", "list-multipart-uploads", "--bucket", &bucket]);
    assert!(uploads["Uploads"].as_array().is_none_or(Vec::is_empty), "the upload was aborted: {uploads}");
}

#[test]
fn credentials_the_endpoint_refuses_are_named_with_a_hint() {
    let Proxied { dir, bucket, proxy, .. } = proxied("7.0.0", 0);
    proxy.set_faults(Faults { deny: true, ..Faults::default() });
    let out = publish(dir.path(), &proxy.url(), &[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    // The first call is HeadBucket, whose 403 has no body (as on AWS): the bucket is named.
    assert!(stderr.contains(&format!("error: access denied to bucket `{bucket}`\n")), "{stderr}");
    assert!(stderr.contains("hint: check the AWS credentials"), "{stderr}");
    assert!(!stderr.contains("testing"), "no credential appears in the output: {stderr}");
}

#[test]
fn without_server_checksums_multipart_uploads_are_checked_by_etag_and_corruption_is_caught() {
    let Proxied { s, dir, bucket, proxy } = proxied("8.0.0", 40 << 20);
    // The server keeps no checksum (as s3s-fs for multipart objects), and one byte of a
    // part is changed on its way there: the part's ETag is then not the MD5 gantry
    // computed, so gantry reads the object back, finds the difference, and deletes it.
    proxy.set_faults(Faults { strip_checksums: true, flips: 1, after_bytes: 1_000_000, ..Faults::default() });
    let out = publish(dir.path(), &proxy.url(), &[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("blob-8.0.0.zip does not hold what was uploaded"), "{stderr}");
    assert!(stderr.contains("(read back)"), "{stderr}");
    assert!(stderr.contains("release.json was not written"), "{stderr}");
    let stored = keys(s, &bucket);
    assert!(!stored.iter().any(|k| k.ends_with("release.json") || k.contains("blob")), "{stored:?}");

    // Intact, the same upload is proven by ETags (each part's is the MD5 of the bytes sent,
    // the object's the MD5 of those): nothing is read back.
    proxy.set_faults(Faults { strip_checksums: true, ..Faults::default() });
    proxy.clear();
    publish(dir.path(), &proxy.url(), &[]).success();
    // (The small objects, sent whole, are read back: this server shows no checksum at all.)
    let gets: Vec<String> = proxy.requests().into_iter().filter(|r| r.starts_with("GET ")).collect();
    let blob = "/releases/shop/8.0.0/blob-8.0.0.zip?x-id=GetObject";
    assert!(gets.iter().all(|r| !r.contains(blob)), "verified without reading back: {gets:?}");
    assert!(gets.iter().any(|r| r.contains("/releases/shop/8.0.0/SHA256SUMS?x-id=GetObject")), "{gets:?}");
    let stored = Command::new(&s.aws_cli)
        .args(["s3", "cp", &format!("s3://{bucket}/releases/shop/8.0.0/blob-8.0.0.zip"), "-"])
        .envs(aws_env(s))
        .output()
        .unwrap();
    assert!(stored.stdout == std::fs::read(dir.path().join("dist/blob-8.0.0.zip")).unwrap(), "stored whole");
}
