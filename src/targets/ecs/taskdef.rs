//! Task definitions: which release a revision runs (gantry's docker labels on the
//! container), the new revision built from the live one (the release's image by digest
//! plus the declared changes; everything else copied), and the diff `gantry plan` shows.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, TaskDefinition};

use crate::targets::{Release, TargetError};

/// Docker labels gantry sets on the release's container.
pub const VERSION_LABEL: &str = "gantry.version";
pub const RELEASE_LABEL: &str = "gantry.release";

/// What the new revision changes: the declared settings of the target.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub image: String,
    pub environment: BTreeMap<String, String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

/// The release a revision runs, from its labels: `(version, release digest)`.
pub fn release_of(td: &TaskDefinition, container: &str) -> Option<(semver::Version, String)> {
    let labels = find(td, container)?.docker_labels.as_ref()?;
    let version = labels.get(VERSION_LABEL)?.parse().ok()?;
    Some((version, labels.get(RELEASE_LABEL)?.clone()))
}

/// Whether `td` is the revision gantry registers for `release` with `changes`.
pub fn runs(td: &TaskDefinition, container: &str, release: &Release, changes: &Changes) -> bool {
    release_of(td, container).is_some_and(|(v, d)| v == release.version && d == release.digest)
        && build(td, container, release, changes).is_ok_and(|new| diff(td, &new, container).is_empty())
}

fn find<'a>(td: &'a TaskDefinition, container: &str) -> Option<&'a ContainerDefinition> {
    td.container_definitions().iter().find(|c| c.name() == Some(container))
}

/// The new revision: `live` with the container's image, environment and labels replaced,
/// and the task's cpu and memory when declared.
pub fn build(
    live: &TaskDefinition,
    container: &str,
    release: &Release,
    changes: &Changes,
) -> Result<TaskDefinition, TargetError> {
    let family = live.family().unwrap_or_default();
    if find(live, container).is_none() {
        let names: Vec<&str> = live.container_definitions().iter().filter_map(ContainerDefinition::name).collect();
        return Err(TargetError::new(format!(
            "task definition `{family}` has no container `{container}` (it has {})",
            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ))
        .with_hint("set `container` in the target's `ecs` table to the container that runs the release image"));
    }
    let mut td = live.clone();
    for c in td.container_definitions.iter_mut().flatten() {
        if c.name() != Some(container) {
            continue;
        }
        c.image = Some(changes.image.clone());
        if !changes.environment.is_empty() {
            let mut env: BTreeMap<String, String> = c
                .environment()
                .iter()
                .filter_map(|kv| Some((kv.name()?.to_owned(), kv.value().unwrap_or_default().to_owned())))
                .collect();
            env.extend(changes.environment.clone());
            c.environment =
                Some(env.into_iter().map(|(k, v)| KeyValuePair::builder().name(k).value(v).build()).collect());
        }
        let mut labels: HashMap<String, String> = c.docker_labels.clone().unwrap_or_default();
        labels.insert(VERSION_LABEL.into(), release.version.to_string());
        labels.insert(RELEASE_LABEL.into(), release.digest.clone());
        c.docker_labels = Some(labels);
    }
    if changes.cpu.is_some() {
        td.cpu.clone_from(&changes.cpu);
    }
    if changes.memory.is_some() {
        td.memory.clone_from(&changes.memory);
    }
    Ok(td)
}

/// The register call for `td` (every field RegisterTaskDefinition takes, copied).
pub fn register(
    ecs: &aws_sdk_ecs::Client,
    td: &TaskDefinition,
) -> aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder {
    ecs.register_task_definition()
        .set_family(td.family.clone())
        .set_container_definitions(td.container_definitions.clone())
        .set_cpu(td.cpu.clone())
        .set_memory(td.memory.clone())
        .set_network_mode(td.network_mode.clone())
        .set_requires_compatibilities(some_vec(td.requires_compatibilities()))
        .set_execution_role_arn(td.execution_role_arn.clone())
        .set_task_role_arn(td.task_role_arn.clone())
        .set_volumes(some_vec(td.volumes()))
        .set_placement_constraints(some_vec(td.placement_constraints()))
        .set_runtime_platform(td.runtime_platform.clone())
        .set_ephemeral_storage(td.ephemeral_storage.clone())
        .set_proxy_configuration(td.proxy_configuration.clone())
        .set_pid_mode(td.pid_mode.clone())
        .set_ipc_mode(td.ipc_mode.clone())
}

