//! Publishing a packaged release: artifacts and the release manifest to the
//! environment's S3 release bucket (`s3`, `objects`), and images to ECR (`image`).

pub mod image;
mod release;
pub mod s3;

pub use release::{
    Event, ObjectReport, PublishError, PublishPlan, PublishReport, PublishRequest, Role, Status, apply, plan,
};
