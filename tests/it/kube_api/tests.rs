//! The `kubernetes` target through the real binary against the emulator, reached through a
//! kubeconfig file as a user's cluster is; health gates go over HTTP through the `Ingress`
//! to the apps the pods' images run, which the tests turn unhealthy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{App, Cluster, ImageBehaviour, Ingress};
use crate::support::{gantry, stderr, write_tree};

const NS: &str = "shop";
const REGISTRY: &str = "registry.example/api";
/// gantry's exit code for a deploy that failed and was rolled back (README, src/exit.rs).
const ROLLED_BACK: i32 = 3;

struct Fixture {
    cluster: Cluster,
    apps: BTreeMap<String, App>,
    ingress: Ingress,
    dir: tempfile::TempDir,
}

fn image(version: &str) -> String {
    format!("{REGISTRY}:{version}")
}

impl Fixture {
    /// A namespace with Deployment `api` (3 replicas of 0.9.0 and a sidecar) and Service
    /// `api`, and a project deploying to it with `strategy`. `blue_green` labels the pods
    /// and the selector with the colour blue (the one-time setup blue-green needs).
    fn new(strategy: &str, blue_green: bool, progress_deadline: u32) -> Self {
        let cluster = Cluster::start();
        let apps: BTreeMap<String, App> =
            ["0.9.0", "1.0.0", "2.0.0", "3.0.0"].iter().map(|v| (image(v), App::start(v))).collect();
        let mut labels = json!({ "app": "api" });
        if blue_green {
            labels["gantry.dev/colour"] = json!("blue");
        }
        cluster.apply(
            "deployments",
            NS,
            json!({
                "metadata": { "name": "api", "labels": { "app": "api" } },
                "spec": {
                    "replicas": 3,
                    "progressDeadlineSeconds": progress_deadline,
                    "selector": { "matchLabels": { "app": "api" } },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": { "containers": [
                            { "name": "api", "image": image("0.9.0"), "ports": [{ "containerPort": 8080 }] },
                            { "name": "proxy", "image": "registry.example/proxy:1" },
                        ] },
                    },
                },
            }),
        );
        cluster.apply(
            "services",
            NS,
            json!({
                "metadata": { "name": "api" },
                "spec": { "selector": labels, "ports": [{ "port": 80, "targetPort": 8080 }] },
            }),
        );
        cluster.wait_until("0.9.0 is available", |s| ready(s, "api") == 3);
        let ingress =
            Ingress::start(&cluster, NS, "api", apps.iter().map(|(i, a)| (i.clone(), a.server.url())).collect());
        let dir = tempfile::tempdir().unwrap();
        cluster.kubeconfig(&dir.path().join("kubeconfig"));
        let config = format!(
            "[project]\nname = \"api\"\n\n[artifacts.app]\nroot = \"app\"\n\n\
             [images.api]\nrepository = \"api\"\ninputs = [\"app/**\"]\noci_layout = \"oci\"\n\n\
             [targets.api]\nkind = \"kubernetes\"\nstrategy = {strategy}\n\n[targets.api.kubernetes]\n\
             context = \"emulator\"\nnamespace = \"{NS}\"\ndeployment = \"api\"\ncontainer = \"api\"\nimage = \"api\"\n\
             image_ref = \"{REGISTRY}:{{version}}\"\nservice = \"api\"\npoll_interval = \"50ms\"\n\
             url = \"{ingress}/live\"\npreview_url = \"{ingress}/preview/{{colour}}\"\n\n\
             [[targets.api.health]]\nurl = \"{{url}}/health\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\n\n\
             [environments.dev]\ntargets = [\"api\"]\n",
            ingress = ingress.server.url(),
        );
        write_tree(dir.path(), &[("gantry.toml", &config), ("app/main.py", "print('api')\n")]);
        Self { cluster, apps, ingress, dir }
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        gantry(self.dir.path())
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .args(args)
            .assert()
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        self.gantry(&["package", "-q", "--version", version]).success();
        self.gantry(&["--env", "dev", "deploy", "--version", version])
    }

    fn deployment(&self, name: &str) -> Value {
        self.cluster.get("deployments", NS, name).unwrap_or_else(|| panic!("Deployment {name}"))
    }

    fn image_of(&self, name: &str) -> String {
        self.deployment(name)["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_owned()
    }

    /// The versions users reach now, over a few requests.
    fn served(&self) -> Vec<String> {
        let mut seen: Vec<String> = (0..6)
            .map(|_| {
                let (status, body) = crate::stand_in::get(&format!("{}/live/health", self.ingress.server.url()));
                assert_eq!(status, 200, "{body}");
                serde_json::from_str::<Value>(&body).unwrap()["version"].as_str().unwrap().to_owned()
            })
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }

    fn selector_colour(&self) -> Value {
        self.cluster.get("services", NS, "api").unwrap()["spec"]["selector"]["gantry.dev/colour"].clone()
    }
}

