//! `gantry pipeline`, `approve`/`reject` and the production gate, against the CodePipeline
//! emulator in `codepipeline/` (and moto for STS and S3).

use crate::codepipeline::{Emulator, PipelineSpec};
use crate::services::{services, unique};

fn spec<'a>(name: &'a str, approval: bool) -> PipelineSpec<'a> {
    PipelineSpec { name, bucket: "releases", key: "releases/hello/pipeline-source.zip", approval, project: "deployer" }
}

/// The AWS CLI (botocore: an independent implementation of the protocol) reads the
/// emulator: its wire format is the API reference's, not only consistent with gantry.
#[test]
fn the_aws_cli_reads_the_emulator() {
    let emu = Emulator::start();
    let name = unique("cli");
    emu.create_standard(&spec(&name, true));
    let id = emu.trigger(&name, [("version".to_owned(), "1.2.3".to_owned())].into());
    emu.wait_until("approval waits", |s| s.execution(&name, &id).is_some_and(|e| e.actions[1].run.is_some()));
    let s = services();
    let aws = |args: &[&str]| {
        let out = std::process::Command::new(&s.aws_cli)
            .args(args)
            .args(["--endpoint-url", &emu.url, "--output", "json"])
            .envs(crate::services::aws_env(s))
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .expect("aws runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = aws(&["codepipeline", "get-pipeline-state", "--name", &name]);
    assert_eq!(code, Some(0), "{err}");
    let state: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stages = state["stageStates"].as_array().unwrap();
    assert_eq!(
        stages.iter().map(|s| s["stageName"].as_str().unwrap()).collect::<Vec<_>>(),
        ["Source", "Approval", "Deploy"]
    );
    assert_eq!(stages[0]["latestExecution"]["status"], "Succeeded");
    let approval = &stages[1]["actionStates"][0]["latestExecution"];
    assert_eq!(approval["status"], "InProgress");
    let token = approval["token"].as_str().expect("a token while the approval waits").to_owned();
    assert_eq!(stages[1]["latestExecution"]["pipelineExecutionId"], id.as_str());

    let (code, _, err) = aws(&["codepipeline", "get-pipeline-state", "--name", "nope"]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("PipelineNotFoundException"), "{err}");

    let result = "summary=ok,status=Approved";
    let (code, out, err) = aws(&[
        "codepipeline",
        "put-approval-result",
        "--pipeline-name",
        &name,
        "--stage-name",
        "Approval",
        "--action-name",
        "Approve",
        "--result",
        result,
        "--token",
        &token,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("approvedAt"), "{out}");
    emu.wait_until("execution succeeds", |s| s.execution(&name, &id).is_some_and(|e| e.status == "Succeeded"));
    let (code, out, err) = aws(&[
        "codepipeline",
        "list-action-executions",
        "--pipeline-name",
        &name,
        "--filter",
        &format!("pipelineExecutionId={id}"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let details: serde_json::Value = serde_json::from_str(&out).unwrap();
    let statuses: Vec<_> = details["actionExecutionDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["Succeeded", "Succeeded", "Succeeded"]);
    let (code, out, _) =
        aws(&["codepipeline", "get-pipeline-execution", "--pipeline-name", &name, "--pipeline-execution-id", &id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"Succeeded\"") && out.contains("1.2.3"), "{out}");
}

/// A project whose `stg` (no approval) and `prd` (approval required) environments use
/// pipelines on their own emulator.
struct Project {
    dir: tempfile::TempDir,
    emu: Emulator,
    prd: String,
    stg: String,
}

impl Project {
    fn new() -> Self {
        let emu = Emulator::start();
        let (prd, stg) = (unique("prd"), unique("stg"));
        emu.create_standard(&spec(&prd, true));
        emu.create_standard(&spec(&stg, false));
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[project]\nname = \"hello\"\n\n[environments.stg]\nregion = \"us-east-1\"\npipeline = \"{stg}\"\n\n\
             [environments.prd]\nregion = \"us-east-1\"\npipeline = \"{prd}\"\napproval = \"required\"\n"
        );
        std::fs::write(dir.path().join("gantry.toml"), config).unwrap();
        Self { dir, emu, prd, stg }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = crate::services::aws_env(services());
        env.push(("AWS_ENDPOINT_URL_CODEPIPELINE", self.emu.url.clone()));
        env.push(("GANTRY_PIPELINE_POLL", "10ms".into()));
        env.push(("GANTRY_AWS_MAX_ATTEMPTS", "1".into()));
        env
    }

    fn gantry(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        crate::support::gantry(self.dir.path()).args(args).envs(self.env()).assert()
    }

    /// A gantry process left running (for `watch`).
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("gantry"))
            .current_dir(self.dir.path())
            .args(args)
            .envs(self.env())
            .env_remove("GANTRY_ENV")
            .env_remove("GITHUB_ACTIONS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn waiting_for_approval(&self, id: &str) {
        let name = self.prd.clone();
        self.emu.wait_until("the approval waits", |s| {
            s.execution(&name, id).is_some_and(|e| e.actions[1].run.as_ref().is_some_and(|r| r.token.is_some()))
        });
    }
}

fn output(child: std::process::Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn json(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout).expect("stdout is JSON")
}

#[test]
fn start_watch_approve_and_the_watch_reports_the_wait_apart() {
    let p = Project::new();
    let started = p.gantry(&["pipeline", "start", "--env", "prd", "--version", "1.2.3", "--output", "json"]).success();
    let started = json(&started);
    let id = started["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (started["pipeline"].as_str(), started["version"].as_str(), started["pinned"].as_bool()),
        (Some(p.prd.as_str()), Some("1.2.3"), Some(true))
    );
    assert_eq!(p.emu.state().execution(&p.prd, &id).unwrap().variables["version"], "1.2.3");

    let watch = p.spawn(&["pipeline", "watch", "--env", "prd"]);
    p.waiting_for_approval(&id);
    // Approve only once the watch has seen the approval waiting (a poll after it started).
    let polls =
        |s: &crate::codepipeline::State| s.requests.iter().filter(|r| r.ends_with("ListActionExecutions")).count();
    let before = polls(&p.emu.state());
    p.emu.wait_until("the watch polls again", |s| polls(s) > before);
    let approved = p
        .gantry(&["approve", "--env", "prd", "--execution", &id, "--comment", "looks good", "--output", "json"])
        .success();
    let approved = json(&approved);
    assert_eq!(approved["decision"], "approved");
    assert_eq!(approved["version"], "1.2.3");
    let arn = approved["by"]["arn"].as_str().expect("the caller's ARN from STS").to_owned();
    assert!(arn.starts_with("arn:aws:sts::123456789012:"), "{arn}");
    let (code, _, err) = output(watch);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("to approve: gantry approve --env prd --execution {id}")), "{err}");
    for line in
        ["Succeeded Source/Release", "Approved Approval/Approve", "Succeeded Deploy/Deploy", "waiting for approval)"]
    {
        assert_eq!(err.matches(line).count(), 1, "`{line}` once in:\n{err}");
    }
    assert!(err.contains(&format!("execution {id} Succeeded")), "{err}");
    let state = p.emu.state();
    let summary = state.execution(&p.prd, &id).unwrap().actions[1].run.as_ref().unwrap().summary.clone().unwrap();
    assert!(summary.contains(&arn) && summary.contains("1.2.3") && summary.contains("looks good"), "{summary}");
}

#[test]
fn a_failed_action_shows_its_error_and_log_link_and_exits_1() {
    let p = Project::new();
    p.emu.state().faults.fail_action.insert(
        (p.stg.clone(), "Deploy".into()),
        ("Build failed: health gate failed on api".into(), "https://logs.example/build/42".into()),
    );
    let id = p.emu.trigger(&p.stg, Default::default());
    let out = p.gantry(&["pipeline", "watch", "--env", "stg", "--execution", &id]).code(1);
    let err = stderr(&out);
    assert!(err.contains("Failed Deploy/Deploy after"), "{err}");
    assert!(err.contains("health gate failed on api") && err.contains("https://logs.example/build/42"), "{err}");
    assert!(err.contains(&format!("execution {id} of `{}` failed at Deploy/Deploy", p.stg)), "{err}");
    // The same as JSON lines on stdout.
    let out = p.gantry(&["pipeline", "watch", "--env", "stg", "--execution", &id, "--output", "json"]).code(1);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["watching", "action_finished", "action_finished", "finished"]);
    assert_eq!(events[2]["run"]["link"], "https://logs.example/build/42");
    assert_eq!(events[3]["execution"]["status"], "Failed");
    // In GitHub Actions: the execution id as a step output and a step summary of the run.
    let step = tempfile::tempdir().unwrap();
    let (summary, output) = (step.path().join("summary.md"), step.path().join("output"));
    crate::support::gantry(p.dir.path())
        .args(["pipeline", "watch", "--env", "stg", "--execution", &id])
        .envs(p.env())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &output)
        .assert()
        .code(1);
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains(&format!("## gantry pipeline: execution `{id}` Failed")), "{md}");
    assert!(
        md.contains("| Deploy | Deploy | Failed |")
            && md.contains("health gate failed on api [log](https://logs.example/build/42) |"),
        "{md}"
    );
    let output = std::fs::read_to_string(&output).unwrap();
    assert!(output.contains("pipeline-execution-id<<") && output.contains(&format!("\n{id}\n")), "{output}");
    assert!(output.contains("result<<") && output.contains("\nfailed\n"), "{output}");
}

