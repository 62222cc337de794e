//! The ALB side of blue-green and canary: the production listener's weighted forwards
//! (its default action and every rule that forwards to the pair) between the blue and green
//! target groups, the test listener that reaches only the new
//! version, target group attributes (the deregistration delay), and listener URLs.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Listener, TargetGroupStickinessConfig, TargetGroupTuple,
};

use super::api;
use crate::targets::TargetError;

/// A listener's default forward: each target group with its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub weights: Vec<(String, i32)>,
    stickiness: Option<TargetGroupStickinessConfig>,
}

impl Forward {
    pub fn weight(&self, target_group: &str) -> i32 {
        self.weights.iter().filter(|(tg, _)| tg == target_group).map(|(_, w)| *w).sum()
    }

    /// `target_group`'s share of traffic, 0 to 100.
    pub fn percent(&self, target_group: &str) -> u8 {
        let total: i32 = self.weights.iter().map(|(_, w)| (*w).max(0)).sum();
        if total == 0 { 0 } else { (self.weight(target_group).max(0) * 100 / total) as u8 }
    }

    fn from_action(a: &Action) -> Option<Self> {
        if a.r#type() != Some(&ActionTypeEnum::Forward) {
            return None;
        }
        Some(match a.forward_config() {
            Some(config) if !config.target_groups().is_empty() => Forward {
                weights: config
                    .target_groups()
                    .iter()
                    .map(|t| (t.target_group_arn().unwrap_or_default().to_owned(), t.weight().unwrap_or(1)))
                    .collect(),
                stickiness: config.target_group_stickiness_config().cloned(),
            },
            _ => Forward {
                weights: a.target_group_arn().map(|tg| vec![(tg.to_owned(), 1)]).unwrap_or_default(),
                stickiness: None,
            },
        })
    }
}

/// One way a listener forwards to the pair: its default action, or one of its rules.
#[derive(Debug, Clone)]
struct Route {
    /// `None` for the listener's default action.
    rule: Option<String>,
    actions: Vec<Action>,
    forward_at: usize,
    forward: Forward,
}

/// Every route of a listener that forwards to the blue or the green target group (its
/// default action and its rules); weights are moved on all of them together.
#[derive(Debug, Clone)]
pub struct Routes {
    listener: String,
    routes: Vec<Route>,
}

impl Routes {
    /// `target_group`'s share on the route that gives it the least (all routes must agree
    /// before a version takes all traffic).
    pub fn percent(&self, target_group: &str) -> u8 {
        self.routes.iter().map(|r| r.forward.percent(target_group)).min().unwrap_or(0)
    }

    /// Whether every route sends exactly `weights`.
    pub fn is(&self, weights: &[(&str, i32)]) -> bool {
        self.routes.iter().all(|r| {
            r.forward.weights.len() == weights.len()
                && weights
                    .iter()
                    .all(|(tg, w)| r.forward.weight(tg) == *w && r.forward.weights.iter().any(|(t, _)| t == tg))
        })
    }

    /// `blue`'s weight minus `green`'s summed over the routes: which side the listener favours.
    pub fn lean(&self, a: &str, b: &str) -> i32 {
        self.routes.iter().map(|r| r.forward.percent(a) as i32 - r.forward.percent(b) as i32).sum()
    }

    /// How many rules (besides the default action) forward to the pair.
    pub fn rules(&self) -> usize {
        self.routes.iter().filter(|r| r.rule.is_some()).count()
    }
}

async fn listener(elb: &Client, arn: &str) -> Result<Listener, TargetError> {
    let out = elb
        .describe_listeners()
        .listener_arns(arn)
        .send()
        .await
        .map_err(|e| api::error(format!("describe listener {arn}"), e))?;
    out.listeners().first().cloned().ok_or_else(|| {
        TargetError::new(format!("listener {arn} does not exist"))
            .with_hint("check `listener_arn` and `test_listener_arn` in the target's `ecs` table")
    })
}

