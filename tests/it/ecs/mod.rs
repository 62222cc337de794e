//! An ECS emulator for tests, and the `ecs` target's tests against it and moto.
//!
//! moto's ECS (even with `MOTO_ECS_SERVICE_RUNNING`) never makes a second deployment on
//! UpdateService, never moves `rolloutState`, never starts or stops service tasks, has no
//! deployment circuit breaker, and fails RunTask on FARGATE. gantry's ECS target depends on
//! all of these, so its tests run ECS against this emulator (`model.rs`: the operations
//! gantry calls, in the JSON 1.1 protocol, with the deployment behaviour the ECS developer
//! guide describes) and everything else against moto: ELBv2 (listeners, weights, target
//! group attributes), ECR (image digests), EC2 (the VPC and subnets the ALB needs). The
//! AWS CLI reads the emulator in `the_emulator_speaks_the_ecs_wire_format`, so its wire
//! format is checked by a second client.

mod model;
mod server;
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

pub use model::State;

/// A running emulator; dropping it stops the ticker.
pub struct Emulator {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Emulator {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let url = server::serve(Arc::clone(&state), Arc::clone(&stop));
        let (ticker_state, ticker_stop) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !ticker_stop.load(Ordering::SeqCst) {
                ticker_state.lock().unwrap().tick();
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { url, state, stop }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Calls an operation directly (test setup), panicking on an error.
    pub fn call(&self, op: &str, input: Value) -> Value {
        self.state().call(op, &input).unwrap_or_else(|e| panic!("{op}: {}: {}", e.kind, e.message))
    }

    /// A cluster and a task definition family `api` whose container `api` runs `image`,
    /// as infrastructure code would leave them; returns the task definition ARN.
    pub fn setup_family(&self, cluster: &str, image: &str) -> String {
        self.call("CreateCluster", json!({"clusterName": cluster}));
        let td = self.call(
            "RegisterTaskDefinition",
            json!({
                "family": "api",
                "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "cpu": "512",
                "memory": "1024",
                "executionRoleArn": "arn:aws:iam::123456789012:role/api-exec",
                "containerDefinitions": [{
                    "name": "api", "image": image, "essential": true,
                    "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                    "environment": [{"name": "API_PORT", "value": "8080"}],
                    "secrets": [{"name": "DATABASE_URL", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-url"}],
                }],
            }),
        );
        td["taskDefinition"]["taskDefinitionArn"].as_str().unwrap().to_owned()
    }

    /// A Fargate service running `task_definition`, on `target_group` when given.
    pub fn create_service(
        &self,
        cluster: &str,
        name: &str,
        task_definition: &str,
        target_group: Option<&str>,
        breaker: bool,
    ) {
        let lbs = target_group
            .map_or(json!([]), |tg| json!([{"targetGroupArn": tg, "containerName": "api", "containerPort": 8080}]));
        self.call(
            "CreateService",
            json!({
                "cluster": cluster, "serviceName": name, "taskDefinition": task_definition, "desiredCount": 2,
                "launchType": "FARGATE", "loadBalancers": lbs,
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1", "subnet-2"], "assignPublicIp": "DISABLED"}},
                "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100,
                    "deploymentCircuitBreaker": {"enable": breaker, "rollback": breaker}},
            }),
        );
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
