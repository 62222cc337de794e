//! What `gantry plan` shows for a Kubernetes target besides the steps: how they map onto the
//! cluster, the progress deadline, what a rollback goes back to, and the image change.
//! Reads only; `deploy` runs it first as its preflight, so a missing Deployment, container
//! or Service (or a Service that selects no colour) stops a deploy before anything moves.

use super::bluegreen::{colour, other};
use super::rolling::{current, describe, previous};
use super::{
    COLOUR_LABEL, DEPLOYING_ANNOTATION, KubernetesTarget, Mode, PREVIOUS_HASH_ANNOTATION, annotation, container_image,
    release_of,
};
use crate::targets::{Release, TargetError};

impl KubernetesTarget {
    pub async fn plan_notes(&mut self, release: Option<&Release>) -> Result<Vec<String>, TargetError> {
        self.connect().await?;
        let mut notes = Vec::new();
        let live = match self.mode {
            Mode::Rolling => {
                let k8s = self.k8s();
                let name = &self.cfg.deployment;
                let d = k8s.existing(name).await?;
                self.check_container(&d)?;
                let spec = d.spec.clone().unwrap_or_default();
                let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
                notes.push(format!(
                    "the Deployment controller runs the rollout: start-new sets container `{}` of Deployment `{name}` \
                     (namespace `{}`, {} replica(s)) to the release's image and follows its status (observedGeneration, \
                     updated and available replicas, the Progressing condition) as `kubectl rollout status` does",
                    self.cfg.container,
                    self.cfg.namespace,
                    spec.replicas.unwrap_or(1)
                ));
                notes.push(if recreate {
                    "spec.strategy is Recreate: every old pod stops before the new ones start (users see downtime)"
                        .to_owned()
                } else {
                    format!("pods are replaced {}", self.surge_words())
                });
                notes.push(format!(
                    "progress deadline: {}s (spec.progressDeadlineSeconds); when the controller reports \
                     ProgressDeadlineExceeded the deploy fails and rolls back",
                    spec.progress_deadline_seconds.unwrap_or(600)
                ));
                let sets = k8s.replica_sets(&d).await?;
                let noted =
                    annotation(&d, PREVIOUS_HASH_ANNOTATION).filter(|_| annotation(&d, DEPLOYING_ANNOTATION).is_some());
                let back = match noted {
                    Some(_) => previous(&sets, noted),
                    None => current(&sets),
                };
                notes.push(match back {
                    Some(rs) => format!(
                        "rollback: the template of {} goes back into the Deployment, as `kubectl rollout undo` does",
                        describe(rs)
                    ),
                    None => "rollback: the Deployment has no ReplicaSet yet to go back to".to_owned(),
                });
                d
            }
            Mode::BlueGreen => {
                let sides = self.sides().await?;
                self.check_container(&sides.stable)?;
                let live_name = sides.stable.metadata.name.clone().unwrap_or_default();
                let live_colour = colour(&sides.stable).unwrap_or(&sides.selected).to_owned();
                let new_colour = other(&live_colour);
                let new_name = self.colour_deployment(new_colour);
                notes.push(format!(
                    "live: Deployment `{live_name}` ({live_colour}), selected by Service `{}` ({COLOUR_LABEL}={})",
                    self.service_name(),
                    sides.selected
                ));
                notes.push(format!(
                    "start-new creates Deployment `{new_name}` ({new_colour}) from `{live_name}` with the release; gate-new checks {}; \
                     shift switches the Service's selector to {new_colour}; rollback switches it back to {live_colour} and \
                     deletes `{new_name}`; retire-old {}",
                    self.cfg.preview_url.as_deref().unwrap_or_default().replace("{colour}", new_colour).replace("{deployment}", &new_name),
                    if live_name == self.cfg.deployment {
                        format!("scales `{live_name}` to 0 (the configured Deployment is kept)")
                    } else {
                        format!("deletes `{live_name}`")
                    }
                ));
                sides.stable
            }
        };
        let template = live.spec.as_ref().map(|s| &s.template);
        let live_name = live.metadata.name.as_deref().unwrap_or_default();
        if release_of(template).is_none() {
            notes.push(format!(
                "Deployment `{live_name}`'s pods were not deployed by gantry (no gantry.dev/version annotation): \
                 it counts as nothing live, and stays as it is if the first deploy rolls back"
            ));
        }
        let Some(release) = release else {
            notes.push("image: package the release (`gantry package`) to see what changes".into());
            return Ok(notes);
        };
        let image = self.image(release).await?;
        let before = template.and_then(|t| container_image(t, &self.cfg.container)).unwrap_or("(none)");
        notes.push(if before == image {
            format!("container `{}`: image {image}, unchanged", self.cfg.container)
        } else {
            format!("container `{}`: image {before} -> {image}", self.cfg.container)
        });
        Ok(notes)
    }
}
