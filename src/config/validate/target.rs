//! Rules for one target, checked on `[targets.NAME]` and again on each
//! environment's merged copy: the provider table matches `kind`, references to
//! artifacts and images resolve, the strategy has the keys its type needs and no
//! others, and health checks have sane thresholds and timings. Paths in the issues
//! are relative to the target.

use super::{Issue, unknown_name_hint};
use crate::config::model::{
    Config, EcsTarget, HealthCheck, KubernetesTarget, StrategyConfig, StrategyKind, Target, TargetKind,
};
use crate::config::tree::KeyPath;
use crate::config::values::Name;

/// Checks target `name`; the first problem found.
pub fn target(name: &Name, t: &Target, cfg: &Config) -> Result<(), Issue> {
    check_provider(name, t)?;
    check_region(t)?;
    check_references(t, cfg)?;
    check_strategy(&t.strategy, t.kind)?;
    if let Some(ecs) = &t.ecs {
        check_ecs(ecs, t.strategy.kind).map_err(|issue| issue.under(&KeyPath::new().key("ecs")))?;
    }
    check_serverless(t)?;
    check_azure_strategy(t)?;
    if let Some(swa) = &t.staticwebapp {
        check_staticwebapp(swa).map_err(|issue| issue.under(&KeyPath::new().key("staticwebapp")))?;
    }
    check_render(t)?;
    if let Some(k8s) = &t.kubernetes {
        check_kubernetes(k8s, t.strategy.kind)?;
    }
    for (i, check) in t.health.iter().enumerate() {
        check_health(check).map_err(|issue| issue.under(&KeyPath::new().key("health").index(i)))?;
    }
    Ok(())
}

/// The AWS kinds call AWS in their `region`, so it must be an AWS region.
fn check_region(t: &Target) -> Result<(), Issue> {
    let Some(region) = &t.region else { return Ok(()) };
    let aws = matches!(t.kind, TargetKind::Ecs | TargetKind::Lambda | TargetKind::Static);
    if aws && region.as_str().parse::<crate::config::values::Region>().is_err() {
        return Err(Issue::new(
            KeyPath::new().key("region"),
            format!("`{region}` is not an AWS region: `{}` targets run in AWS", t.kind.key()),
        )
        .hint("use an AWS region such as `us-east-1` or `eu-west-1`"));
    }
    Ok(())
}

fn check_provider(name: &Name, t: &Target) -> Result<(), Issue> {
    let tables = [
        ("local", t.local.is_some()),
        ("ecs", t.ecs.is_some()),
        ("lambda", t.lambda.is_some()),
        ("static", t.static_site.is_some()),
        ("appservice", t.appservice.is_some()),
        ("staticwebapp", t.staticwebapp.is_some()),
        ("containerapps", t.containerapps.is_some()),
        ("render", t.render.is_some()),
        ("kubernetes", t.kubernetes.is_some()),
    ];
    let wanted = t.kind.key();
    if !tables.iter().any(|(key, on)| *on && *key == wanted) {
        return Err(Issue::new(
            KeyPath::new().key("kind"),
            format!("`kind = \"{wanted}\"` needs its settings in a table named `{wanted}`"),
        )
        .hint(format!("add `{wanted} = {{ ... }}` to `[targets.{name}]`, or a `[targets.{name}.{wanted}]` table")));
    }
    if let Some((extra, _)) = tables.iter().find(|(key, on)| *on && *key != wanted) {
        return Err(Issue::new(
            KeyPath::new().key(*extra),
            format!("`{extra}` settings do not apply to `kind = \"{wanted}\"`"),
        )
        .hint(format!("remove the `{extra}` table, or set `kind = \"{extra}\"`"))
        .unwanted());
    }
    Ok(())
}