#[test]
fn superseded_rejected_and_stopped_executions_are_named_so() {
    let p = Project::new();
    // Superseded while waiting for approval.
    let id = p.emu.trigger(&p.prd, Default::default());
    p.waiting_for_approval(&id);
    let watch = p.spawn(&["pipeline", "watch", "--env", "prd", "--execution", &id]);
    p.emu.wait_until("watch polls", |s| s.requests.iter().filter(|r| r.ends_with("ListActionExecutions")).count() > 0);
    p.emu.state().supersede(&p.prd, &id);
    let (code, _, err) = output(watch);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("was superseded by a newer execution"), "{err}");
    assert!(err.contains("Abandoned Approval/Approve"), "{err}");

    // Rejected in GitHub Actions: `reject` succeeds and records the actor, the watch exits 5.
    let id = p.emu.trigger(&p.prd, Default::default());
    p.waiting_for_approval(&id);
    let out = crate::support::gantry(p.dir.path())
        .args(["reject", "--env", "prd", "--comment", "not today", "--output", "json"])
        .envs(p.env())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_ACTOR", "octocat")
        .assert()
        .success();
    let decision = json(&out);
    assert_eq!(
        (decision["decision"].as_str(), decision["by"]["github_actor"].as_str()),
        (Some("rejected"), Some("octocat"))
    );
    let summary =
        p.emu.state().execution(&p.prd, &id).unwrap().actions[1].run.as_ref().unwrap().summary.clone().unwrap();
    assert!(
        summary.starts_with("Rejected by arn:aws:sts::123456789012:") && summary.contains("(GitHub: octocat)"),
        "{summary}"
    );
    let out = p.gantry(&["pipeline", "watch", "--env", "prd", "--execution", &id]).code(5);
    assert!(stderr(&out).contains("Rejected"), "{}", stderr(&out));

    // Stopped through the API.
    let id = p.emu.trigger(&p.prd, Default::default());
    p.waiting_for_approval(&id);
    p.emu
        .state()
        .handle(
            "StopPipelineExecution",
            &serde_json::json!({"pipelineName": p.prd, "pipelineExecutionId": id, "abandon": true}),
        )
        .unwrap();
    let out = p.gantry(&["pipeline", "watch", "--env", "prd", "--execution", &id]).code(1);
    assert!(stderr(&out).contains("was stopped"), "{}", stderr(&out));
}