/// Ready pods of a Deployment's ReplicaSets (by the Deployment's name prefix).
fn ready(s: &super::State, deployment: &str) -> usize {
    let selector = BTreeMap::from([("app".to_owned(), "api".to_owned())]);
    s.ready_pods(NS, &selector)
        .iter()
        .filter(|p| p.owner.rsplit_once('-').is_some_and(|(d, _)| d == deployment))
        .count()
}

fn replica_sets(f: &Fixture) -> Vec<Value> {
    f.cluster.state().list("replicasets", NS)
}

fn revision(rs: &Value) -> &str {
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().unwrap_or_default()
}

#[test]
fn kubernetes_rolling_updates_the_image_and_follows_the_rollout() {
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", false, 600);
    f.cluster.state().images.insert(image("1.0.0"), ImageBehaviour { ready_after: Some(Duration::from_millis(150)) });
    let out = f.deploy("1.0.0").success();
    let err = stderr(&out);
    assert!(err.contains("successfully rolled out"), "{err}");
    let d = f.deployment("api");
    assert_eq!(f.image_of("api"), image("1.0.0"));
    assert_eq!(d["spec"]["template"]["spec"]["containers"][1]["image"], "registry.example/proxy:1", "sidecar kept");
    assert_eq!(d["spec"]["template"]["metadata"]["annotations"]["gantry.dev/version"], "1.0.0");
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"], json!({ "maxSurge": 1, "maxUnavailable": 0 }));
    assert!(d["metadata"]["annotations"]["gantry.dev/deploying"].is_null(), "retired: {d}");
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(f.served(), vec!["1.0.0"]);
    // The image went in as a strategic merge patch (containers merged by name).
    let log = f.cluster.log();
    assert!(
        log.iter().any(|l| l.starts_with("PATCH /apis/apps/v1/namespaces/shop/deployments/api")
            && l.ends_with("application/strategic-merge-patch+json")),
        "{log:?}"
    );
    // A second release: a new ReplicaSet with the next revision, the old ones at 0.
    f.deploy("2.0.0").success();
    let sets = replica_sets(&f);
    assert_eq!(sets.len(), 3, "{sets:?}");
    let newest = sets.iter().max_by_key(|rs| revision(rs).parse::<u32>().unwrap()).unwrap();
    assert_eq!(revision(newest), "3");
    assert_eq!(newest["spec"]["template"]["spec"]["containers"][0]["image"], image("2.0.0"));
    assert!(sets.iter().filter(|rs| *rs != newest).all(|rs| rs["spec"]["replicas"] == 0));
    assert_eq!(f.served(), vec!["2.0.0"]);
    // Deploying it again changes nothing.
    let again = f.gantry(&["--env", "dev", "deploy", "--version", "2.0.0"]).success();
    assert!(stderr(&again).contains("Unchanged api already runs 2.0.0"), "{}", stderr(&again));
}

