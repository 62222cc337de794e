//! Blue-green on Kubernetes: two Deployments and a Service selector switch. The Service's
//! selector names the live colour (`gantry.dev/colour: blue|green`), and each colour's pods
//! carry that label. The release runs in `DEPLOYMENT-<idle colour>`, made from the live
//! Deployment (same labels, replicas and template, with the colour, the image and the
//! release annotations) and annotated `gantry.dev/role=new` and `gantry.dev/previous=<live
//! Deployment>`: those two annotations are the whole state of a deployment in progress.
//!
//! The configured `deployment` is where the first blue-green deploy starts: its pod
//! template carries the colour the Service selects (a one-time setup `plan` explains). It
//! is scaled to 0 when retired, never deleted; the colour Deployments are deleted.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Patch;
use serde_json::json;

use super::{
    COLOUR_LABEL, HASH_LABEL, KubernetesTarget, PREVIOUS_ANNOTATION, ROLE_ANNOTATION, annotation, container_image,
    live_version, release_of,
};
use crate::targets::{Live, Release, TargetError};

/// The Service and the Deployments on either side of it.
pub(super) struct Sides {
    pub service: Service,
    /// The colour the Service selects.
    pub selected: String,
    /// The Deployment users are on (or were on, before a switch not yet retired).
    pub stable: Deployment,
    /// The Deployment a deployment in progress brings up (`gantry.dev/role=new`).
    pub new: Option<Deployment>,
}

pub(super) fn other(colour: &str) -> &'static str {
    if colour == "blue" { "green" } else { "blue" }
}

fn name(d: &Deployment) -> &str {
    d.metadata.name.as_deref().unwrap_or_default()
}

/// The colour label of a Deployment's pods.
pub(super) fn colour(d: &Deployment) -> Option<&str> {
    d.spec.as_ref()?.template.metadata.as_ref()?.labels.as_ref()?.get(COLOUR_LABEL).map(String::as_str)
}

