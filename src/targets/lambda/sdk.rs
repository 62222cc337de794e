//! AWS SDK errors as `TargetError`s a user can act on: a resource that does not exist,
//! credentials that may not do something, and the rest with the SDK's own explanation.
//! Shared by the `lambda` and `static` targets (every SDK crate shares these error types).

use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::targets::TargetError;

/// What went wrong with a call, sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    AccessDenied,
    /// A conditional write lost to another writer (`PreconditionFailed`, a stale ETag).
    Conflict,
    Other,
}

/// Sorts an SDK error by its code and HTTP status.
pub fn kind<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Kind {
    let code = err.code().unwrap_or_default();
    let status = err.raw_response().map(|r| r.status().as_u16());
    if code.starts_with("NoSuch") || code.contains("NotFound") || status == Some(404) {
        Kind::NotFound
    } else if code.starts_with("AccessDenied") || code == "UnauthorizedOperation" || status == Some(403) {
        Kind::AccessDenied
    } else if code == "PreconditionFailed" || code == "InvalidIfMatchVersion" || status == Some(412) {
        Kind::Conflict
    } else {
        Kind::Other
    }
}

/// `op` (e.g. `lambda:UpdateAlias`) on `what` (e.g. "alias `live` of function `api`")
/// failed; `missing_hint` says what to do when `what` does not exist.
pub fn error<E>(op: &str, what: &str, missing_hint: &str, err: SdkError<E, HttpResponse>) -> TargetError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = err.message().map(|m| format!(": {m}")).unwrap_or_default();
    match kind(&err) {
        Kind::NotFound => TargetError::new(format!("{what} does not exist{detail}")).with_hint(missing_hint),
        Kind::AccessDenied => TargetError::new(format!("access denied: {op} on {what}{detail}")).with_hint(format!(
            "the credentials need `{op}` on it; `aws sts get-caller-identity` shows whose they are"
        )),
        Kind::Conflict | Kind::Other => {
            TargetError::new(format!("{op} on {what} failed: {}", DisplayErrorContext(&err)))
        }
    }
}
