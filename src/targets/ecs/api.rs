//! AWS errors as target errors: each names the call and the resource, and the usual
//! causes (missing permission, a resource that does not exist) get a hint.

use std::fmt::Display;

use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::targets::TargetError;

/// `what` is the call in words with the resource it touched: `describe ECS service `api``.
pub fn error<E>(what: impl Display, e: SdkError<E, HttpResponse>) -> TargetError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().unwrap_or_default().to_owned();
    let message = e.message().map(str::to_owned).unwrap_or_else(|| DisplayErrorContext(&e).to_string());
    let hint = match code.as_str() {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "UnrecognizedClientException" => Some(
            "the credentials gantry runs with lack this permission: grant it to the deploy role (ecs:*, \
             elasticloadbalancing:Describe*/ModifyListener, ecr:DescribeImages, iam:PassRole for the task roles)"
                .to_owned(),
        ),
        "ClusterNotFoundException" => Some("check `cluster` in the target's `ecs` table and the region".into()),
        "ServiceNotFoundException" => Some("check `service` in the target's `ecs` table".into()),
        "ListenerNotFound" => Some("check `listener_arn` and `test_listener_arn` in the target's `ecs` table".into()),
        "TargetGroupNotFound" => Some("check the target group ARNs in the target's `ecs` table".into()),
        "LoadBalancerNotFound" => Some("the listener's load balancer is gone".into()),
        "RepositoryNotFoundException" => Some("check `repository` under [images] and the region".into()),
        _ => None,
    };
    let detail = if code.is_empty() { message } else { format!("{code}: {message}") };
    let error = TargetError::new(format!("cannot {what}: {detail}"));
    match hint {
        Some(h) => error.with_hint(h),
        None => error,
    }
}

/// Whether an SDK error carries `code`.
pub fn is<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>, code: &str) -> bool {
    e.code() == Some(code)
}