#[test]
fn approve_with_nothing_pending_or_for_another_execution_exits_5() {
    let p = Project::new();
    let out = p.gantry(&["approve", "--env", "prd"]).code(5);
    assert!(
        stderr(&out).contains(&format!("no manual approval is waiting in pipeline `{}`", p.prd)),
        "{}",
        stderr(&out)
    );
    let first = p.emu.trigger(&p.prd, Default::default());
    p.waiting_for_approval(&first);
    // A second execution waits at the Approval stage's entrance while the first holds it.
    let second = p.emu.trigger(&p.prd, Default::default());
    let name = p.prd.clone();
    p.emu.wait_until("the second waits", |s| {
        s.execution(&name, &second).is_some_and(|e| e.actions[0].run.as_ref().is_some_and(|r| r.status == "Succeeded"))
    });
    let out = p.gantry(&["approve", "--env", "prd", "--execution", &second]).code(5);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("belongs to execution {first}, not {second}"))
            && err.contains(&format!("--execution {first}")),
        "{err}"
    );
    // A third arriving there supersedes the second (SUPERSEDED mode).
    let third = p.emu.trigger(&p.prd, Default::default());
    p.emu.wait_until("the second is superseded", |s| {
        s.execution(&name, &second).is_some_and(|e| e.status == "Superseded")
    });
    let out = p.gantry(&["pipeline", "watch", "--env", "prd", "--execution", &second]).code(1);
    assert!(stderr(&out).contains("was superseded"), "{}", stderr(&out));
    assert_eq!(p.emu.state().execution(&name, &third).unwrap().status, "InProgress");
    let out = p.gantry(&["approve", "--env", "prd", "--execution", "00000000-0000-0000-0000-000000000000"]).code(1);
    assert!(stderr(&out).contains("has no execution"), "{}", stderr(&out));
}

#[test]
fn watch_rides_out_throttling_and_dropped_connections_without_double_reporting() {
    let p = Project::new();
    let id = p.emu.trigger(&p.stg, Default::default());
    {
        let mut s = p.emu.state();
        s.faults.throttle.insert("GetPipelineExecution".into(), 2);
        s.faults.throttle.insert("ListActionExecutions".into(), 1);
        s.faults.drop_connections = 2;
    }
    let out = p.gantry(&["pipeline", "watch", "--env", "stg", "--execution", &id]).success();
    let err = stderr(&out);
    assert!(err.contains("throttled") && err.contains("trying again"), "{err}");
    for line in ["Succeeded Source/Release", "Succeeded Deploy/Deploy"] {
        assert_eq!(err.matches(line).count(), 1, "`{line}` once in:\n{err}");
    }
    assert_eq!(p.emu.state().faults.drop_connections, 0, "the drops happened");
}

#[test]
fn unknown_pipeline_or_execution_and_a_timeout_fail_clearly() {
    let p = Project::new();
    p.emu.state().pipelines.remove(&p.stg);
    let out = p.gantry(&["pipeline", "status", "--env", "stg"]).code(1);
    assert!(stderr(&out).contains(&format!("pipeline `{}` does not exist", p.stg)), "{}", stderr(&out));
    let out = p.gantry(&["pipeline", "watch", "--env", "prd"]).code(1);
    assert!(stderr(&out).contains("has no executions yet"), "{}", stderr(&out));
    let out = p.gantry(&["pipeline", "watch", "--env", "prd", "--execution", "nope"]).code(1);
    assert!(stderr(&out).contains(&format!("pipeline `{}` has no execution `nope`", p.prd)), "{}", stderr(&out));
    let id = p.emu.trigger(&p.prd, Default::default());
    let out = p.gantry(&["pipeline", "watch", "--env", "prd", "--execution", &id, "--timeout", "300ms"]).code(1);
    assert!(
        stderr(&out).contains("gave up watching") && stderr(&out).contains("the pipeline goes on"),
        "{}",
        stderr(&out)
    );
    // The deadline can come from gantry.toml too (`pipeline_timeout`, here through its override variable).
    let out = crate::support::gantry(p.dir.path())
        .args(["pipeline", "watch", "--env", "prd", "--execution", &id])
        .envs(p.env())
        .env("GANTRY_ENVIRONMENTS__PRD__PIPELINE_TIMEOUT", "200ms")
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1);
    assert!(stderr(&out).contains("gave up watching") && stderr(&out).contains("after 200ms"), "{}", stderr(&out));
}

#[test]
fn ctrl_c_stops_watching_and_says_the_pipeline_goes_on() {
    let p = Project::new();
    let id = p.emu.trigger(&p.prd, Default::default());
    p.waiting_for_approval(&id);
    let watch = p.spawn(&["pipeline", "watch", "--env", "prd", "--execution", &id]);
    p.emu.wait_until("watch polls", |s| s.requests.iter().any(|r| r.ends_with("ListActionExecutions")));
    std::process::Command::new("kill").args(["-INT", &watch.id().to_string()]).status().unwrap();
    let (code, _, err) = output(watch);
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains(&format!("stopped watching execution {id}; the pipeline goes on")), "{err}");
    assert_eq!(p.emu.state().execution(&p.prd, &id).unwrap().status, "InProgress");
}

#[test]
fn status_shows_executions_and_stages_as_a_table_or_json() {
    let p = Project::new();
    let id = p.emu.trigger(&p.prd, Default::default());
    p.waiting_for_approval(&id);
    let out = p.gantry(&["pipeline", "status", "--env", "prd", "--output", "json"]).success();
    let status = json(&out);
    assert_eq!(status["executions"][0]["id"], id.as_str());
    assert_eq!(status["executions"][0]["status"], "InProgress");
    assert_eq!(status["stages"][1]["stage"], "Approval");
    assert_eq!(status["stages"][1]["actions"][0]["status"], "InProgress");
    assert!(status["stages"][1]["actions"][0].get("token").is_none(), "tokens are not printed");
    let out = p.gantry(&["pipeline", "status", "--env", "prd"]).success();
    let table = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(table.contains("Approval") && table.contains("Approve: InProgress") && table.contains(&id), "{table}");
}

