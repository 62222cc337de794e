//! The Kubernetes API calls the target makes, through kube-rs: Deployments and ReplicaSets
//! (apps/v1) and Services (core/v1) in one namespace. Every call has kube's timeouts
//! (connect 10 s, read 30 s); reads, patches and deletes are retried with backoff on 429,
//! 5xx and dropped connections (they are idempotent: a patch sets fixed values), creates and
//! replaces are not (a replace carries its resourceVersion, so a repeat after a lost answer
//! would be a 409 Conflict that the caller handles by reading again). Errors name the call
//! and the object and carry a hint (namespace, context, RBAC).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{Rollout, rollout};
use crate::targets::TargetError;

const ATTEMPTS: u32 = 4;

/// A client bound to the target's namespace.
pub struct Cluster {
    client: kube::Client,
    pub namespace: String,
    /// `--context C -n NS`, for the `kubectl` commands in hints.
    pub kubectl: String,
    pub poll: Duration,
}

impl Cluster {
    /// From the kubeconfig (`KUBECONFIG`, else `~/.kube/config`), with `context` or the
    /// file's current context.
    pub async fn connect(context: Option<&str>, namespace: &str, poll: Duration) -> Result<Self, TargetError> {
        let kubectl = match context {
            Some(c) => format!("kubectl --context {c} -n {namespace}"),
            None => format!("kubectl -n {namespace}"),
        };
        let kubeconfig = Kubeconfig::read().map_err(|e| {
            TargetError::new("cannot read the kubeconfig (KUBECONFIG, else ~/.kube/config)")
                .with_hint("point KUBECONFIG at the cluster's kubeconfig (on AKS: `az aks get-credentials`)")
                .with_source(e)
        })?;
        let options = KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| {
            let which = context.map_or_else(|| "its current context".to_owned(), |c| format!("context `{c}`"));
            TargetError::new(format!("cannot use the kubeconfig's {which}"))
                .with_hint(
                    "`kubectl config get-contexts` lists the contexts; set `context` in the target to one of them",
                )
                .with_source(e)
        })?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        config.write_timeout = Some(Duration::from_secs(30));
        let client = kube::Client::try_from(config)
            .map_err(|e| TargetError::new("cannot build a Kubernetes client from the kubeconfig").with_source(e))?;
        Ok(Self { client, namespace: namespace.to_owned(), kubectl, poll })
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn replica_set_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn error(&self, what: String, e: kube::Error) -> TargetError {
        let hint = match &e {
            kube::Error::Api(s) if s.code == 404 => format!(
                "check `namespace` (`{}`) and the kubeconfig context: `{} get deployments,services`",
                self.namespace, self.kubectl
            ),
            kube::Error::Api(s) if s.code == 401 => {
                "the cluster refused the kubeconfig's credentials: refresh them (on AKS: `az aks get-credentials`)"
                    .into()
            }
            kube::Error::Api(s) if s.code == 403 => format!(
                "the kubeconfig's user lacks RBAC permission: `{} auth can-i patch deployments` tells",
                self.kubectl
            ),
            kube::Error::Api(_) => format!("`{} get events` may say more", self.kubectl),
            _ => "cannot reach the cluster: check the kubeconfig's server and `kubectl cluster-info`".into(),
        };
        let message = match &e {
            kube::Error::Api(s) => format!("{what}: {} ({} {})", s.message, s.code, s.reason),
            _ => format!("{what}: the request failed"),
        };
        TargetError::new(message).with_hint(hint).with_source(e)
    }

