//! What a user sees when a push cannot happen: credentials the registry refuses, a
//! repository that does not exist, an immutable tag that would have to move, no
//! environment. Each is one clear error with a hint and a documented exit code.

use super::{assembled, aws, inspect, push, push_cmd, repository, setup, stderr};
use crate::support::write_tree;

#[test]
fn credentials_of_another_account_are_refused_clearly() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(s, "img-creds", false);
    assembled(dir.path(), &repo, "scratch", "creds");
    // moto's token names the caller's account: this one's is not in the registry's htpasswd.
    let assumed = aws(
        s,
        &[],
        &[
            "sts",
            "assume-role",
            "--role-arn",
            "arn:aws:iam::210987654321:role/deployer",
            "--role-session-name",
            "gantry-test",
        ],
    );
    let creds = &assumed["Credentials"];
    let out = push_cmd(dir.path(), s, &[])
        .env("AWS_ACCESS_KEY_ID", creds["AccessKeyId"].as_str().unwrap())
        .env("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"].as_str().unwrap())
        .env("AWS_SESSION_TOKEN", creds["SessionToken"].as_str().unwrap())
        .assert()
        .code(1);
    let text = stderr(&out);
    assert!(text.contains(&format!("error: registry {} rejected the credentials", s.registry)), "{text}");
    assert!(text.contains("hint: gantry logs in with the token from ECR GetAuthorizationToken"), "{text}");
    assert!(out.get_output().stdout.is_empty());
}

#[test]
fn a_missing_repository_is_named_with_a_hint() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let missing = crate::services::unique("img-missing");
    assembled(dir.path(), &missing, "scratch", "missing");
    let out = push_cmd(dir.path(), s, &[]).assert().code(2);
    let text = stderr(&out);
    assert!(text.contains(&format!("error: ECR repository `{missing}` does not exist in us-east-1")), "{text}");
    assert!(text.contains(&format!("aws ecr create-repository --repository-name {missing}")), "{text}");
    assert!(text.contains("[images.app]"), "{text}");
}

#[test]
fn an_immutable_tag_that_would_move_stops_the_push_before_any_upload() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(s, "img-immutable", true);
    assembled(dir.path(), &repo, "scratch", "v1");
    let first = push(dir.path(), s, &["app", "--version", "1.0.0"]);
    let first_digest = first["digest"].as_str().unwrap();

    // The same version again with the same inputs: the tag already names this image.
    let again = push(dir.path(), s, &["app", "--version", "1.0.0"]);
    assert_eq!(again["status"], "unchanged");

    write_tree(dir.path(), &[("app/main.py", "print('v2')\n")]);
    let out = push_cmd(dir.path(), s, &["app", "--version", "1.0.0"]).assert().code(2);
    let text = stderr(&out);
    let repository = format!("{}/{repo}", s.registry);
    assert!(
        text.contains(&format!(
            "tag `1.0.0` of immutable repository {repository} already points at {first_digest}, not at sha256:"
        )),
        "{text}"
    );
    assert!(text.contains("hint: tags cannot move in this repository"), "{text}");
    assert_eq!(inspect(s, &repo, "1.0.0").0, first_digest, "the tag did not move");
    let listed = super::skopeo(s, &["list-tags", &format!("docker://{repository}")]);
    let tags: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(tags["Tags"].as_array().unwrap().len(), 2, "no new inputs tag: {tags}");

    // A new version is fine.
    let next = push(dir.path(), s, &["app", "--version", "1.0.1"]);
    assert_eq!(next["status"], "pushed");
}

#[test]
fn an_environment_is_required() {
    let dir = tempfile::tempdir().unwrap();
    assembled(dir.path(), "anything", "scratch", "env");
    let out = crate::support::gantry(dir.path()).args(["image", "push"]).assert().code(2);
    let text = stderr(&out);
    assert!(text.contains("needs an environment: pass --env NAME"), "{text}");
    assert!(text.contains("hint: environments in gantry.toml: `dev`"), "{text}");
    let out = crate::support::gantry(dir.path()).args(["image", "push", "--env", "dev", "nope"]).assert().code(2);
    assert!(stderr(&out).contains("no image named `nope`"), "{}", stderr(&out));
}
