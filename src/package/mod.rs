//! `gantry package`: every artifact into a reproducible zip in the output folder,
//! then `SHA256SUMS` and `release.json`.
//!
//! Plan, then apply: `plan` resolves the version and lists each artifact's files
//! without writing anything; `apply` builds the archives. Each zip is written to a
//! temporary file and renamed into place when complete, and the manifest files are
//! written last, so an interrupted or failed run never leaves a release.json that
//! names a missing or partial archive. Then `.gantry-hashes.json` records each
//! archive's SHA-256 by its stat, for `gantry publish` (see `hashes`).

mod archive;
mod hashes;
pub mod manifest;
pub(crate) mod version;
pub mod walk;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::{Artifact, Name};
use crate::exit;

pub use archive::{ArchiveError, ArchiveOptions, create_temp_in, write as write_archive};
pub use hashes::{HASHES_FILE, HashCache};
pub use manifest::{MANIFEST_FILE, Manifest, ManifestArtifact, SUMS_FILE, archive_file_name};
pub use version::{SourceInfo, VersionError, ZIP_EPOCH, parse_version, resolve as resolve_version};
pub use walk::{Entry, EntryKind, WalkError};

/// What to package, built from the command line and gantry.toml.
#[derive(Debug, Clone)]
pub struct PackageRequest {
    pub project: String,
    /// Folder of gantry.toml: artifact roots and build commands are relative to it.
    pub project_dir: PathBuf,
    pub artifacts: Vec<(Name, Artifact)>,
    pub out_dir: PathBuf,
    /// `--version`, when given.
    pub version: Option<String>,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub source_date_epoch: Option<String>,
    pub run_builds: bool,
    /// Compressing threads (0: one per core).
    pub threads: usize,
}

/// The resolved plan: exactly what `apply` will do.
#[derive(Debug, Clone)]
pub struct PackagePlan {
    pub source: SourceInfo,
    pub artifacts: Vec<PlannedArtifact>,
    pub out_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PlannedArtifact {
    pub name: Name,
    pub file: String,
    pub root: PathBuf,
    pub build: Option<String>,
    pub config: Artifact,
}

/// Typed progress, consumed by `report::PackageReporter`.
#[derive(Debug)]
pub enum Event<'a> {
    BuildStarted { artifact: &'a str, command: &'a str },
    BuildFinished { artifact: &'a str, elapsed: Duration },
    ArtifactStarted { artifact: &'a str, file: &'a str, files: usize, bytes: u64 },
    Progress { bytes: u64 },
    ArtifactFinished { artifact: &'a ManifestArtifact, elapsed: Duration },
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("gantry.toml has no [artifacts] to package")]
    NoArtifacts,
    #[error("no artifact named `{name}` in gantry.toml")]
    UnknownArtifact { name: String, known: Vec<String> },
    #[error("build command of artifact `{artifact}` failed ({status}): {command}")]
    Build { artifact: String, command: String, status: String },
    #[error("cannot list the files of artifact `{artifact}`")]
    Walk {
        artifact: String,
        #[source]
        source: WalkError,
    },
    #[error("cannot package artifact `{artifact}`")]
    Archive {
        artifact: String,
        #[source]
        source: ArchiveError,
    },
    #[error("{context} {}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("interrupted; nothing was left in {}", .0.display())]
    Interrupted(PathBuf),
}

impl PackageError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Version(_) | Self::NoArtifacts | Self::UnknownArtifact { .. } => exit::USAGE,
            Self::Walk {
                source: WalkError::SymlinkEscapes { .. } | WalkError::NoRoot(_) | WalkError::Special { .. },
                ..
            } => exit::USAGE,
            Self::Interrupted(_) => exit::INTERRUPTED,
            _ => exit::FAILED,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Version(e) => e.hint(),
            Self::NoArtifacts => Some("add an [artifacts.NAME] table with a `root` folder (see `gantry init`)".into()),
            Self::UnknownArtifact { known, .. } => Some(format!("artifacts in gantry.toml: {}", known.join(", "))),
            Self::Build { .. } => {
                Some("run the command by hand to see why, or pass --skip-build to package what is there".into())
            }
            Self::Walk { source: WalkError::SymlinkEscapes { .. }, .. } => {
                Some("gantry never follows links out of an artifact root: copy the file in, or exclude the link".into())
            }
            Self::Walk { source: WalkError::Special { .. }, .. } => {
                Some("leave it out with the artifact's `exclude` globs".into())
            }
            Self::Walk { source: WalkError::NoRoot(_), .. } => Some(
                "`root` is relative to gantry.toml; does the artifact need its `build` command to run first?".into(),
            ),
            _ => None,
        }
    }
}

