//! The cluster's state and the part of the Deployment controller gantry depends on.
//!
//! Objects are kept as JSON, as the API server stores them, with `metadata.uid`,
//! `resourceVersion` (one counter for the whole store, bumped on every write, status writes
//! included) and `generation` (bumped when a Deployment's `spec` changes).
//!
//! The Deployment controller (reference: "Deployments", kubernetes.io/docs/concepts/
//! workloads/controllers/deployment/, and the `DeploymentStatus`/`DeploymentCondition`
//! fields in the apps/v1 API reference) runs every tick:
//! - a template it has not seen gets a ReplicaSet `NAME-HASH` (the template's hash in the
//!   `pod-template-hash` label of the ReplicaSet, its selector and its pods), owned by the
//!   Deployment (a controller owner reference), with the next `deployment.kubernetes.io/
//!   revision`; a template equal to an old ReplicaSet's (a rollback) reuses that ReplicaSet
//!   and moves it to the next revision;
//! - RollingUpdate scales the new ReplicaSet up within `maxSurge` and the old ones down
//!   within `maxUnavailable` (unavailable old pods first), as the controller's
//!   `reconcileNewReplicaSet`/`reconcileOldReplicaSets` do; Recreate scales the old to 0
//!   first;
//! - status: `observedGeneration`, `replicas`, `updatedReplicas`, `readyReplicas`,
//!   `availableReplicas`, `unavailableReplicas`, and the conditions `Available`
//!   (MinimumReplicasAvailable/MinimumReplicasUnavailable) and `Progressing`
//!   (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable,
//!   and ProgressDeadlineExceeded once no progress was made for `progressDeadlineSeconds`).
//!
//! Pods are records (name, labels, image, start time) that become ready after their
//! image's delay, or never for an image the test marks so. What a pod answers is its
//! image's app (a stand_in server the test controls), reached through the `Ingress` in
//! `mod.rs`, so health checks go over real HTTP to what the Service selects.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub image: String,
    /// The ReplicaSet that owns it.
    pub owner: String,
    started: Instant,
}

/// How pods of an image behave.
#[derive(Debug, Clone, Copy)]
pub struct ImageBehaviour {
    /// After how long a pod passes its readiness probe; `None`: never.
    pub ready_after: Option<Duration>,
}

/// A status error as the API server sends it (metav1.Status).
#[derive(Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self { code: 404, reason: "NotFound", message: format!("{resource} \"{name}\" not found") }
    }

    pub fn conflict(resource: &str, name: &str) -> Self {
        Self {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        }
    }

    pub fn invalid(resource: &str, name: &str, detail: &str) -> Self {
        Self { code: 422, reason: "Invalid", message: format!("{resource} \"{name}\" is invalid: {detail}") }
    }
}

#[derive(Default)]
pub struct State {
    resource_version: u64,
    uids: u64,
    /// (kind, namespace, name) → object. Kinds: `deployments`, `replicasets`, `services`.
    objects: BTreeMap<(String, String, String), Value>,
    pub pods: Vec<Pod>,
    pub images: BTreeMap<String, ImageBehaviour>,
    /// Per Deployment: when it last made progress, and what the progress looked like.
    progress: BTreeMap<(String, String), (Instant, Value)>,
    /// Every request: `METHOD PATH` and, for patches, the content type.
    pub log: Vec<String>,
}

fn key(kind: &str, ns: &str, name: &str) -> (String, String, String) {
    (kind.to_owned(), ns.to_owned(), name.to_owned())
}

