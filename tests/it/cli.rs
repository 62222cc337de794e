//! `gantry` as a user runs it: help, exit codes, commands not built yet, init,
//! completions, colour and JSON output.

use std::process::Command;

use crate::support::{gantry, write_tree};

/// Every command of the CLI contract, as typed.
const COMMANDS: &[&[&str]] = &[
    &["init"],
    &["plan"],
    &["package"],
    &["publish"],
    &["image", "push"],
    &["pipeline", "start"],
    &["pipeline", "watch"],
    &["pipeline", "status"],
    &["approve"],
    &["reject"],
    &["deploy"],
    &["rollback"],
    &["release"],
    &["status"],
    &["history"],
    &["completions"],
];

/// Commands built so far; every other command must refuse, never fake a success.
const AVAILABLE: &[&str] = &[
    "init",
    "package",
    "publish",
    "image",
    "completions",
    "plan",
    "deploy",
    "rollback",
    "status",
    "history",
    "pipeline",
    "approve",
    "reject",
    "release",
];

fn not_yet() -> impl Iterator<Item = &'static [&'static str]> {
    COMMANDS.iter().copied().filter(|c| !AVAILABLE.contains(&c[0]))
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for command in COMMANDS {
        let out = gantry(dir.path()).args(*command).arg("--help").assert().success();
        let help = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(help.contains("Usage: gantry"), "{command:?}: {help}");
        assert!(help.contains("--output"), "{command:?} takes the global flags: {help}");
    }
    // The commands that ship something teach by example, and say how they end.
    for (command, example) in [
        (&["package"][..], "gantry package --version 1.4.0"),
        (&["publish"], "gantry --env prd publish"),
        (&["image", "push"], "gantry --env prd image push --version 1.4.0"),
        (&["deploy"], "gantry --env dev deploy --version 1.4.0"),
        (&["rollback"], "gantry --env dev rollback --to 1.4.0"),
        (&["release"], "gantry release --dry-run"),
        (&["pipeline", "start"], "gantry --env prd pipeline start --version 1.4.0"),
        (&["pipeline", "watch"], "gantry --env prd pipeline watch"),
        (&["approve"], "gantry --env prd approve --comment"),
        (&["reject"], "gantry --env prd reject --execution ID"),
    ] {
        let out = gantry(dir.path()).args(command).arg("--help").assert().success();
        let help = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(help.contains("Examples:") && help.contains(example), "{command:?}: {help}");
        assert!(help.to_lowercase().contains("exit"), "{command:?} says its exit codes: {help}");
    }
    let top = gantry(dir.path()).arg("--help").assert().success();
    let top = String::from_utf8_lossy(&top.get_output().stdout).into_owned();
    for word in ["Exit codes", "GANTRY_ENVIRONMENTS__PRD__RELEASE_BUCKET", "130 interrupted"] {
        assert!(top.contains(word), "top-level help mentions {word}");
    }
}

#[test]
fn commands_not_built_yet_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(not_yet().count(), 0, "every command is built: none may answer `not available`");
    for command in not_yet() {
        let out = gantry(dir.path()).args(command).args(["--env", "dev"]).assert().code(2);
        let output = out.get_output();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{command:?}: {stderr}");
        assert!(stderr.contains(&format!("`gantry {}` is not available yet", command.join(" "))), "{stderr}");
        assert!(output.stdout.is_empty(), "{command:?} printed data");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    gantry(dir.path()).arg("deploi").assert().code(2);
    gantry(dir.path()).args(["package", "--output", "yaml"]).assert().code(2);
    gantry(dir.path()).args(["-v", "-q", "status"]).assert().code(2);
}

#[test]
fn missing_config_says_how_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = gantry(dir.path()).args(["package", "--version", "1.0.0"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("no gantry.toml found"), "{stderr}");
    assert!(stderr.contains("hint: run `gantry init`"), "{stderr}");
}

#[test]
fn init_writes_a_starter_that_packages_and_refuses_to_overwrite() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("My Shop");
    std::fs::create_dir(&dir).unwrap();
    gantry(&dir).arg("init").assert().success();
    let written = std::fs::read_to_string(dir.join("gantry.toml")).unwrap();
    assert!(written.contains("name = \"my-shop\""), "project named after the folder");

    let again = gantry(&dir).arg("init").assert().code(2);
    assert!(String::from_utf8_lossy(&again.get_output().stderr).contains("--force"));
    gantry(&dir).args(["init", "--force", "--name", "shop"]).assert().success();
    assert!(std::fs::read_to_string(dir.join("gantry.toml")).unwrap().contains("name = \"shop\""));

    // The starter's artifact packages as soon as its folder exists.
    write_tree(&dir, &[("app/server.py", "print('hi')\n")]);
    gantry(&dir).args(["package", "--version", "0.1.0"]).assert().success();
    assert!(dir.join("dist/app-0.1.0.zip").is_file());
}

#[test]
fn completions_are_scripts_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = gantry(dir.path()).args(["completions", shell]).assert().success();
        let script = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(script.contains("gantry") && script.contains("package"), "{shell} completion");
    }
    gantry(dir.path()).args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn output_format_comes_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("gantry.toml", "[project]\nname = \"p\"\n[artifacts.a]\nroot = \"a\"\n"), ("a/f", "x")]);
    let out =
        gantry(dir.path()).args(["package", "--version", "1.0.0"]).env("GANTRY_OUTPUT", "json").assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON on stdout");
    assert_eq!(doc["version"], "1.0.0");
    // The flag beats the environment: human output leaves stdout empty.
    let out = gantry(dir.path())
        .args(["package", "--version", "1.0.0", "--output", "human"])
        .env("GANTRY_OUTPUT", "json")
        .assert()
        .success();
    assert!(out.get_output().stdout.is_empty());
}

/// Runs gantry under a pseudo-terminal (util-linux `script`) and returns what the terminal showed.
fn on_a_tty(dir: &std::path::Path, args: &str, no_color: bool) -> String {
    let bin = assert_cmd::cargo::cargo_bin("gantry");
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"]).current_dir(dir).env_remove("CI");
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let out = cmd.output().expect("script(1) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let tty = on_a_tty(dir.path(), "release", false);
    assert!(tty.contains("no gantry.toml found"), "{tty}");
    assert!(tty.contains("\x1b["), "a terminal gets colour: {tty:?}");
    let plain = on_a_tty(dir.path(), "release", true);
    assert!(plain.contains("no gantry.toml found"), "{plain}");
    assert!(!plain.contains("\x1b["), "NO_COLOR means no escape codes: {plain:?}");
    let piped = gantry(dir.path()).arg("release").assert().code(2);
    assert!(!String::from_utf8_lossy(&piped.get_output().stderr).contains('\x1b'), "a pipe gets no colour");
}

#[test]
fn readme_lists_exactly_the_exit_codes() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table: Vec<u8> = readme
        .lines()
        .skip_while(|l| !l.starts_with("### Exit codes"))
        .filter_map(|l| l.strip_prefix("| ")?.split(" |").next()?.trim().parse().ok())
        .collect();
    let codes: Vec<u8> = gantry::exit::ALL.iter().map(|(code, _)| *code).collect();
    assert_eq!(table, codes, "README's exit code table matches src/exit.rs");
}
