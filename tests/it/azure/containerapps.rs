//! The `containerapps` target through the real binary, against the Azure emulator: a canary
//! between revisions, failures at each phase (a revision that fails to provision, one
//! unhealthy on its own FQDN, one that breaks once it takes traffic), multiple-revision mode
//! required, and a plan snapshot.

use std::path::Path;

use super::{Azure, SUBSCRIPTION};
use crate::support::{gantry, stderr, write_tree};

const APP: &str = "ca-gateway";
const RG: &str = "rg-connectsoft";
const REGISTRY: &str = "connectsoft.azurecr.io";

struct Project {
    dir: tempfile::TempDir,
    azure: Azure,
}

impl Project {
    fn new(mode: &str, strategy: &str) -> Self {
        let azure = Azure::start();
        azure.add_container_app(RG, APP, mode, &format!("{REGISTRY}/connectsoft/gateway:0.9.0"));
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[project]\nname = \"gateway\"\n\n[artifacts.meta]\nroot = \"meta\"\n\n\
             [images.gateway]\nrepository = \"connectsoft/gateway\"\ninputs = [\"meta/**\"]\ndocker_archive = \"image.tar\"\n\n\
             [environments.prd]\nregistry = \"{REGISTRY}\"\ntargets = [\"gateway\"]\n\n\
             [targets.gateway]\nkind = \"containerapps\"\nstrategy = {strategy}\n\
             containerapps = {{ subscription = \"{SUBSCRIPTION}\", resource_group = \"{RG}\", app = \"{APP}\", image = \"gateway\" }}\n\n\
             [[targets.gateway.health]]\nurl = \"{{url}}/health\"\ninterval = \"300ms\"\ntimeout = \"300ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\n"
        );
        write_tree(dir.path(), &[("gantry.toml", &config)]);
        Self { dir, azure }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::Command {
        self.azure.gantry(self.path(), args)
    }

    /// Packages `version`; its image answers health checks as `health` says.
    fn release(&self, version: &str, health: &str) {
        write_tree(self.path(), &[("meta/version.txt", version)]);
        gantry(self.path()).args(["package", "-q", "--version", version]).assert().success();
        self.azure
            .model
            .lock()
            .unwrap()
            .image_health
            .insert(format!("{REGISTRY}/connectsoft/gateway:{version}"), health.into());
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        self.gantry(&["deploy", "--version", version]).assert()
    }

    /// Traffic by revision, and which revisions are active.
    fn state(&self) -> (Vec<(String, u8)>, Vec<String>) {
        let m = self.azure.model.lock().unwrap();
        let app = &m.container_apps[APP];
        let weights = super::apps::weights(app).into_iter().filter(|(_, w)| *w > 0).collect();
        let active = app.revisions.iter().filter(|(_, r)| r.active).map(|(n, _)| n.clone()).collect();
        (weights, active)
    }
}

/// `ca-gateway--v1-0-0-DIGEST8` → `ca-gateway--v1-0-0`.
fn short(name: &str) -> String {
    name.rsplit_once('-').map_or(name, |(a, _)| a).to_owned()
}

fn shorts(v: &[(String, u8)]) -> Vec<(String, u8)> {
    v.iter().map(|(n, w)| (short(n), *w)).collect()
}

