//! The CloudFront distribution in front of the bucket: its origin path (the blue-green
//! switch, changed with `If-Match` on the configuration's ETag so a concurrent edit is
//! never overwritten), and invalidations, waited on until CloudFront reports them done.
//! Statuses are compared without regard to case (AWS says `Completed`, moto `COMPLETED`).

use std::time::Duration;

use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use tokio::time::Instant;

use crate::targets::TargetError;
use crate::targets::lambda::sdk;

/// Longest wait for an invalidation or a configuration change to finish.
const WAIT_DEADLINE: Duration = Duration::from_secs(900);
/// More paths than this are invalidated as `/*`.
const MAX_PATHS: usize = 1000;

pub struct Cdn {
    pub client: aws_sdk_cloudfront::Client,
    pub id: String,
    /// The origin whose path is switched; `None`: the distribution's only origin.
    pub origin_id: Option<String>,
}

impl Cdn {
    fn what(&self) -> String {
        format!("CloudFront distribution `{}`", self.id)
    }

    fn missing_hint(&self) -> String {
        "check `distribution` in the target's settings (the id, e.g. E2QWRUHAPOMQZL, not the domain name)".into()
    }

    /// The switched origin's path, with its ETag for an update.
    pub async fn origin_path(
        &self,
    ) -> Result<(String, aws_sdk_cloudfront::types::DistributionConfig, String), TargetError> {
        let out = self
            .client
            .get_distribution_config()
            .id(&self.id)
            .send()
            .await
            .map_err(|e| sdk::error("cloudfront:GetDistributionConfig", &self.what(), &self.missing_hint(), e))?;
        let config = out
            .distribution_config()
            .cloned()
            .ok_or_else(|| TargetError::new(format!("{} returned no configuration", self.what())))?;
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let path = self.origin(&config)?.origin_path.clone().unwrap_or_default();
        Ok((path, config, etag))
    }

    fn origin<'c>(
        &self,
        config: &'c aws_sdk_cloudfront::types::DistributionConfig,
    ) -> Result<&'c aws_sdk_cloudfront::types::Origin, TargetError> {
        let origins = config.origins.as_ref().map(|o| o.items.as_slice()).unwrap_or_default();
        let ids = || origins.iter().map(|o| format!("`{}`", o.id)).collect::<Vec<_>>().join(", ");
        match &self.origin_id {
            Some(id) => origins.iter().find(|o| o.id == *id).ok_or_else(|| {
                TargetError::new(format!("{} has no origin `{id}`", self.what()))
                    .with_hint(format!("its origins: {}; set `origin_id` to one of them", ids()))
            }),
            None if origins.len() == 1 => Ok(&origins[0]),
            None => Err(TargetError::new(format!(
                "{} has {} origins: gantry cannot tell which one serves the site",
                self.what(),
                origins.len()
            ))
            .with_hint(format!("set `origin_id` in the target's settings to one of {}", ids()))),
        }
    }

    /// Points the origin at `path` (e.g. `/www/releases/1.2.0-abcd`), then waits until the
    /// distribution is deployed. A concurrent change (stale ETag) is read again and retried.
    pub async fn switch_origin(&self, path: &str) -> Result<(), TargetError> {
        for _ in 0..3 {
            let (current, mut config, etag) = self.origin_path().await?;
            if current == path {
                return self.wait_deployed().await;
            }
            let id = self.origin(&config)?.id.clone();
            if let Some(origins) = config.origins.as_mut() {
                for origin in origins.items.iter_mut().filter(|o| o.id == id) {
                    origin.origin_path = Some(path.to_owned());
                }
            }
            match self
                .client
                .update_distribution()
                .id(&self.id)
                .if_match(&etag)
                .distribution_config(config)
                .send()
                .await
            {
                Ok(_) => return self.wait_deployed().await,
                Err(e) if sdk::kind(&e) == sdk::Kind::Conflict => continue,
                Err(e) => {
                    return Err(sdk::error("cloudfront:UpdateDistribution", &self.what(), &self.missing_hint(), e));
                }
            }
        }
        Err(TargetError::new(format!("{} kept changing while gantry tried to switch its origin path", self.what()))
            .with_hint("someone else is editing the distribution: try again when they are done"))
    }

    async fn wait_deployed(&self) -> Result<(), TargetError> {
        wait(
            &format!("{} to deploy", self.what()),
            || async {
                let out = self
                    .client
                    .get_distribution()
                    .id(&self.id)
                    .send()
                    .await
                    .map_err(|e| sdk::error("cloudfront:GetDistribution", &self.what(), &self.missing_hint(), e))?;
                Ok(out.distribution().map(|d| d.status().to_owned()).unwrap_or_default())
            },
            "Deployed",
        )
        .await
    }

    /// Invalidates `paths` and waits until the invalidation has completed.
    pub async fn invalidate(&self, paths: &[String]) -> Result<(), TargetError> {
        if paths.is_empty() {
            return Ok(());
        }
        let items = if paths.len() > MAX_PATHS { vec!["/*".to_owned()] } else { paths.to_vec() };
        let batch = InvalidationBatch::builder()
            .paths(Paths::builder().quantity(items.len() as i32).set_items(Some(items)).build().expect("quantity set"))
            .caller_reference(format!("gantry-{}", jiff::Timestamp::now().as_nanosecond()))
            .build()
            .expect("paths and reference set");
        let out = self
            .client
            .create_invalidation()
            .distribution_id(&self.id)
            .invalidation_batch(batch)
            .send()
            .await
            .map_err(|e| sdk::error("cloudfront:CreateInvalidation", &self.what(), &self.missing_hint(), e))?;
        let id = out.invalidation().map(|i| i.id().to_owned()).unwrap_or_default();
        wait(
            &format!("invalidation {id} of {}", self.what()),
            || async {
                let out = self
                    .client
                    .get_invalidation()
                    .distribution_id(&self.id)
                    .id(&id)
                    .send()
                    .await
                    .map_err(|e| sdk::error("cloudfront:GetInvalidation", &self.what(), &self.missing_hint(), e))?;
                Ok(out.invalidation().map(|i| i.status().to_owned()).unwrap_or_default())
            },
            "Completed",
        )
        .await
    }
}

/// Polls `status` with backoff until it equals `done` (any case) or the deadline passes.
async fn wait<F, Fut>(what: &str, status: F, done: &str) -> Result<(), TargetError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<String, TargetError>>,
{
    let deadline = Instant::now() + WAIT_DEADLINE;
    let mut delay = Duration::from_millis(200);
    loop {
        let now = status().await?;
        if now.eq_ignore_ascii_case(done) {
            return Ok(());
        }
        if Instant::now() + delay > deadline {
            return Err(TargetError::new(format!(
                "gave up waiting for {what} after {} (status {now})",
                humantime::format_duration(WAIT_DEADLINE)
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
