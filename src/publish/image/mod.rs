//! `gantry image push`: images to ECR (or any OCI registry) without a Docker daemon.
