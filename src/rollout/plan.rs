//! The steps a strategy takes, computed from the target's strategy settings and replica
//! count alone. Pure: `gantry plan` prints exactly the list `gantry deploy` executes.

use std::time::Duration;

use serde::Serialize;

use crate::config::{BatchSize, StrategyConfig, StrategyKind};

/// Default longest time one phase may take.
pub const DEFAULT_PHASE_DEADLINE: Duration = Duration::from_secs(600);

/// One step of a cutover. Each runs as one phase of the deployment, under the phase deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Start the new version until `replicas` of it run, beside the stable one, with no user traffic.
    StartNew { replicas: u32 },
    /// Health-gate the new version on its own preview endpoint until it is healthy.
    GateNew,
    /// Send `percent` of user traffic to the new version.
    Shift { percent: u8 },
    /// Rolling: users are served by every new replica and `old` stable ones; the rest are drained.
    Replace { old: u32 },
    /// Watch the new version's health on its own endpoint for this long; consecutive failures fail it.
    #[serde(rename = "bake")]
    Bake {
        #[serde(with = "humantime_serde_secs")]
        duration: Duration,
    },
    /// Health-gate what users reach until it is healthy.
    GateLive,
    /// Blue-green: keep the old version running (and instant to switch back to) this long,
    /// watching health, before it is retired.
    KeepPrevious {
        #[serde(with = "humantime_serde_secs")]
        duration: Duration,
    },
    /// Check that all user traffic goes to the release, as the platform reports it.
    Verify,
    /// The new version becomes the stable one: drain and stop the old one.
    RetireOld,
}

impl Step {
    /// The phase name in events, the ledger and the step summary.
    pub fn phase(&self) -> &'static str {
        match self {
            Self::StartNew { .. } => "start-new",
            Self::GateNew => "gate-new",
            Self::Shift { .. } => "shift",
            Self::Replace { .. } => "replace",
            Self::Bake { .. } => "bake",
            Self::GateLive => "gate-live",
            Self::KeepPrevious { .. } => "keep-previous",
            Self::Verify => "verify",
            Self::RetireOld => "retire-old",
        }
    }

    /// One line for humans: `shift 10% of traffic to the new version`.
    pub fn describe(&self) -> String {
        match self {
            Self::StartNew { replicas } => format!("start {replicas} replica(s) of the new version, no user traffic"),
            Self::GateNew => "health-gate the new version on its preview endpoint".into(),
            Self::Shift { percent } => format!("shift {percent}% of user traffic to the new version"),
            Self::Replace { old } => {
                format!("serve users from the new replicas and {old} old one(s); drain and stop the rest")
            }
            Self::Bake { duration } => {
                format!(
                    "bake for {}: watch the new version's health on its own endpoint",
                    humantime::format_duration(*duration)
                )
            }
            Self::GateLive => "health-gate the live endpoint".into(),
            Self::KeepPrevious { duration } => format!(
                "keep the old version warm for {} while watching health; switch back at once on failure",
                humantime::format_duration(*duration)
            ),
            Self::Verify => "verify that all user traffic goes to the release".into(),
            Self::RetireOld => "retire the old version (drain, then stop)".into(),
        }
    }

    /// Whether the step is a health window whose length the user configured (not engine overhead).
    pub fn is_health_window(&self) -> bool {
        matches!(self, Self::GateNew | Self::GateLive | Self::Bake { .. } | Self::KeepPrevious { .. })
    }
}

/// The steps for `strategy` on a target of `replicas` replicas.
pub fn steps(strategy: &StrategyConfig, replicas: u32) -> Vec<Step> {
    let replicas = replicas.max(1);
    let bake = strategy.bake.map(|d| d.get()).filter(|d| !d.is_zero());
    let bake_step = || bake.map(|duration| Step::Bake { duration });
    let mut steps = Vec::new();
    match strategy.kind {
        StrategyKind::AllAtOnce => {
            steps.extend([Step::StartNew { replicas }, Step::GateNew, Step::Shift { percent: 100 }]);
            steps.extend(bake_step());
            steps.push(Step::GateLive);
        }
        StrategyKind::BlueGreen => {
            steps.extend([Step::StartNew { replicas }, Step::GateNew, Step::Shift { percent: 100 }]);
            steps.extend(bake_step());
        }
        StrategyKind::Canary | StrategyKind::Linear => {
            steps.extend([Step::StartNew { replicas }, Step::GateNew]);
            for percent in weights(strategy) {
                steps.push(Step::Shift { percent });
                steps.extend(bake_step());
            }
        }
        StrategyKind::Rolling => {
            let batch = batch_size(strategy.batch, replicas);
            let mut new = 0;
            while new < replicas {
                new = (new + batch).min(replicas);
                steps.extend([Step::StartNew { replicas: new }, Step::GateNew, Step::Replace { old: replicas - new }]);
                steps.extend(bake_step());
            }
            steps.push(Step::GateLive);
        }
    }
    steps.push(Step::Verify);
    if strategy.kind == StrategyKind::BlueGreen
        && let Some(duration) = strategy.keep_previous.map(|d| d.get()).filter(|d| !d.is_zero())
    {
        steps.push(Step::KeepPrevious { duration });
    }
    steps.push(Step::RetireOld);
    steps
}

