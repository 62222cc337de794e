//! AWS: one `SdkConfig` per run, built once from the standard credential chain and the
//! environment's region, and the service clients built from it. Everything that talks
//! to AWS takes a client from here; nothing else reads AWS settings.
//!
//! Endpoints follow the SDK's own settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, ...),
//! which is how the tests point gantry at local stand-ins. With a custom S3 endpoint,
//! requests use path-style addressing, as local S3 servers on an IP address need.

pub mod oidc;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Retries for transient failures (throttling, 5xx, timeouts, resets): the SDK's standard
/// mode, which retries only what is safe to retry, with exponential backoff and jitter.
const MAX_ATTEMPTS: u32 = 5;

/// Loads the shared configuration for an environment of gantry.toml: its region, and in
/// GitHub Actions, when it names a `role_arn`, credentials from the workflow's OIDC token
/// for that role (`oidc`), refreshed before they expire. Elsewhere, the standard chain.
pub async fn load_env(env: &crate::config::Environment) -> SdkConfig {
    load_for(env.region.as_ref().map(crate::config::Region::as_str), env.role_arn.as_ref().map(|r| r.as_str())).await
}

/// [`load_env`] from an environment's region and role (what deploy targets keep of it).
pub async fn load_for(region: Option<&str>, role_arn: Option<&str>) -> SdkConfig {
    let in_actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    let Some(role) = role_arn.filter(|_| in_actions) else {
        return load(region).await;
    };
    let base = loader(region).no_credentials().load().await;
    let provider: aws_credential_types::provider::SharedCredentialsProvider = match oidc::OidcSettings::from_env(role) {
        Ok(settings) => aws_credential_types::provider::SharedCredentialsProvider::new(oidc::OidcCredentials::new(
            settings,
            sts(&base),
        )),
        // Every AWS call then fails with this message (the workflow lacks id-token: write).
        Err(message) => aws_credential_types::provider::SharedCredentialsProvider::new(Missing(message)),
    };
    base.into_builder().credentials_provider(provider).build()
}

/// A provider that can only say why there are no credentials.
#[derive(Debug)]
struct Missing(String);

impl aws_credential_types::provider::ProvideCredentials for Missing {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(self.0.clone()),
        ))
    }
}

/// Loads the shared configuration. `region` comes from the environment in gantry.toml;
/// without it the SDK's own chain decides (AWS_REGION, profile).
pub async fn load(region: Option<&str>) -> SdkConfig {
    loader(region).load().await
}

fn loader(region: Option<&str>) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                // A stalled transfer fails this attempt and is retried; each attempt moves
                // at most one part (64 MiB at most), so a minute is generous.
                .operation_attempt_timeout(attempt_timeout())
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    loader
}

/// `GANTRY_AWS_MAX_ATTEMPTS` (e.g. `1`) lowers the attempts, for tests that check how gantry
/// itself handles throttling and errors the SDK would retry.
fn max_attempts() -> u32 {
    std::env::var("GANTRY_AWS_MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(MAX_ATTEMPTS)
}

/// `GANTRY_AWS_ATTEMPT_TIMEOUT` (e.g. `10s`) shortens the per-attempt deadline, for tests
/// that stall a transfer on purpose; the default is 60 s.
fn attempt_timeout() -> Duration {
    std::env::var("GANTRY_AWS_ATTEMPT_TIMEOUT")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(60))
}

/// The S3 client, with path-style addressing when the endpoint is not AWS's own.
pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    let custom_endpoint = config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let conf = aws_sdk_s3::config::Builder::from(config).force_path_style(custom_endpoint).build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The ECR client.
pub fn ecr(config: &SdkConfig) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::new(config)
}

/// The CodePipeline client.
pub fn codepipeline(config: &SdkConfig) -> aws_sdk_codepipeline::Client {
    aws_sdk_codepipeline::Client::new(config)
}

/// The STS client (the caller's identity, for approvals).
pub fn sts(config: &SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(config)
}

/// The ECS client.
pub fn ecs(config: &SdkConfig) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(config)
}

/// The Elastic Load Balancing (v2: ALB) client.
pub fn elbv2(config: &SdkConfig) -> aws_sdk_elasticloadbalancingv2::Client {
    aws_sdk_elasticloadbalancingv2::Client::new(config)
}

/// The Lambda client (the `lambda` target).
pub fn lambda(config: &SdkConfig) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(config)
}

/// The CloudFront client (the `static` target).
pub fn cloudfront(config: &SdkConfig) -> aws_sdk_cloudfront::Client {
    aws_sdk_cloudfront::Client::new(config)
}

/// The CloudWatch client (alarms that gate a deploy).
pub fn cloudwatch(config: &SdkConfig) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(config)
}