#[test]
fn canary_moves_traffic_between_revisions_and_retires_the_old_one() {
    let p = Project::new("Multiple", "{ type = \"canary\", steps = [10, 50, 100], bake = \"600ms\" }");
    p.release("1.0.0", "ok");
    let out = p.deploy("1.0.0").success();
    let err = stderr(&out);
    assert!(err.contains("10%") && err.contains("50%"), "{err}");
    let (weights, active) = p.state();
    assert_eq!(shorts(&weights), vec![("ca-gateway--v1-0-0".into(), 100)]);
    assert_eq!(active.len(), 1, "the initial revision is deactivated: {active:?}");
    let tags = p.azure.model.lock().unwrap().container_apps[APP].tags.clone();
    assert!(tags["gantry-stable"].starts_with("ca-gateway--v1-0-0-"), "{tags:?}");
    assert!(!tags.contains_key("gantry-new"), "{tags:?}");
    // The revision runs the release's image and names the release.
    let image = {
        let m = p.azure.model.lock().unwrap();
        let app = &m.container_apps[APP];
        app.revisions[&app.latest].template["containers"][0]["image"].as_str().unwrap().to_owned()
    };
    assert_eq!(image, format!("{REGISTRY}/connectsoft/gateway:1.0.0"));

    p.release("2.0.0", "ok");
    p.deploy("2.0.0").success();
    let (weights, active) = p.state();
    assert_eq!(shorts(&weights), vec![("ca-gateway--v2-0-0".into(), 100)]);
    assert_eq!(active.iter().map(|a| short(a)).collect::<Vec<_>>(), vec!["ca-gateway--v2-0-0".to_owned()]);
    let status = p.gantry(&["status"]).assert().success();
    let o = status.get_output();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("2.0.0"), "{text}");
}

#[test]
fn failures_at_each_phase_put_all_traffic_back_and_deactivate_the_new_revision() {
    let p = Project::new("Multiple", "{ type = \"canary\", steps = [10, 100], bake = \"2s\" }");
    p.release("1.0.0", "ok");
    p.deploy("1.0.0").success();
    let v1 = vec![("ca-gateway--v1-0-0".to_owned(), 100)];

    // Unhealthy on its own FQDN: no traffic ever reaches it.
    p.release("2.0.0", "broken");
    let err = stderr(&p.deploy("2.0.0").code(3));
    assert!(err.contains("health check failed"), "{err}");
    let (weights, active) = p.state();
    assert_eq!(shorts(&weights), v1);
    assert_eq!(active.len(), 1, "{active:?}");

    // Healthy alone, broken once it takes traffic: the bake after the 10% step fails.
    p.release("2.0.1", "broken-under-traffic");
    let err = stderr(&p.deploy("2.0.1").code(3));
    assert!(err.contains("bake"), "{err}");
    let (weights, active) = p.state();
    assert_eq!(shorts(&weights), v1);
    assert_eq!(active.len(), 1, "{active:?}");

    // A revision that never runs.
    p.release("2.0.2", "fail-provision");
    let err = stderr(&p.deploy("2.0.2").code(3));
    assert!(err.contains("terminated with exit code '1'"), "{err}");
    assert_eq!(shorts(&p.state().0), v1);
}

#[test]
fn single_revision_mode_is_refused_by_plan_and_deploy_with_a_hint() {
    let p = Project::new("Single", "{ type = \"canary\", steps = [10, 100] }");
    p.release("1.0.0", "ok");
    for args in [&["plan"][..], &["deploy", "--version", "1.0.0"]] {
        let err = stderr(&p.gantry(args).assert().code(1));
        assert!(err.contains("is in `Single` revision mode"), "{err}");
        assert!(
            err.contains(
                "az containerapp revision set-mode --name ca-gateway --resource-group rg-connectsoft --mode multiple"
            ),
            "{err}"
        );
    }
    assert!(!p.azure.requests().iter().any(|r| r.starts_with("PATCH")), "nothing changed");
}

#[test]
fn plan_shows_revisions_weights_and_the_image() {
    let p = Project::new("Multiple", "{ type = \"canary\", steps = [10, 50, 100], bake = \"5m\" }");
    p.release("1.0.0", "ok");
    let out = p.gantry(&["plan"]).assert().success();
    let o = out.get_output();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let text = text.replace(&p.path().display().to_string(), "[DIR]");
    let digest = text.split("ca-gateway--v1-0-0-").nth(1).map(|r| r[..8].to_owned()).unwrap();
    insta::assert_snapshot!("containerapps_plan_canary", text.replace(&digest, "DIGEST8"));
}
