//! The `lambda` target: a function alias (the one API Gateway invokes) moved from one
//! published version to the next.
//!
//! Everything it knows lives in Lambda itself, so a new process after a crash sees what
//! an earlier one did:
//! - each version gantry publishes carries `gantry VERSION sha256:DIGEST` as its
//!   description, which is how a version is tied to a release;
//! - the **preview alias** (`preview` by default) points at the new version while a
//!   deployment runs: `preview_url` reaches it alone (an API Gateway stage or route that
//!   invokes `FUNCTION:preview`, or that alias's function URL);
//! - the **live alias** carries the traffic split: its version is the stable one, and
//!   `AdditionalVersionWeights` gives the new version its share. At 100% the alias points
//!   at the new version and its description names the version to go back to
//!   (`gantry-previous-version=N`) until the old version is retired.
//!
//! `start_new` updates the function's code from the release zip that `gantry publish` put
//! in the release bucket, waits until `LastUpdateStatus` is `Successful`, and publishes a
//! version only if its `CodeSha256` is the zip's (base64 SHA-256); a version published
//! earlier for the same release is used again.

mod alarms;
pub(crate) mod sdk;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_lambda::types::{AliasRoutingConfiguration, FunctionConfiguration, LastUpdateStatus, State};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{Live, LiveVersion, Release, Target, TargetEnv, TargetError};
use crate::config;

/// Longest wait for a code update to finish (the engine's phase deadline usually ends it first).
const UPDATE_DEADLINE: Duration = Duration::from_secs(600);
/// The live alias's description while it points at a new version not yet retired.
const PREVIOUS_MARK: &str = "gantry-previous-version=";

pub struct LambdaTarget {
    name: String,
    settings: config::LambdaTarget,
    env: TargetEnv,
    /// For a container-image function: the image's ECR repository and the registry host
    /// that overrides ECR's repository URI, from `[images]` and the environment.
    image_repository: Option<(String, Option<String>)>,
    clients: OnceCell<Clients>,
    alarms_checked: bool,
}

struct Clients {
    lambda: aws_sdk_lambda::Client,
    s3: aws_sdk_s3::Client,
    ecr: aws_sdk_ecr::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
}

/// The release's code for this function: the published zip, or the image pinned by digest.
enum Source {
    Zip { file: String, sha256: [u8; 32] },
    Image(crate::targets::ecs::image::Pinned),
}

impl Source {
    /// What Lambda reports as `CodeSha256` for this code: the zip's SHA-256 in base64, or
    /// for a container image the hex of its manifest digest.
    fn code_sha256(&self) -> String {
        match self {
            Self::Zip { sha256, .. } => base64::engine::general_purpose::STANDARD.encode(sha256),
            Self::Image(pinned) => pinned.digest.trim_start_matches("sha256:").to_owned(),
        }
    }
}

/// What the two aliases say, as version numbers.
#[derive(Debug, Clone, PartialEq)]
struct Aliases {
    /// The live alias's own version.
    live: String,
    /// Its additional version and that version's weight (0.0 to 1.0).
    weighted: Option<(String, f64)>,
    /// The version its description names to go back to.
    previous: Option<String>,
    /// The preview alias's version, when that alias exists.
    preview: Option<String>,
}

/// Who is stable and who is new, by version number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Roles {
    stable: String,
    new: Option<String>,
    percent: u8,
}

impl Aliases {
    fn roles(&self) -> Roles {
        if let Some((version, weight)) = &self.weighted {
            let percent = (weight * 100.0).round().clamp(0.0, 100.0) as u8;
            return Roles { stable: self.live.clone(), new: Some(version.clone()), percent };
        }
        if let Some(previous) = self.previous.as_ref().filter(|p| **p != self.live) {
            return Roles { stable: previous.clone(), new: Some(self.live.clone()), percent: 100 };
        }
        match self.preview.as_ref().filter(|p| **p != self.live) {
            Some(preview) => Roles { stable: self.live.clone(), new: Some(preview.clone()), percent: 0 },
            None => Roles { stable: self.live.clone(), new: None, percent: 0 },
        }
    }
}

