//! gantry.toml loading: good files, bad files and their messages.
//!
//! Bad files live in `fixtures/config/bad/`; each is loaded as `gantry.toml` in a fresh
//! folder and its error is snapshotted exactly as `gantry` prints it (without colour).

use std::collections::BTreeSet;
use std::path::Path;

use gantry::config::{self, ConfigError, Loaded, Name, StrategyKind, TargetKind};

use crate::support::{gantry, write_tree};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/config").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Loads `text` as gantry.toml in a fresh folder, with `env` as the whole environment.
fn load(text: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Result<Loaded, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(config::FILE_NAME);
    std::fs::write(&path, text).unwrap();
    let loaded = config::load_with_env(&path, &vars(env));
    (dir, loaded)
}

/// The error for `text` as `gantry` prints it, with the temporary folder left out.
fn report(text: &str, env: &[(&str, &str)]) -> String {
    let (dir, loaded) = load(text, env);
    let err = loaded.expect_err("the file should not load");
    let mut out = format!("error: {err}");
    if let Some(hint) = err.hint() {
        out.push_str(&format!("\nhint: {hint}"));
    }
    out.replace(&format!("{}/", dir.path().display()), "")
}

fn name(s: &str) -> Name {
    s.parse().unwrap()
}

#[test]
fn the_starter_file_loads() {
    let (_dir, loaded) = load(&config::starter(&name("demo")), &[]);
    let loaded = loaded.unwrap();
    assert_eq!(loaded.config.project.name, name("demo"));
    let web = &loaded.env_targets[&name("dev")][&name("web")];
    assert_eq!(web.kind, TargetKind::Local);
    assert_eq!(web.strategy.kind, StrategyKind::BlueGreen);
    assert!(config::starter(&name("demo")).contains("schema/gantry.schema.json"));
}

#[test]
fn the_full_example_loads_with_overrides_and_env_overrides() {
    let env = [
        ("GANTRY_ENVIRONMENTS__PRD__REGION", "eu-central-1"),
        ("GANTRY_TARGETS__API__ECS__SERVICE", "api-v2"),
        ("GANTRY_TARGETS__AZURE_APP__APPSERVICE__SLOT", "blue"),
        ("GANTRY_TARGETS__K8S__STRATEGY__BATCH", "\"50%\""),
        // Command-line settings, not file keys: ignored here.
        ("GANTRY_ENV", "prd"),
        ("GANTRY_OUTPUT", "json"),
        ("PATH", "/usr/bin"),
    ];
    let (_dir, loaded) = load(&fixture("full.toml"), &env);
    let loaded = loaded.unwrap();
    let cfg = &loaded.config;

    let kinds: BTreeSet<&str> = cfg.targets.values().map(|t| t.kind.key()).collect();
    assert_eq!(kinds.len(), 9, "every target kind is covered: {kinds:?}");
    assert_eq!(cfg.images.len(), 2);
    let prd = &cfg.environments[&name("prd")];
    assert_eq!(prd.region.as_ref().unwrap().as_str(), "eu-central-1");
    let slot = cfg.targets[&name("azure-app")].appservice.as_ref().unwrap().slot.as_deref();
    assert_eq!(slot, Some("blue"), "`_` in a variable matches `-` in a key");
    let local = cfg.targets[&name("web")].local.as_ref().unwrap();
    assert_eq!(local.preview.as_deref(), Some("127.0.0.1:9090"));
    assert_eq!(local.drain.map(|d| d.get()), Some(std::time::Duration::from_millis(250)));
    let batch = cfg.targets[&name("k8s")].strategy.batch.unwrap();
    assert_eq!(batch, config::BatchSize::Percent(config::Percent::new(50).unwrap()));

    let api = |env: &str| &loaded.env_targets[&name(env)][&name("api")];
    let prd_ecs = api("prd").ecs.as_ref().unwrap();
    assert_eq!((prd_ecs.cluster.as_str(), prd_ecs.service.as_str()), ("acme-prd", "api-v2"));
    assert_eq!(prd_ecs.container, "api", "keys the override leaves alone are kept");
    assert_eq!(api("prd").strategy.kind, StrategyKind::Canary);
    let steps: Vec<u8> = api("prd").strategy.steps.as_ref().unwrap().iter().map(|p| p.get()).collect();
    assert_eq!(steps, [5, 25, 50, 100]);
    assert_eq!(api("prd").health.len(), 1, "arrays are replaced, not appended to");
    assert_eq!(api("prd").health[0].url, "https://api.acme.example/status");
    assert_eq!(api("stg").ecs.as_ref().unwrap().cluster, "acme-stg");
    assert_eq!(api("stg").health[0].url, "{url}/status");
    assert_eq!(loaded.env_targets[&name("stg")].len(), 8);
    assert_eq!(loaded.env_targets[&name("dev")].len(), 1);
}