/// Canary steps as written, or linear's increments up to 100; always ending at 100.
pub fn weights(strategy: &StrategyConfig) -> Vec<u8> {
    let mut weights: Vec<u8> = match strategy.kind {
        StrategyKind::Canary => strategy.steps.iter().flatten().map(|p| p.get()).collect(),
        StrategyKind::Linear => {
            let inc = u32::from(strategy.increment.map_or(10, |p| p.get()).max(1));
            let mut weights = Vec::new();
            let mut current = 0;
            while current < 100 {
                current = (current + inc).min(100);
                weights.push(current as u8);
            }
            weights
        }
        _ => vec![100],
    };
    if weights.last() != Some(&100) {
        weights.push(100);
    }
    weights
}

/// Replicas per rolling batch: the count, or the share rounded up; at least 1.
pub fn batch_size(batch: Option<BatchSize>, replicas: u32) -> u32 {
    match batch {
        None => 1,
        Some(BatchSize::Count(n)) => n.clamp(1, replicas),
        Some(BatchSize::Percent(p)) => (u32::from(p.get()) * replicas).div_ceil(100).clamp(1, replicas),
    }
}

/// The fast path a rollback (and `gantry rollback`) takes: start, gate, switch, verify, retire.
pub fn fast_path(replicas: u32) -> Vec<Step> {
    vec![
        Step::StartNew { replicas: replicas.max(1) },
        Step::GateNew,
        Step::Shift { percent: 100 },
        Step::GateLive,
        Step::Verify,
        Step::RetireOld,
    ]
}

/// Serializes durations in plans as whole seconds plus a readable form.
mod humantime_serde_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Duration as CfgDuration, Percent};

    fn strategy(kind: StrategyKind) -> StrategyConfig {
        StrategyConfig { kind, ..StrategyConfig::default() }
    }

    fn phases(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::StartNew { replicas } => format!("start-new:{replicas}"),
                Step::Shift { percent } => format!("shift:{percent}"),
                Step::Replace { old } => format!("replace:{old}"),
                Step::Bake { duration } => format!("bake:{}", duration.as_secs()),
                Step::KeepPrevious { duration } => format!("keep-previous:{}", duration.as_secs()),
                other => other.phase().to_owned(),
            })
            .collect()
    }

    #[test]
    fn blue_green_gates_green_before_any_traffic_and_bakes_after_the_switch() {
        let mut s = strategy(StrategyKind::BlueGreen);
        s.bake = Some(CfgDuration::from_secs(30));
        assert_eq!(phases(&steps(&s, 4)), ["start-new:4", "gate-new", "shift:100", "bake:30", "verify", "retire-old"]);
    }

    #[test]
    fn canary_bakes_at_every_weight() {
        let mut s = strategy(StrategyKind::Canary);
        s.steps = Some(vec![Percent::new(10).unwrap(), Percent::new(50).unwrap(), Percent::new(100).unwrap()]);
        s.bake = Some(CfgDuration::from_secs(5));
        assert_eq!(
            phases(&steps(&s, 2)),
            [
                "start-new:2",
                "gate-new",
                "shift:10",
                "bake:5",
                "shift:50",
                "bake:5",
                "shift:100",
                "bake:5",
                "verify",
                "retire-old"
            ]
        );
    }

    #[test]
    fn linear_adds_the_increment_up_to_100() {
        let mut s = strategy(StrategyKind::Linear);
        s.increment = Some(Percent::new(30).unwrap());
        assert_eq!(weights(&s), [30, 60, 90, 100]);
        s.increment = Some(Percent::new(25).unwrap());
        assert_eq!(weights(&s), [25, 50, 75, 100]);
    }

    #[test]
    fn rolling_replaces_in_batches_each_gated() {
        let mut s = strategy(StrategyKind::Rolling);
        s.batch = Some(BatchSize::Count(2));
        assert_eq!(
            phases(&steps(&s, 5)),
            [
                "start-new:2",
                "gate-new",
                "replace:3",
                "start-new:4",
                "gate-new",
                "replace:1",
                "start-new:5",
                "gate-new",
                "replace:0",
                "gate-live",
                "verify",
                "retire-old"
            ]
        );
    }

    #[test]
    fn batch_shares_round_up_and_stay_in_range() {
        assert_eq!(batch_size(Some(BatchSize::Percent(Percent::new(25).unwrap())), 5), 2);
        assert_eq!(batch_size(Some(BatchSize::Percent(Percent::new(100).unwrap())), 3), 3);
        assert_eq!(batch_size(Some(BatchSize::Count(9)), 3), 3);
        assert_eq!(batch_size(None, 3), 1);
    }

    #[test]
    fn all_at_once_gates_both_sides() {
        assert_eq!(
            phases(&steps(&strategy(StrategyKind::AllAtOnce), 1)),
            ["start-new:1", "gate-new", "shift:100", "gate-live", "verify", "retire-old"]
        );
    }
}