impl State {
    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(kind, ns, name))
    }

    pub fn list(&self, kind: &str, ns: &str) -> Vec<Value> {
        self.objects.iter().filter(|((k, n, _), _)| k == kind && n == ns).map(|(_, v)| v.clone()).collect()
    }

    /// Stores a new object: uid, resourceVersion, generation 1, creationTimestamp.
    pub fn create(&mut self, kind: &str, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if self.get(kind, ns, &name).is_some() {
            return Err(ApiError {
                code: 409,
                reason: "AlreadyExists",
                message: format!("{} \"{name}\" already exists", resource(kind)),
            });
        }
        if kind == "deployments" {
            validate_deployment(&obj, &name)?;
        }
        self.uids += 1;
        let meta = obj["metadata"].as_object_mut().expect("metadata");
        meta.insert("namespace".into(), json!(ns));
        meta.insert("uid".into(), json!(format!("00000000-0000-4000-8000-{:012}", self.uids)));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!(now()));
        obj["metadata"]["resourceVersion"] = json!(self.next_version());
        if kind == "deployments" {
            default_deployment(&mut obj);
            obj["status"] = json!({});
        }
        self.objects.insert(key(kind, ns, &name), obj.clone());
        Ok(obj)
    }

    /// Replaces an object's metadata and spec (status is the controller's). A
    /// `resourceVersion` in `obj` must be the stored one (optimistic concurrency), else 409.
    pub fn update(&mut self, kind: &str, ns: &str, name: &str, mut obj: Value) -> Result<Value, ApiError> {
        let Some(old) = self.get(kind, ns, name).cloned() else {
            return Err(ApiError::not_found(resource(kind), name));
        };
        match obj["metadata"]["resourceVersion"].as_str() {
            Some(rv) if rv != old["metadata"]["resourceVersion"] => {
                return Err(ApiError::conflict(resource(kind), name));
            }
            _ => {}
        }
        if kind == "deployments" {
            default_deployment(&mut obj);
            validate_deployment(&obj, name)?;
            if obj["spec"]["selector"] != old["spec"]["selector"] {
                return Err(ApiError::invalid(
                    resource(kind),
                    name,
                    "spec.selector: Invalid value: field is immutable",
                ));
            }
        }
        for field in ["uid", "creationTimestamp", "namespace", "name", "generation"] {
            obj["metadata"][field] = old["metadata"][field].clone();
        }
        if kind != "services" {
            obj["status"] = old["status"].clone();
        }
        if kind == "deployments" && obj["spec"] != old["spec"] {
            obj["metadata"]["generation"] = json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
        }
        obj["metadata"]["resourceVersion"] = json!(self.next_version());
        self.objects.insert(key(kind, ns, name), obj.clone());
        Ok(obj)
    }

    pub fn delete(&mut self, kind: &str, ns: &str, name: &str) -> Result<Value, ApiError> {
        let obj = self.objects.remove(&key(kind, ns, name)).ok_or_else(|| ApiError::not_found(resource(kind), name))?;
        // Background propagation: the garbage collector removes the dependents (owner
        // references) after the owner is gone.
        let uid = obj["metadata"]["uid"].clone();
        let owned: Vec<_> = self
            .objects
            .iter()
            .filter(|((k, n, _), v)| k == "replicasets" && n == ns && owned_by(v, &uid))
            .map(|(k, _)| k.clone())
            .collect();
        for k in owned {
            self.objects.remove(&k);
            self.pods.retain(|p| !(p.namespace == ns && p.owner == k.2));
        }
        Ok(obj)
    }

    /// Pods in `ns` matching every label of `selector` that are ready now.
    pub fn ready_pods(&self, ns: &str, selector: &BTreeMap<String, String>) -> Vec<Pod> {
        self.pods
            .iter()
            .filter(|p| p.namespace == ns && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .filter(|p| self.is_ready(p))
            .cloned()
            .collect()
    }

    fn is_ready(&self, pod: &Pod) -> bool {
        let behaviour =
            self.images.get(&pod.image).copied().unwrap_or(ImageBehaviour { ready_after: Some(Duration::ZERO) });
        behaviour.ready_after.is_some_and(|d| pod.started.elapsed() >= d)
    }

    /// `(namespace, name)` of every object of `kind`.
    fn names(&self, kind: &str) -> Vec<(String, String)> {
        self.objects.keys().filter(|(k, _, _)| k == kind).map(|(_, n, name)| (n.clone(), name.clone())).collect()
    }

    /// One pass of the Deployment and ReplicaSet controllers over every Deployment.
    pub fn tick(&mut self) {
        for (ns, name) in self.names("deployments") {
            self.sync_deployment(&ns, &name);
        }
        for (ns, name) in self.names("replicasets") {
            self.sync_replica_set(&ns, &name);
        }
    }

    fn owned_sets(&self, ns: &str, d: &Value) -> Vec<Value> {
        let uid = &d["metadata"]["uid"];
        self.list("replicasets", ns).into_iter().filter(|rs| owned_by(rs, uid)).collect()
    }

    fn sync_deployment(&mut self, ns: &str, name: &str) {
        let Some(mut d) = self.get("deployments", ns, name).cloned() else { return };
        let before = d.clone();
        let template = d["spec"]["template"].clone();
        let hash = template_hash(&template);
        let mut sets = self.owned_sets(ns, &d);
        let max_revision = sets.iter().map(revision).max().unwrap_or(0);
        let generation = d["metadata"]["generation"].clone();
        let new_generation = d["status"]["observedGeneration"] != generation;
        let mut reason = None;
        let existing = sets.iter().position(|rs| rs["metadata"]["labels"]["pod-template-hash"] == hash.as_str());
        match existing {
            None => {
                let mut labels = template["metadata"]["labels"].clone();
                labels["pod-template-hash"] = json!(hash);
                let mut rs_template = template.clone();
                rs_template["metadata"]["labels"] = labels.clone();
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {
                        "name": format!("{name}-{hash}"),
                        "labels": labels,
                        "annotations": { "deployment.kubernetes.io/revision": (max_revision + 1).to_string() },
                        "ownerReferences": [{
                            "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                            "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
                        }],
                    },
                    "spec": { "replicas": 0, "selector": selector, "template": rs_template },
                });
                let rs = self.create("replicasets", ns, rs).expect("a new ReplicaSet name");
                sets.push(rs);
                reason = Some(("NewReplicaSetCreated", format!("Created new replica set \"{name}-{hash}\"")));
            }
            Some(i) if revision(&sets[i]) < max_revision => {
                let rs_name = sets[i]["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                sets[i]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                    json!((max_revision + 1).to_string());
                sets[i] = self.update("replicasets", ns, &rs_name, sets[i].clone()).expect("stored");
                reason = Some(("FoundNewReplicaSet", format!("Found new replica set \"{rs_name}\"")));
            }
            Some(_) if new_generation => {
                let rs_name = format!("{name}-{hash}");
                reason = Some(("FoundNewReplicaSet", format!("Found new replica set \"{rs_name}\"")));
            }
            Some(_) => {}
        }
        let new_name = format!("{name}-{hash}");
        let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let strategy = d["spec"]["strategy"].clone();
        let ready = |s: &State, rs: &Value| -> i64 {
            let rs_name = rs["metadata"]["name"].as_str().unwrap_or_default();
            s.pods.iter().filter(|p| p.namespace == ns && p.owner == rs_name && s.is_ready(p)).count() as i64
        };
        let replicas = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);
        let mut scale: BTreeMap<String, i64> = sets
            .iter()
            .map(|rs| (rs["metadata"]["name"].as_str().unwrap_or_default().to_owned(), replicas(rs)))
            .collect();
        let new_now = scale.get(&new_name).copied().unwrap_or(0);
        if strategy["type"] == "Recreate" {
            let old_running: i64 = scale.iter().filter(|(n, _)| **n != new_name).map(|(_, r)| *r).sum::<i64>()
                + self
                    .pods
                    .iter()
                    .filter(|p| {
                        p.namespace == ns
                            && p.owner != new_name
                            && sets.iter().any(|rs| rs["metadata"]["name"] == p.owner.as_str())
                    })
                    .count() as i64;
            for (n, r) in scale.iter_mut() {
                if *n != new_name {
                    *r = 0;
                }
            }
            if old_running == 0 {
                scale.insert(new_name.clone(), desired);
            }
        } else {
            let surge = resolve(&strategy["rollingUpdate"]["maxSurge"], desired, true, 1);
            let unavailable = resolve(&strategy["rollingUpdate"]["maxUnavailable"], desired, false, 0);
            // reconcileNewReplicaSet
            let total: i64 = scale.values().sum();
            if new_now > desired {
                scale.insert(new_name.clone(), desired);
            } else if new_now < desired && total < desired + surge {
                scale.insert(new_name.clone(), new_now + (desired + surge - total).min(desired - new_now));
            }
            // reconcileOldReplicaSets: unhealthy old pods go first, then as availability allows.
            let all: i64 = scale.values().sum();
            let min_available = desired - unavailable;
            let new_rs = sets.iter().find(|rs| rs["metadata"]["name"] == new_name.as_str());
            let new_unavailable = new_rs.map_or(0, |rs| replicas(rs) - ready(self, rs)).max(0);
            let mut budget = all - min_available - new_unavailable;
            let mut old: Vec<&Value> = sets.iter().filter(|rs| rs["metadata"]["name"] != new_name.as_str()).collect();
            old.sort_by_key(|rs| revision(rs));
            for rs in &old {
                let n = rs["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let unhealthy = (replicas(rs) - ready(self, rs)).max(0).min(budget.max(0));
                if unhealthy > 0 {
                    *scale.get_mut(&n).expect("listed") -= unhealthy;
                    budget -= unhealthy;
                }
            }
            let available: i64 = sets.iter().map(|rs| ready(self, rs)).sum();
            let mut down = available - min_available;
            for rs in &old {
                let n = rs["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let r = scale[&n];
                let by = r.min(down.max(0));
                if by > 0 {
                    *scale.get_mut(&n).expect("listed") -= by;
                    down -= by;
                }
            }
        }
        for rs in &sets {
            let n = rs["metadata"]["name"].as_str().unwrap_or_default();
            if scale[n] != replicas(rs) {
                let mut rs = rs.clone();
                rs["spec"]["replicas"] = json!(scale[n]);
                self.update("replicasets", ns, n, rs).expect("stored");
            }
        }
        // Status, from the ReplicaSets' pods.
        let sets = self.owned_sets(ns, &d);
        let pods_of = |s: &State, rs: &Value| -> i64 {
            let rs_name = rs["metadata"]["name"].as_str().unwrap_or_default();
            s.pods.iter().filter(|p| p.namespace == ns && p.owner == rs_name).count() as i64
        };
        let total: i64 = sets.iter().map(|rs| pods_of(self, rs)).sum();
        let new_rs = sets.iter().find(|rs| rs["metadata"]["name"] == new_name.as_str());
        let updated = new_rs.map_or(0, |rs| pods_of(self, rs));
        let available: i64 = sets.iter().map(|rs| ready(self, rs)).sum();
        let unavailable = resolve(&strategy["rollingUpdate"]["maxUnavailable"], desired, false, 0);
        let mut status = json!({
            "observedGeneration": generation,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": (desired - available).max(0),
        });
        let now_text = now();
        let mut conditions: Vec<Value> = d["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let (avail_status, avail_reason, avail_message) = if available >= desired - unavailable {
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        } else {
            ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        };
        set_condition(&mut conditions, "Available", avail_status, avail_reason, avail_message, &now_text);
        let complete = updated == desired && total == desired && available == desired;
        let dkey = (ns.to_owned(), name.to_owned());
        let shape = json!([updated, total, available]);
        let deadline = Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
        let progressing = conditions.iter().find(|c| c["type"] == "Progressing").cloned();
        if let Some((reason, message)) = reason {
            set_condition(&mut conditions, "Progressing", "True", reason, &message, &now_text);
            self.progress.insert(dkey.clone(), (Instant::now(), shape.clone()));
        }
        let timed_out = progressing.as_ref().is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded");
        if complete {
            set_condition(
                &mut conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                &now_text,
            );
            self.progress.insert(dkey, (Instant::now(), shape));
        } else {
            let (since, seen) = self.progress.get(&dkey).cloned().unwrap_or((Instant::now(), Value::Null));
            if seen != shape {
                set_condition(
                    &mut conditions,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{new_name}\" is progressing."),
                    &now_text,
                );
                self.progress.insert(dkey, (Instant::now(), shape));
            } else if since.elapsed() > deadline && !timed_out {
                set_condition(
                    &mut conditions,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    &now_text,
                );
            }
        }
        status["conditions"] = json!(conditions);
        d["status"] = status;
        let revision_now = self.owned_sets(ns, &d).iter().map(revision).max().unwrap_or(0);
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!(revision_now.to_string());
        if d != before {
            d["metadata"]["resourceVersion"] = json!(self.next_version());
            self.objects.insert(key("deployments", ns, name), d);
        }
    }

    /// The ReplicaSet controller: pods up or down to `spec.replicas` (unready ones go first).
    fn sync_replica_set(&mut self, ns: &str, name: &str) {
        let Some(mut rs) = self.get("replicasets", ns, name).cloned() else { return };
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(0) as usize;
        let mut have: Vec<usize> = self
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| p.namespace == ns && p.owner == name)
            .map(|(i, _)| i)
            .collect();
        while have.len() > want {
            let victim = have.iter().copied().find(|&i| !self.is_ready(&self.pods[i])).unwrap_or(have[have.len() - 1]);
            self.pods.remove(victim);
            have = self
                .pods
                .iter()
                .enumerate()
                .filter(|(_, p)| p.namespace == ns && p.owner == name)
                .map(|(i, _)| i)
                .collect();
        }
        let template = &rs["spec"]["template"];
        let labels: BTreeMap<String, String> =
            serde_json::from_value(template["metadata"]["labels"].clone()).unwrap_or_default();
        let image = template["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_owned();
        let mut count = have.len();
        while count < want {
            self.uids += 1;
            self.pods.push(Pod {
                name: format!("{name}-{:05}", self.uids),
                namespace: ns.to_owned(),
                labels: labels.clone(),
                image: image.clone(),
                owner: name.to_owned(),
                started: Instant::now(),
            });
            count += 1;
        }
        let ready = self.pods.iter().filter(|p| p.namespace == ns && p.owner == name && self.is_ready(p)).count();
        let status = json!({
            "replicas": want, "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        });
        if rs["status"] != status {
            rs["status"] = status;
            rs["metadata"]["resourceVersion"] = json!(self.next_version());
            self.objects.insert(key("replicasets", ns, name), rs);
        }
    }
}

/// `deployments.apps`, `replicasets.apps`, `services`: the resource as errors name it.
pub fn resource(kind: &str) -> &'static str {
    match kind {
        "deployments" => "deployments.apps",
        "replicasets" => "replicasets.apps",
        _ => "services",
    }
}

