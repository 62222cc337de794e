//! `gantry init`: a commented starter gantry.toml in the current folder; with `--pipeline`,
//! the environment's CodePipeline definition and buildspec (`crate::pipeline::template`).

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
    std::fs::create_dir_all(&dir)
        .map_err(|source| Error::Io { context: format!("cannot create {}", dir.display()), source })?;
    for (path, text) in &files {
        std::fs::write(path, text)
            .map_err(|source| Error::Io { context: format!("cannot write {}", path.display()), source })?;
        printer.status("Created", path.display());
    }
    printer.json(&serde_json::json!({ "created": files.iter().map(|(p, _)| p).collect::<Vec<_>>() }));
    Ok(())
}