impl LambdaTarget {
    /// `image_repository`: for a container-image function, the image's ECR repository and
    /// the environment's registry host (when it overrides ECR's repository URI).
    pub fn new(
        name: &str,
        settings: &config::LambdaTarget,
        env: TargetEnv,
        image_repository: Option<(String, Option<String>)>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            settings: settings.clone(),
            env,
            image_repository,
            clients: OnceCell::new(),
            alarms_checked: false,
        }
    }

    fn function(&self) -> &str {
        &self.settings.function
    }

    fn live_alias(&self) -> &str {
        self.settings.alias.as_deref().unwrap_or("live")
    }

    fn preview_alias(&self) -> &str {
        self.settings.preview_alias.as_deref().unwrap_or("preview")
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| async {
                let role = self.env.role_arn.as_deref();
                let sdk = crate::aws::load_for(self.env.region.as_deref(), role).await;
                // The release's zip and image are read where the environment publishes them
                // (`preflight` refuses a function in another region).
                let published = if self.env.publish_region == self.env.region {
                    sdk.clone()
                } else {
                    crate::aws::load_for(self.env.publish_region.as_deref(), role).await
                };
                Clients {
                    lambda: crate::aws::lambda(&sdk),
                    s3: crate::aws::s3(&published),
                    ecr: crate::aws::ecr(&published),
                    cloudwatch: crate::aws::cloudwatch(&sdk),
                }
            })
            .await
    }

    fn alias_what(&self, alias: &str) -> String {
        format!("alias `{alias}` of Lambda function `{}`", self.function())
    }

    /// The alias's version, weights and description; `None` when the alias does not exist.
    async fn alias(
        &self,
        alias: &str,
    ) -> Result<Option<aws_sdk_lambda::operation::get_alias::GetAliasOutput>, TargetError> {
        let lambda = &self.clients().await.lambda;
        match lambda.get_alias().function_name(self.function()).name(alias).send().await {
            Ok(out) => Ok(Some(out)),
            Err(e) if sdk::kind(&e) == sdk::Kind::NotFound => Ok(None),
            Err(e) => Err(sdk::error("lambda:GetAlias", &self.alias_what(alias), "", e)),
        }
    }

    async fn aliases(&self) -> Result<Aliases, TargetError> {
        self.function_exists().await?;
        let live_alias = self.live_alias();
        let Some(live) = self.alias(live_alias).await? else {
            return Err(TargetError::new(format!("{} does not exist", self.alias_what(live_alias))).with_hint(format!(
                "create it on the version API Gateway should serve: `aws lambda create-alias --function-name {} --name {live_alias} --function-version 1`, or set `alias` in the target's settings",
                self.function()
            )));
        };
        let weighted = live
            .routing_config()
            .and_then(AliasRoutingConfiguration::additional_version_weights)
            .and_then(|w| w.iter().next().map(|(v, w)| (v.clone(), *w)));
        let previous = live.description().and_then(|d| d.strip_prefix(PREVIOUS_MARK)).map(str::to_owned);
        let preview = self.alias(self.preview_alias()).await?.and_then(|a| a.function_version().map(str::to_owned));
        Ok(Aliases { live: live.function_version().unwrap_or("$LATEST").to_owned(), weighted, previous, preview })
    }

    async fn function_exists(&self) -> Result<(), TargetError> {
        let lambda = &self.clients().await.lambda;
        lambda.get_function_configuration().function_name(self.function()).send().await.map(|_| ()).map_err(|e| {
            sdk::error(
                "lambda:GetFunctionConfiguration",
                &format!("Lambda function `{}`", self.function()),
                &format!(
                    "check `function` in [targets.{}] and the environment's region ({})",
                    self.name,
                    self.env.region.as_deref().unwrap_or("from AWS_REGION")
                ),
                e,
            )
        })
    }

    async fn configuration(&self, qualifier: &str) -> Result<FunctionConfiguration, TargetError> {
        let lambda = &self.clients().await.lambda;
        let out = lambda
            .get_function_configuration()
            .function_name(self.function())
            .qualifier(qualifier)
            .send()
            .await
            .map_err(|e| {
                sdk::error(
                    "lambda:GetFunctionConfiguration",
                    &format!("version {qualifier} of Lambda function `{}`", self.function()),
                    "",
                    e,
                )
            })?;
        Ok(FunctionConfiguration::builder()
            .set_version(out.version().map(str::to_owned))
            .set_description(out.description().map(str::to_owned))
            .set_code_sha256(out.code_sha256().map(str::to_owned))
            .set_state(out.state().cloned())
            .set_state_reason(out.state_reason().map(str::to_owned))
            .set_last_update_status(out.last_update_status().cloned())
            .set_last_update_status_reason(out.last_update_status_reason().map(str::to_owned))
            .build())
    }

    /// The release a published version belongs to, from its description.
    async fn release_of(&self, version: &str) -> Result<Option<LiveVersion>, TargetError> {
        let config = self.configuration(version).await?;
        Ok(parse_description(config.description().unwrap_or_default()).map(|(version, digest)| LiveVersion {
            version,
            digest,
            replicas: 1,
        }))
    }

    async fn set_alias(
        &self,
        alias: &str,
        version: &str,
        weighted: Option<(&str, f64)>,
        description: &str,
    ) -> Result<(), TargetError> {
        let lambda = &self.clients().await.lambda;
        let weights: HashMap<String, f64> = weighted.map(|(v, w)| (v.to_owned(), w)).into_iter().collect();
        let routing = AliasRoutingConfiguration::builder().set_additional_version_weights(Some(weights)).build();
        lambda
            .update_alias()
            .function_name(self.function())
            .name(alias)
            .function_version(version)
            .routing_config(routing)
            .description(description)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk::error("lambda:UpdateAlias", &self.alias_what(alias), "", e))
    }

    /// Points the preview alias at `version`, creating the alias the first time.
    async fn set_preview(&self, version: &str) -> Result<(), TargetError> {
        let alias = self.preview_alias();
        if self.alias(alias).await?.is_some() {
            return self.set_alias(alias, version, None, "gantry: the version being deployed").await;
        }
        let lambda = &self.clients().await.lambda;
        lambda
            .create_alias()
            .function_name(self.function())
            .name(alias)
            .function_version(version)
            .description("gantry: the version being deployed")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk::error("lambda:CreateAlias", &self.alias_what(alias), "", e))
    }

    /// The release's code: its zip on disk and that zip's SHA-256, or, for a container-image
    /// function, the image `gantry image push --version V` pushed, pinned by digest in ECR.
    async fn source(&self, release: &Release) -> Result<Source, TargetError> {
        if let Some(image) = &self.settings.image {
            let (repository, registry) = self.image_repository.clone().ok_or_else(|| {
                TargetError::new(format!("target `{}`: unknown image `{image}`", self.name))
                    .with_hint(format!("declare it under [images.{image}]"))
            })?;
            let ecr = &self.clients().await.ecr;
            let pinned = crate::targets::ecs::image::resolve(
                ecr,
                image.as_str(),
                &repository,
                registry.as_deref(),
                &release.version,
                &self.env.name,
            )
            .await?;
            return Ok(Source::Image(pinned));
        }
        let Some(name) = &self.settings.artifact else {
            return Err(TargetError::new(format!("target `{}` names neither `artifact` nor `image`", self.name)));
        };
        let path = release.artifact(name.as_str())?;
        let bytes = std::fs::read(path)
            .map_err(|e| TargetError::new(format!("cannot read {}", path.display())).with_source(e))?;
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_owned();
        Ok(Source::Zip { file, sha256: Sha256::digest(&bytes).into() })
    }

    /// The published zip's key, after checking it holds the release's bytes.
    async fn published_artifact(
        &self,
        release: &Release,
        file: &str,
        sha256: &[u8; 32],
    ) -> Result<(String, String), TargetError> {
        let s3 = &self.clients().await.s3;
        self.env.published_artifact(s3, "a lambda target deploys the zip", release, file, sha256).await
    }

    /// A version published earlier for this release, with this code.
    async fn published_version(&self, description: &str, code_sha256: &str) -> Result<Option<String>, TargetError> {
        let lambda = &self.clients().await.lambda;
        let mut pages = lambda.list_versions_by_function().function_name(self.function()).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                sdk::error("lambda:ListVersionsByFunction", &format!("Lambda function `{}`", self.function()), "", e)
            })?;
            if let Some(found) = page.versions().iter().find(|v| {
                v.version() != Some("$LATEST")
                    && v.description() == Some(description)
                    && v.code_sha256() == Some(code_sha256)
            }) {
                return Ok(found.version().map(str::to_owned));
            }
        }
        Ok(None)
    }

    /// Updates `$LATEST` from the published zip, waits for the update, and publishes it.
    async fn publish(&self, release: &Release, source: &Source, description: &str) -> Result<String, TargetError> {
        let expected = source.code_sha256();
        let lambda = &self.clients().await.lambda;
        let what = format!("Lambda function `{}`", self.function());
        let (update, from) = match source {
            Source::Zip { file, sha256 } => {
                let (bucket, key) = self.published_artifact(release, file, sha256).await?;
                let from = format!("s3://{bucket}/{key}");
                (lambda.update_function_code().s3_bucket(bucket).s3_key(key), from)
            }
            Source::Image(pinned) => (lambda.update_function_code().image_uri(pinned.reference()), pinned.reference()),
        };
        // An update still in progress (another deploy, the console) would refuse this one.
        self.wait_updated().await?;
        update
            .function_name(self.function())
            .send()
            .await
            .map_err(|e| sdk::error("lambda:UpdateFunctionCode", &what, "", e))?;
        let latest = self.wait_updated().await?;
        let actual = latest.code_sha256().unwrap_or_default();
        if actual != expected {
            return Err(code_mismatch(&what, "$LATEST", actual, &expected, &from));
        }
        let published = lambda
            .publish_version()
            .function_name(self.function())
            .code_sha256(&expected)
            .description(description)
            .send()
            .await
            .map_err(|e| sdk::error("lambda:PublishVersion", &what, "", e))?;
        let version = published.version().unwrap_or_default().to_owned();
        if published.code_sha256() != Some(expected.as_str()) {
            return Err(code_mismatch(&what, &version, published.code_sha256().unwrap_or_default(), &expected, &from));
        }
        if published.description() != Some(description) {
            // Lambda publishes nothing when code and configuration equal the last version's.
            return Err(TargetError::new(format!(
                "Lambda published no new version of `{}`: its code is identical to version {version} ({})",
                self.function(),
                published.description().unwrap_or("no description")
            ))
            .with_hint(
                "Lambda keeps one version per code and configuration: deploy the release that version belongs to",
            ));
        }
        Ok(version)
    }

    /// Polls `$LATEST` until its update finished, failed or the deadline passed.
    async fn wait_updated(&self) -> Result<FunctionConfiguration, TargetError> {
        let deadline = Instant::now() + UPDATE_DEADLINE;
        let mut delay = Duration::from_millis(250);
        loop {
            let latest = self.configuration("$LATEST").await?;
            match update_progress(&latest) {
                Progress::Done => return Ok(latest),
                Progress::Failed(reason) => {
                    return Err(TargetError::new(format!(
                        "the code update of Lambda function `{}` failed: {reason}",
                        self.function()
                    ))
                    .with_hint("see the function's LastUpdateStatusReason in the Lambda console; fix the package and deploy again"));
                }
                Progress::Waiting(status) if Instant::now() + delay > deadline => {
                    return Err(TargetError::new(format!(
                        "the code update of Lambda function `{}` did not finish within {} (last status: {status})",
                        self.function(),
                        humantime::format_duration(UPDATE_DEADLINE)
                    )));
                }
                Progress::Waiting(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

fn code_mismatch(what: &str, version: &str, actual: &str, expected: &str, from: &str) -> TargetError {
    TargetError::new(format!("{what} version {version} has CodeSha256 {actual}, not the release code's {expected} ({from})"))
        .with_hint(
            "something else changed the function's code meanwhile, or the published code is not the release's: deploy again",
        )
}

/// Where a code update is.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    Done,
    Waiting(String),
    Failed(String),
}

fn update_progress(c: &FunctionConfiguration) -> Progress {
    if c.state() == Some(&State::Failed) {
        return Progress::Failed(format!("state Failed: {}", c.state_reason().unwrap_or("no reason given")));
    }
    match c.last_update_status() {
        Some(LastUpdateStatus::Failed) => {
            Progress::Failed(c.last_update_status_reason().unwrap_or("no reason given").to_owned())
        }
        Some(LastUpdateStatus::Successful) | None if !matches!(c.state(), Some(State::Pending)) => Progress::Done,
        other => Progress::Waiting(format!(
            "LastUpdateStatus {}, State {}",
            other.map_or("none", LastUpdateStatus::as_str),
            c.state().map_or("none", State::as_str)
        )),
    }
}

/// `gantry 1.2.3 sha256:HEX` → the release's version and digest.
fn parse_description(description: &str) -> Option<(semver::Version, String)> {
    let mut words = description.split_whitespace();
    if words.next() != Some("gantry") {
        return None;
    }
    let version = words.next()?.parse().ok()?;
    let digest = words.next()?.strip_prefix("sha256:")?.to_owned();
    Some((version, digest))
}

fn description(release: &Release) -> String {
    format!("gantry {} sha256:{}", release.version, release.digest)
}

impl Target for LambdaTarget {
    fn replicas(&self) -> u32 {
        1
    }

    fn public_url(&self) -> String {
        self.settings.url.clone()
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        let roles = self.aliases().await?.roles();
        if !self.alarms_checked {
            // A configured alarm that does not exist is found before anything changes.
            self.alarms().await?;
            self.alarms_checked = true;
        }
        let stable = self.release_of(&roles.stable).await?;
        let new = match &roles.new {
            Some(version) => self.release_of(version).await?,
            None => None,
        };
        let new_weight = if new.is_some() { roles.percent } else { 0 };
        Ok(Live { stable, new, new_weight })
    }

    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        // UpdateFunctionCode takes an S3 bucket "in the same Amazon Web Services Region as
        // your function" and an image from ECR in the function's region (Lambda API
        // reference), and the release lives in the environment's region.
        if let Some(own) = &self.env.region
            && self.env.publish_region.as_ref() != Some(own)
        {
            let home = self.env.publish_region.as_deref().unwrap_or("the default region");
            return Err(TargetError::new(format!(
                "target `{}`: Lambda function `{}` is in {own}, but environment `{}` publishes releases in {home}, and Lambda takes code only from its own region",
                self.name,
                self.function(),
                self.env.name
            ))
            .with_hint(format!(
                "deploy {own} from its own environment (with `region = \"{own}\"` and a `release_bucket` and `registry` there), or drop the target's `region`"
            )));
        }
        // An image is checked to be in ECR by `source` itself.
        let source = self.source(release).await?;
        if let Source::Zip { file, sha256 } = &source
            && self.published_version(&description(release), &source.code_sha256()).await?.is_none()
        {
            self.published_artifact(release, file, sha256).await?;
        }
        Ok(())
    }

    async fn start_new(&mut self, release: &Release, _replicas: u32) -> Result<String, TargetError> {
        let source = self.source(release).await?;
        let code_sha256 = source.code_sha256();
        let description = description(release);
        let aliases = self.aliases().await?;
        if let Some(preview) = &aliases.preview {
            let config = self.configuration(preview).await?;
            if config.description() == Some(description.as_str()) && config.code_sha256() == Some(code_sha256.as_str())
            {
                return Ok(self.settings.preview_url.clone());
            }
        }
        let version = match self.published_version(&description, &code_sha256).await? {
            Some(version) => version,
            None => self.publish(release, &source, &description).await?,
        };
        self.set_preview(&version).await?;
        Ok(self.settings.preview_url.clone())
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        let roles = self.aliases().await?.roles();
        let Some(new) = roles.new else {
            return Err(TargetError::new(format!(
                "no new version of `{}` to send traffic to: the preview alias `{}` is on the live version",
                self.function(),
                self.preview_alias()
            )));
        };
        let live = self.live_alias().to_owned();
        match percent {
            0 => self.set_alias(&live, &roles.stable, None, "").await,
            100 => self.set_alias(&live, &new, None, &format!("{PREVIOUS_MARK}{}", roles.stable)).await,
            p => self.set_alias(&live, &roles.stable, Some((&new, f64::from(p) / 100.0)), "").await,
        }
    }

    async fn replace(&mut self, old: u32) -> Result<(), TargetError> {
        // One alias, no replicas: replacing them all is sending all traffic over.
        self.shift(if old == 0 { 100 } else { 0 }).await
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        let roles = self.aliases().await?.roles();
        if let Some(new) = roles.new {
            let live = self.live_alias().to_owned();
            self.set_alias(&live, &new, None, "").await?;
        }
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        let aliases = self.aliases().await?;
        let stable = aliases.roles().stable;
        let live = self.live_alias().to_owned();
        if aliases.live != stable || aliases.weighted.is_some() || aliases.previous.is_some() {
            self.set_alias(&live, &stable, None, "").await?;
        }
        if aliases.preview.as_ref().is_some_and(|p| *p != stable) {
            self.set_preview(&stable).await?;
        }
        Ok(())
    }

    async fn alarms(&self) -> Result<Vec<String>, TargetError> {
        if self.settings.alarms.is_empty() {
            return Ok(Vec::new());
        }
        alarms::firing(&self.clients().await.cloudwatch, &self.settings.alarms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases(live: &str, weighted: Option<(&str, f64)>, previous: Option<&str>, preview: Option<&str>) -> Aliases {
        Aliases {
            live: live.into(),
            weighted: weighted.map(|(v, w)| (v.into(), w)),
            previous: previous.map(Into::into),
            preview: preview.map(Into::into),
        }
    }

    fn roles(stable: &str, new: Option<&str>, percent: u8) -> Roles {
        Roles { stable: stable.into(), new: new.map(Into::into), percent }
    }

    #[test]
    fn the_aliases_say_who_is_stable_and_who_is_new() {
        assert_eq!(aliases("3", None, None, None).roles(), roles("3", None, 0));
        assert_eq!(aliases("3", None, None, Some("3")).roles(), roles("3", None, 0));
        assert_eq!(aliases("3", None, None, Some("4")).roles(), roles("3", Some("4"), 0), "started, no traffic");
        assert_eq!(aliases("3", Some(("4", 0.1)), None, Some("4")).roles(), roles("3", Some("4"), 10));
        assert_eq!(
            aliases("4", None, Some("3"), Some("4")).roles(),
            roles("3", Some("4"), 100),
            "all traffic, not retired"
        );
        assert_eq!(aliases("4", None, Some("4"), Some("4")).roles(), roles("4", None, 0));
    }

    #[test]
    fn descriptions_tie_versions_to_releases() {
        let (version, digest) = parse_description("gantry 1.2.3-rc.1 sha256:abc").unwrap();
        assert_eq!((version.to_string(), digest.as_str()), ("1.2.3-rc.1".into(), "abc"));
        assert_eq!(parse_description("deployed by hand"), None);
        assert_eq!(parse_description("gantry 1.2 sha256:abc"), None);
    }

    #[test]
    fn a_code_update_is_done_failed_or_still_going() {
        let config = |state: Option<State>, status: Option<LastUpdateStatus>| {
            FunctionConfiguration::builder()
                .set_state(state)
                .set_last_update_status(status)
                .last_update_status_reason("The unzipped size must be smaller than 262144000 bytes")
                .build()
        };
        assert_eq!(update_progress(&config(Some(State::Active), Some(LastUpdateStatus::Successful))), Progress::Done);
        assert!(matches!(
            update_progress(&config(Some(State::Active), Some(LastUpdateStatus::InProgress))),
            Progress::Waiting(_)
        ));
        assert!(matches!(update_progress(&config(Some(State::Pending), None)), Progress::Waiting(_)));
        assert_eq!(
            update_progress(&config(Some(State::Active), Some(LastUpdateStatus::Failed))),
            Progress::Failed("The unzipped size must be smaller than 262144000 bytes".into())
        );
    }
}