fn owned_by(obj: &Value, uid: &Value) -> bool {
    obj["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["uid"] == *uid))
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The API server's defaults for a Deployment (apps/v1 reference: replicas 1,
/// RollingUpdate 25%/25%, progressDeadlineSeconds 600, revisionHistoryLimit 10).
fn default_deployment(d: &mut Value) {
    let spec = &mut d["spec"];
    if spec["replicas"].is_null() {
        spec["replicas"] = json!(1);
    }
    if spec["progressDeadlineSeconds"].is_null() {
        spec["progressDeadlineSeconds"] = json!(600);
    }
    if spec["revisionHistoryLimit"].is_null() {
        spec["revisionHistoryLimit"] = json!(10);
    }
    if spec["strategy"]["type"].is_null() {
        spec["strategy"]["type"] = json!("RollingUpdate");
    }
    if spec["strategy"]["type"] == "RollingUpdate" {
        for field in ["maxSurge", "maxUnavailable"] {
            if spec["strategy"]["rollingUpdate"][field].is_null() {
                spec["strategy"]["rollingUpdate"][field] = json!("25%");
            }
        }
    }
}

/// The checks of the reference that matter here: the selector matches the template's labels.
fn validate_deployment(d: &Value, name: &str) -> Result<(), ApiError> {
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    let selector = d["spec"]["selector"]["matchLabels"].as_object();
    if selector.is_none_or(|s| s.is_empty()) {
        return Err(ApiError::invalid("deployments.apps", name, "spec.selector: Required value"));
    }
    if selector.into_iter().flatten().any(|(k, v)| labels[k] != *v) {
        return Err(ApiError::invalid(
            "deployments.apps",
            name,
            "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
        ));
    }
    Ok(())
}

/// maxSurge/maxUnavailable: an int, or a percentage of `desired` (surge rounds up,
/// unavailable down).
fn resolve(value: &Value, desired: i64, up: bool, default: i64) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(default),
        Value::String(s) => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            if up { (p * desired + 99) / 100 } else { p * desired / 100 }
        }
        _ => default,
    }
}

