//! ECR's control plane: the authorization token that logs gantry in to the registry
//! (`GetAuthorizationToken`, base64 `AWS:<password>`, refreshed before it expires), the
//! registry host it names, and the target repository (`DescribeRepositories`: does it
//! exist, may its tags move).

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ecr::error::DisplayErrorContext;
use base64::Engine as _;

use super::ImageError;
use super::tags::TagPolicy;

/// How long a token without a usable expiry is kept (moto's `expiresAt` is in 2015).
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(600);
/// Tokens are renewed this long before they expire.
const MARGIN: Duration = Duration::from_secs(300);

/// The ECR authorization token, fetched on first use and renewed when due.
pub struct EcrToken {
    client: aws_sdk_ecr::Client,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Clone)]
struct Cached {
    username: String,
    password: String,
    proxy_endpoint: Option<String>,
    renew_at: Instant,
}

impl EcrToken {
    pub fn new(client: aws_sdk_ecr::Client) -> Self {
        Self { client, cached: tokio::sync::Mutex::new(None) }
    }

    /// User name and password for Basic auth; a new token when `fresh` or when due.
    pub async fn basic(&self, fresh: bool) -> Result<(String, String), String> {
        let token = self.current(fresh).await.map_err(|e| format!("{e}: {}", detail(&e)))?;
        Ok((token.username, token.password))
    }

    /// The registry host ECR names for these credentials (`proxyEndpoint` without scheme).
    pub async fn proxy_host(&self) -> Result<Option<String>, ImageError> {
        let token = self.current(false).await?;
        Ok(token.proxy_endpoint.map(|e| {
            let host = e.split_once("://").map_or(e.as_str(), |(_, h)| h);
            host.trim_end_matches('/').to_owned()
        }))
    }

    async fn current(&self, fresh: bool) -> Result<Cached, ImageError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && !fresh
            && Instant::now() < token.renew_at
        {
            return Ok(token.clone());
        }
        let token = self.fetch().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    async fn fetch(&self) -> Result<Cached, ImageError> {
        let operation = "get an ECR authorization token";
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| ImageError::Ecr { operation, message: DisplayErrorContext(&e).to_string() })?;
        let bad = |message: &str| ImageError::Ecr { operation, message: message.to_owned() };
        let data = out.authorization_data().first().ok_or_else(|| bad("the answer holds no authorization data"))?;
        let token = data.authorization_token().ok_or_else(|| bad("the answer holds no token"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("the token is not base64 text"))?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| bad("the token is not `user:password`"))?;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let life = lifetime(data.expires_at().map(|t| t.secs()), now);
        tracing::debug!(lifetime = ?life, endpoint = ?data.proxy_endpoint(), "ECR authorization token");
        Ok(Cached {
            username: username.to_owned(),
            password: password.to_owned(),
            proxy_endpoint: data.proxy_endpoint().map(str::to_owned),
            renew_at: Instant::now() + life,
        })
    }
}

/// How long to use a token that expires at `expires_at` (Unix seconds): until 5 minutes
/// before it expires (half its remaining life when that is shorter); 10 minutes when the
/// expiry is missing or already past, rather than fetching before every request.
pub fn lifetime(expires_at: Option<i64>, now: i64) -> Duration {
    match expires_at {
        Some(at) if at > now => {
            let left = Duration::from_secs((at - now) as u64);
            if left > MARGIN * 2 { left - MARGIN } else { left / 2 }
        }
        _ => UNKNOWN_LIFETIME,
    }
}

/// Checks the repository exists and reads whether its tags may move.
pub async fn repository(
    client: &aws_sdk_ecr::Client,
    name: &str,
    image: &str,
    region: Option<&str>,
) -> Result<TagPolicy, ImageError> {
    let out = client.describe_repositories().repository_names(name).send().await.map_err(|e| {
        if e.as_service_error().is_some_and(|s| s.is_repository_not_found_exception()) {
            let region = region.map(str::to_owned).or_else(|| client.config().region().map(|r| r.to_string()));
            ImageError::RepositoryNotFound { repository: name.to_owned(), region, image: image.to_owned() }
        } else {
            ImageError::Ecr { operation: "describe the ECR repository", message: DisplayErrorContext(&e).to_string() }
        }
    })?;
    let Some(repo) = out.repositories().first() else {
        return Err(ImageError::RepositoryNotFound {
            repository: name.to_owned(),
            region: region.map(str::to_owned),
            image: image.to_owned(),
        });
    };
    let filters = repo.image_tag_mutability_exclusion_filters().iter().map(|f| f.filter().to_owned()).collect();
    Ok(TagPolicy::from_ecr(repo.image_tag_mutability().map(|m| m.as_str()), filters))
}

fn detail(e: &ImageError) -> String {
    match e {
        ImageError::Ecr { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_renew_before_expiry_and_past_expiry_means_unknown() {
        let now = 1_800_000_000;
        assert_eq!(lifetime(Some(now + 12 * 3600), now), Duration::from_secs(12 * 3600 - 300));
        assert_eq!(lifetime(Some(now + 300), now), Duration::from_secs(150));
        // moto answers with an expiry in 2015.
        assert_eq!(lifetime(Some(1_420_070_400), now), UNKNOWN_LIFETIME);
        assert_eq!(lifetime(None, now), UNKNOWN_LIFETIME);
    }
}
