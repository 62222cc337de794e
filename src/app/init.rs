//! `gantry init`: a commented starter gantry.toml in the current folder; with `--pipeline`,
//! the environment's CodePipeline definition and buildspec (`crate::pipeline::template`);
//! with `--github`, the workflows of `workflows/` (embedded at build time) in
//! `.github/workflows/`.

use crate::Error;
use crate::cli::InitArgs;
use crate::config;
use crate::report::Printer;

pub fn init(args: &InitArgs, printer: &Printer) -> Result<(), Error> {
    let cwd = std::env::current_dir()
        .map_err(|source| Error::Io { context: "cannot read the current folder".into(), source })?;
    let path = cwd.join(config::FILE_NAME);
    if path.exists() && !args.force {
        return Err(Error::Usage {
            message: format!("{} already exists", path.display()),
            hint: Some("pass --force to overwrite it".into()),
        });
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => config::project_name_from_dir(&cwd),
    };
    let name: config::Name = name.parse().map_err(|message: String| Error::Usage {
        message,
        hint: Some("pass --name with a valid project name".into()),
    })?;
    std::fs::write(&path, config::starter(&name))
        .map_err(|source| Error::Io { context: format!("cannot write {}", path.display()), source })?;
    printer.status("Created", path.display());
    printer.json(&serde_json::json!({ "created": path }));
    Ok(())
}

/// `gantry init --pipeline`: `pipeline/NAME.json` and `pipeline/buildspec.yml` beside gantry.toml.
#[cfg(feature = "cloud")]
pub fn pipeline(loaded: &config::Loaded, env: Option<&str>, args: &InitArgs, printer: &Printer) -> Result<(), Error> {
    let (name, environment) = super::environment(loaded, env, "init --pipeline")?;
    let Some(pipeline) = environment.pipeline.as_deref() else {
        return Err(crate::pipeline::PipelineError::NoPipeline { env: name.to_string() }.into());
    };
    let project = loaded.config.project.name.as_str();
    let dir = loaded.dir.join("pipeline");
    let files = [
        (
            dir.join(format!("{pipeline}.json")),
            crate::pipeline::template::definition(project, name.as_str(), environment, pipeline),
        ),
        (dir.join("buildspec.yml"), crate::pipeline::template::buildspec(name.as_str())),
    ];
    if let Some((path, _)) = files.iter().find(|(p, _)| p.exists() && !args.force) {
        return Err(Error::Usage {
            message: format!("{} already exists", path.display()),
            hint: Some("pass --force to overwrite it".into()),
        });
    }
    write_files(&dir, &files, printer)?;
    printer.json(&serde_json::json!({ "created": files.iter().map(|(p, _)| p).collect::<Vec<_>>() }));
    Ok(())
}

/// Creates `dir` and writes each file into it, announcing each one.
fn write_files(dir: &std::path::Path, files: &[(std::path::PathBuf, String)], printer: &Printer) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|source| Error::Io { context: format!("cannot create {}", dir.display()), source })?;
    for (path, text) in files {
        std::fs::write(path, text)
            .map_err(|source| Error::Io { context: format!("cannot write {}", path.display()), source })?;
        printer.status("Created", path.display());
    }
    Ok(())
}

/// The workflows `init --github` writes, as they are in the repository's `workflows/`.
const WORKFLOWS: [(&str, &str); 3] = [
    ("ci.yml", include_str!("../../workflows/ci.yml")),
    ("deploy.yml", include_str!("../../workflows/deploy.yml")),
    ("release.yml", include_str!("../../workflows/release.yml")),
];

/// The repository whose action the written workflows use: set when gantry's release
/// workflow builds the binary (`GANTRY_ACTION_REPOSITORY`), so a release names itself.
const ACTION_REPOSITORY: &str = match option_env!("GANTRY_ACTION_REPOSITORY") {
    Some(repo) => repo,
    None => "gantry-rs/gantry",
};

/// `gantry init --github`: `.github/workflows/{ci,deploy,release}.yml` in the repository
/// holding gantry.toml (or the current folder), with `uses: ./` (how the files use the
/// action inside gantry's own repository, where actionlint checks them) replaced by the
/// released action. Existing files are left alone unless `--force`: nothing is written then.
pub fn github(args: &InitArgs, printer: &Printer) -> Result<(), Error> {
    let cwd = std::env::current_dir()
        .map_err(|source| Error::Io { context: "cannot read the current folder".into(), source })?;
    let root = config::discover(&cwd).ok().and_then(|p| p.parent().map(std::path::Path::to_path_buf)).unwrap_or(cwd);
    let dir = root.join(".github/workflows");
    let action = args.action.clone().unwrap_or_else(|| format!("{ACTION_REPOSITORY}@v{}", env!("CARGO_PKG_VERSION")));
    if !action.contains('@') || action.contains(char::is_whitespace) {
        return Err(Error::Usage {
            message: format!("invalid --action `{action}`"),
            hint: Some("name the action as OWNER/REPO@REF, e.g. acme/gantry@v1.2.0".into()),
        });
    }
    let files: Vec<_> = WORKFLOWS
        .iter()
        .map(|(name, text)| (dir.join(name), text.replace("uses: ./\n", &format!("uses: {action}\n"))))
        .collect();
    let existing: Vec<String> =
        files.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.display().to_string()).collect();
    if !existing.is_empty() && !args.force {
        return Err(Error::Usage {
            message: format!("{} already exist{}", existing.join(", "), if existing.len() == 1 { "s" } else { "" }),
            hint: Some("pass --force to overwrite them; nothing was written".into()),
        });
    }
    write_files(&dir, &files, printer)?;
    printer.json(&serde_json::json!({ "created": files.iter().map(|(p, _)| p).collect::<Vec<_>>(), "action": action }));
    Ok(())
}