#[test]
fn kubernetes_gantry_rollback_returns_to_the_previous_good_release() {
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", false, 600);
    f.deploy("1.0.0").success();
    f.deploy("2.0.0").success();
    assert_eq!(f.served(), vec!["2.0.0"]);
    let out = f.gantry(&["--env", "dev", "rollback"]).success();
    assert!(stderr(&out).contains("1.0.0"), "{}", stderr(&out));
    assert_eq!(f.image_of("api"), image("1.0.0"));
    assert_eq!(f.served(), vec!["1.0.0"]);
    let d = f.deployment("api");
    assert_eq!(d["spec"]["template"]["metadata"]["annotations"]["gantry.dev/version"], "1.0.0");
    assert!(d["metadata"]["annotations"]["gantry.dev/deploying"].is_null(), "finished: {d}");
    // And forward again to a named release.
    f.gantry(&["--env", "dev", "rollback", "--to", "2.0.0"]).success();
    assert_eq!(f.served(), vec!["2.0.0"]);
}

#[test]
fn kubernetes_progress_deadline_exceeded_rolls_back_to_the_previous_replica_set() {
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", false, 1);
    f.deploy("1.0.0").success();
    let good = f.deployment("api")["spec"]["template"].clone();
    // 2.0.0's pods never pass their readiness probe.
    f.cluster.state().images.insert(image("2.0.0"), ImageBehaviour { ready_after: None });
    let out = f.deploy("2.0.0").code(ROLLED_BACK);
    let err = stderr(&out);
    assert!(err.contains("exceeded its progress deadline (1s)"), "{err}");
    assert!(err.contains("has timed out progressing"), "{err}");
    let d = f.deployment("api");
    assert_eq!(f.image_of("api"), image("1.0.0"));
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
    assert_eq!(template, good, "the previous ReplicaSet's template is back");
    assert!(d["metadata"]["annotations"]["gantry.dev/deploying"].is_null());
    // As `kubectl rollout undo`: the 1.0.0 ReplicaSet is reused with the next revision.
    let sets = replica_sets(&f);
    let live: Vec<_> = sets.iter().filter(|rs| rs["spec"]["replicas"] != 0).collect();
    assert_eq!(live.len(), 1, "{sets:?}");
    assert_eq!(live[0]["spec"]["template"]["spec"]["containers"][0]["image"], image("1.0.0"));
    assert_eq!(revision(live[0]), "4");
    assert_eq!(f.served(), vec!["1.0.0"]);
    let log = f.cluster.log();
    assert!(log.iter().any(|l| l.starts_with("PUT /apis/apps/v1/namespaces/shop/deployments/api?")), "{log:?}");
}