fn some_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    if v.is_empty() { None } else { Some(v.to_vec()) }
}

/// `field: old → new` lines for what differs between two revisions of the container's
/// task definition (image, environment, labels, cpu, memory, and any other container
/// field, compared by its debug form).
pub fn diff(old: &TaskDefinition, new: &TaskDefinition, container: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let show = |v: Option<&str>| v.map_or_else(|| "(unset)".to_owned(), str::to_owned);
    let mut field = |name: &str, a: Option<&str>, b: Option<&str>| {
        if a != b {
            lines.push(format!("{name}: {} → {}", show(a), show(b)));
        }
    };
    field("cpu", old.cpu(), new.cpu());
    field("memory", old.memory(), new.memory());
    let (Some(a), Some(b)) = (find(old, container), find(new, container)) else { return lines };
    field(&format!("container `{container}` image"), a.image(), b.image());
    let env = |c: &ContainerDefinition| -> BTreeMap<String, String> {
        c.environment()
            .iter()
            .filter_map(|kv| Some((kv.name()?.to_owned(), kv.value().unwrap_or_default().to_owned())))
            .collect()
    };
    let (ea, eb) = (env(a), env(b));
    for key in ea.keys().chain(eb.keys()).collect::<std::collections::BTreeSet<_>>() {
        field(
            &format!("container `{container}` environment {key}"),
            ea.get(key).map(String::as_str),
            eb.get(key).map(String::as_str),
        );
    }
    let labels = |c: &ContainerDefinition| -> BTreeMap<String, String> {
        c.docker_labels.clone().unwrap_or_default().into_iter().collect()
    };
    let (la, lb) = (labels(a), labels(b));
    for key in la.keys().chain(lb.keys()).collect::<std::collections::BTreeSet<_>>() {
        field(
            &format!("container `{container}` label {key}"),
            la.get(key).map(String::as_str),
            lb.get(key).map(String::as_str),
        );
    }
    // Any other container field gantry did not set itself changed too: name it.
    let mut rest_a = a.clone();
    let mut rest_b = b.clone();
    for c in [&mut rest_a, &mut rest_b] {
        c.image = None;
        c.environment = None;
        c.docker_labels = None;
    }
    if format!("{rest_a:?}") != format!("{rest_b:?}") {
        lines.push(format!("container `{container}`: other settings differ"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(image: &str, env: &[(&str, &str)]) -> TaskDefinition {
        let c = ContainerDefinition::builder()
            .name("api")
            .image(image)
            .set_environment(Some(
                env.iter().map(|(k, v)| KeyValuePair::builder().name(*k).value(*v).build()).collect(),
            ))
            .build();
        TaskDefinition::builder().family("api").cpu("256").memory("512").container_definitions(c).build()
    }

    fn release(v: &str) -> Release {
        Release { version: v.parse().unwrap(), digest: "ab".repeat(32), artifacts: BTreeMap::new() }
    }

    #[test]
    fn the_new_revision_changes_the_image_labels_and_declared_settings_only() {
        let live = td("repo@sha256:old", &[("API_PORT", "8080"), ("MODE", "a")]);
        let changes = Changes {
            image: "repo@sha256:new".into(),
            environment: BTreeMap::from([("MODE".into(), "b".into())]),
            cpu: Some("512".into()),
            memory: None,
        };
        let new = build(&live, "api", &release("1.1.0"), &changes).unwrap();
        assert_eq!(release_of(&new, "api"), Some(("1.1.0".parse().unwrap(), "ab".repeat(32))));
        assert_eq!(
            diff(&live, &new, "api"),
            [
                "cpu: 256 → 512".to_owned(),
                "container `api` image: repo@sha256:old → repo@sha256:new".into(),
                "container `api` environment MODE: a → b".into(),
                "container `api` label gantry.release: (unset) → ".to_owned() + &"ab".repeat(32),
                "container `api` label gantry.version: (unset) → 1.1.0".into(),
            ]
        );
        assert!(runs(&new, "api", &release("1.1.0"), &changes));
        assert!(!runs(&live, "api", &release("1.1.0"), &changes));
    }

    #[test]
    fn a_missing_container_is_named() {
        let e = build(&td("x", &[]), "web", &release("1.0.0"), &Changes::default()).unwrap_err();
        assert!(e.message.contains("has no container `web` (it has `api`)"), "{}", e.message);
    }
}
