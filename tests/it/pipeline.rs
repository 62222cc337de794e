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