#[test]
fn kubernetes_failing_health_after_the_rollout_rolls_back() {
    let f = Fixture::new("{ type = \"rolling\", batch = \"50%\" }", false, 600);
    f.deploy("1.0.0").success();
    // 2.0.0 becomes ready (its readiness probe passes) but its health check fails.
    f.apps[&image("2.0.0")].set_healthy(false);
    let out = f.deploy("2.0.0").code(ROLLED_BACK);
    let err = stderr(&out);
    assert!(err.contains("health check failed"), "{err}");
    assert_eq!(f.image_of("api"), image("1.0.0"));
    assert_eq!(f.deployment("api")["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "50%");
    assert_eq!(f.served(), vec!["1.0.0"]);
    let status = f.gantry(&["--env", "dev", "status"]).success();
    let text = stderr(&status) + &String::from_utf8_lossy(&status.get_output().stdout);
    assert!(text.contains("1.0.0"), "{text}");
}

#[test]
fn kubernetes_blue_green_switches_the_service_selector() {
    let f = Fixture::new("{ type = \"blue-green\", bake = \"300ms\" }", true, 600);
    f.deploy("1.0.0").success();
    assert_eq!(f.selector_colour(), "green");
    let green = f.deployment("api-green");
    assert_eq!(f.image_of("api-green"), image("1.0.0"));
    assert_eq!(green["spec"]["selector"]["matchLabels"]["gantry.dev/colour"], "green");
    assert!(green["metadata"]["annotations"]["gantry.dev/role"].is_null(), "retired: {green}");
    assert_eq!(f.deployment("api")["spec"]["replicas"], 0, "the configured Deployment is scaled to 0, kept");
    assert_eq!(f.served(), vec!["1.0.0"]);
    f.deploy("2.0.0").success();
    assert_eq!(f.selector_colour(), "blue");
    assert_eq!(f.image_of("api-blue"), image("2.0.0"));
    assert!(f.cluster.get("deployments", NS, "api-green").is_none(), "the old colour is deleted");
    assert_eq!(f.served(), vec!["2.0.0"]);
    let log = f.cluster.log();
    assert!(log.iter().any(|l| l.starts_with("POST /apis/apps/v1/namespaces/shop/deployments?")), "{log:?}");
    assert!(log.iter().any(|l| l.starts_with("DELETE /apis/apps/v1/namespaces/shop/deployments/api-green")), "{log:?}");
}

#[test]
fn kubernetes_blue_green_bake_failure_switches_back() {
    let f = Fixture::new("{ type = \"blue-green\", bake = \"2s\" }", true, 600);
    f.deploy("1.0.0").success();
    // 2.0.0 passes its gate on the preview, then fails during the bake after the switch.
    let watcher = std::thread::spawn({
        let state = std::sync::Arc::clone(&f.cluster.state);
        let healthy = std::sync::Arc::clone(&f.apps[&image("2.0.0")].healthy);
        move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let colour =
                    state.lock().unwrap().get("services", NS, "api").unwrap()["spec"]["selector"]["gantry.dev/colour"]
                        .clone();
                if colour == "blue" {
                    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let out = f.deploy("2.0.0").code(ROLLED_BACK);
    watcher.join().unwrap();
    let err = stderr(&out);
    assert!(err.contains("health check failed"), "{err}");
    assert!(err.contains("bake"), "{err}");
    assert_eq!(f.selector_colour(), "green", "switched back");
    assert!(f.cluster.get("deployments", NS, "api-blue").is_none(), "the new colour is deleted");
    assert_eq!(f.image_of("api-green"), image("1.0.0"));
    assert_eq!(f.served(), vec!["1.0.0"]);
    let log = f.cluster.log();
    let switches: Vec<_> = log.iter().filter(|l| l.starts_with("PATCH /api/v1/namespaces/shop/services/api")).collect();
    assert_eq!(switches.len(), 3, "green, blue, back to green: {log:?}");
}

#[test]
fn kubernetes_preflight_names_a_missing_deployment_or_container() {
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", false, 600);
    let toml = std::fs::read_to_string(f.dir.path().join("gantry.toml")).unwrap();
    let with = |from: &str, to: &str| write_tree(f.dir.path(), &[("gantry.toml", &toml.replace(from, to))]);
    f.gantry(&["package", "-q", "--version", "1.0.0"]).success();

    with("deployment = \"api\"", "deployment = \"apii\"");
    let err = stderr(&f.gantry(&["--env", "dev", "deploy", "--version", "1.0.0"]).code(1));
    assert!(err.contains("Deployment `apii` not found in namespace `shop`"), "{err}");
    assert!(err.contains("hint: check `deployment` and `namespace`"), "{err}");
    assert!(err.contains("kubectl --context emulator -n shop get deployments"), "{err}");

    with("container = \"api\"", "container = \"web\"");
    let err = stderr(&f.gantry(&["--env", "dev", "deploy", "--version", "1.0.0"]).code(1));
    assert!(err.contains("Deployment `api` in namespace `shop` has no container `web`"), "{err}");
    assert!(err.contains("`api`, `proxy`"), "{err}");

    with("namespace = \"shop\"", "namespace = \"shops\"");
    let err = stderr(&f.gantry(&["--env", "dev", "plan"]).code(1));
    assert!(err.contains("not found in namespace `shops`"), "{err}");

    with("context = \"emulator\"", "context = \"prod\"");
    let err = stderr(&f.gantry(&["--env", "dev", "plan"]).code(1));
    assert!(err.contains("cannot use the kubeconfig's context `prod`"), "{err}");
    assert!(err.contains("kubectl config get-contexts"), "{err}");

    // Nothing moved.
    assert_eq!(f.image_of("api"), image("0.9.0"));
    let writes: Vec<_> = f.cluster.log().into_iter().filter(|l| !l.starts_with("GET")).collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[test]
fn kubernetes_blue_green_needs_a_colour_in_the_selector() {
    let f = Fixture::new("{ type = \"blue-green\" }", false, 600);
    let err = stderr(&f.gantry(&["--env", "dev", "plan"]).code(1));
    assert!(err.contains("Service `api`'s selector has no `gantry.dev/colour`"), "{err}");
    assert!(err.contains("kubectl --context emulator -n shop patch service api"), "{err}");
}

#[test]
fn kubernetes_plan_says_what_each_strategy_does_on_the_cluster() {
    for (name, strategy, blue_green) in [
        ("kubernetes_plan_rolling", "{ type = \"rolling\", batch = 2 }", false),
        ("kubernetes_plan_blue_green", "{ type = \"blue-green\", bake = \"1m\" }", true),
    ] {
        let f = Fixture::new(strategy, blue_green, 120);
        f.gantry(&["package", "-q", "--version", "1.0.0"]).success();
        let out = f.gantry(&["--env", "dev", "--output", "json", "plan"]).success();
        let plan: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let target = &plan["targets"][0];
        let notes: Vec<String> = target["notes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().replace(&f.ingress.server.url(), "http://INGRESS"))
            .map(|n| {
                // ReplicaSet names carry the template hash.
                let re = n.find("`api-").map(|i| (i, n[i + 5..].find('`').unwrap_or(0)));
                match re {
                    Some((i, len)) if !blue_green => format!("{}`api-HASH`{}", &n[..i], &n[i + 6 + len..]),
                    _ => n,
                }
            })
            .collect();
        insta::assert_json_snapshot!(
            name,
            json!({ "strategy": target["strategy"], "steps": target["steps"], "live": target["live"], "notes": notes })
        );
        let writes: Vec<_> = f.cluster.log().into_iter().filter(|l| !l.starts_with("GET")).collect();
        assert!(writes.is_empty(), "plan changes nothing: {writes:?}");
    }
}

/// kubectl (or curl with the documented requests, where kubectl is missing) reads and
/// writes the emulator: its wire format is the API server's.
#[test]
fn kubernetes_emulator_speaks_the_api_servers_wire_format() {
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", false, 600);
    let kubeconfig = f.dir.path().join("kubeconfig");
    let kubectl = |args: &[&str]| {
        std::process::Command::new("kubectl")
            .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "-n", NS])
            .args(args)
            .output()
    };
    match kubectl(&["version", "--client"]) {
        Ok(out) if out.status.success() => {
            let get = kubectl(&["get", "deployment", "api", "-o", "json"]).unwrap();
            assert!(get.status.success(), "{}", String::from_utf8_lossy(&get.stderr));
            let d: Value = serde_json::from_slice(&get.stdout).unwrap();
            assert_eq!(d["status"]["availableReplicas"], 3);
            let set = kubectl(&["set", "image", "deployment/api", &format!("api={}", image("1.0.0"))]).unwrap();
            assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
            // (`rollout status` watches, which the emulator does not serve: read the status instead.)
            f.cluster.wait_until("1.0.0 rolled out", |s| {
                let d = s.get("deployments", NS, "api").unwrap();
                d["status"]["observedGeneration"] == d["metadata"]["generation"]
                    && d["status"]["updatedReplicas"] == 3
                    && d["status"]["availableReplicas"] == 3
                    && d["status"]["replicas"] == 3
            });
            let get = kubectl(&["get", "deployment", "api", "-o", "json"]).unwrap();
            let d: Value = serde_json::from_slice(&get.stdout).unwrap();
            assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
            let progressing =
                d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing").unwrap();
            assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
            let undo = kubectl(&["rollout", "undo", "deployment/api"]).unwrap();
            assert!(undo.status.success(), "{}", String::from_utf8_lossy(&undo.stderr));
            f.cluster.wait_until("0.9.0 is back", |s| {
                s.get("deployments", NS, "api").unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
                    == image("0.9.0").as_str()
            });
            let missing = kubectl(&["get", "deployment", "nope", "-o", "json"]).unwrap();
            let text = String::from_utf8_lossy(&missing.stderr);
            assert!(text.contains("deployments.apps \"nope\" not found"), "{text}");
        }
        _ => {
            let curl = |args: &[&str]| {
                let out = std::process::Command::new("curl")
                    .args(["-s", "-w", "\n%{http_code}"])
                    .args(args)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let (body, code) = text.rsplit_once('\n').unwrap();
                (code.to_owned(), serde_json::from_str::<Value>(body).unwrap_or(Value::Null))
            };
            let url = format!("{}/apis/apps/v1/namespaces/{NS}/deployments/api", f.cluster.url());
            let (code, d) = curl(&[&url]);
            assert_eq!((code.as_str(), d["kind"].clone()), ("200", json!("Deployment")));
            let rv = d["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
            let patch = format!(
                "{{\"spec\":{{\"template\":{{\"spec\":{{\"containers\":[{{\"name\":\"api\",\"image\":\"{}\"}}]}}}}}}}}",
                image("1.0.0")
            );
            let (code, d) = curl(&[
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/strategic-merge-patch+json",
                "-d",
                &patch,
                &url,
            ]);
            assert_eq!(code, "200");
            assert_eq!(d["spec"]["template"]["spec"]["containers"][1]["name"], "proxy");
            let mut stale = d.clone();
            stale["metadata"]["resourceVersion"] = json!(rv);
            let (code, status) =
                curl(&["-X", "PUT", "-H", "Content-Type: application/json", "-d", &stale.to_string(), &url]);
            assert_eq!(
                (code.as_str(), status["reason"].clone(), status["kind"].clone()),
                ("409", json!("Conflict"), json!("Status"))
            );
            let (code, status) = curl(&[&format!("{url}x")]);
            assert_eq!((code.as_str(), status["reason"].clone()), ("404", json!("NotFound")));
        }
    }
}

/// Without `image_ref`, the release's image is the version tag's digest in ECR (moto), as
/// the `ecs` kind pins it; a version not pushed stops the deploy before anything moves.
#[test]
fn kubernetes_pins_the_image_by_digest_from_ecr() {
    let repo = crate::services::unique("kube-api");
    crate::stand_in::aws(&["ecr", "create-repository", "--repository-name", &repo]);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "size": 5,
                    "digest": format!("sha256:{}", "1".repeat(64)) },
        // moto derives the digest from the layers.
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1,
                     "digest": format!("sha256:{}", "f1".repeat(32)) }],
    });
    let put = crate::stand_in::aws(&[
        "ecr",
        "put-image",
        "--repository-name",
        &repo,
        "--image-tag",
        "1.0.0",
        "--image-manifest",
        &manifest.to_string(),
    ]);
    let digest = put["image"]["imageId"]["imageDigest"].as_str().unwrap().to_owned();
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", false, 600);
    let pinned = format!("registry.example/{repo}@{digest}");
    f.ingress.apps.lock().unwrap().insert(pinned.clone(), f.apps[&image("1.0.0")].server.url());
    let toml = std::fs::read_to_string(f.dir.path().join("gantry.toml")).unwrap();
    let toml = toml
        .replace(&format!("image_ref = \"{REGISTRY}:{{version}}\"\n"), "")
        .replace("repository = \"api\"", &format!("repository = \"{repo}\""))
        .replace(
            "[environments.dev]\n",
            "[environments.dev]\nregion = \"us-east-1\"\nregistry = \"registry.example\"\n",
        );
    write_tree(f.dir.path(), &[("gantry.toml", &toml)]);
    let env = crate::services::aws_env(crate::services::services());
    let run = |args: &[&str]| {
        gantry(f.dir.path())
            .env("KUBECONFIG", f.dir.path().join("kubeconfig"))
            .env("HOME", f.dir.path())
            .envs(env.clone())
            .args(args)
            .assert()
    };
    run(&["package", "-q", "--version", "1.0.0"]).success();
    run(&["--env", "dev", "deploy", "--version", "1.0.0"]).success();
    assert_eq!(f.image_of("api"), pinned);
    assert_eq!(f.served(), vec!["1.0.0"]);

    run(&["package", "-q", "--version", "2.0.0"]).success();
    let err = stderr(&run(&["--env", "dev", "deploy", "--version", "2.0.0"]).code(1));
    assert!(err.contains(&format!("tag `2.0.0` is not in ECR repository `{repo}`")), "{err}");
    assert!(err.contains("gantry image push"), "{err}");
    assert_eq!(f.image_of("api"), pinned, "nothing moved");
}