/// Resolves the version and selects the artifacts. Touches nothing.
pub fn plan(request: &PackageRequest) -> Result<PackagePlan, PackageError> {
    if request.artifacts.is_empty() {
        return Err(PackageError::NoArtifacts);
    }
    let source =
        version::resolve(&request.project_dir, request.version.as_deref(), request.source_date_epoch.as_deref())?;
    let artifacts = request
        .artifacts
        .iter()
        .map(|(name, config)| PlannedArtifact {
            name: name.clone(),
            file: archive_file_name(name.as_str(), &source.version),
            root: request.project_dir.join(config.root.as_str()),
            build: config.build.clone().filter(|_| request.run_builds),
            config: config.clone(),
        })
        .collect();
    Ok(PackagePlan { source, artifacts, out_dir: request.out_dir.clone() })
}

/// Builds the archives of `plan`, then SHA256SUMS and release.json.
pub fn apply(
    request: &PackageRequest,
    plan: &PackagePlan,
    cancel: &AtomicBool,
    events: &mut dyn FnMut(Event<'_>),
) -> Result<Manifest, PackageError> {
    let out = &plan.out_dir;
    std::fs::create_dir_all(out).map_err(|source| PackageError::Io {
        context: "cannot create",
        path: out.clone(),
        source,
    })?;

    // Builds first: a failing build leaves nothing. Then every archive as a temporary
    // file, renamed into place only when all are complete.
    for planned in &plan.artifacts {
        if let Some(command) = &planned.build {
            run_build(request, plan, planned, command, cancel, events)?;
        }
    }
    let mut finished = Vec::with_capacity(plan.artifacts.len());
    for planned in &plan.artifacts {
        finished.push(package_one(request, plan, planned, cancel, events)?);
    }
    let mut artifacts = Vec::with_capacity(finished.len());
    for (temp, artifact) in finished {
        let target = out.join(&artifact.file);
        temp.persist(&target).map_err(|e| PackageError::Io {
            context: "cannot write",
            path: target,
            source: e.error,
        })?;
        artifacts.push(artifact);
    }

    let manifest = Manifest {
        schema: manifest::SCHEMA,
        project: request.project.clone(),
        version: plan.source.version.clone(),
        commit: plan.source.commit.clone(),
        created: manifest::rfc3339(plan.source.source_date_epoch),
        source_date_epoch: plan.source.source_date_epoch,
        artifacts,
    };
    write_atomic(&out.join(SUMS_FILE), manifest.sha256sums().as_bytes())?;
    write_atomic(&out.join(MANIFEST_FILE), manifest.to_json().as_bytes())?;
    // So that publish can plan without reading every archive again.
    let mut hashes = HashCache::load(out);
    for artifact in &manifest.artifacts {
        hashes.record(out, &artifact.file, &artifact.sha256);
    }
    hashes.save(out);
    Ok(manifest)
}

fn run_build(
    request: &PackageRequest,
    plan: &PackagePlan,
    planned: &PlannedArtifact,
    command: &str,
    cancel: &AtomicBool,
    events: &mut dyn FnMut(Event<'_>),
) -> Result<(), PackageError> {
    let name = planned.name.as_str();
    events(Event::BuildStarted { artifact: name, command });
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(&request.project_dir)
        .env("GANTRY_VERSION", plan.source.version.to_string())
        .env("GANTRY_ARTIFACT", name)
        .env("SOURCE_DATE_EPOCH", plan.source.source_date_epoch.to_string())
        .stdin(Stdio::null())
        // stdout is for data (--output json): the build's output goes to stderr.
        .stdout(io::stderr())
        .status()
        .map_err(|source| PackageError::Io {
            context: "cannot run `sh` in",
            path: request.project_dir.clone(),
            source,
        })?;
    // On a terminal Ctrl-C reaches the build too; its failure is then the interrupt's.
    if cancel.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(PackageError::Interrupted(plan.out_dir.clone()));
    }
    if !status.success() {
        return Err(PackageError::Build {
            artifact: name.to_owned(),
            command: command.to_owned(),
            status: status.to_string(),
        });
    }
    events(Event::BuildFinished { artifact: name, elapsed: started.elapsed() });
    Ok(())
}

fn package_one(
    request: &PackageRequest,
    plan: &PackagePlan,
    planned: &PlannedArtifact,
    cancel: &AtomicBool,
    events: &mut dyn FnMut(Event<'_>),
) -> Result<(tempfile::NamedTempFile, ManifestArtifact), PackageError> {
    let name = planned.name.as_str();
    let started = Instant::now();
    let config = &planned.config;
    let entries = walk::collect(&planned.root, &config.include, &config.exclude, config.gitignore)
        .map_err(|source| PackageError::Walk { artifact: name.to_owned(), source })?;
    let bytes = entries.iter().map(|e| if let EntryKind::File { size, .. } = e.kind { size } else { 0 }).sum();
    tracing::debug!(artifact = name, root = %planned.root.display(), files = entries.len(), bytes, "selected files");
    events(Event::ArtifactStarted { artifact: name, file: &planned.file, files: entries.len(), bytes });

    let out = &plan.out_dir;
    let temp = archive::create_temp_in(out).map_err(|source| PackageError::Io {
        context: "cannot write in",
        path: out.clone(),
        source,
    })?;
    let file = temp.as_file().try_clone().map_err(|source| PackageError::Io {
        context: "cannot write",
        path: temp.path().to_owned(),
        source,
    })?;
    let options = archive::ArchiveOptions {
        source_date_epoch: plan.source.source_date_epoch,
        threads: request.threads,
        spool_dir: out.clone(),
    };
    let stats = archive::write(file, &entries, &options, cancel, &mut |b| events(Event::Progress { bytes: b }))
        .map_err(|source| match source {
            ArchiveError::Interrupted => PackageError::Interrupted(out.clone()),
            source => PackageError::Archive { artifact: name.to_owned(), source },
        })?;

    let digest = hash_file(temp.path())?;
    let artifact = ManifestArtifact {
        name: name.to_owned(),
        file: planned.file.clone(),
        size: digest.size,
        sha256: digest.sha256,
        crc64nvme: Some(manifest::crc64nvme_b64(digest.crc64nvme)),
        entries: stats.entries,
    };
    events(Event::ArtifactFinished { artifact: &artifact, elapsed: started.elapsed() });
    Ok((temp, artifact))
}

/// What one read of a file tells: its size and the two checksums release.json records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// CRC64NVME (S3's full-object checksum).
    pub crc64nvme: u64,
}

/// Size, SHA-256 and CRC64NVME of a file, read once.
pub fn hash_file(path: &Path) -> Result<FileDigest, PackageError> {
    let io_err = |source| PackageError::Io { context: "cannot read", path: path.to_owned(), source };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    hash_reader(&mut file).map_err(io_err)
}

/// Bytes read, SHA-256 and CRC64NVME of everything `reader` yields, a MiB at a time.
fn hash_reader(reader: &mut impl Read) -> io::Result<FileDigest> {
    let mut sha256 = Sha256::new();
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
    let mut buf = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                let sha256 = hex(&sha256.finalize());
                return Ok(FileDigest { size, sha256, crc64nvme: crc.finalize() });
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha256.update(&buf[..n]);
        crc.update(&buf[..n]);
        size += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes through a temporary file in the same folder and renames it into place.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), PackageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io_err = |source| PackageError::Io { context: "cannot write", path: path.to_owned(), source };
    let mut temp = archive::create_temp_in(dir).map_err(io_err)?;
    io::Write::write_all(&mut temp, contents).map_err(io_err)?;
    temp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}
