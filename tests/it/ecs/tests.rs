//! The `ecs` target through the real binary: `gantry deploy` and `gantry plan` in a temp
//! project, ECS in the emulator (see `mod.rs` for why), ELBv2 and ECR in moto, and health
//! gates on HTTP servers the tests start and turn unhealthy when a case needs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use super::Emulator;
use crate::services::{aws_env, services, unique};
use crate::support::gantry;

/// An HTTP server answering `/healthz` with 200 while `healthy`, else 503.
struct Health {
    port: u16,
    healthy: Arc<AtomicBool>,
}

impl Health {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&healthy);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let (status, body) =
                    if flag.load(Ordering::SeqCst) { ("200 OK", "ok") } else { ("503 Service Unavailable", "down") };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, healthy }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
}

/// A project with one `ecs` target, its ECS resources in a fresh emulator and its ALB and
/// ECR repository in moto.
struct Fixture {
    emu: Emulator,
    aws: Value,
    dir: tempfile::TempDir,
    prod: Health,
    test: Health,
    cluster: String,
}

impl Fixture {
    /// `strategy` is the TOML strategy table, `ecs_extra` more keys of the `ecs` table.
    fn new(strategy: &str, ecs_extra: &str, breaker: bool) -> Self {
        let s = services();
        let prefix = unique("ecs");
        let out = Command::new(Path::new(&s.aws_cli).with_file_name("python"))
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures/ecs/aws_setup.py"))
            .args([&s.moto, &prefix, "1", "1.0.0", "1.1.0", "1.2.0"])
            .output()
            .unwrap();
        assert!(out.status.success(), "aws_setup.py: {}", String::from_utf8_lossy(&out.stderr));
        let aws: Value = serde_json::from_slice(&out.stdout).unwrap();
        let emu = Emulator::start();
        let cluster = format!("{prefix}-cluster");
        let bootstrap = format!("{}:bootstrap", aws["repository_uri"].as_str().unwrap());
        let td = emu.setup_family(&cluster, &bootstrap);
        emu.create_service(&cluster, "api", &td, aws["blue"].as_str(), breaker);
        let (prod, test) = (Health::start(), Health::start());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/main.py"), "print('api')\n").unwrap();
        let alb = format!(
            "listener_arn = \"{}\"\ntest_listener_arn = \"{}\"\nblue_target_group_arn = \"{}\"\ngreen_target_group_arn = \"{}\"\n",
            aws["listener"].as_str().unwrap(),
            aws["test_listener"].as_str().unwrap(),
            aws["blue"].as_str().unwrap(),
            aws["green"].as_str().unwrap()
        );
        let config = format!(
            "[project]\nname = \"api\"\n\n[artifacts.app]\nroot = \"app\"\n\n\
             [images.api]\nrepository = \"{repo}\"\ninputs = [\"app/**\"]\noci_layout = \"oci\"\n\n\
             [targets.api]\nkind = \"ecs\"\nstrategy = {strategy}\n\n[targets.api.ecs]\n\
             cluster = \"{cluster}\"\nservice = \"api\"\ncontainer = \"api\"\nimage = \"api\"\n\
             poll_interval = \"50ms\"\nurl = \"{prod}\"\ntest_url = \"{test}\"\n{alb}{ecs_extra}\n\n\
             [[targets.api.health]]\nurl = \"{{url}}/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\n\
             healthy_threshold = 2\nunhealthy_threshold = 2\n\n\
             [environments.dev]\nregion = \"us-east-1\"\ntargets = [\"api\"]\n",
            repo = aws["repository"].as_str().unwrap(),
            prod = prod.url(),
            test = test.url(),
        );
        std::fs::write(dir.path().join("gantry.toml"), config).unwrap();
        Self { emu, aws, dir, prod, test, cluster }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = aws_env(services());
        env.push(("AWS_ENDPOINT_URL_ECS", self.emu.url.clone()));
        env
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        gantry(self.dir.path()).envs(self.env()).args(args).assert()
    }

    fn package(&self, version: &str) {
        self.gantry(&["package", "-q", "--version", version]).success();
    }

    fn deploy(&self, version: &str) -> assert_cmd::assert::Assert {
        self.package(version);
        self.gantry(&["--env", "dev", "deploy", "--version", version])
    }

