//! Publishing a packaged release: artifacts and the release manifest to the
//! environment's S3 release bucket (`s3`, `objects`), and images to ECR (`image`).

pub mod image;
