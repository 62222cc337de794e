//! The emulator's S3 source: it reads the real S3 (moto) over HTTP with the real SDK client,
//! as CodePipeline's change detection does.
//!
//! - `watch` (`Emulator::connect_s3` with change detection): a thread lists the object versions at every pipeline's S3 source key
//!   (ListObjectVersions) every 20 ms and starts an execution (trigger `CloudWatchEvent`, as
//!   the EventBridge rule on the bucket would) for each version that appeared since it
//!   started watching, oldest first, with that object version as its source revision.
//!   Versions already there when watching starts trigger nothing (a rule sees only new events).
//! - `StartPipelineExecution` takes the key's current version (HeadObject) as the source
//!   revision, or the one `sourceRevisions` names (`S3_OBJECT_VERSION_ID`).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::model::State;

/// One version of an S3 object, as the source action records it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectVersion {
    pub version_id: String,
    pub etag: Option<String>,
    /// Epoch seconds.
    pub last_modified: f64,
}

/// A blocking S3 reader on its own runtime, safe to call from plain threads.
pub struct S3 {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl S3 {
    pub fn new(endpoint: &str) -> Self {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "emulator"))
            .build();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Self { runtime, client: aws_sdk_s3::Client::from_conf(conf) }
    }

    /// Runs a request on the reader's runtime, from a thread of its own, so any caller may
    /// block on it (a connection thread, or a test already inside a runtime).
    fn block<F: std::future::Future + Send>(&self, request: F) -> F::Output
    where
        F::Output: Send,
    {
        std::thread::scope(|s| s.spawn(|| self.runtime.block_on(request)).join().expect("the S3 request thread"))
    }

    /// The current version of `bucket`/`key` (HeadObject), if any.
    pub fn head(&self, bucket: &str, key: &str) -> Option<ObjectVersion> {
        let out = self.block(self.client.head_object().bucket(bucket).key(key).send()).ok()?;
        Some(ObjectVersion {
            version_id: out.version_id()?.to_owned(),
            etag: out.e_tag().map(str::to_owned),
            last_modified: out.last_modified().map_or(0.0, |t| t.as_secs_f64()),
        })
    }

    /// One version of `bucket`/`key` (HeadObject with versionId), if it exists.
    pub fn head_version(&self, bucket: &str, key: &str, version_id: &str) -> Option<ObjectVersion> {
        let request = self.client.head_object().bucket(bucket).key(key).version_id(version_id);
        let out = self.block(request.send()).ok()?;
        Some(ObjectVersion {
            version_id: version_id.to_owned(),
            etag: out.e_tag().map(str::to_owned),
            last_modified: out.last_modified().map_or(0.0, |t| t.as_secs_f64()),
        })
    }

    /// Every version of `bucket`/`key` (ListObjectVersions), oldest first.
    pub fn versions(&self, bucket: &str, key: &str) -> Vec<ObjectVersion> {
        let request = self.client.list_object_versions().bucket(bucket).prefix(key);
        let Ok(out) = self.block(request.send()) else { return Vec::new() };
        let mut list: Vec<ObjectVersion> = out
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key))
            .filter_map(|v| {
                Some(ObjectVersion {
                    version_id: v.version_id()?.to_owned(),
                    etag: v.e_tag().map(str::to_owned),
                    last_modified: v.last_modified().map_or(0.0, |t| t.as_secs_f64()),
                })
            })
            .collect();
        // S3 lists a key's versions newest first.
        list.reverse();
        list
    }
}

/// The S3 source action of a declaration: (action name, output artifact, bucket, key).
pub fn source_action(declaration: &serde_json::Value) -> Option<(String, String, String, String)> {
    for stage in declaration["stages"].as_array().into_iter().flatten() {
        for a in stage["actions"].as_array().into_iter().flatten() {
            if a["actionTypeId"]["category"] == "Source" && a["actionTypeId"]["provider"] == "S3" {
                return Some((
                    a["name"].as_str()?.to_owned(),
                    a["outputArtifacts"][0]["name"].as_str().unwrap_or("SourceArtifact").to_owned(),
                    a["configuration"]["S3Bucket"].as_str()?.to_owned(),
                    a["configuration"]["S3ObjectKey"].as_str()?.to_owned(),
                ));
            }
        }
    }
    None
}

/// Starts the change-detection thread; it ends when `stop` is set. A version is new when
/// it was written since the pipeline was created (when its EventBridge rule would have been)
/// and not seen before. S3 times have whole seconds at worst, so the creation time is
/// rounded down: only an object written in the second before the pipeline existed could
/// trigger it wrongly, which no test does.
pub fn watch(state: Arc<Mutex<State>>, s3: Arc<S3>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut seen: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        while !stop.load(Ordering::SeqCst) {
            let sources: Vec<(String, f64, String, String)> = state
                .lock()
                .unwrap()
                .pipelines
                .iter()
                .filter_map(|(name, p)| {
                    let (_, _, bucket, key) = source_action(&p.declaration)?;
                    Some((name.clone(), p.created.floor(), bucket, key))
                })
                .collect();
            if state.lock().unwrap().faults.hold_s3_events {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            for (pipeline, created, bucket, key) in sources {
                let known = seen.entry(pipeline.clone()).or_default();
                for v in s3.versions(&bucket, &key) {
                    if v.last_modified >= created && known.insert(v.version_id.clone()) {
                        let _ = state.lock().unwrap().start_with_revision(
                            &pipeline,
                            BTreeMap::new(),
                            "CloudWatchEvent",
                            Some(v),
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}