    fn digest(&self, version: &str) -> String {
        self.aws["digests"][version].as_str().unwrap().to_owned()
    }

    /// The image the service's current task definition runs.
    fn image_of(&self, service: &str) -> String {
        let state = self.emu.state();
        let td = state.task_definition(&state.service(service).unwrap().task_definition).unwrap();
        td["containerDefinitions"][0]["image"].as_str().unwrap().to_owned()
    }

    fn expect_image(&self, service: &str, version: &str) {
        let want = format!("{}@{}", self.aws["repository_uri"].as_str().unwrap(), self.digest(version));
        assert_eq!(self.image_of(service), want, "service `{service}` should run {version}");
    }

    fn desired(&self, service: &str) -> i64 {
        self.emu.state().service(service).unwrap().desired
    }

    fn tags(&self, service: &str) -> Vec<String> {
        self.emu.state().service(service).unwrap().tags.keys().cloned().collect()
    }

    /// The production listener's weights as moto reports them, read with the AWS CLI:
    /// `[blue, green]`.
    fn weights(&self) -> [i64; 2] {
        let listener = self.aws["listener"].as_str().unwrap();
        let v = aws_cli(&["elbv2", "describe-listeners", "--listener-arns", listener]);
        let groups = &v["Listeners"][0]["DefaultActions"][0]["ForwardConfig"]["TargetGroups"];
        let weight = |colour: &str| {
            groups
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["TargetGroupArn"] == self.aws[colour])
                .map_or(0, |g| g["Weight"].as_i64().unwrap())
        };
        [weight("blue"), weight("green")]
    }

    /// The production listener's weights `[blue, green]`, read at once with the SDK.
    fn weights_now(&self) -> [i64; 2] {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = self.aws["listener"].as_str().unwrap();
        let out = runtime.block_on(async {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            for (k, v) in aws_env(services()) {
                if k == "AWS_ENDPOINT_URL" {
                    loader = loader.endpoint_url(v);
                }
            }
            let creds =
                aws_sdk_elasticloadbalancingv2::config::Credentials::new("testing", "testing", None, None, "test");
            let sdk = loader.region(aws_config::Region::new("us-east-1")).credentials_provider(creds).load().await;
            aws_sdk_elasticloadbalancingv2::Client::new(&sdk).describe_listeners().listener_arns(listener).send().await
        });
        let out = out.unwrap();
        let action = &out.listeners()[0].default_actions()[0];
        let groups = action.forward_config().unwrap().target_groups();
        let weight = |colour: &str| {
            groups
                .iter()
                .find(|g| g.target_group_arn() == self.aws[colour].as_str())
                .map_or(0, |g| i64::from(g.weight().unwrap_or(0)))
        };
        [weight("blue"), weight("green")]
    }

    /// The `/api/*` rule's weights `[blue, green]`, read with the AWS CLI.
    fn rule_weights(&self) -> [i64; 2] {
        let v = aws_cli(&["elbv2", "describe-rules", "--rule-arns", self.aws["rule"].as_str().unwrap()]);
        let groups = &v["Rules"][0]["Actions"][0]["ForwardConfig"]["TargetGroups"];
        let weight = |colour: &str| {
            groups
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["TargetGroupArn"] == self.aws[colour])
                .map_or(0, |g| g["Weight"].as_i64().unwrap())
        };
        [weight("blue"), weight("green")]
    }

    fn test_listener_target(&self) -> String {
        let v =
            aws_cli(&["elbv2", "describe-listeners", "--listener-arns", self.aws["test_listener"].as_str().unwrap()]);
        let groups = &v["Listeners"][0]["DefaultActions"][0]["ForwardConfig"]["TargetGroups"];
        let colour = if groups[0]["TargetGroupArn"] == self.aws["blue"] { "blue" } else { "green" };
        colour.to_owned()
    }

    fn requests(&self) -> Vec<String> {
        self.emu.state().requests.clone()
    }

    /// Plan output with the run's random names and digests replaced.
    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (key, name) in [("blue", "[blue-tg]"), ("green", "[green-tg]"), ("repository_uri", "[repo]")] {
            text = text.replace(self.aws[key].as_str().unwrap(), name);
        }
        for v in ["1.0.0", "1.1.0", "1.2.0"] {
            text = text.replace(&self.digest(v), &format!("[digest {v}]"));
        }
        let short = |arn: &str| arn.split_once(":targetgroup/").unwrap().1.split('/').next().unwrap().to_owned();
        text = text.replace(&short(self.aws["blue"].as_str().unwrap()), "[blue-tg]");
        text = text.replace(&short(self.aws["green"].as_str().unwrap()), "[green-tg]");
        text = text.replace(&self.cluster, "[cluster]");
        text = text.replace(self.dir.path().to_str().unwrap(), "[project]");
        text = text.replace(&self.test.url(), "[test-url]").replace(&self.prod.url(), "[url]");
        // Release digests (sha256 of release.json) carry the packaging time.
        let re_digest = |t: &str| {
            t.split(' ')
                .map(|w| {
                    if w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()) {
                        "[release]".to_owned()
                    } else {
                        w.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        text.lines()
            .map(|l| {
                if l.trim_start().starts_with("ledger: 1.") {
                    "  ledger: [deployed at, by]".to_owned()
                } else {
                    re_digest(l)
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn aws_cli(args: &[&str]) -> Value {
    let s = services();
    let out = Command::new(&s.aws_cli)
        .args(["--endpoint-url", &s.moto, "--output", "json"])
        .args(args)
        .envs(aws_env(s))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn code(a: &assert_cmd::assert::Assert) -> i32 {
    a.get_output().status.code().unwrap_or(-1)
}

#[test]
fn rolling_follows_the_deployment_and_fails_when_the_circuit_breaker_rolls_back() {
    let f = Fixture::new("{ type = \"rolling\", batch = \"50%\" }", "", true);
    let first = f.deploy("1.0.0");
    let err = stderr(&first);
    assert_eq!(code(&first), 0, "{err}");
    f.expect_image("api", "1.0.0");
    assert!(err.contains("has reached a steady state"), "service events are reported:\n{err}");
    assert!(f.tags("api").is_empty(), "no gantry tag is left: {:?}", f.tags("api"));
    {
        let state = f.emu.state();
        let svc = state.service("api").unwrap();
        assert_eq!(svc.spec["deploymentConfiguration"]["maximumPercent"], 150, "the batch share is ECS's surge");
        let td = state.task_definition(&svc.task_definition).unwrap();
        let c = &td["containerDefinitions"][0];
        assert_eq!(c["dockerLabels"]["gantry.version"], "1.0.0");
        assert_eq!(c["secrets"][0]["name"], "DATABASE_URL", "the rest of the live revision is copied");
        assert_eq!(td["executionRoleArn"], "arn:aws:iam::123456789012:role/api-exec");
    }

    // 1.1.0's tasks exit at once: the circuit breaker fails the deployment and ECS rolls back.
    let bad = format!("{}@{}", f.aws["repository_uri"].as_str().unwrap(), f.digest("1.1.0"));
    f.emu.state().failing_images.insert(bad);
    let second = f.deploy("1.1.0");
    let err = stderr(&second);
    assert_eq!(code(&second), 3, "rolled back:\n{err}");
    assert!(err.contains("deployment circuit breaker"), "{err}");
    assert!(err.contains("Essential container in task exited") && err.contains("exit code 1"), "stopped tasks:\n{err}");
    assert!(err.contains("rolling back to deployment"), "the service's own events:\n{err}");
    f.expect_image("api", "1.0.0");
    let state = f.emu.state();
    let svc = state.service("api").unwrap();
    assert_eq!(svc.deployments.len(), 1);
    assert_eq!((svc.deployments[0].status.as_str(), svc.deployments[0].rollout.as_str()), ("PRIMARY", "COMPLETED"));
    assert!(svc.tags.is_empty());
}

#[test]
fn a_deployment_ecs_abandons_is_not_taken_for_a_deploy() {
    // No circuit breaker: the deployment would run forever; the service is then updated
    // behind gantry's back, as ECS does when it rolls back by itself.
    let f = Fixture::new("{ type = \"rolling\", batch = 1, phase_deadline = \"20s\" }", "", false);
    assert_eq!(code(&f.deploy("1.0.0")), 0);
    let bad = format!("{}@{}", f.aws["repository_uri"].as_str().unwrap(), f.digest("1.1.0"));
    f.emu.state().failing_images.insert(bad);
    f.package("1.1.0");
    let child = gantry_child(&f, &["--env", "dev", "deploy", "--version", "1.1.0"]);
    // Once the new deployment exists, someone (ECS) puts the old revision back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let previous = {
            let state = f.emu.state();
            let svc = state.service("api").unwrap();
            (svc.deployments.len() == 2).then(|| svc.deployments[1].task_definition.clone())
        };
        if let Some(td) = previous {
            let cluster = f.cluster.clone();
            f.emu.call("UpdateService", json!({"cluster": cluster, "service": "api", "taskDefinition": td}));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no deployment started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("no longer deploys") && err.contains("PRIMARY deployment runs"), "{err}");
    f.expect_image("api", "1.0.0");
}

fn gantry_child(f: &Fixture, args: &[&str]) -> std::process::Child {
    gantry_child_with(f, args, &[])
}

fn gantry_child_with(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let bin = assert_cmd::cargo::cargo_bin("gantry");
    let mut cmd = Command::new(bin);
    cmd.current_dir(f.dir.path()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("GANTRY_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(f.env()).envs(env.iter().copied());
    cmd.spawn().unwrap()
}

#[test]
fn the_run_before_task_runs_once_on_the_new_revision_and_a_failure_stops_the_cutover() {
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", "run_before = [\"migrate\", \"up\"]\n", true);
    let first = f.deploy("1.0.0");
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    {
        let state = f.emu.state();
        assert_eq!(state.tasks.len(), 1, "exactly one one-off task");
        let task = &state.tasks[0];
        assert_eq!(task["overrides"]["containerOverrides"][0]["command"], json!(["migrate", "up"]));
        assert_eq!(task["taskDefinitionArn"], json!(state.service("api").unwrap().task_definition));
        assert_eq!(task["networkConfiguration"]["awsvpcConfiguration"]["subnets"], json!(["subnet-1", "subnet-2"]));
        let order: Vec<&str> =
            state.requests.iter().map(String::as_str).filter(|r| *r == "RunTask" || *r == "UpdateService").collect();
        assert_eq!(order, ["RunTask", "UpdateService"], "the task runs before the cutover");
    }
    f.emu.state().run_task_exit.insert("migrate".into(), 1);
    let updates_before = f.requests().iter().filter(|r| *r == "UpdateService").count();
    let second = f.deploy("1.1.0");
    let err = stderr(&second);
    assert_eq!(code(&second), 3, "{err}");
    assert!(err.contains("the one-off task") && err.contains("migrate up"), "{err}");
    assert!(err.contains("Essential container in task exited") && err.contains("exit code 1"), "{err}");
    assert_eq!(f.requests().iter().filter(|r| *r == "UpdateService").count(), updates_before, "no cutover started");
    f.expect_image("api", "1.0.0");
}

#[test]
fn a_one_off_task_that_never_stops_fails_at_its_deadline_before_the_cutover() {
    let f =
        Fixture::new("{ type = \"blue-green\" }", "run_before = [\"migrate\"]\nrun_before_timeout = \"1s\"\n", true);
    f.emu.state().hanging.insert("migrate".into());
    let out = f.deploy("1.0.0");
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert!(err.contains("(`migrate`) did not stop within 1s; gantry stopped it"), "{err}");
    assert_eq!(f.emu.state().tasks[0]["stoppedReason"], "gantry: run_before_timeout passed");
    assert!(f.requests().iter().all(|r| r != "UpdateService"), "no task of the new version started");
    assert_eq!(f.weights(), [100, 0]);
    assert!(f.tags("api-green").is_empty(), "the new side is no longer marked");
}

#[test]
fn blue_green_swaps_sides_every_deploy_and_drains_the_old_side() {
    let f = Fixture::new("{ type = \"blue-green\" }", "", true);
    assert_eq!(f.weights(), [100, 0]);
    f.package("1.0.0");
    let first = f.gantry(&["--env", "dev", "--output", "json", "deploy", "--version", "1.0.0"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    // green (created by gantry on the green target group) takes all traffic, through the
    // default action and the path rule alike; blue is drained.
    assert_eq!(f.weights(), [0, 100]);
    assert_eq!(f.rule_weights(), [0, 100]);
    f.expect_image("api-green", "1.0.0");
    assert_eq!((f.desired("api-green"), f.desired("api")), (2, 0));
    assert_eq!(f.test_listener_target(), "green");
    assert!(f.tags("api-green").is_empty());
    let events: Vec<Value> = String::from_utf8_lossy(&first.get_output().stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // The old side is scaled down no sooner than the target group's 1 s deregistration delay
    // after its weight went to 0.
    let time = |pred: &dyn Fn(&Value) -> bool| -> jiff::Timestamp {
        let e = events.iter().find(|e| pred(e)).unwrap();
        e["time"].as_str().unwrap().parse().unwrap()
    };
    let switched = time(&|e| e["event"] == "traffic" && e["new_weight"] == 100);
    let scale_down = f.requests().iter().filter(|r| *r == "UpdateService").count();
    assert_eq!(scale_down, 2, "the green deployment, then blue's scale-down");
    let scaled =
        time(&|e| e["event"] == "progress" && e["message"].as_str().unwrap().contains("api: scaled down to 0"));
    assert!(scaled.duration_since(switched).as_secs_f64() >= 1.0, "drained from {switched} to {scaled}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "progress" && e["message"].as_str().unwrap().contains("deregistration delay")),
        "the drain is reported"
    );

    // The next release goes to the idle side (blue), and green is drained.
    let second = f.deploy("1.1.0");
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert_eq!(f.weights(), [100, 0]);
    assert_eq!(f.rule_weights(), [100, 0]);
    f.expect_image("api", "1.1.0");
    f.expect_image("api-green", "1.0.0");
    assert_eq!((f.desired("api"), f.desired("api-green")), (2, 0));
    assert_eq!(f.test_listener_target(), "blue");
}

#[test]
fn a_green_that_never_gets_healthy_takes_no_user_traffic() {
    let f = Fixture::new("{ type = \"blue-green\" }", "", true);
    assert_eq!(code(&f.deploy("1.0.0")), 0);
    f.test.set(false);
    let modifies_before = f.weights();
    let out = f.deploy("1.1.0");
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert!(err.contains("health check failed"), "{err}");
    assert_eq!(f.weights(), modifies_before, "production weights never moved");
    assert_eq!(f.weights(), [0, 100]);
    assert_eq!(f.desired("api"), 0, "the new side is scaled down again");
    assert!(f.tags("api").is_empty(), "and no longer marked new");
    f.expect_image("api-green", "1.0.0");
}

#[test]
fn a_canary_failing_at_its_second_step_goes_back_at_once() {
    let f = Fixture::new("{ type = \"canary\", steps = [10, 50, 100], bake = \"3s\" }", "", true);
    assert_eq!(code(&f.deploy("1.0.0")), 0);
    assert_eq!(f.weights(), [0, 100]);
    f.package("1.1.0");
    let mut child = gantry_child(&f, &["--env", "dev", "--output", "json", "deploy", "--version", "1.1.0"]);
    let stdout = child.stdout.take().unwrap();
    let mut weights_seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "traffic" {
            let w = event["new_weight"].as_u64().unwrap();
            weights_seen.push(w);
            if w == 50 {
                // moto holds the step-2 weights while the step bakes (read with the SDK: the
                // AWS CLI's start-up can outlast a 3 s bake on a busy machine); then the new
                // version breaks under half the traffic.
                assert_eq!(f.weights_now(), [50, 50], "blue (new) and green (live) share the traffic");
                f.test.set(false);
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(weights_seen, [10, 50]);
    assert_eq!(f.weights(), [0, 100], "all traffic back on green");
    assert_eq!(f.rule_weights(), [0, 100], "on the path rule too");
    assert_eq!(f.desired("api"), 0);
    assert!(f.prod.healthy.load(Ordering::SeqCst));
}

#[test]
fn plan_shows_the_mapping_and_the_task_definition_diff_and_changes_nothing() {
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", "run_before = [\"migrate\", \"up\"]\n", true);
    assert_eq!(code(&f.deploy("1.0.0")), 0);
    // The next release also declares a changed environment variable and CPU.
    let toml = std::fs::read_to_string(f.dir.path().join("gantry.toml")).unwrap();
    let toml = toml.replace(
        "run_before =",
        "cpu = \"1024\"\nenvironment = { API_PORT = \"9090\", MODE = \"strict\" }\nrun_before =",
    );
    std::fs::write(f.dir.path().join("gantry.toml"), toml).unwrap();
    f.package("1.1.0");
    let before = f.requests().len();
    let out = f.gantry(&["--env", "dev", "plan"]).success();
    let mutating =
        ["RegisterTaskDefinition", "UpdateService", "RunTask", "TagResource", "UntagResource", "CreateService"];
    assert!(f.requests()[before..].iter().all(|r| !mutating.contains(&r.as_str())), "{:?}", &f.requests()[before..]);
    insta::assert_snapshot!("ecs_plan_rolling", f.redact(&String::from_utf8_lossy(&out.get_output().stdout)));

    let g = Fixture::new("{ type = \"canary\", steps = [10, 100], bake = \"1s\" }", "", true);
    g.package("1.0.0");
    let out = g.gantry(&["--env", "dev", "plan"]).success();
    insta::assert_snapshot!("ecs_plan_canary", g.redact(&String::from_utf8_lossy(&out.get_output().stdout)));
}

#[test]
fn bad_input_is_named_with_a_hint_and_changes_nothing() {
    let f = Fixture::new("{ type = \"blue-green\" }", "", true);
    let toml = std::fs::read_to_string(f.dir.path().join("gantry.toml")).unwrap();
    let with = |from: &str, to: &str| std::fs::write(f.dir.path().join("gantry.toml"), toml.replace(from, to)).unwrap();
    let mutating = ["RegisterTaskDefinition", "UpdateService", "RunTask", "TagResource", "CreateService"];
    let check = |args: &[&str], expect: &[&str], exit: i32| {
        let before = f.requests().len();
        let out = f.gantry(args);
        let err = stderr(&out);
        assert_eq!(code(&out), exit, "{args:?}:\n{err}");
        for e in expect {
            assert!(err.contains(e), "{args:?} should say `{e}`:\n{err}");
        }
        assert!(err.contains("hint:"), "{err}");
        assert!(f.requests()[before..].iter().all(|r| !mutating.contains(&r.as_str())), "{args:?} changed ECS");
        assert_eq!(f.weights(), [100, 0]);
    };
    f.package("1.0.0");
    let plan: &[&str] = &["--env", "dev", "plan"];
    let deploy: &[&str] = &["--env", "dev", "deploy", "--version", "1.0.0"];

    with("service = \"api\"", "service = \"nope\"");
    check(plan, &["ECS service `nope` does not exist in cluster"], 1);
    check(deploy, &["ECS service `nope` does not exist in cluster"], 1);
    with(&format!("cluster = \"{}\"", f.cluster), "cluster = \"missing\"");
    check(plan, &["ClusterNotFoundException"], 1);
    let stray = f.aws["stray_listener"].as_str().unwrap();
    with(f.aws["listener"].as_str().unwrap(), stray);
    check(plan, &["is not set up for blue-green", "nor any rule forwards to the blue or the green target group"], 1);
    check(deploy, &["is not set up for blue-green"], 1);
    with("1.0.0", "1.0.0");
    // A release whose image was never pushed.
    f.package("9.9.9");
    check(plan, &["tag `9.9.9` is not in ECR repository"], 1);
    check(&["--env", "dev", "deploy", "--version", "9.9.9"], &["tag `9.9.9` is not in ECR repository"], 1);
    f.emu.state().deny.insert("DescribeServices".into());
    check(deploy, &["AccessDeniedException", "not authorized to perform: ecs:DescribeServices", "grant it"], 1);
}

#[test]
fn the_emulator_speaks_the_ecs_wire_format() {
    let emu = Emulator::start();
    let td = emu.setup_family("wire", "repo:1");
    emu.create_service("wire", "api", &td, None, true);
    let s = services();
    let out = Command::new(&s.aws_cli)
        .args(["--endpoint-url", &emu.url, "--output", "json", "ecs", "describe-services", "--cluster", "wire"])
        .args(["--services", "api", "nope", "--include", "TAGS"])
        .envs(aws_env(s))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["services"][0]["deployments"][0]["rolloutState"], "COMPLETED");
    assert_eq!(v["services"][0]["taskDefinition"], td.as_str());
    assert_eq!(v["failures"][0]["reason"], "MISSING");
    let out = Command::new(&s.aws_cli)
        .args(["--endpoint-url", &emu.url, "ecs", "describe-services", "--cluster", "gone", "--services", "api"])
        .envs(aws_env(s))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("ClusterNotFoundException"));
}

#[test]
fn rolling_goes_back_to_the_previous_revision_when_a_gate_fails_after_ecs_finished() {
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", "", true);
    assert_eq!(code(&f.deploy("1.0.0")), 0);
    let live_td = f.emu.state().service("api").unwrap().task_definition.clone();
    // ECS finishes the deployment, but the service answers 503 through the load balancer
    // until gate-new has failed (then the old revision is back and healthy).
    f.prod.set(false);
    f.package("1.1.0");
    let mut child = gantry_child(&f, &["--env", "dev", "--output", "json", "deploy", "--version", "1.1.0"]);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "phase-finished" && event["phase"] == "gate-new" {
            assert_eq!(event["ok"], false, "{event}");
            f.prod.set(true);
        }
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("health check failed"), "{err}");
    let state = f.emu.state();
    let svc = state.service("api").unwrap();
    assert_eq!(svc.task_definition, live_td, "the previous revision runs again");
    assert_eq!(svc.deployments.len(), 1);
    assert_eq!(svc.deployments[0].rollout, "COMPLETED");
    assert!(svc.tags.is_empty());
    let updates = state.requests.iter().filter(|r| *r == "UpdateService").count();
    assert_eq!(updates, 3, "1.0.0, 1.1.0, and back");
}

#[test]
fn after_a_kill_9_mid_canary_the_next_command_puts_the_weights_back() {
    let f = Fixture::new("{ type = \"canary\", steps = [10, 100], bake = \"200ms\" }", "", true);
    assert_eq!(code(&f.deploy("1.0.0")), 0);
    assert_eq!(f.weights(), [0, 100]);
    f.package("1.1.0");
    let args = ["--env", "dev", "--output", "json", "deploy", "--version", "1.1.0"];
    let mut child = gantry_child_with(&f, &args, &[("GANTRY_TARGETS__API__STRATEGY__BAKE", "60s")]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("deploy ended before baking").unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "phase-started" && event["phase"] == "bake" {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(f.weights(), [10, 90], "the dead process left blue (new) at 10%");
    assert_eq!(f.tags("api"), ["gantry:role"]);

    // A new process knows nothing but what ECS and the listener say, and converges.
    let status = f.gantry(&["--env", "dev", "status"]).success();
    let err = stderr(&status);
    assert!(err.contains("left unfinished at phase `bake`: roll back"), "{err}");
    assert_eq!(f.weights(), [0, 100]);
    assert_eq!(f.desired("api"), 0);
    assert!(f.tags("api").is_empty());
    f.expect_image("api-green", "1.0.0");
    // And the environment deploys again normally.
    let again = f.gantry(&["--env", "dev", "deploy", "--version", "1.1.0"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(f.weights(), [100, 0]);
    f.expect_image("api", "1.1.0");
}

#[test]
fn a_permission_missing_mid_deploy_is_named_and_nothing_stays_changed() {
    let f = Fixture::new("{ type = \"rolling\", batch = 1 }", "", true);
    assert_eq!(code(&f.deploy("1.0.0")), 0);
    let live_td = f.emu.state().service("api").unwrap().task_definition.clone();
    // The deploy role may read and register, but not update the service.
    f.emu.state().deny.insert("UpdateService".into());
    let out = f.deploy("1.1.0");
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert!(err.contains("cannot update ECS service `api`: AccessDeniedException"), "{err}");
    assert!(err.contains("not authorized to perform: ecs:UpdateService"), "{err}");
    let state = f.emu.state();
    let svc = state.service("api").unwrap();
    assert_eq!(svc.task_definition, live_td);
    assert!(svc.tags.is_empty(), "the rollback dropped gantry's tags: {:?}", svc.tags);
}
