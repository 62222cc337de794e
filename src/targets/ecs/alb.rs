//! The ALB side of blue-green and canary: the production listener's weighted forward
//! between the blue and green target groups, the test listener that reaches only the new
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

/// The listener's default forward, checked to reach only `blue` and `green`.
pub async fn forward(elb: &Client, arn: &str, blue: &str, green: &str) -> Result<Forward, TargetError> {
    let l = listener(elb, arn).await?;
    let action = l.default_actions().iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward));
    let forward = action.map(|a| match a.forward_config() {
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
    });
    let Some(forward) = forward.filter(|f| !f.weights.is_empty()) else {
        return Err(not_set_up(arn, "its default action does not forward to target groups"));
    };
    if let Some((other, _)) = forward.weights.iter().find(|(tg, _)| tg != blue && tg != green) {
        return Err(not_set_up(
            arn,
            &format!("it forwards to {other}, which is neither the blue nor the green target group"),
        ));
    }
    Ok(forward)
}

fn not_set_up(arn: &str, why: &str) -> TargetError {
    TargetError::new(format!("listener {arn} is not set up for blue-green: {why}")).with_hint(
        "make the listener's default action a forward to the two target groups named by `blue_target_group_arn` \
         and `green_target_group_arn` (weights 100 and 0)",
    )
}

/// Sets the listener's default action to forward with these weights (stickiness kept).
pub async fn set_weights(
    elb: &Client,
    arn: &str,
    current: &Forward,
    weights: &[(&str, i32)],
) -> Result<(), TargetError> {
    let config = ForwardActionConfig::builder()
        .set_target_groups(Some(
            weights
                .iter()
                .map(|(tg, w)| TargetGroupTuple::builder().target_group_arn(*tg).weight(*w).build())
                .collect(),
        ))
        .set_target_group_stickiness_config(current.stickiness.clone())
        .build();
    let action = Action::builder().r#type(ActionTypeEnum::Forward).forward_config(config).build();
    elb.modify_listener()
        .listener_arn(arn)
        .default_actions(action)
        .send()
        .await
        .map_err(|e| api::error(format!("set the weights of listener {arn}"), e))?;
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