fn set_condition(conditions: &mut Vec<Value>, kind: &str, status: &str, reason: &str, message: &str, now: &str) {
    let condition = json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now,
    });
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(c) if c["reason"] == reason && c["status"] == status => {}
        Some(c) => *c = condition,
        None => conditions.push(condition),
    }
}

/// The template's hash as the controller labels it: FNV-1a 32 of the template, written in
/// the API machinery's "safe" alphabet (no vowels, no 0/1/3).
pub fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    let mut n = u64::from(h);
    while n > 0 || out.is_empty() {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
    }
    out
}

fn now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    strategic(target, patch, false);
}

/// A strategic merge patch (reference: "Update API Objects in Place Using kubectl patch",
/// kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/): a
/// merge patch whose lists of objects with a merge key (`containers`, `initContainers`,
/// `env`, `volumes` by `name`; `ports` by `containerPort`) merge item by item.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    strategic(target, patch, true);
}

fn strategic(target: &mut Value, patch: &Value, lists: bool) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let obj = target.as_object_mut().expect("object");
    for (k, v) in patch {
        if v.is_null() {
            obj.remove(k);
            continue;
        }
        let merge_key = match k.as_str() {
            "containers" | "initContainers" | "env" | "volumes" | "volumeMounts" => Some("name"),
            "ports" => Some("containerPort"),
            _ => None,
        };
        match (merge_key.filter(|_| lists), v, obj.get_mut(k)) {
            (Some(mk), Value::Array(items), Some(Value::Array(existing))) => {
                for item in items {
                    match existing.iter_mut().find(|e| e[mk] == item[mk]) {
                        Some(e) => strategic(e, item, lists),
                        None => existing.push(item.clone()),
                    }
                }
            }
            (_, v, Some(existing)) if v.is_object() => strategic(existing, v, lists),
            _ => {
                let mut fresh = Value::Null;
                strategic(&mut fresh, v, lists);
                if !v.is_object() {
                    fresh = v.clone();
                }
                obj.insert(k.clone(), fresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_patches_merge_containers_by_name() {
        let mut d = json!({"containers": [{"name": "api", "image": "a:1"}, {"name": "side", "image": "s:1"}], "x": 1});
        strategic_merge_patch(&mut d, &json!({"containers": [{"name": "api", "image": "a:2"}], "x": null}));
        assert_eq!(d, json!({"containers": [{"name": "api", "image": "a:2"}, {"name": "side", "image": "s:1"}]}));
        let mut m = json!({"containers": [{"name": "api"}, {"name": "side"}]});
        merge_patch(&mut m, &json!({"containers": [{"name": "api", "image": "a:2"}]}));
        assert_eq!(m, json!({"containers": [{"name": "api", "image": "a:2"}]}));
    }
}