/// Rules of the `lambda` and `static` kinds: a preset stands alone and is known, and the
/// strategies each kind can carry out.
fn check_serverless(t: &Target) -> Result<(), Issue> {
    use crate::config::model::{LAMBDA_PRESETS, lambda_preset};
    let strategy = &t.strategy;
    let set_keys = strategy.kind != StrategyKind::AllAtOnce
        || strategy.batch.is_some()
        || strategy.steps.is_some()
        || strategy.increment.is_some()
        || strategy.bake.is_some()
        || strategy.keep_previous.is_some();
    match (t.kind, &t.lambda, &t.static_site) {
        (TargetKind::Lambda, Some(lambda), _) => {
            if let Some(preset) = &lambda.preset {
                let at = KeyPath::new().key("lambda").key("preset");
                if lambda_preset(preset).is_none() {
                    let hint = match super::did_you_mean(preset, LAMBDA_PRESETS.iter().copied()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("one of: {}", LAMBDA_PRESETS.join(", ")),
                    };
                    return Err(Issue::new(at, format!("unknown preset `{preset}`")).hint(hint));
                }
                if set_keys {
                    return Err(Issue::new(
                        KeyPath::new().key("strategy"),
                        "`strategy` and `lambda.preset` are both set",
                    )
                    .hint("a preset is a strategy: keep one of them (`phase_deadline` may stay in `strategy`)")
                    .unwanted());
                }
            }
            if strategy.kind == StrategyKind::Rolling {
                return Err(Issue::new(
                    KeyPath::new().key("strategy").key("type"),
                    "a lambda alias has no replicas to roll: use all-at-once, blue-green, canary or linear",
                ));
            }
            Ok(())
        }
        (TargetKind::Static, _, Some(site)) => {
            if !matches!(strategy.kind, StrategyKind::AllAtOnce | StrategyKind::BlueGreen) {
                return Err(Issue::new(
                    KeyPath::new().key("strategy").key("type"),
                    format!("a static site cannot take a `{}` strategy", strategy_name(strategy.kind)),
                )
                .hint(
                    "use `all-at-once` (files replaced in place) or `blue-green` (the CloudFront origin path switched)",
                ));
            }
            if strategy.kind == StrategyKind::BlueGreen && site.distribution.is_none() {
                return Err(Issue::new(
                    KeyPath::new().key("static"),
                    "a blue-green static site needs `distribution`: the switch is its origin path",
                )
                .hint("add `distribution = \"E...\"` (the CloudFront distribution id)"));
            }
            if site.keep_releases == Some(0) {
                return Err(Issue::new(
                    KeyPath::new().key("static").key("keep_releases"),
                    "`keep_releases` must be at least 1",
                )
                .hint("it counts the live release too; pages open on older releases need theirs kept"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The Azure kinds' strategies. An App Service app moves all at once (a direct deploy) or by
/// a slot swap (blue-green): it has no replicas to roll and no traffic split to step
/// through. A Static Web App only moves all at once; a container app never rolls.
fn check_azure_strategy(t: &Target) -> Result<(), Issue> {
    if t.kind == TargetKind::Containerapps && t.strategy.kind == StrategyKind::Rolling {
        return Err(Issue::new(
            KeyPath::new().key("strategy").key("type"),
            "a container app moves between revisions by traffic weights, not by rolling replicas",
        )
        .hint("use `canary`, `linear`, `blue-green` or `all-at-once`"));
    }
    if t.kind == TargetKind::Staticwebapp && t.strategy.kind != StrategyKind::AllAtOnce {
        return Err(Issue::new(
            KeyPath::new().key("strategy").key("type"),
            format!("a Static Web App cannot take a `{}` strategy", strategy_name(t.strategy.kind)),
        )
        .hint("use `all-at-once`: the site switches to a deployment whole, and a failure deploys the previous release again"));
    }
    if t.kind != TargetKind::Appservice || matches!(t.strategy.kind, StrategyKind::AllAtOnce | StrategyKind::BlueGreen)
    {
        return Ok(());
    }
    Err(Issue::new(
        KeyPath::new().key("strategy").key("type"),
        format!("an App Service app cannot take a `{}` strategy", strategy_name(t.strategy.kind)),
    )
    .hint("use `blue-green` (a deployment slot swapped into production) or `all-at-once` (deployed straight to production, or by a slot swap when the plan has slots)"))
}

/// A Static Web App is deployed through ARM (which needs the subscription and resource group)
/// or with its deployment token (which cannot read the site's host name: `url` is needed).
fn check_staticwebapp(swa: &crate::config::StaticWebAppTarget) -> Result<(), Issue> {
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
    match &swa.token_env {
        Some(var) if var.trim().is_empty() => {
            Err(Issue::new(KeyPath::new().key("token_env"), "`token_env` is empty")
                .hint("name the variable that holds the deployment token, e.g. `AZURE_STATIC_WEB_APPS_API_TOKEN`"))
        }
        Some(_) if blank(&swa.url) => Err(Issue::new(
            KeyPath::new().key("url"),
            "a Static Web App deployed with its deployment token needs `url`",
        )
        .hint("set `url` to the site's address (its custom domain, or `https://NAME.azurestaticapps.net`): without Azure Resource Manager gantry cannot read it")),
        Some(_) => Ok(()),
        None => {
            for (key, value) in [("subscription", &swa.subscription), ("resource_group", &swa.resource_group)] {
                if blank(value) {
                    return Err(Issue::new(
                        KeyPath::new().key(key),
                        format!("`{key}` is needed to deploy through Azure Resource Manager"),
                    )
                    .hint("set `subscription` and `resource_group`, or set `token_env` to deploy with the site's deployment token instead"));
                }
            }
            Ok(())
        }
    }
}

/// Render: one live deploy per service, replaced all at once when the next one goes live, so
/// the only strategy is `all-at-once` (with an optional `bake`); the poll interval is not 0.
fn check_render(t: &Target) -> Result<(), Issue> {
    let Some(render) = t.render.as_ref().filter(|_| t.kind == TargetKind::Render) else { return Ok(()) };
    if t.strategy.kind != StrategyKind::AllAtOnce {
        return Err(Issue::new(
            KeyPath::new().key("strategy").key("type"),
            format!("a Render service cannot take a `{}` strategy", strategy_name(t.strategy.kind)),
        )
        .hint(
            "Render runs one live deploy per service and moves all traffic to a new one when it goes live: \
             use `type = \"all-at-once\"` (add `bake = \"5m\"` to watch it before it counts as done)",
        ));
    }
    if render.poll_interval.is_some_and(|d| d.get().is_zero()) {
        return Err(Issue::new(
            KeyPath::new().key("render").key("poll_interval"),
            "`poll_interval` must be longer than 0s",
        )
        .hint("write e.g. `poll_interval = \"5s\"`"));
    }
    if render.service.trim().is_empty() {
        return Err(Issue::new(KeyPath::new().key("render").key("service"), "`service` is empty")
            .hint("the service id, e.g. `srv-d0abc123` (shown in the Render Dashboard)"));
    }
    Ok(())
}

fn check_references(t: &Target, cfg: &Config) -> Result<(), Issue> {
    let key = t.kind.key();
    let (artifact, image) = match t.kind {
        TargetKind::Local => (t.local.as_ref().map(|p| &p.artifact), None),
        TargetKind::Ecs => (None, t.ecs.as_ref().map(|p| &p.image)),
        TargetKind::Lambda => {
            let lambda = t.lambda.as_ref().expect("checked by check_provider");
            if lambda.artifact.is_some() == lambda.image.is_some() {
                return Err(Issue::new(
                    KeyPath::new().key(key),
                    "a lambda target needs exactly one of `artifact` (zip code) and `image` (container)",
                ));
            }
            (lambda.artifact.as_ref(), lambda.image.as_ref())
        }
        TargetKind::Static => (t.static_site.as_ref().map(|p| &p.artifact), None),
        TargetKind::Appservice => (t.appservice.as_ref().map(|p| &p.artifact), None),
        TargetKind::Staticwebapp => (t.staticwebapp.as_ref().map(|p| &p.artifact), None),
        TargetKind::Containerapps => (None, t.containerapps.as_ref().map(|p| &p.image)),
        TargetKind::Render => (None, t.render.as_ref().and_then(|p| p.image.as_ref())),
        TargetKind::Kubernetes => (None, t.kubernetes.as_ref().map(|p| &p.image)),
    };
    if let Some(name) = artifact
        && !cfg.artifacts.contains_key(name)
    {
        let known = cfg.artifacts.keys().map(Name::as_str);
        return Err(Issue::new(KeyPath::new().key(key).key("artifact"), format!("unknown artifact `{name}`"))
            .hint(unknown_name_hint(name, known, "artifacts")));
    }
    if let Some(name) = image
        && !cfg.images.contains_key(name)
    {
        let known = cfg.images.keys().map(Name::as_str);
        return Err(Issue::new(KeyPath::new().key(key).key("image"), format!("unknown image `{name}`"))
            .hint(unknown_name_hint(name, known, "images")));
    }
    Ok(())
}

fn strategy_name(kind: StrategyKind) -> &'static str {
    match kind {
        StrategyKind::AllAtOnce => "all-at-once",
        StrategyKind::Rolling => "rolling",
        StrategyKind::BlueGreen => "blue-green",
        StrategyKind::Canary => "canary",
        StrategyKind::Linear => "linear",
    }
}

fn check_strategy(s: &StrategyConfig, target: TargetKind) -> Result<(), Issue> {
    use StrategyKind::{AllAtOnce, BlueGreen, Canary, Linear, Rolling};
    let at = KeyPath::new().key("strategy");
    let kind = strategy_name(s.kind);
    // A Render deploy is all-at-once, and its bake watches the live service after the cutover.
    let bake: &[StrategyKind] = if target == TargetKind::Render { &[AllAtOnce] } else { &[BlueGreen, Canary, Linear] };
    // Each optional key, whether it is set, and the types it applies to.
    let keys: [(&str, bool, &[StrategyKind]); 5] = [
        ("batch", s.batch.is_some(), &[Rolling]),
        ("steps", s.steps.is_some(), &[Canary]),
        ("increment", s.increment.is_some(), &[Linear]),
        ("bake", s.bake.is_some(), bake),
        ("keep_previous", s.keep_previous.is_some(), &[BlueGreen]),
    ];
    for (key, set, types) in keys {
        if set && !types.contains(&s.kind) {
            let for_types: Vec<String> = types.iter().map(|t| format!("`type = \"{}\"`", strategy_name(*t))).collect();
            return Err(Issue::new(at.key(key), format!("`{key}` does not apply to a `{kind}` strategy"))
                .hint(format!("`{key}` is for {}; remove it here", for_types.join(" or ")))
                .unwanted());
        }
    }
    let needs = |key: &str, example: &str| {
        Issue::new(at.clone(), format!("a `{kind}` strategy needs `{key}`"))
            .hint(format!("add {example} to the strategy"))
    };
    match s.kind {
        Rolling if s.batch.is_none() => Err(needs("batch", "`batch = 1` (replicas at a time) or `batch = \"25%\"`")),
        Linear if s.increment.is_none() => Err(needs("increment", "`increment = 10`")),
        Canary => match &s.steps {
            None => Err(needs("steps", "`steps = [10, 50, 100]`")),
            Some(steps) => check_steps(&at.key("steps"), steps),
        },
        _ => Ok(()),
    }
}

fn check_steps(at: &KeyPath, steps: &[crate::config::values::Percent]) -> Result<(), Issue> {
    let Some(last) = steps.last() else {
        return Err(
            Issue::new(at.clone(), "a canary strategy needs at least one step").hint("e.g. `steps = [10, 50, 100]`")
        );
    };
    for (i, pair) in steps.windows(2).enumerate() {
        let (before, step) = (pair[0].get(), pair[1].get());
        if step <= before {
            return Err(Issue::new(
                at.index(i + 1),
                format!("canary steps must rise, but {step} comes after {before}"),
            )
            .hint("list traffic percentages from low to high, e.g. `steps = [10, 50, 100]`"));
        }
    }
    if last.get() != 100 {
        return Err(Issue::new(
            at.index(steps.len() - 1),
            format!("the last canary step must be 100 (all traffic), not {}", last.get()),
        )
        .hint("end the steps with 100"));
    }
    Ok(())
}

/// ECS: blue-green, canary and linear go through the ALB, so they need the listener, the
/// test listener and two different target groups; counts and commands are not empty.
fn check_ecs(ecs: &EcsTarget, kind: StrategyKind) -> Result<(), Issue> {
    let at = KeyPath::new();
    let through_alb = matches!(kind, StrategyKind::BlueGreen | StrategyKind::Canary | StrategyKind::Linear);
    if through_alb {
        let keys = [
            ("listener_arn", ecs.listener_arn.is_some()),
            ("test_listener_arn", ecs.test_listener_arn.is_some()),
            ("blue_target_group_arn", ecs.blue_target_group_arn.is_some()),
            ("green_target_group_arn", ecs.green_target_group_arn.is_some()),
        ];
        if let Some((key, _)) = keys.iter().find(|(_, set)| !set) {
            return Err(Issue::new(at.clone(), format!("a `{}` strategy on ECS needs `{key}`", strategy_name(kind)))
                .hint(
                    "blue-green, canary and linear shift ALB listener weights between two target groups: set \
                 `listener_arn`, `test_listener_arn`, `blue_target_group_arn` and `green_target_group_arn`, \
                 or use `type = \"rolling\"`",
                ));
        }
    }
    if ecs.blue_target_group_arn.is_some() && ecs.blue_target_group_arn == ecs.green_target_group_arn {
        return Err(Issue::new(at.key("green_target_group_arn"), "the green target group is the blue one")
            .hint("blue and green need a target group each"));
    }
    if ecs.listener_arn.is_some() && ecs.listener_arn == ecs.test_listener_arn {
        return Err(Issue::new(at.key("test_listener_arn"), "the test listener is the production listener")
            .hint("the test listener serves only the new version, on its own port"));
    }
    if ecs.green_service.as_deref() == Some(ecs.service.as_str()) {
        return Err(Issue::new(at.key("green_service"), "`green_service` names `service` itself")
            .hint("name a second service (default: SERVICE-green)"));
    }
    if ecs.desired_count == Some(0) {
        return Err(Issue::new(at.key("desired_count"), "`desired_count` must be at least 1")
            .hint("the new version needs a task to serve; leave it out to keep the live count"));
    }
    if ecs.run_before.as_ref().is_some_and(|c| c.is_empty()) {
        return Err(Issue::new(at.key("run_before"), "`run_before` is an empty command")
            .hint("e.g. `run_before = [\"./migrate\", \"up\"]`, or leave it out"));
    }
    if ecs.poll_interval.is_some_and(|d| d.get().is_zero()) {
        return Err(Issue::new(at.key("poll_interval"), "`poll_interval` must be longer than 0s")
            .hint("write e.g. `poll_interval = \"5s\"`"));
    }
    Ok(())
}

/// Kubernetes: rolling (and all-at-once) update the Deployment in place; blue-green needs
/// the Service to switch and a preview URL that tells the colours apart. No traffic split.
fn check_kubernetes(k8s: &KubernetesTarget, kind: StrategyKind) -> Result<(), Issue> {
    let at = KeyPath::new().key("kubernetes");
    if matches!(kind, StrategyKind::Canary | StrategyKind::Linear) {
        return Err(Issue::new(
            KeyPath::new().key("strategy").key("type"),
            format!("a kubernetes target cannot take a `{}` strategy", strategy_name(kind)),
        )
        .hint("a Service splits traffic by pod count, not by weight: use `rolling` (the Deployment's own rollout) or `blue-green` (a second Deployment and a selector switch)"));
    }
    if kind == StrategyKind::BlueGreen {
        if k8s.service.is_none() {
            return Err(Issue::new(at.clone(), "a blue-green kubernetes target needs `service`").hint(
                "name the Service whose selector gantry switches between the colours, e.g. `service = \"api\"`",
            ));
        }
        match &k8s.preview_url {
            None => {
                return Err(Issue::new(at.clone(), "a blue-green kubernetes target needs `preview_url`").hint(
                    "a URL that reaches one colour alone, e.g. `preview_url = \"https://{colour}.api.example.com\"` \
                     served by a per-colour Service and Ingress",
                ));
            }
            Some(url) if !url.contains("{colour}") && !url.contains("{deployment}") => {
                return Err(Issue::new(
                    at.key("preview_url"),
                    "`preview_url` names neither `{colour}` nor `{deployment}`",
                )
                .hint("the preview must reach the new colour alone: put `{colour}` or `{deployment}` in it"));
            }
            Some(_) => {}
        }
    }
    if k8s.image_ref.as_ref().is_some_and(|r| r.trim().is_empty()) {
        return Err(Issue::new(at.key("image_ref"), "`image_ref` is empty")
            .hint("e.g. `image_ref = \"myregistry.azurecr.io/api:{version}\"`, or leave it out to use ECR"));
    }
    if k8s.poll_interval.is_some_and(|d| d.get().is_zero()) {
        return Err(Issue::new(at.key("poll_interval"), "`poll_interval` must be longer than 0s")
            .hint("write e.g. `poll_interval = \"2s\"`"));
    }
    Ok(())
}

fn check_health(check: &HealthCheck) -> Result<(), Issue> {
    let at = KeyPath::new();
    for (key, value) in
        [("healthy_threshold", check.healthy_threshold), ("unhealthy_threshold", check.unhealthy_threshold)]
    {
        if value == 0 {
            return Err(Issue::new(at.key(key), format!("`{key}` must be at least 1"))
                .hint(format!("it counts consecutive checks; write `{key} = 1` or more")));
        }
    }
    for (key, value) in [("interval", check.interval), ("timeout", check.timeout)] {
        if value.get().is_zero() {
            return Err(Issue::new(at.key(key), format!("`{key}` must be longer than 0s"))
                .hint(format!("write e.g. `{key} = \"1s\"`")));
        }
    }
    if check.timeout > check.interval {
        return Err(Issue::new(
            at.key("timeout"),
            format!("`timeout` ({}) is longer than `interval` ({})", check.timeout, check.interval),
        )
        .hint(format!("a check must end before the next one starts: set `timeout` to {} or less", check.interval)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<(), Issue> {
        let text = format!(
            "[project]\nname = 'demo'\n[artifacts.app]\nroot = 'app'\n\
             [images.img]\nrepository = 'r'\ninputs = []\noci_layout = 'x'\n[targets.t]\n{body}"
        );
        let cfg: Config = toml::from_str(&text).unwrap();
        let name: Name = "t".parse().unwrap();
        target(&name, &cfg.targets[&name], &cfg)
    }

    fn path(r: Result<(), Issue>) -> String {
        r.unwrap_err().path.to_string()
    }

    const ECS: &str = "kind = 'ecs'\necs = { cluster = 'c', service = 's', container = 'c', image = 'img' }\n";

    #[test]
    fn provider_table_matches_kind() {
        assert_eq!(check(ECS), Ok(()));
        assert_eq!(path(check("kind = 'ecs'\n")), "kind");
        let extra = format!("{ECS}render = {{ service = 'srv' }}\n");
        let issue = check(&extra).unwrap_err();
        assert_eq!((issue.path.to_string(), issue.unwanted), ("render".into(), true));
    }

    #[test]
    fn references_resolve() {
        let bad = "kind = 'ecs'\necs = { cluster = 'c', service = 's', container = 'c', image = 'imgg' }\n";
        let issue = check(bad).unwrap_err();
        assert_eq!(issue.path.to_string(), "ecs.image");
        assert_eq!(issue.hint.as_deref(), Some("did you mean `img`?"));
        assert_eq!(path(check(&format!("kind = 'lambda'\nlambda = {{ function = 'f', {URLS} }}\n"))), "lambda");
        assert_eq!(
            check(&format!("kind = 'lambda'\nlambda = {{ function = 'f', artifact = 'app', {URLS} }}\n")),
            Ok(())
        );
    }

    const URLS: &str = "url = 'https://api', preview_url = 'https://preview'";

    #[test]
    fn lambda_presets_are_known_and_stand_alone() {
        let lambda = |extra: &str| {
            check(&format!("kind = 'lambda'\nlambda = {{ function = 'f', artifact = 'app', {URLS}{extra} }}\n"))
        };
        assert_eq!(lambda(", preset = 'Canary10Percent5Minutes'"), Ok(()));
        let issue = lambda(", preset = 'Canary10Percent6Minutes'").unwrap_err();
        assert_eq!(issue.path.to_string(), "lambda.preset");
        assert_eq!(issue.hint.as_deref(), Some("did you mean `Canary10Percent5Minutes`?"));
        let both = check(&format!(
            "kind = 'lambda'\nstrategy = {{ type = 'blue-green' }}\n\
             lambda = {{ function = 'f', artifact = 'app', {URLS}, preset = 'AllAtOnce' }}\n"
        ));
        assert_eq!(path(both), "strategy");
        let rolling = check(&format!(
            "kind = 'lambda'\nstrategy = {{ type = 'rolling', batch = 1 }}\nlambda = {{ function = 'f', artifact = 'app', {URLS} }}\n"
        ));
        assert_eq!(path(rolling), "strategy.type");
    }

    #[test]
    fn static_sites_switch_all_at_once_or_blue_green_through_a_distribution() {
        let site = |strategy: &str, extra: &str| {
            check(&format!(
                "kind = 'static'\nstrategy = {strategy}\nstatic = {{ bucket = 'site', artifact = 'app', {URLS}{extra} }}\n"
            ))
        };
        assert_eq!(site("{ type = 'all-at-once' }", ""), Ok(()));
        assert_eq!(path(site("{ type = 'blue-green' }", "")), "static");
        assert_eq!(site("{ type = 'blue-green' }", ", distribution = 'E1'"), Ok(()));
        assert_eq!(path(site("{ type = 'canary', steps = [10, 100] }", "")), "strategy.type");
        assert_eq!(path(site("{ type = 'all-at-once' }", ", keep_releases = 0")), "static.keep_releases");
    }

    #[test]
    fn strategies_have_the_keys_their_type_needs() {
        const ALB: &str = "kind = 'ecs'\necs = { cluster = 'c', service = 's', container = 'c', image = 'img', \
                           listener_arn = 'l', test_listener_arn = 't', blue_target_group_arn = 'b', \
                           green_target_group_arn = 'g' }\n";
        let with = |s: &str| check(&format!("{ALB}strategy = {s}\n"));
        assert_eq!(path(with("{ type = 'rolling' }")), "strategy");
        assert_eq!(with("{ type = 'rolling', batch = '25%' }"), Ok(()));
        assert_eq!(path(with("{ type = 'canary' }")), "strategy");
        assert_eq!(path(with("{ type = 'canary', steps = [10, 10, 100] }")), "strategy.steps[1]");
        assert_eq!(path(with("{ type = 'canary', steps = [10, 50] }")), "strategy.steps[1]");
        assert_eq!(path(with("{ type = 'canary', steps = [] }")), "strategy.steps");
        assert_eq!(with("{ type = 'canary', steps = [5, 100], bake = '1m' }"), Ok(()));
        assert_eq!(path(with("{ type = 'linear' }")), "strategy");
        assert_eq!(path(with("{ type = 'blue-green', steps = [100] }")), "strategy.steps");
        assert_eq!(path(with("{ batch = 1 }")), "strategy.batch");
    }

    #[test]
    fn ecs_through_the_alb_needs_listeners_and_two_target_groups() {
        let alb =
            "listener_arn = 'l', test_listener_arn = 't', blue_target_group_arn = 'b', green_target_group_arn = 'g'";
        let with = |ecs: &str, strategy: &str| {
            check(&format!(
                "kind = 'ecs'\necs = {{ cluster = 'c', service = 's', container = 'c', image = 'img'{ecs} }}\nstrategy = {strategy}\n"
            ))
        };
        assert_eq!(with("", "{ type = 'rolling', batch = 1 }"), Ok(()));
        assert_eq!(path(with("", "{ type = 'blue-green' }")), "ecs");
        assert_eq!(with(&format!(", {alb}"), "{ type = 'blue-green' }"), Ok(()));
        assert_eq!(with(&format!(", {alb}"), "{ type = 'canary', steps = [10, 100] }"), Ok(()));
        let same =
            "listener_arn = 'l', test_listener_arn = 't', blue_target_group_arn = 'b', green_target_group_arn = 'b'";
        assert_eq!(path(with(&format!(", {same}"), "{ type = 'blue-green' }")), "ecs.green_target_group_arn");
        assert_eq!(path(with(", desired_count = 0", "{ type = 'rolling', batch = 1 }")), "ecs.desired_count");
        assert_eq!(path(with(", run_before = []", "{ type = 'rolling', batch = 1 }")), "ecs.run_before");
        assert_eq!(path(with(", green_service = 's'", "{ type = 'rolling', batch = 1 }")), "ecs.green_service");
    }

    #[test]
    fn kubernetes_rolls_or_switches_a_selector() {
        let with = |k8s: &str, strategy: &str| {
            check(&format!(
                "kind = 'kubernetes'\nkubernetes = {{ namespace = 'n', deployment = 'd', container = 'c', image = 'img', \
                 url = 'http://u'{k8s} }}\nstrategy = {strategy}\n"
            ))
        };
        assert_eq!(with("", "{ type = 'rolling', batch = 1 }"), Ok(()));
        assert_eq!(path(with("", "{ type = 'canary', steps = [10, 100] }")), "strategy.type");
        assert_eq!(path(with("", "{ type = 'blue-green' }")), "kubernetes");
        assert_eq!(path(with(", service = 's'", "{ type = 'blue-green' }")), "kubernetes");
        assert_eq!(
            path(with(", service = 's', preview_url = 'http://p'", "{ type = 'blue-green' }")),
            "kubernetes.preview_url"
        );
        assert_eq!(with(", service = 's', preview_url = 'http://{colour}.p'", "{ type = 'blue-green' }"), Ok(()));
        assert_eq!(path(with(", image_ref = ' '", "{ type = 'rolling', batch = 1 }")), "kubernetes.image_ref");
        assert_eq!(path(with(", poll_interval = '0s'", "{ type = 'rolling', batch = 1 }")), "kubernetes.poll_interval");
    }

    #[test]
    fn render_services_cut_over_all_at_once() {
        let with = |strategy: &str, extra: &str| {
            check(&format!("kind = 'render'\nstrategy = {strategy}\nrender = {{ service = 'srv-1'{extra} }}\n"))
        };
        assert_eq!(with("{ type = 'all-at-once' }", ""), Ok(()));
        assert_eq!(with("{ type = 'all-at-once', bake = '1m' }", ", image = 'img'"), Ok(()));
        let issue = with("{ type = 'blue-green' }", "").unwrap_err();
        assert_eq!(issue.path.to_string(), "strategy.type");
        assert!(issue.hint.unwrap().contains("all-at-once"));
        assert_eq!(path(with("{ type = 'canary', steps = [10, 100] }", "")), "strategy.type");
        assert_eq!(path(with("{ type = 'rolling', batch = 1 }", "")), "strategy.type");
        assert_eq!(path(with("{}", ", poll_interval = '0s'")), "render.poll_interval");
        assert_eq!(path(with("{}", ", image = 'nope'")), "render.image");
        // Elsewhere all-at-once still takes no bake.
        assert_eq!(path(check(&format!("{ECS}strategy = {{ bake = '1m' }}\n"))), "strategy.bake");
    }

    #[test]
    fn health_checks_are_sane() {
        let with = |h: &str| check(&format!("{ECS}[[targets.t.health]]\nurl = 'u'\n{h}\n"));
        assert_eq!(with(""), Ok(()));
        assert_eq!(path(with("healthy_threshold = 0")), "health[0].healthy_threshold");
        assert_eq!(path(with("unhealthy_threshold = 0")), "health[0].unhealthy_threshold");
        assert_eq!(path(with("interval = '0s'")), "health[0].interval");
        let issue = with("interval = '1s'").unwrap_err();
        assert_eq!(issue.path.to_string(), "health[0].timeout");
        assert_eq!(issue.message, "`timeout` (2s) is longer than `interval` (1s)");
    }
}
