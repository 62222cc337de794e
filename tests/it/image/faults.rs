//! Pushes through a proxy that cuts connections mid-upload. gantry asks the registry where
//! the upload stands; docker-registry has dropped a session whose PATCH broke off, so the
//! blob starts again in a new session. The image that lands is exactly the one computed.

use super::{assembled, inspect, noise, push, repository, setup};
use crate::proxy::{Faults, Proxy};

#[test]
fn a_connection_cut_mid_chunk_is_retried_and_the_image_is_intact() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let (clean, faulty) = (repository(s, "img-clean", false), repository(s, "img-cut", false));
    assembled(dir.path(), &clean, "scratch", "cut");
    noise(dir.path(), 600_000);
    let expected = push(dir.path(), s, &["app"]);

    let proxy = Proxy::start(&s.registry);
    // The first two connections that carry more than 200 kB are cut there: mid-PATCH.
    proxy.set_faults(Faults { resets: 2, after_bytes: 200_000, ..Faults::default() });
    assembled(dir.path(), &faulty, "scratch", "cut");
    let out = super::push_cmd(dir.path(), s, &["app", "--output", "json"])
        .env("GANTRY_ENVIRONMENTS__DEV__REGISTRY", &proxy.addr)
        .env("GANTRY_IMAGE_CHUNK_SIZE", "131072")
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["status"], "pushed");
    assert_eq!(report["digest"], expected["digest"], "same inputs, same image, faults or not");

    let requests = proxy.requests();
    let count =
        |method: &str| requests.iter().filter(|r| r.starts_with(method) && r.contains("/blobs/uploads/")).count();
    assert!(count("GET ") >= 1, "an upload asked where to resume: {requests:#?}");
    assert!(count("POST ") > 3, "the cut blob started again in a new session: {requests:#?}");
    assert!(count("PATCH ") > 600_000 / 131_072, "the layer went up in chunks, some twice: {requests:#?}");

    // Read back past the proxy: the registry holds exactly what gantry computed.
    let tag = format!("inputs-{}", &report["inputs_hash"].as_str().unwrap()[..16]);
    assert_eq!(inspect(s, &faulty, &tag).0, report["digest"].as_str().unwrap());
    let copy = super::skopeo(
        s,
        &[
            "copy",
            &format!("docker://{}/{faulty}:{tag}", s.registry),
            &format!("oci:{}:x", dir.path().join("pulled").display()),
        ],
    );
    assert!(
        copy.status.success(),
        "every blob reads back and matches its digest: {}",
        String::from_utf8_lossy(&copy.stderr)
    );
}
