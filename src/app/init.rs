//! `gantry init`: a commented starter gantry.toml in the current folder.

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
