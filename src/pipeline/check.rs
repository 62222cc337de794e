//! `gantry plan`'s pipeline check: the environment's pipeline definition (GetPipeline) has
//! the S3 source `gantry publish` writes, a deploy action, and, for approval-required
//! environments, a Manual approval in a stage before the deploy.

use super::{Declaration, Pipeline};
use crate::config;

/// What `plan` shows about the pipeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DefinitionCheck {
    pub pipeline: String,
    /// The S3 object the source action must watch.
    pub expected_source: String,
    /// What is missing or wrong; empty when the definition is as expected.
    pub problems: Vec<String>,
}

/// The key `gantry publish` writes the pipeline source zip to (same rule as publish).
pub fn source_key(project: &str, env: &config::Environment) -> String {
    let prefix = env.release_prefix.clone().unwrap_or_else(|| "releases".into());
    env.pipeline_source_key.clone().unwrap_or_else(|| format!("{prefix}/{project}/pipeline-source.zip"))
}

/// Reads and checks the environment's pipeline; `None` when it names none. A pipeline
/// that cannot be read is reported as a problem, not an error: `plan` changes nothing.
pub async fn definition(project: &str, env: &config::Environment) -> Option<DefinitionCheck> {
    let name = env.pipeline.as_deref()?;
    let bucket = env.release_bucket.as_ref().map(ToString::to_string);
    let key = source_key(project, env);
    let expected_source = format!("s3://{}/{key}", bucket.as_deref().unwrap_or("RELEASE_BUCKET"));
    let sdk = crate::aws::load_env(env).await;
    let pipeline = Pipeline::new(crate::aws::codepipeline(&sdk), name);
    let problems = match pipeline.declaration().await {
        Ok(decl) => problems(&decl, bucket.as_deref(), &key, env.approval == config::Approval::Required),
        Err(e) => vec![format!("cannot read it: {e}")],
    };
    Some(DefinitionCheck { pipeline: name.to_owned(), expected_source, problems })
}

/// What the declaration lacks, in words a user can act on.
pub fn problems(decl: &Declaration, bucket: Option<&str>, key: &str, approval_required: bool) -> Vec<String> {
    let mut out = Vec::new();
    let position =
        |pred: &dyn Fn(&super::DeclaredAction) -> bool| decl.stages.iter().position(|s| s.actions.iter().any(pred));
    let source = position(&|a| {
        a.category == "Source"
            && a.provider == "S3"
            && a.configuration.get("S3ObjectKey").map(String::as_str) == Some(key)
            && bucket.is_none_or(|b| a.configuration.get("S3Bucket").map(String::as_str) == Some(b))
    });
    if source.is_none() {
        out.push(format!("no S3 source action watching s3://{}/{key}", bucket.unwrap_or("RELEASE_BUCKET")));
    }
    let deploy = position(&|a| a.category == "Build" || a.category == "Deploy");
    if deploy.is_none() {
        out.push("no deploy action (a CodeBuild build or a Deploy action that runs `gantry deploy`)".into());
    }
    if approval_required {
        match (position(&|a| a.category == "Approval"), deploy) {
            (None, _) => out.push("no manual approval action, which `approval = \"required\"` needs".into()),
            (Some(a), Some(d)) if a >= d => {
                out.push(format!(
                    "the manual approval (stage `{}`) does not come before the deploy stage",
                    decl.stages[a].name
                ));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{DeclaredAction, DeclaredStage};
    use super::*;

    fn stage(name: &str, category: &str, provider: &str, config: &[(&str, &str)]) -> DeclaredStage {
        DeclaredStage {
            name: name.into(),
            actions: vec![DeclaredAction {
                name: name.into(),
                category: category.into(),
                provider: provider.into(),
                configuration: config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
                outputs: vec![],
            }],
        }
    }

    fn source() -> DeclaredStage {
        stage("Source", "Source", "S3", &[("S3Bucket", "b"), ("S3ObjectKey", "releases/app/pipeline-source.zip")])
    }

    const KEY: &str = "releases/app/pipeline-source.zip";

    #[test]
    fn the_expected_shape_passes() {
        let decl = Declaration {
            stages: vec![
                source(),
                stage("Approval", "Approval", "Manual", &[]),
                stage("Deploy", "Build", "CodeBuild", &[]),
            ],
            variables: Default::default(),
        };
        assert!(problems(&decl, Some("b"), KEY, true).is_empty());
    }

    #[test]
    fn a_missing_or_late_approval_and_a_wrong_source_are_named() {
        let late = Declaration {
            stages: vec![
                source(),
                stage("Deploy", "Build", "CodeBuild", &[]),
                stage("Approval", "Approval", "Manual", &[]),
            ],
            variables: Default::default(),
        };
        assert_eq!(
            problems(&late, Some("b"), KEY, true),
            ["the manual approval (stage `Approval`) does not come before the deploy stage"]
        );
        assert!(problems(&late, Some("b"), KEY, false).is_empty(), "no approval needed");
        let bare =
            Declaration { stages: vec![stage("Deploy", "Build", "CodeBuild", &[])], variables: Default::default() };
        let found = problems(&bare, Some("other"), KEY, true);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("no S3 source action watching s3://other/"), "{found:?}");
        assert!(found[1].starts_with("no manual approval action"), "{found:?}");
    }
}
