//! `gantry init --pipeline`: a CodePipeline definition (the input of `aws codepipeline
//! create-pipeline --cli-input-json`) and the CodeBuild buildspec that runs `gantry deploy` in
//! the deployer image. The definition has the shape `plan` checks: the S3 source `publish`
//! writes, a Manual approval when the environment requires one, then the Deploy build, which
//! gets the execution id and the version as environment variables for the production gate.

use super::check::source_key;
use super::gate::EXECUTION_VAR;
use crate::config;

/// The variable the buildspec reads the release version from.
pub const VERSION_VAR: &str = "GANTRY_RELEASE_VERSION";

/// The pipeline definition for `env`, as pretty JSON.
pub fn definition(project: &str, env_name: &str, env: &config::Environment, pipeline: &str) -> String {
    let bucket = env.release_bucket.as_ref().map_or_else(|| "RELEASE_BUCKET".to_owned(), ToString::to_string);
    let account = env.account.as_ref().map_or("ACCOUNT_ID", |a| a.as_str());
    let mut stages = vec![serde_json::json!({
        "name": "Source",
        "actions": [{
            "name": "Release",
            "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "S3", "version": "1"},
            "runOrder": 1,
            "configuration": {"S3Bucket": bucket, "S3ObjectKey": source_key(project, env), "PollForSourceChanges": "false"},
            "outputArtifacts": [{"name": "Release"}]
        }]
    })];
    if env.approval == config::Approval::Required {
        stages.push(serde_json::json!({
            "name": "Approval",
            "actions": [{
                "name": "Approve",
                "actionTypeId": {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"},
                "runOrder": 1,
                "configuration": {
                    "CustomData": format!("Release #{{variables.version}} of {project} to {env_name}: approve with `gantry --env {env_name} approve`")
                }
            }]
        }));
    }
    let variables = serde_json::json!([
        {"name": EXECUTION_VAR, "value": "#{codepipeline.PipelineExecutionId}", "type": "PLAINTEXT"},
        {"name": VERSION_VAR, "value": "#{variables.version}", "type": "PLAINTEXT"}
    ]);
    stages.push(serde_json::json!({
        "name": "Deploy",
        "actions": [{
            "name": "Deploy",
            "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
            "runOrder": 1,
            "configuration": {"ProjectName": format!("{project}-{env_name}-deploy"), "EnvironmentVariables": variables.to_string()},
            "inputArtifacts": [{"name": "Release"}]
        }]
    }));
    let doc = serde_json::json!({
        "pipeline": {
            "name": pipeline,
            "roleArn": format!("arn:aws:iam::{account}:role/{project}-codepipeline"),
            "artifactStore": {"type": "S3", "location": bucket},
            "pipelineType": "V2",
            "executionMode": "SUPERSEDED",
            "variables": [{"name": "version", "defaultValue": "0.0.0", "description": "release version; `gantry pipeline start --version` sets it"}],
            "stages": stages
        }
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

/// The buildspec of the Deploy project (CodeBuild running the deployer image).
pub fn buildspec(env_name: &str) -> String {
    format!(
        "# CodeBuild runs this in the deployer image (gantry on PATH) for the pipeline's Deploy stage.\n\
         # CodePipeline passes {EXECUTION_VAR} (and {VERSION_VAR}); CodeBuild sets CODEBUILD_BUILD_ID.\n\
         # gantry checks them against the CodePipeline API (this execution's approval, this build)\n\
         # before it deploys an approval-required environment, and deploys the release the execution\n\
         # carries: the one in its S3 source revision (the pipeline source object version `gantry\n\
         # publish` wrote), so executions the S3 source starts on a publish deploy without a variable.\n\
         version: 0.2\n\
         env:\n  shell: bash\n\
         phases:\n  build:\n    commands:\n\
         \x20     - gantry --env {env_name} deploy\n"
    )
}