    /// Runs an idempotent call up to 4 times, backing off on 429, 5xx and transport errors.
    async fn retry<T, F, Fut>(&self, what: impl Fn() -> String, call: F) -> Result<T, TargetError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    tracing::debug!("{}: {e}; retrying in {delay:?}", what());
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(self.error(what(), e)),
            }
        }
    }

    pub async fn deployment(&self, name: &str) -> Result<Option<Deployment>, TargetError> {
        let api = self.deployments();
        self.retry(|| format!("read Deployment `{name}` in namespace `{}`", self.namespace), || api.get_opt(name)).await
    }

    /// The Deployment, or an error that says where gantry looked.
    pub async fn existing(&self, name: &str) -> Result<Deployment, TargetError> {
        self.deployment(name).await?.ok_or_else(|| {
            TargetError::new(format!("Deployment `{name}` not found in namespace `{}`", self.namespace)).with_hint(
                format!(
                    "check `deployment` and `namespace` in the target, and the kubeconfig context: `{} get deployments`",
                    self.kubectl
                ),
            )
        })
    }

    pub async fn patch(&self, name: &str, patch: &Patch<serde_json::Value>) -> Result<Deployment, TargetError> {
        let api = self.deployments();
        let params = PatchParams::default();
        self.retry(|| format!("patch Deployment `{name}`"), || api.patch(name, &params, patch)).await
    }

    /// Replaces a Deployment (its `resourceVersion` is the precondition). `None` on a 409
    /// Conflict: someone changed it since it was read; read it again.
    pub async fn replace(&self, d: &Deployment) -> Result<Option<Deployment>, TargetError> {
        let name = d.metadata.name.clone().unwrap_or_default();
        match self.deployments().replace(&name, &PostParams::default(), d).await {
            Ok(d) => Ok(Some(d)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(self.error(format!("replace Deployment `{name}`"), e)),
        }
    }

    pub async fn create(&self, d: &Deployment) -> Result<Deployment, TargetError> {
        let name = d.metadata.name.clone().unwrap_or_default();
        self.deployments()
            .create(&PostParams::default(), d)
            .await
            .map_err(|e| self.error(format!("create Deployment `{name}`"), e))
    }

    /// Deletes a Deployment and (in the background) its ReplicaSets and pods; gone is fine.
    pub async fn delete(&self, name: &str) -> Result<(), TargetError> {
        let (api, params) = (&self.deployments(), &DeleteParams::background());
        self.retry(
            || format!("delete Deployment `{name}`"),
            || async move {
                match api.delete(name, params).await {
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    other => other.map(drop),
                }
            },
        )
        .await
    }

    /// The ReplicaSets `d` owns (by owner reference, among those its selector matches).
    pub async fn replica_sets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, TargetError> {
        let name = d.metadata.name.clone().unwrap_or_default();
        let selector = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let api = self.replica_set_api();
        let params = ListParams::default().labels(&selector);
        let list = self.retry(|| format!("list the ReplicaSets of Deployment `{name}`"), || api.list(&params)).await?;
        let uid = d.metadata.uid.clone();
        Ok(list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "Deployment" && Some(&o.uid) == uid.as_ref())
            })
            .collect())
    }

    pub async fn service(&self, name: &str) -> Result<Service, TargetError> {
        let api = self.services();
        let found = self
            .retry(|| format!("read Service `{name}` in namespace `{}`", self.namespace), || api.get_opt(name))
            .await?;
        found.ok_or_else(|| {
            TargetError::new(format!("Service `{name}` not found in namespace `{}`", self.namespace))
                .with_hint(format!("check `service` and `namespace` in the target: `{} get services`", self.kubectl))
        })
    }

    pub async fn patch_service(&self, name: &str, patch: &Patch<serde_json::Value>) -> Result<Service, TargetError> {
        let api = self.services();
        let params = PatchParams::default();
        self.retry(|| format!("patch Service `{name}`"), || api.patch(name, &params, patch)).await
    }

    /// Follows the rollout of Deployment `name` until every replica runs its template and
    /// is available (`kubectl rollout status`'s rule); fails at once when the controller
    /// reports `ProgressDeadlineExceeded`. The caller's phase deadline bounds the wait.
    pub async fn follow(&self, name: &str, note: &dyn Fn(String)) -> Result<Deployment, TargetError> {
        let mut last = String::new();
        loop {
            let d = self.existing(name).await?;
            match rollout(&d) {
                Rollout::Done => {
                    note(format!("deployment `{name}` successfully rolled out"));
                    return Ok(d);
                }
                Rollout::Failed(message) => {
                    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600);
                    return Err(TargetError::new(format!(
                        "Deployment `{name}` exceeded its progress deadline ({deadline}s): {message}"
                    ))
                    .with_hint(format!(
                        "its new pods never became ready: `{k} describe deployment {name}` and `{k} get pods` show why \
                         (image pull, crash loop, failing readiness probe)",
                        k = self.kubectl
                    )));
                }
                Rollout::Waiting(why) => {
                    if why != last {
                        note(format!("deployment `{name}`: {why}"));
                        last = why;
                    }
                }
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// 429, 5xx and failures below HTTP (connection refused or reset, timeouts).
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}
