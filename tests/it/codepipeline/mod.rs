//! A CodePipeline emulator for tests: the operations gantry uses, over real HTTP on a
//! loopback port, in the JSON 1.1 protocol the AWS API reference describes
//! (`X-Amz-Target: CodePipeline_20150709.<Operation>`, `application/x-amz-json-1.1`,
//! errors as HTTP 400 with `{"__type": ..., "message": ...}`).
//!
//! moto answers none of GetPipelineState, ListActionExecutions, PutApprovalResult or
//! StopPipelineExecution, and finishes every execution at once, so gantry's tests use this.
//! It runs in the test process on plain threads (one per connection, one ticker), so a test
//! can change its state directly: inject throttling, dropped connections, a failing action,
//! superseding, an expired approval. Executions move Source → (Approval) → Deploy one tick at
//! a time; a Manual approval waits for PutApprovalResult; a CodeBuild action runs the command
//! the test registered for its project, as CodeBuild would run the deployer image.

mod model;
mod s3;
mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use model::State;

/// A running emulator. Dropping it stops the ticker and kills any build still running.
pub struct Emulator {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

/// What a CodeBuild project runs: a program with arguments, in a folder, with extra variables.
/// The action's `EnvironmentVariables` (with `#{codepipeline.PipelineExecutionId}` and
/// `#{variables.NAME}` resolved) and `CODEBUILD_BUILD_ID` are added, as CodeBuild does.
#[derive(Debug, Clone)]
pub struct BuildCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

/// The usual pipeline shape: S3 source, an optional Manual approval stage, a CodeBuild deploy.
pub struct PipelineSpec<'a> {
    pub name: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub approval: bool,
    pub project: &'a str,
}

impl Emulator {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let url = server::serve(Arc::clone(&state), Arc::clone(&stop));
        let (ticker_state, ticker_stop) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !ticker_stop.load(Ordering::SeqCst) {
                ticker_state.lock().unwrap().tick();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self { url, state, stop }
    }

    /// Direct access to the state, for checks and for faults the helpers do not cover.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Creates a pipeline from its declaration (the `pipeline` object of CreatePipeline).
    pub fn create(&self, declaration: serde_json::Value) {
        self.state().create(declaration);
    }

    /// Creates the usual pipeline shape (see `PipelineSpec`), a V2 pipeline with a `version` variable.
    pub fn create_standard(&self, spec: &PipelineSpec<'_>) {
        self.create(standard_declaration(spec));
    }

    /// Connects the pipelines' S3 sources to a real S3 (moto at `endpoint`): every execution
    /// records the object version it runs, and with `detect_changes` (an EventBridge rule on
    /// the bucket) each new object version at a source key starts an execution (see `s3.rs`).
    pub fn connect_s3(&self, endpoint: &str, detect_changes: bool) {
        let s3 = Arc::new(s3::S3::new(endpoint));
        self.state().s3 = Some(Arc::clone(&s3));
        if detect_changes {
            s3::watch(Arc::clone(&self.state), s3, Arc::clone(&self.stop));
        }
    }

    pub fn set_build(&self, project: &str, command: BuildCommand) {
        self.state().builds.insert(project.to_owned(), command);
    }

    /// Waits (polling, up to 30 s) until `check` holds on the state.
    pub fn wait_until(&self, what: &str, check: impl Fn(&State) -> bool) {
        for _ in 0..6000 {
            if check(&self.state()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("emulator never reached: {what}");
    }

    /// Starts an execution as an S3 source change would (trigger `CloudWatchEvent`).
    pub fn trigger(&self, pipeline: &str, variables: BTreeMap<String, String>) -> String {
        self.state().start(pipeline, variables, "CloudWatchEvent").expect("pipeline exists")
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut state) = self.state.lock() {
            state.kill_builds();
        }
    }
}

pub fn standard_declaration(spec: &PipelineSpec<'_>) -> serde_json::Value {
    let mut stages = vec![serde_json::json!({
        "name": "Source",
        "actions": [{
            "name": "Release",
            "actionTypeId": {"category": "Source", "owner": "AWS", "provider": "S3", "version": "1"},
            "runOrder": 1,
            "configuration": {"S3Bucket": spec.bucket, "S3ObjectKey": spec.key, "PollForSourceChanges": "false"},
            "outputArtifacts": [{"name": "ReleaseSource"}]
        }]
    })];
    if spec.approval {
        stages.push(serde_json::json!({
            "name": "Approval",
            "actions": [{
                "name": "Approve",
                "actionTypeId": {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"},
                "runOrder": 1,
                "configuration": {"CustomData": "Approve the release for production"}
            }]
        }));
    }
    stages.push(serde_json::json!({
        "name": "Deploy",
        "actions": [{
            "name": "Deploy",
            "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
            "runOrder": 1,
            "configuration": {
                "ProjectName": spec.project,
                "EnvironmentVariables": serde_json::json!([
                    {"name": "GANTRY_PIPELINE_EXECUTION_ID", "value": "#{codepipeline.PipelineExecutionId}", "type": "PLAINTEXT"},
                    {"name": "GANTRY_RELEASE_VERSION", "value": "#{variables.version}", "type": "PLAINTEXT"}
                ]).to_string()
            },
            "inputArtifacts": [{"name": "ReleaseSource"}]
        }]
    }));
    serde_json::json!({
        "name": spec.name,
        "roleArn": "arn:aws:iam::123456789012:role/codepipeline",
        "artifactStore": {"type": "S3", "location": spec.bucket},
        "stages": stages,
        "version": 1,
        "executionMode": "SUPERSEDED",
        "pipelineType": "V2",
        "variables": [{"name": "version", "defaultValue": "0.0.0", "description": "release version"}]
    })
}