fn available(d: &Deployment) -> i32 {
    d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

impl KubernetesTarget {
    pub(super) fn service_name(&self) -> &str {
        self.cfg.service.as_deref().unwrap_or(&self.cfg.deployment)
    }

    pub(super) fn colour_deployment(&self, colour: &str) -> String {
        format!("{}-{colour}", self.cfg.deployment)
    }

    fn preview(&self, colour: &str) -> String {
        self.cfg
            .preview_url
            .as_deref()
            .unwrap_or_default()
            .replace("{colour}", colour)
            .replace("{deployment}", &self.colour_deployment(colour))
    }

    /// Reads the Service and finds the live and new Deployments.
    pub(super) async fn sides(&self) -> Result<Sides, TargetError> {
        let k8s = self.k8s();
        let svc_name = self.service_name();
        let service = k8s.service(svc_name).await?;
        let selector = service.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
        let Some(selected) = selector.get(COLOUR_LABEL).cloned() else {
            return Err(TargetError::new(format!(
                "Service `{svc_name}`'s selector has no `{COLOUR_LABEL}`: gantry cannot tell which colour is live"
            ))
            .with_hint(format!(
                "once, label the live pods and select them: `{k} patch deployment {d} -p \
                 '{{\"spec\":{{\"template\":{{\"metadata\":{{\"labels\":{{\"{COLOUR_LABEL}\":\"blue\"}}}}}}}}}}'` then \
                 `{k} patch service {svc_name} -p '{{\"spec\":{{\"selector\":{{\"{COLOUR_LABEL}\":\"blue\"}}}}}}'`",
                k = k8s.kubectl,
                d = self.cfg.deployment
            )));
        };
        let mut new = None;
        for colour in ["blue", "green"] {
            if let Some(d) = k8s.deployment(&self.colour_deployment(colour)).await?
                && annotation(&d, ROLE_ANNOTATION) == Some("new")
            {
                new = Some(d);
            }
        }
        let stable_name = match &new {
            Some(n) => annotation(n, PREVIOUS_ANNOTATION).unwrap_or(&self.cfg.deployment).to_owned(),
            None => {
                let coloured = self.colour_deployment(&selected);
                if k8s.deployment(&coloured).await?.is_some() { coloured } else { self.cfg.deployment.clone() }
            }
        };
        let stable = k8s.existing(&stable_name).await?;
        if new.is_none() && colour(&stable) != Some(selected.as_str()) {
            return Err(TargetError::new(format!(
                "Service `{svc_name}` selects {COLOUR_LABEL}={selected}, but Deployment `{stable_name}`'s pods are not labelled so"
            ))
            .with_hint(format!(
                "add `{COLOUR_LABEL}: {selected}` to Deployment `{stable_name}`'s pod template labels (`{} edit deployment {stable_name}`)",
                k8s.kubectl
            )));
        }
        Ok(Sides { service, selected, stable, new })
    }

    pub(super) async fn observe_blue_green(&self) -> Result<Live, TargetError> {
        let sides = self.sides().await?;
        let template = |d: &Deployment| d.spec.as_ref().map(|s| s.template.clone());
        let stable = live_version(template(&sides.stable).as_ref(), available(&sides.stable));
        let (new, new_weight) = match &sides.new {
            Some(n) => (
                live_version(template(n).as_ref(), available(n)),
                if colour(n) == Some(sides.selected.as_str()) { 100 } else { 0 },
            ),
            None => (None, 0),
        };
        Ok(Live { stable, new, new_weight })
    }

    pub(super) async fn start_blue_green(&mut self, release: &Release) -> Result<String, TargetError> {
        let image = self.image(release).await?;
        let sides = self.sides().await?;
        self.check_container(&sides.stable)?;
        let stable_colour = colour(&sides.stable).unwrap_or(&sides.selected).to_owned();
        let colour = other(&stable_colour);
        let name = self.colour_deployment(colour);
        let k8s = self.k8s();
        let existing = k8s.deployment(&name).await?;
        let ready = existing.as_ref().is_some_and(|d| {
            let template = d.spec.as_ref().map(|s| &s.template);
            annotation(d, ROLE_ANNOTATION) == Some("new")
                && release_of(template) == Some((release.version.clone(), release.digest.clone()))
                && template.and_then(|t| container_image(t, &self.cfg.container)) == Some(image.as_str())
        });
        if !ready {
            let mut d = self.colour_copy(&sides.stable, colour, &name, release, &image);
            match existing {
                Some(old) => {
                    // A Deployment left by an earlier run: replaced under its resourceVersion.
                    d.metadata.resource_version = old.metadata.resource_version.clone();
                    if k8s.replace(&d).await?.is_none() {
                        return Err(TargetError::new(format!(
                            "Deployment `{name}` changed while gantry replaced it (409 Conflict)"
                        ))
                        .with_hint("run the deploy again"));
                    }
                }
                None => {
                    k8s.create(&d).await?;
                }
            }
            self.note(format!(
                "deployment `{name}` ({colour}) runs {image}; Service `{}` still selects {stable_colour}",
                self.service_name()
            ));
        }
        self.k8s().follow(&name, &|line: String| self.note(line)).await?;
        Ok(self.preview(colour))
    }

    /// The new colour's Deployment, made from the live one.
    fn colour_copy(&self, live: &Deployment, colour: &str, name: &str, release: &Release, image: &str) -> Deployment {
        let mut spec = live.spec.clone().unwrap_or_default();
        spec.replicas = Some(spec.replicas.unwrap_or(1).max(1));
        spec.selector.match_labels.get_or_insert_with(Default::default).insert(COLOUR_LABEL.into(), colour.into());
        spec.template = self.release_template(&spec.template, release, image);
        let labels =
            spec.template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
        labels.insert(COLOUR_LABEL.into(), colour.into());
        labels.remove(HASH_LABEL);
        let mut d = Deployment::default();
        d.metadata.name = Some(name.to_owned());
        d.metadata.namespace = Some(self.cfg.namespace.clone());
        d.metadata.labels = live.metadata.labels.clone();
        d.metadata.annotations = Some(
            [(ROLE_ANNOTATION.to_owned(), "new".to_owned()), (PREVIOUS_ANNOTATION.to_owned(), name_of(live))]
                .into_iter()
                .collect(),
        );
        d.spec = Some(spec);
        d
    }

    /// Points the Service's selector at `colour`.
    async fn select(&self, service: &Service, colour: &str) -> Result<(), TargetError> {
        let svc = service.metadata.name.clone().unwrap_or_default();
        let patch = json!({ "spec": { "selector": { COLOUR_LABEL: colour } } });
        self.k8s().patch_service(&svc, &Patch::Strategic(patch)).await?;
        self.note(format!("service `{svc}` now selects {COLOUR_LABEL}={colour}"));
        Ok(())
    }

    pub(super) async fn switch_to_new(&mut self) -> Result<(), TargetError> {
        let sides = self.sides().await?;
        let Some(new) = &sides.new else {
            return Err(TargetError::new(
                "no new colour Deployment to switch to (none is annotated gantry.dev/role=new)",
            )
            .with_hint("the deployment's start-new did not run or was undone: deploy again"));
        };
        let colour = colour(new).unwrap_or_default().to_owned();
        if sides.selected != colour {
            self.select(&sides.service, &colour).await?;
        }
        Ok(())
    }

    pub(super) async fn retire_blue_green(&mut self) -> Result<(), TargetError> {
        let sides = self.sides().await?;
        let Some(new) = &sides.new else { return Ok(()) };
        if colour(new) != Some(sides.selected.as_str()) {
            return Err(TargetError::new(format!(
                "Service `{}` does not select the new Deployment `{}` yet: the old one cannot be retired",
                self.service_name(),
                name(new)
            )));
        }
        let k8s = self.k8s();
        let old = name(&sides.stable).to_owned();
        if old == self.cfg.deployment {
            k8s.patch(&old, &Patch::Merge(json!({ "spec": { "replicas": 0 } }))).await?;
            self.note(format!("deployment `{old}` scaled to 0 (the configured Deployment is kept)"));
        } else {
            k8s.delete(&old).await?;
            self.note(format!("deployment `{old}` deleted"));
        }
        let forget = json!({ "metadata": { "annotations": { ROLE_ANNOTATION: null, PREVIOUS_ANNOTATION: null } } });
        k8s.patch(name(new), &Patch::Merge(forget)).await.map(drop)
    }

    pub(super) async fn rollback_blue_green(&mut self) -> Result<(), TargetError> {
        let sides = self.sides().await?;
        let Some(new) = &sides.new else { return Ok(()) };
        let back = colour(&sides.stable).unwrap_or_default().to_owned();
        if sides.selected != back {
            // The old side was never scaled down: it takes the users back at once.
            self.k8s().follow(name(&sides.stable), &|line: String| self.note(line)).await?;
            self.select(&sides.service, &back).await?;
        }
        let gone = name(new).to_owned();
        self.k8s().delete(&gone).await?;
        self.note(format!("deployment `{gone}` deleted"));
        Ok(())
    }
}

fn name_of(d: &Deployment) -> String {
    name(d).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_alternate() {
        assert_eq!(other("blue"), "green");
        assert_eq!(other("green"), "blue");
    }
}
