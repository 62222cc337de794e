//! CloudWatch alarms that gate a deploy: `DescribeAlarms` for the configured names; an
//! alarm in state `ALARM` fails the gate it is read in. A configured alarm that does not
//! exist is an error (a typo would otherwise gate nothing).

use aws_sdk_cloudwatch::types::{AlarmType, StateValue};

use super::sdk;
use crate::targets::TargetError;

/// Each configured alarm's name and, when it fires, why.
pub async fn firing(client: &aws_sdk_cloudwatch::Client, names: &[String]) -> Result<Vec<String>, TargetError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let what = format!("CloudWatch alarms {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "));
    let mut found = Vec::new();
    let mut firing = Vec::new();
    // DescribeAlarms takes at most 100 names at a time.
    for chunk in names.chunks(100) {
        let out = client
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .send()
            .await
            .map_err(|e| sdk::error("cloudwatch:DescribeAlarms", &what, "check the alarm names in `alarms`", e))?;
        let metric = out.metric_alarms().iter().map(|a| (a.alarm_name(), a.state_value(), a.state_reason()));
        let composite = out.composite_alarms().iter().map(|a| (a.alarm_name(), a.state_value(), a.state_reason()));
        for (name, state, reason) in metric.chain(composite) {
            let name = name.unwrap_or_default().to_owned();
            if state == Some(&StateValue::Alarm) {
                firing.push(format!("`{name}` is in ALARM ({})", reason.unwrap_or("no reason given")));
            }
            found.push(name);
        }
    }
    if let Some(missing) = names.iter().find(|n| !found.contains(n)) {
        return Err(TargetError::new(format!("CloudWatch alarm `{missing}` does not exist"))
            .with_hint("check `alarms` in the target's settings against `aws cloudwatch describe-alarms`"));
    }
    Ok(firing)
}
