//! Images gantry did not assemble: an OCI layout, an OCI archive and a docker-archive,
//! each written by skopeo from an image in the registry; and an image on a base kept in
//! another repository of the same registry, whose layers are mounted, not uploaded.

use serde_json::json;

use super::{assembled, inspect, noise, project, push, push_cmd, repository, requests, setup, skopeo};
use crate::support::write_tree;

/// Pushes an assembled image with a 300 kB layer and returns (repository, tag, digest).
fn seed(s: &crate::services::Services, dir: &std::path::Path) -> (String, String, String) {
    let repo = repository(s, "img-seed", false);
    assembled(dir, &repo, "scratch", "seed");
    noise(dir, 300_000);
    let report = push(dir, s, &["app", "--version", "1.0.0"]);
    (repo, "1.0.0".into(), report["digest"].as_str().unwrap().to_owned())
}

#[test]
fn oci_layout_oci_archive_and_docker_archive_push_as_built() {
    let s = setup();
    let seed_dir = tempfile::tempdir().unwrap();
    let (seed_repo, tag, seed_digest) = seed(s, seed_dir.path());
    let src = format!("docker://{}/{seed_repo}:{tag}", s.registry);
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("build");
    std::fs::create_dir_all(&fixtures).unwrap();
    for dest in [
        format!("oci:{}:latest", fixtures.join("layout").display()),
        format!("oci-archive:{}:latest", fixtures.join("image-oci.tar").display()),
        format!("docker-archive:{}:app:latest", fixtures.join("image-docker.tar").display()),
    ] {
        let out = skopeo(s, &["copy", &src, &dest]);
        assert!(out.status.success(), "skopeo copy to {dest}: {}", String::from_utf8_lossy(&out.stderr));
    }
    write_tree(dir.path(), &[("src/app.py", "print(1)\n")]);

    for (key, path) in [
        ("oci_layout", "build/layout"),
        ("oci_archive", "build/image-oci.tar"),
        ("docker_archive", "build/image-docker.tar"),
    ] {
        let repo = repository(s, "img-src", false);
        project(dir.path(), &repo, &format!("inputs = [\"src/\"]\n{key} = \"{path}\""));
        // Small chunks, so the 300 kB layer goes up in several PATCH requests.
        let out =
            push_cmd(dir.path(), s, &["--output", "json"]).env("GANTRY_IMAGE_CHUNK_SIZE", "65536").assert().success();
        let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let report = &report["images"][0];
        assert_eq!(report["status"], "pushed", "{key}");
        let digest = report["digest"].as_str().unwrap();
        let inputs_tag = format!("inputs-{}", &report["inputs_hash"].as_str().unwrap()[..16]);
        assert_eq!(inspect(s, &repo, &inputs_tag).0, digest, "{key}: skopeo reads back gantry's digest");
        // The layout and the OCI archive hold the seed's own manifest; the docker archive holds
        // uncompressed layers that gantry gzips exactly as it did when assembling the seed.
        assert_eq!(digest, seed_digest, "{key}: the same image, byte for byte");
        assert!(requests(s, &repo, "\"PATCH ").len() >= 5, "{key}: the big layer went up in chunks");
    }
}

#[test]
fn a_base_in_the_same_registry_is_mounted_not_uploaded() {
    let s = setup();
    let base_dir = tempfile::tempdir().unwrap();
    let (base_repo, _, base_digest) = seed(s, base_dir.path());
    let (_, base_view) = inspect(s, &base_repo, "1.0.0");
    let base_layers = base_view["Layers"].as_array().unwrap().clone();

    let dir = tempfile::tempdir().unwrap();
    let repo = repository(s, "img-onbase", false);
    assembled(dir.path(), &repo, &format!("{}/{base_repo}@{base_digest}", s.registry), "onbase");
    let report = push(dir.path(), s, &["app"]);
    assert_eq!(report["status"], "pushed");
    // The VERSION layer is byte-identical to the base's, so it is mounted too.
    assert_eq!(report["blobs"], json!({ "uploaded": 2, "skipped": 0, "mounted": 2 }), "{report:#}");
    let mounts = requests(s, &repo, "mount=");
    assert_eq!(mounts.len(), 2, "{mounts:#?}");
    assert!(mounts.iter().all(|l| l.contains(&format!("from={}", base_repo.replace('/', "%2F")))), "{mounts:#?}");

    let inputs_tag = format!("inputs-{}", &report["inputs_hash"].as_str().unwrap()[..16]);
    let (digest, view) = inspect(s, &repo, &inputs_tag);
    assert_eq!(digest, report["digest"].as_str().unwrap());
    let layers = view["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    assert_eq!(&layers[..2], &base_layers[..], "the base's layers come first");
    let config = skopeo(s, &["inspect", "--config", &format!("docker://{}/{repo}:{inputs_tag}", s.registry)]);
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 4);
    assert_eq!(config["history"].as_array().unwrap().len(), 4, "the base's history, then one entry per layer");
}