/// Approves the waiting approval of `id` straight through the emulator's API.
fn decide(p: &Project, id: &str, status: &str) {
    let token = p.emu.state().execution(&p.prd, id).unwrap().actions[1].run.as_ref().unwrap().token.clone().unwrap();
    let input = serde_json::json!({
        "pipelineName": p.prd, "stageName": "Approval", "actionName": "Approve", "token": token,
        "result": {"status": status, "summary": "by the test"}
    });
    p.emu.state().handle("PutApprovalResult", &input).unwrap();
}

/// An execution of `prd` for 1.2.3, approved, whose Deploy build is running (`sleep`);
/// returns its id and the build id CodeBuild would set.
fn deploying(p: &Project) -> (String, String) {
    let build = crate::codepipeline::BuildCommand {
        program: "sleep".into(),
        args: vec!["30".into()],
        dir: p.dir.path().to_owned(),
        env: Vec::new(),
    };
    p.emu.set_build("deployer", build);
    let id = p.emu.trigger(&p.prd, [("version".to_owned(), "1.2.3".to_owned())].into());
    p.waiting_for_approval(&id);
    decide(p, &id, "Approved");
    let name = p.prd.clone();
    p.emu.wait_until("the deploy build runs", |s| s.execution(&name, &id).unwrap().actions[2].run.is_some());
    let build =
        p.emu.state().execution(&p.prd, &id).unwrap().actions[2].run.as_ref().unwrap().external_id.clone().unwrap();
    (id, build)
}

fn client(p: &Project) -> gantry::pipeline::Pipeline {
    client_for(&p.emu.url, &p.prd)
}