/// The listener's routes to the pair, checked to forward only to `blue` and `green`.
pub async fn routes(elb: &Client, arn: &str, blue: &str, green: &str) -> Result<Routes, TargetError> {
    let l = listener(elb, arn).await?;
    let rules = elb
        .describe_rules()
        .listener_arn(arn)
        .send()
        .await
        .map_err(|e| api::error(format!("describe the rules of listener {arn}"), e))?;
    let mut candidates = vec![(None, l.default_actions().to_vec())];
    for rule in rules.rules().iter().filter(|r| r.is_default() != Some(true)) {
        candidates.push((rule.rule_arn().map(str::to_owned), rule.actions().to_vec()));
    }
    let mut routes = Vec::new();
    for (rule, actions) in candidates {
        let Some((forward_at, forward)) =
            actions.iter().enumerate().find_map(|(i, a)| Forward::from_action(a).map(|f| (i, f)))
        else {
            continue;
        };
        let ours = |tg: &String| tg == blue || tg == green;
        if !forward.weights.iter().any(|(tg, _)| ours(tg)) {
            continue; // another service's route on a shared listener
        }
        if let Some((other, _)) = forward.weights.iter().find(|(tg, _)| !ours(tg)) {
            let what = rule.as_deref().map_or_else(|| "its default action".to_owned(), |r| format!("its rule {r}"));
            return Err(not_set_up(
                arn,
                &format!("{what} forwards to {other}, which is neither the blue nor the green target group"),
            ));
        }
        routes.push(Route { rule, actions, forward_at, forward });
    }
    if routes.is_empty() {
        return Err(not_set_up(
            arn,
            "neither its default action nor any rule forwards to the blue or the green target group",
        ));
    }
    Ok(Routes { listener: arn.to_owned(), routes })
}

fn not_set_up(arn: &str, why: &str) -> TargetError {
    TargetError::new(format!("listener {arn} is not set up for blue-green: {why}")).with_hint(
        "make the listener forward to the two target groups named by `blue_target_group_arn` and \
         `green_target_group_arn` (weights 100 and 0), in its default action or its rules",
    )
}

/// Sets `weights` on every route (default action: ModifyListener; rules: ModifyRule), keeping
/// each route's other actions (authentication) and stickiness.
pub async fn set_weights(elb: &Client, routes: &Routes, weights: &[(&str, i32)]) -> Result<(), TargetError> {
    for route in &routes.routes {
        let config = ForwardActionConfig::builder()
            .set_target_groups(Some(
                weights
                    .iter()
                    .map(|(tg, w)| TargetGroupTuple::builder().target_group_arn(*tg).weight(*w).build())
                    .collect(),
            ))
            .set_target_group_stickiness_config(route.forward.stickiness.clone())
            .build();
        let mut actions = route.actions.clone();
        let order = actions[route.forward_at].order();
        actions[route.forward_at] =
            Action::builder().r#type(ActionTypeEnum::Forward).forward_config(config).set_order(order).build();
        match &route.rule {
            None => {
                elb.modify_listener()
                    .listener_arn(&routes.listener)
                    .set_default_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| api::error(format!("set the weights of listener {}", routes.listener), e))?;
            }
            Some(rule) => {
                elb.modify_rule()
                    .rule_arn(rule)
                    .set_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| api::error(format!("set the weights of listener rule {rule}"), e))?;
            }
        }
    }
    Ok(())
}

/// The target group's `deregistration_delay.timeout_seconds` (AWS's default: 300 s).
pub async fn deregistration_delay(elb: &Client, target_group: &str) -> Result<Duration, TargetError> {
    let out = elb
        .describe_target_group_attributes()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(|e| api::error(format!("read the attributes of target group {target_group}"), e))?;
    let secs = out
        .attributes()
        .iter()
        .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
        .and_then(|a| a.value())
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Ok(Duration::from_secs(secs))
}

/// `protocol://DNS-NAME:PORT` of a listener's load balancer.
pub async fn url(elb: &Client, arn: &str) -> Result<String, TargetError> {
    let l = listener(elb, arn).await?;
    let lb = l.load_balancer_arn().unwrap_or_default();
    let out = elb
        .describe_load_balancers()
        .load_balancer_arns(lb)
        .send()
        .await
        .map_err(|e| api::error(format!("describe load balancer {lb}"), e))?;
    let dns = out.load_balancers().first().and_then(|b| b.dns_name()).unwrap_or_default();
    let scheme = l.protocol().map_or("http", |p| if p.as_str() == "HTTPS" { "https" } else { "http" });
    Ok(format!("{scheme}://{dns}:{}", l.port().unwrap_or(80)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_percentages_of_the_total_weight() {
        let f = Forward { weights: vec![("blue".into(), 90), ("green".into(), 10)], stickiness: None };
        assert_eq!((f.percent("blue"), f.percent("green"), f.percent("other")), (90, 10, 0));
        // Weights are relative: 1 and 1 is half each, a lone forward is everything.
        let f = Forward { weights: vec![("blue".into(), 1), ("green".into(), 1)], stickiness: None };
        assert_eq!(f.percent("green"), 50);
        let f = Forward { weights: vec![("blue".into(), 1)], stickiness: None };
        assert_eq!(f.percent("blue"), 100);
        let f = Forward { weights: vec![("blue".into(), 0), ("green".into(), 0)], stickiness: None };
        assert_eq!(f.percent("blue"), 0);
    }
}
