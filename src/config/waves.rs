//! Deploy waves: how an environment's targets are grouped for a multi-region deploy.
//! `deploy` runs one wave after another (targets inside a wave in order), bakes the
//! finished waves for `wave_bake` between waves, and rolls every finished wave back when
//! a later one fails.
//!
//! The grouping is the environment's `waves` list when it has one; otherwise one wave per
//! region, in the order the regions first appear in `targets` (a target's own `region`,
//! else the environment's). An environment whose targets share a region is one wave, as
//! before waves existed. `validate.rs` checks an explicit list names each target once.

use serde::Serialize;

use super::model::{Environment, Target};
use super::values::Name;

/// One wave: its position, the region its targets share (none when they differ or none
/// is set), and its targets in deploy order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wave<'a> {
    /// 1-based, as shown to users.
    pub number: usize,
    pub region: Option<String>,
    pub targets: Vec<&'a Name>,
}

impl Wave<'_> {
    /// `wave 2 of 3 (us-west-2)`.
    pub fn label(&self, of: usize) -> String {
        match &self.region {
            Some(region) => format!("wave {} of {of} ({region})", self.number),
            None => format!("wave {} of {of}", self.number),
        }
    }
}

/// The region `target` runs in: its own `region`, else the environment's.
pub fn region_of(env: &Environment, target: &Target) -> Option<String> {
    target.region.as_ref().map(|r| r.as_str().to_owned()).or_else(|| env.region.as_ref().map(|r| r.as_str().to_owned()))
}

/// The waves of `targets` (the environment's targets to deploy, in its order, each with
/// its merged settings). Targets left out of `targets` (by `--target`) are left out of
/// their wave, and a wave left empty is dropped.
pub fn plan<'a>(env: &Environment, targets: &[(&'a Name, &Target)]) -> Vec<Wave<'a>> {
    let region = |name: &Name| targets.iter().find(|(n, _)| *n == name).and_then(|(_, t)| region_of(env, t));
    let groups: Vec<Vec<&'a Name>> = match &env.waves {
        Some(waves) => waves
            .iter()
            .map(|wave| {
                // In the wave's order, but only the targets being deployed.
                wave.iter().filter_map(|w| targets.iter().find(|(n, _)| *n == w).map(|(n, _)| *n)).collect()
            })
            .collect(),
        None => {
            let mut groups: Vec<(Option<String>, Vec<&'a Name>)> = Vec::new();
            for (name, t) in targets {
                let r = region_of(env, t);
                match groups.iter_mut().find(|(g, _)| *g == r) {
                    Some((_, members)) => members.push(name),
                    None => groups.push((r, vec![name])),
                }
            }
            groups.into_iter().map(|(_, members)| members).collect()
        }
    };
    groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .enumerate()
        .map(|(i, members)| {
            let first = region(members[0]);
            let shared = members.iter().all(|m| region(m) == first);
            Wave { number: i + 1, region: if shared { first } else { None }, targets: members }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(waves: &str) -> Config {
        toml::from_str(&format!(
            r#"
[project]
name = "demo"
[environments.prd]
region = "us-east-1"
targets = ["api-use1", "api-usw2", "web-use1", "web-usw2"]
{waves}
[targets.api-use1]
kind = "local"
local = {{ artifact = "app", command = "x", listen = "l" }}
[targets.web-use1]
kind = "local"
local = {{ artifact = "app", command = "x", listen = "l" }}
[targets.api-usw2]
kind = "local"
region = "us-west-2"
local = {{ artifact = "app", command = "x", listen = "l" }}
[targets.web-usw2]
kind = "local"
region = "us-west-2"
local = {{ artifact = "app", command = "x", listen = "l" }}
"#
        ))
        .unwrap()
    }

    fn waves_of(cfg: &Config, only: &[&str]) -> Vec<(Option<String>, Vec<String>)> {
        let env = &cfg.environments.values().next().unwrap();
        let targets: Vec<_> = env
            .targets
            .iter()
            .filter(|t| only.is_empty() || only.contains(&t.as_str()))
            .map(|t| (t, &cfg.targets[t]))
            .collect();
        plan(env, &targets).into_iter().map(|w| (w.region, w.targets.iter().map(|t| t.to_string()).collect())).collect()
    }

    #[test]
    fn one_wave_per_region_in_order_of_first_appearance() {
        let cfg = config("");
        assert_eq!(
            waves_of(&cfg, &[]),
            vec![
                (Some("us-east-1".into()), vec!["api-use1".into(), "web-use1".into()]),
                (Some("us-west-2".into()), vec!["api-usw2".into(), "web-usw2".into()]),
            ]
        );
    }

    #[test]
    fn an_explicit_list_wins_and_mixed_waves_have_no_region() {
        let cfg = config(r#"waves = [["api-use1"], ["api-usw2", "web-use1", "web-usw2"]]"#);
        assert_eq!(
            waves_of(&cfg, &[]),
            vec![
                (Some("us-east-1".into()), vec!["api-use1".into()]),
                (None, vec!["api-usw2".into(), "web-use1".into(), "web-usw2".into()]),
            ]
        );
    }

    #[test]
    fn targets_left_out_leave_their_wave_and_empty_waves_go() {
        let cfg = config(r#"waves = [["api-use1"], ["api-usw2", "web-use1", "web-usw2"]]"#);
        assert_eq!(waves_of(&cfg, &["web-usw2"]), vec![(Some("us-west-2".into()), vec!["web-usw2".into()])]);
        let cfg = config("");
        let waves = plan(&cfg.environments.values().next().unwrap().clone(), &[]);
        assert!(waves.is_empty());
    }
}