fn client_for(url: &str, pipeline: &str) -> gantry::pipeline::Pipeline {
    use aws_sdk_codepipeline::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_codepipeline::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .retry_config(aws_sdk_codepipeline::config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    gantry::pipeline::Pipeline::new(aws_sdk_codepipeline::Client::from_conf(conf), pipeline)
}

fn refused(result: Result<Option<serde_json::Value>, gantry::pipeline::PipelineError>) -> String {
    match result {
        Err(e @ gantry::pipeline::PipelineError::Gate { .. }) => {
            assert_eq!(e.exit_code(), 5);
            e.to_string()
        }
        other => panic!("the gate let it through or failed otherwise: {other:?}"),
    }
}

#[test]
fn deploying_to_production_outside_the_pipeline_is_refused_with_exit_5() {
    let p = Project::new();
    let out = p.gantry(&["deploy", "--env", "prd", "--version", "1.2.3"]).code(5);
    let err = stderr(&out);
    assert!(
        err.contains("`prd` needs an approved pipeline execution to deploy")
            && err.contains("not the pipeline's Deploy stage"),
        "{err}"
    );
    p.gantry(&["rollback", "--env", "prd", "--to", "1.2.2"]).code(5);
    // Faked variables: an execution that does not exist, or a real one with a made-up build.
    let fake = [
        ("CODEBUILD_BUILD_ID", "deployer:fake"),
        ("GANTRY_PIPELINE_EXECUTION_ID", "11111111-2222-3333-4444-555555555555"),
    ];
    let out = crate::support::gantry(p.dir.path())
        .args(["deploy", "--env", "prd", "--version", "1.2.3"])
        .envs(p.env())
        .envs(fake)
        .assert()
        .code(5);
    assert!(stderr(&out).contains("has no execution 11111111-2222-3333-4444-555555555555"), "{}", stderr(&out));
    let (id, _) = deploying(&p);
    let fake = [("CODEBUILD_BUILD_ID", "deployer:fake"), ("GANTRY_PIPELINE_EXECUTION_ID", id.as_str())];
    let out = crate::support::gantry(p.dir.path())
        .args(["deploy", "--env", "prd", "--version", "1.2.3"])
        .envs(p.env())
        .envs(fake)
        .assert()
        .code(5);
    assert!(
        stderr(&out).contains(&format!("build deployer:fake is not a running action of execution {id}")),
        "{}",
        stderr(&out)
    );
    // An environment without `approval = "required"` is not gated (it fails later, for its own reasons).
    let out = p.gantry(&["deploy", "--env", "stg", "--version", "1.2.3"]).code(2);
    assert!(!stderr(&out).contains("approved pipeline execution"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_passes_only_this_executions_approval_for_this_version() {
    let p = Project::new();
    let pipeline = client(&p);
    let (id, build) = deploying(&p);
    let approval =
        gantry::pipeline::gate::verify(&pipeline, None, &id, &build, Some("1.2.3")).await.unwrap().expect("approved");
    assert_eq!((approval["execution"].as_str(), approval["version"].as_str()), (Some(id.as_str()), Some("1.2.3")));
    assert_eq!(approval["summary"], "by the test");
    assert_eq!(approval["approved_by"], "arn:aws:iam::123456789012:user/approver");

    // Another version than the execution carries.
    let why = refused(gantry::pipeline::gate::verify(&pipeline, None, &id, &build, Some("9.9.9")).await);
    assert!(why.contains("approved for release 1.2.3, not 9.9.9"), "{why}");

    // Another execution's approval: the second waits (at the stage entrance, then for approval)
    // and borrows the first's build id.
    let second = p.emu.trigger(&p.prd, [("version".to_owned(), "1.2.3".to_owned())].into());
    let name = p.prd.clone();
    p.emu.wait_until("the second reaches approval", |s| s.execution(&name, &second).unwrap().actions[1].run.is_some());
    let why = refused(gantry::pipeline::gate::verify(&pipeline, None, &second, &build, Some("1.2.3")).await);
    assert!(why.contains(&format!("the approval of execution {second} is InProgress")), "{why}");

    // Rejected.
    decide(&p, &second, "Rejected");
    let why = refused(gantry::pipeline::gate::verify(&pipeline, None, &second, &build, Some("1.2.3")).await);
    assert!(why.contains("is Failed: Rejected"), "{why}");

    // Expired.
    let third = p.emu.trigger(&p.prd, [("version".to_owned(), "1.2.3".to_owned())].into());
    p.emu.wait_until("the third reaches approval", |s| s.execution(&name, &third).unwrap().actions[1].run.is_some());
    p.emu.state().expire_approval(&p.prd, &third);
    let why = refused(gantry::pipeline::gate::verify(&pipeline, None, &third, &build, Some("1.2.3")).await);
    assert!(why.contains("is Failed: The approval request expired"), "{why}");

    // Once the execution has ended, its approval no longer lets anything deploy.
    p.emu.state().supersede(&p.prd, &id);
    let why = refused(gantry::pipeline::gate::verify(&pipeline, None, &id, &build, Some("1.2.3")).await);
    assert!(why.contains("is Superseded, not running"), "{why}");
}

/// The whole flow on the example app: `pipeline start` → the execution waits for approval →
/// `gantry approve` → the Deploy action runs the real `gantry deploy` inside the "build"
/// (which passes the gate) → `watch` exits 0, the release is live, and the ledger records
/// the approval.
#[test]
fn end_to_end_start_approve_and_the_pipeline_deploys_through_the_gate() {
    let emu = Emulator::start();
    let name = unique("e2e");
    emu.create_standard(&spec(&name, true));
    let env_extra = format!("region = \"us-east-1\"\npipeline = \"{name}\"\napproval = \"required\"\n");
    let app = crate::deploy::Project::with("{ type = \"blue-green\" }", "", &env_extra);
    app.package("1.0.0", &[]);
    let mut env = crate::services::aws_env(services());
    env.push(("AWS_ENDPOINT_URL_CODEPIPELINE", emu.url.clone()));
    env.push(("GANTRY_PIPELINE_POLL", "10ms".into()));
    let build = crate::codepipeline::BuildCommand {
        program: assert_cmd::cargo::cargo_bin("gantry"),
        args: ["--env", "dev", "deploy", "--version", "1.0.0"].map(str::to_owned).to_vec(),
        dir: app.path().to_owned(),
        env: env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
    };
    emu.set_build("deployer", build);
    let run = |args: &[&str]| crate::support::gantry(app.path()).args(args).envs(env.clone()).assert();

    // Straight from a laptop: refused.
    run(&["--env", "dev", "deploy", "--version", "1.0.0"]).code(5);
    let started = run(&["--env", "dev", "pipeline", "start", "--version", "1.0.0", "--output", "json"]).success();
    let id = json(&started)["execution_id"].as_str().unwrap().to_owned();
    let watch = std::process::Command::new(assert_cmd::cargo::cargo_bin("gantry"))
        .current_dir(app.path())
        .args(["--env", "dev", "pipeline", "watch", "--timeout", "5m"])
        .envs(env.clone())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    emu.wait_until("the approval waits", |s| s.execution(&name, &id).unwrap().actions[1].run.is_some());
    run(&["--env", "dev", "approve", "--comment", "ship it"]).success();
    let (code, _, err) = output(watch);
    let logs: String = std::fs::read_dir(app.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("codebuild-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(code, Some(0), "watch:\n{err}\nbuild log:\n{logs}");
    assert!(err.contains("Succeeded Deploy/Deploy"), "{err}");
    app.assert_live("1.0.0");
    let history = app.json(&["history"]);
    assert_eq!(history[0]["approval"]["execution"], id.as_str(), "{history:#}");
    assert_eq!(history[0]["approval"]["version"], "1.0.0");
    assert!(history[0]["approval"]["summary"].as_str().unwrap().contains("ship it"), "{history:#}");
}

/// `gantry plan` checks the pipeline definition: the S3 source `publish` writes, and an
/// approval before the deploy for an approval-required environment.
#[test]
fn plan_checks_the_pipeline_definition() {
    let emu = Emulator::start();
    let (good, bad) = (unique("plan-good"), unique("plan-bad"));
    let key = "releases/hello/pipeline-source.zip";
    emu.create_standard(&PipelineSpec { name: &good, bucket: "rel-bucket", key, approval: true, project: "deployer" });
    emu.create_standard(&PipelineSpec { name: &bad, bucket: "rel-bucket", key, approval: false, project: "deployer" });
    let mut env = crate::services::aws_env(services());
    env.push(("AWS_ENDPOINT_URL_CODEPIPELINE", emu.url.clone()));
    for (name, expected) in [
        (
            good.as_str(),
            "source s3://rel-bucket/releases/hello/pipeline-source.zip, approval and deploy stages as expected",
        ),
        (bad.as_str(), "is not as expected:\n  - no manual approval action, which `approval = \"required\"` needs"),
        ("missing", "cannot read it: pipeline `missing` does not exist"),
    ] {
        let env_extra = format!(
            "region = \"us-east-1\"\nrelease_bucket = \"rel-bucket\"\npipeline = \"{name}\"\napproval = \"required\"\n"
        );
        let app = crate::deploy::Project::with("{ type = \"blue-green\" }", "", &env_extra);
        let out =
            crate::support::gantry(app.path()).args(["--env", "dev", "plan"]).envs(env.clone()).assert().success();
        let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(text.contains(expected), "{name}: {text}");
    }
}

/// `gantry init --pipeline` writes the definition and buildspec (snapshots); the definition
/// is accepted by the AWS CLI's own parameter validation (sent to moto) and passes `plan`'s check.
#[test]
fn init_pipeline_writes_a_definition_plan_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[project]\nname = \"hello\"\n\n[environments.prd]\nregion = \"us-east-1\"\naccount = \"123456789012\"\n\
                  release_bucket = \"hello-releases\"\npipeline = \"hello-prd\"\napproval = \"required\"\n";
    std::fs::write(dir.path().join("gantry.toml"), config).unwrap();
    crate::support::gantry(dir.path()).args(["--env", "prd", "init", "--pipeline"]).assert().success();
    let definition = std::fs::read_to_string(dir.path().join("pipeline/hello-prd.json")).unwrap();
    let buildspec = std::fs::read_to_string(dir.path().join("pipeline/buildspec.yml")).unwrap();
    insta::assert_snapshot!("init_pipeline_definition", definition);
    insta::assert_snapshot!("init_pipeline_buildspec", buildspec);
    let out = crate::support::gantry(dir.path()).args(["--env", "prd", "init", "--pipeline"]).assert().code(2);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    let s = services();
    let out = std::process::Command::new(&s.aws_cli)
        .args(["codepipeline", "create-pipeline", "--endpoint-url", &s.moto, "--cli-input-json"])
        .arg(format!("file://{}", dir.path().join("pipeline/hello-prd.json").display()))
        .envs(crate::services::aws_env(s))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    // The CLI validates the shape against the service model before sending; moto then refuses
    // only the placeholder role it cannot assume.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() || err.contains("not authorized to perform AssumeRole"), "{err}");

    let emu = Emulator::start();
    let doc: serde_json::Value = serde_json::from_str(&definition).unwrap();
    emu.create(doc["pipeline"].clone());
    let p = Project { dir, emu, prd: "hello-prd".into(), stg: String::new() };
    let decl = tokio::runtime::Runtime::new().unwrap().block_on(client(&p).declaration()).unwrap();
    assert_eq!(
        gantry::pipeline::check::problems(&decl, Some("hello-releases"), "releases/hello/pipeline-source.zip", true),
        Vec::<String>::new()
    );
}

/// The S3 source path: the example app publishing to a versioned moto bucket whose pipeline
/// source key the emulator's pipeline watches (`connect_s3`), as CodePipeline's S3 source does.
struct Released {
    app: crate::deploy::Project,
    emu: Emulator,
    name: String,
    bucket: String,
    env: Vec<(&'static str, String)>,
}

const SOURCE_KEY: &str = "releases/hello/pipeline-source.zip";

impl Released {
    /// `detect_changes`: new object versions start executions (an EventBridge rule on the bucket).
    fn new(detect_changes: bool) -> Self {
        let s = services();
        let bucket = unique("src");
        aws_cli(&["s3api", "create-bucket", "--bucket", &bucket]);
        aws_cli(&[
            "s3api",
            "put-bucket-versioning",
            "--bucket",
            &bucket,
            "--versioning-configuration",
            "Status=Enabled",
        ]);
        let emu = Emulator::start();
        let name = unique("s3src");
        emu.create_standard(&PipelineSpec {
            name: &name,
            bucket: &bucket,
            key: SOURCE_KEY,
            approval: true,
            project: "deployer",
        });
        emu.connect_s3(&s.moto, detect_changes);
        let env_extra = format!(
            "region = \"us-east-1\"\nrelease_bucket = \"{bucket}\"\npipeline = \"{name}\"\napproval = \"required\"\n"
        );
        let app = crate::deploy::Project::with("{ type = \"blue-green\" }", "", &env_extra);
        let mut env = crate::services::aws_env(s);
        env.push(("AWS_ENDPOINT_URL_CODEPIPELINE", emu.url.clone()));
        env.push(("GANTRY_PIPELINE_POLL", "10ms".into()));
        Self { app, emu, name, bucket, env }
    }

    /// `gantry --env dev ...` in the app, against moto and the emulator.
    fn gantry(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = crate::support::gantry(self.app.path());
        cmd.args(["--env", "dev"]).args(args).envs(self.env.clone());
        cmd
    }

    /// Packages and publishes `version`; returns the pipeline source's new object version id.
    fn publish(&self, version: &str) -> String {
        self.app.package(version, &[]);
        let out = self.gantry(&["publish", "--output", "json"]).assert().success();
        let report = json(&out);
        assert_eq!(report["pipeline_source"]["key"], SOURCE_KEY, "{report:#}");
        report["pipeline_source"]["version_id"].as_str().expect("a versioned bucket gives a version id").to_owned()
    }

    fn executions(&self) -> Vec<(String, &'static str, Option<String>)> {
        let state = self.emu.state();
        state.pipelines[&self.name]
            .executions
            .iter()
            .map(|e| (e.id.clone(), e.trigger, e.revision.as_ref().map(|r| r.object.version_id.clone())))
            .collect()
    }
}

fn aws_cli(args: &[&str]) {
    let s = services();
    let out = std::process::Command::new(&s.aws_cli).args(args).envs(crate::services::aws_env(s)).output().unwrap();
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// (a) Without --version, `pipeline start` reads the release bucket: the highest version with
/// a committed release.json (not the one published last, not a folder without release.json),
/// and pins the pipeline source object version that holds it.
#[test]
fn start_without_a_version_takes_the_latest_published_release() {
    let r = Released::new(false);
    let v110 = r.publish("1.1.0");
    let v105 = r.publish("1.0.5");
    assert_ne!(v110, v105);
    // An interrupted publish of 2.0.0: files, but no release.json (its commit point).
    let sums = r.app.path().join("dist/SHA256SUMS");
    let key = "releases/hello/2.0.0/SHA256SUMS";
    aws_cli(&["s3api", "put-object", "--bucket", &r.bucket, "--key", key, "--body", sums.to_str().unwrap()]);

    let out =
        r.gantry(&["pipeline", "start", "--output", "json"]).env("GANTRY_PIPELINE_TRIGGER_WAIT", "300ms").assert();
    let started = json(&out.success());
    assert_eq!(started["version"], "1.1.0", "{started:#}");
    assert_eq!((started["found"].as_bool(), started["pinned"].as_bool()), (Some(false), Some(true)));
    assert_eq!(started["source_revision"], v110.as_str(), "the object version that holds 1.1.0, not the current one");
    let id = started["execution_id"].as_str().unwrap();
    assert_eq!(r.executions(), [(id.to_owned(), "StartPipelineExecution", Some(v110.clone()))]);
    assert_eq!(r.emu.state().execution(&r.name, id).unwrap().variables["version"], "1.1.0");

    // --version names one; the current source object holds it.
    let out = r.gantry(&["pipeline", "start", "--version", "1.0.5"]).env("GANTRY_PIPELINE_TRIGGER_WAIT", "0s").assert();
    let err = stderr(&out.success());
    assert!(err.contains(&format!("for 1.0.5, source revision {v105}")), "{err}");
    assert_eq!(r.executions().len(), 2);
    assert_eq!(r.executions()[1].2.as_deref(), Some(v105.as_str()));
}

/// (b) Publish wrote the pipeline source; the S3 source started an execution for that object
/// version. `pipeline start` finds it (waiting for it when the event is late) and starts
/// nothing; `--new` starts another on the same revision.
#[test]
fn start_after_a_publish_finds_the_execution_the_s3_source_started() {
    let r = Released::new(true);
    r.emu.state().faults.hold_s3_events = true;
    let vid = r.publish("1.0.0");
    // Publish says which object version it wrote, for humans too.
    let out = r.gantry(&["publish"]).assert().success();
    let err = stderr(&out);
    assert!(
        err.contains(&format!("pipeline source s3://{}/{SOURCE_KEY} unchanged, object version {vid}", r.bucket)),
        "{err}"
    );

    let start = std::process::Command::new(assert_cmd::cargo::cargo_bin("gantry"))
        .current_dir(r.app.path())
        .args(["--env", "dev", "pipeline", "start", "--output", "json"])
        .envs(r.env.clone())
        .env("GANTRY_PIPELINE_TRIGGER_WAIT", "60s")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let looks =
        |s: &crate::codepipeline::State| s.requests.iter().filter(|q| q.ends_with("ListPipelineExecutions")).count();
    r.emu.wait_until("start looks twice for the execution", |s| looks(s) >= 2);
    assert!(r.executions().is_empty(), "nothing started while the event is held");
    r.emu.state().faults.hold_s3_events = false;
    let (code, out, err) = output(start);
    assert_eq!(code, Some(0), "{err}");
    let found: serde_json::Value = serde_json::from_str(&out).unwrap();
    let executions = r.executions();
    assert_eq!(executions.len(), 1, "exactly one execution: {executions:?}");
    let (id, trigger, revision) = &executions[0];
    assert_eq!((*trigger, revision.as_deref()), ("CloudWatchEvent", Some(vid.as_str())));
    assert_eq!(found["execution_id"], id.as_str(), "{found:#}");
    assert_eq!((found["found"].as_bool(), found["version"].as_str()), (Some(true), Some("1.0.0")));
    assert_eq!(
        (found["source_revision"].as_str(), found["trigger"].as_str()),
        (Some(vid.as_str()), Some("CloudWatchEvent"))
    );
    // The AWS CLI reads the same source revision from the emulator (ArtifactRevision, SourceRevision).
    let cli = |args: &[&str]| -> serde_json::Value {
        let s = services();
        let out = std::process::Command::new(&s.aws_cli)
            .arg("codepipeline")
            .args(args)
            .args(["--pipeline-name", &r.name, "--endpoint-url", &r.emu.url, "--output", "json"])
            .envs(crate::services::aws_env(s))
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let execution = cli(&["get-pipeline-execution", "--pipeline-execution-id", id]);
    let revision = &execution["pipelineExecution"]["artifactRevisions"][0];
    assert_eq!(
        (revision["name"].as_str(), revision["revisionId"].as_str()),
        (Some("ReleaseSource"), Some(vid.as_str()))
    );
    assert_eq!(execution["pipelineExecution"]["trigger"]["triggerType"], "CloudWatchEvent");
    let listed = cli(&["list-pipeline-executions"]);
    let source = &listed["pipelineExecutionSummaries"][0]["sourceRevisions"][0];
    assert_eq!((source["actionName"].as_str(), source["revisionId"].as_str()), (Some("Release"), Some(vid.as_str())));

    // Again: found at once, still one execution.
    let out = r.gantry(&["pipeline", "start"]).env("GANTRY_PIPELINE_TRIGGER_WAIT", "0s").assert().success();
    assert_eq!(String::from_utf8_lossy(&out.get_output().stdout).trim(), id.as_str());
    let err = stderr(&out);
    assert!(err.contains(&format!("execution {id} for 1.0.0")) && err.contains("publish already started it"), "{err}");
    assert_eq!(r.executions().len(), 1);

    // --new starts another execution of the same source revision.
    let out = r.gantry(&["pipeline", "start", "--new", "--output", "json"]).assert().success();
    let started = json(&out);
    assert_eq!((started["found"].as_bool(), started["source_revision"].as_str()), (Some(false), Some(vid.as_str())));
    let executions = r.executions();
    assert_eq!(executions.len(), 2);
    assert_eq!(executions[1].2.as_deref(), Some(vid.as_str()));
}

/// Nothing published: a clear error naming the bucket and prefix, exit 2, nothing started.
#[test]
fn start_with_nothing_published_fails_clearly_and_starts_nothing() {
    let r = Released::new(true);
    let out = r.gantry(&["pipeline", "start"]).assert().code(2);
    let err = stderr(&out);
    assert!(err.contains(&format!("no release is published in s3://{}/releases/hello/", r.bucket)), "{err}");
    assert!(err.contains("hint:") && err.contains("gantry publish --env dev"), "{err}");
    let out = r.gantry(&["pipeline", "start", "--version", "1.0.0"]).assert().code(2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("release 1.0.0 is not published: s3://{}/releases/hello/1.0.0/release.json", r.bucket)),
        "{err}"
    );
    assert!(r.executions().is_empty());

    // An environment without a release bucket needs --version.
    let p = Project::new();
    let out = p.gantry(&["pipeline", "start", "--env", "prd"]).code(2);
    assert!(stderr(&out).contains("environment `prd` names no `release_bucket`"), "{}", stderr(&out));
    assert!(p.emu.state().pipelines[&p.prd].executions.is_empty());
}

/// (c) The whole S3 path: publish → the S3 source starts an execution (no version variable)
/// → `pipeline start` finds it → `approve` → the Deploy build runs `gantry deploy` with no
/// --version, and the gate takes the release from the execution's source revision → live.
#[test]
fn end_to_end_an_s3_triggered_execution_is_approved_and_deployed() {
    let r = Released::new(true);
    let build = crate::codepipeline::BuildCommand {
        program: assert_cmd::cargo::cargo_bin("gantry"),
        args: ["--env", "dev", "deploy"].map(str::to_owned).to_vec(),
        dir: r.app.path().to_owned(),
        env: r.env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
    };
    r.emu.set_build("deployer", build);
    let vid = r.publish("1.0.0");
    let started = r.gantry(&["pipeline", "start", "--output", "json"]).assert().success();
    let started = json(&started);
    assert_eq!(started["found"], true, "{started:#}");
    let id = started["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(r.emu.state().execution(&r.name, &id).unwrap().variables["version"], "0.0.0", "no variable set");
    let watch = std::process::Command::new(assert_cmd::cargo::cargo_bin("gantry"))
        .current_dir(r.app.path())
        .args(["--env", "dev", "pipeline", "watch", "--execution", &id, "--timeout", "5m"])
        .envs(r.env.clone())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let name = r.name.clone();
    r.emu.wait_until("the approval waits", |s| {
        s.execution(&name, &id).unwrap().actions[1].run.as_ref().is_some_and(|r| r.token.is_some())
    });
    let approved = r.gantry(&["approve", "--execution", &id, "--output", "json"]).assert().success();
    assert_eq!(json(&approved)["execution"], id.as_str());
    let (code, _, err) = output(watch);
    let logs: String = std::fs::read_dir(r.app.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("codebuild-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(code, Some(0), "watch:\n{err}\nbuild log:\n{logs}");
    r.app.assert_live("1.0.0");
    let history = r.app.json(&["history"]);
    let approval = &history[0]["approval"];
    assert_eq!(
        (approval["execution"].as_str(), approval["version"].as_str(), approval["source_revision"].as_str()),
        (Some(id.as_str()), Some("1.0.0"), Some(vid.as_str())),
        "{history:#}"
    );
    assert_eq!(approval["trigger"], "CloudWatchEvent");
    assert_eq!(r.executions().len(), 1);
}

/// The gate with a release bucket: the release comes from the source revision (the variable
/// is its default), a deploy of another version or with another execution's build is refused,
/// and so is an execution whose `version` variable disagrees with its source revision.
#[tokio::test(flavor = "multi_thread")]
async fn the_gate_takes_the_release_from_the_source_revision_and_refuses_the_rest() {
    let r = Released::new(true);
    let sleep = crate::codepipeline::BuildCommand {
        program: "sleep".into(),
        args: vec!["30".into()],
        dir: r.app.path().to_owned(),
        env: Vec::new(),
    };
    r.emu.set_build("deployer", sleep);
    let vid = tokio::task::block_in_place(|| r.publish("1.0.0"));
    let name = r.name.clone();
    r.emu.wait_until("the S3 source starts an execution", |s| !s.pipelines[&name].executions.is_empty());
    let first = r.executions()[0].0.clone();
    let deploying = |id: &str| {
        let id = id.to_owned();
        r.emu.wait_until("the approval waits", |s| {
            s.execution(&name, &id).unwrap().actions[1].run.as_ref().is_some_and(|r| r.token.is_some())
        });
        let token =
            r.emu.state().execution(&name, &id).unwrap().actions[1].run.as_ref().unwrap().token.clone().unwrap();
        let input = serde_json::json!({
            "pipelineName": name, "stageName": "Approval", "actionName": "Approve", "token": token,
            "result": {"status": "Approved", "summary": "by the test"}
        });
        r.emu.state().handle("PutApprovalResult", &input).unwrap();
    };
    let build_of = |id: &str| {
        let id = id.to_owned();
        r.emu.wait_until("the deploy build runs", |s| s.execution(&name, &id).unwrap().actions[2].run.is_some());
        r.emu.state().execution(&name, &id).unwrap().actions[2].run.as_ref().unwrap().external_id.clone().unwrap()
    };
    deploying(&first);
    let build = build_of(&first);
    let p = client_for(&r.emu.url, &r.name);
    let s3 = {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&services().moto)
            .force_path_style(true)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    };
    let bucket = gantry::pipeline::source::ReleaseBucket::new(s3, &r.bucket, "releases/hello/", SOURCE_KEY);
    use gantry::pipeline::gate::verify;

    let approval = verify(&p, Some(&bucket), &first, &build, None).await.unwrap().expect("approved");
    assert_eq!(
        (approval["version"].as_str(), approval["source_revision"].as_str()),
        (Some("1.0.0"), Some(vid.as_str())),
        "{approval:#}"
    );
    assert!(verify(&p, Some(&bucket), &first, &build, Some("1.0.0")).await.is_ok());
    let why = refused(verify(&p, Some(&bucket), &first, &build, Some("1.1.0")).await);
    assert!(why.contains("approved for release 1.0.0, not 1.1.0"), "{why}");
    // Without the bucket there is only the variable, at its default: no release.
    let why = refused(verify(&p, None, &first, &build, None).await);
    assert!(why.contains(&format!("execution {first} names no release")), "{why}");

    // A second execution pinned to the same object version, with a `version` variable that says otherwise.
    let input = serde_json::json!({
        "name": r.name,
        "variables": [{"name": "version", "value": "2.0.0"}],
        "sourceRevisions": [{"actionName": "Release", "revisionType": "S3_OBJECT_VERSION_ID", "revisionValue": vid}]
    });
    let second = r.emu.state().handle("StartPipelineExecution", &input).unwrap()["pipelineExecutionId"]
        .as_str()
        .unwrap()
        .to_owned();
    deploying(&second);
    // Another execution's build, while it still holds the Deploy stage.
    let why = refused(verify(&p, Some(&bucket), &second, &build, None).await);
    assert!(why.contains(&format!("build {build} is not a running action of execution {second}")), "{why}");
    r.emu.state().supersede(&r.name, &first);
    let second_build = build_of(&second);
    let why = refused(verify(&p, Some(&bucket), &second, &second_build, None).await);
    assert!(
        why.contains(&format!("runs source revision {vid} (release 1.0.0), but its `version` variable says 2.0.0")),
        "{why}"
    );
    let why = refused(verify(&p, Some(&bucket), &first, &build, None).await);
    assert!(why.contains("is Superseded, not running"), "{why}");
}