/// One snapshot test per bad file: `test_name: "file.toml"` plus any `"VAR" = "value"`.
macro_rules! bad_files {
    ($($test:ident: $file:literal $(, $var:literal = $value:literal)*;)*) => {$(
        #[test]
        fn $test() {
            let text = fixture(concat!("bad/", $file));
            insta::assert_snapshot!(report(&text, &[$(($var, $value)),*]));
        }
    )*};
}

bad_files! {
    misspelt_top_level_key: "misspelt_top_level_key.toml";
    misspelt_target_key: "misspelt_target_key.toml";
    misspelt_health_key: "misspelt_health_key.toml";
    wrong_type: "wrong_type.toml";
    bad_duration: "bad_duration.toml";
    bad_percent: "bad_percent.toml";
    bad_status_range: "bad_status_range.toml";
    unknown_target_kind: "unknown_target_kind.toml";
    missing_provider_table: "missing_provider_table.toml";
    extra_provider_table: "extra_provider_table.toml";
    missing_provider_field: "missing_provider_field.toml";
    canary_steps_not_rising: "canary_steps_not_rising.toml";
    rolling_without_batch: "rolling_without_batch.toml";
    strategy_key_for_another_type: "strategy_key_for_another_type.toml";
    health_timeout_over_interval: "health_timeout_over_interval.toml";
    unknown_artifact: "unknown_artifact.toml";
    environment_missing_target: "environment_missing_target.toml";
    override_for_unlisted_target: "override_for_unlisted_target.toml";
    wave_unknown_target: "wave_unknown_target.toml";
    wave_target_twice: "wave_target_twice.toml";
    wave_missing_target: "wave_missing_target.toml";
    wave_bad_bake: "wave_bad_bake.toml";
    aws_target_region_not_aws: "aws_target_region_not_aws.toml";
    bad_override_value: "bad_override_value.toml";
    bad_override_rule: "bad_override_rule.toml";
    override_changes_kind: "override_changes_kind.toml";
    toml_duplicate_key: "toml_duplicate_key.toml";
    toml_bad_string: "toml_bad_string.toml";
    image_two_sources: "image_two_sources.toml";
    image_relative_layer: "image_relative_layer.toml";
    approval_without_pipeline: "approval_without_pipeline.toml";
    bad_env_override: "for_env_overrides.toml", "GANTRY_ENVIRONMENTS__PRD__REGION" = "useast1";
    env_override_read_as_number: "for_env_overrides.toml", "GANTRY_ENVIRONMENTS__PRD__ACCOUNT" = "123456789012";
    env_override_unknown_key: "for_env_overrides.toml", "GANTRY_TARGETS__WEB__HELTH" = "[]";
    env_override_through_a_value: "for_env_overrides.toml", "GANTRY_TARGETS__WEB__KIND__NAME" = "x";
}

#[test]
fn a_bad_file_stops_gantry_with_exit_2_and_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("gantry.toml", &fixture("bad/misspelt_target_key.toml"))]);
    let out = gantry(dir.path()).arg("package").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: gantry.toml:10:1: unknown field `helth` in `targets.web`"), "{stderr}");
    assert!(stderr.contains("hint: did you mean `health`?"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "no colour when stderr is not a terminal: {stderr}");
}

#[test]
fn a_bad_environment_override_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("gantry.toml", &fixture("bad/for_env_overrides.toml"))]);
    let out = gantry(dir.path()).arg("package").env("GANTRY_ENVIRONMENTS__PRD__REGION", "useast1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("in GANTRY_ENVIRONMENTS__PRD__REGION (environment variable)"), "{stderr}");
    assert!(!stderr.contains("gantry.toml:"), "the file is not to blame: {stderr}");
}

/// `make schema` runs this with GANTRY_UPDATE_SCHEMA=1 to rewrite the committed schema.
#[test]
fn schema_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/gantry.schema.json");
    let generated = config::json_schema();
    if std::env::var_os("GANTRY_UPDATE_SCHEMA").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/gantry.schema.json does not match the config types: run `make schema` and commit the result"
    );
}
