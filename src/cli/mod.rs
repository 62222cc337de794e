//! The command line: clap types only. Nothing here does I/O; `crate::app` turns
//! these into requests for the domain modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const DEPLOY_HELP: &str = "\
Examples:
  gantry --env dev deploy                    # package the working tree and deploy it
  gantry --env dev deploy --version 1.4.0    # a release packaged before
  gantry --env dev --output json deploy      # one JSON event per line, for scripts

Each target runs its strategy (see `gantry --env dev plan`): the new version is health-gated
on its own endpoint before any user traffic, traffic moves by the strategy's steps with a bake
at each, and success is reported only once the platform shows all traffic on the release.
A failed gate rolls back at once (exit 3); a failed rollback exits 4 with what to do by hand;
another deployment holding the environment exits 6 (or wait with --wait-lock). Ctrl-C once
rolls back the step in progress (exit 130); twice quits at once.";

const RELEASE_HELP: &str = "\
Examples:
  gantry release --dry-run          # the next version, its changelog and every step
  gantry release                    # tag, GitHub release, publish to production, start its pipeline
  gantry release --pre rc           # 1.3.0-rc.1, then rc.2, ...

Version: from the highest vX.Y.Z tag reachable from HEAD and the conventional commits since:
a breaking change (`feat!:` or a `BREAKING CHANGE:` footer) bumps major, `feat` minor,
anything else patch. On 0.y.z, as semver and cargo treat it, a breaking change bumps minor and
anything else patch; the first release is 0.1.0. --bump major|minor|patch is applied as written.
When HEAD already carries the release's tag, that release is finished instead (a re-run after a
failure completes the same release: matching assets are kept, others replaced).

Needs GITHUB_TOKEN (or GH_TOKEN), a clean tree, and the repository from [project] repository,
GITHUB_REPOSITORY or the origin remote; GITHUB_API_URL points at another API host.
The release goes to --env, else the environment with approval = \"required\".
Exit codes: 2 nothing was changed (no token, dirty tree, no new commits, a tag on another
commit), 1 a step failed (run again to finish).";

const PACKAGE_HELP: &str = "\
Examples:
  gantry package                     # version from git tags, into dist/
  gantry package --version 1.4.0     # an explicit version (a leading v is accepted)
  gantry package -a api --skip-build # one artifact, without running its build command
  gantry --output json package       # the manifest as JSON on stdout

Each [artifacts.NAME] becomes dist/NAME-VERSION.zip, byte for byte the same on any machine
for the same files and source date (SOURCE_DATE_EPOCH, else the commit time), beside
SHA256SUMS and release.json (each zip's size, entry count, SHA-256 and CRC64NVME). Without
--version: the highest vX.Y.Z tag on a clean HEAD, else the next patch with -dev.N+gHASH.
release.json is written last, so it never names a missing or partial zip.
Exit codes: 2 bad version or config, 1 a build or archive failed, 130 interrupted.";

const PUBLISH_HELP: &str = "\
Examples:
  gantry --env prd publish                  # dist/ to the environment's release_bucket
  gantry --env prd publish --version 1.4.0  # refuse unless dist/ holds exactly 1.4.0
  gantry --env prd --output json publish    # objects, checksums, version ids, for scripts

Objects go to s3://BUCKET/PREFIX/PROJECT/VERSION/: the zips and SHA256SUMS, then the
pipeline source object when the environment has a pipeline, then release.json last, the
commit point. Every object's checksum is checked as it is sent (it must be the one
packaged) and read back after. Re-running is safe: objects already stored with the same bytes are reported
unchanged and not sent. A published version never changes: different bytes under it are
refused unless --force. Of two concurrent publishes of one version, exactly one commits.
Exit codes: 2 not packaged, wrong --version or no such bucket, 1 refused or failed (nothing
half-published is visible: no release.json), 130 interrupted.";

const IMAGE_PUSH_HELP: &str = "\
Examples:
  gantry --env prd image push                  # every [images.NAME]
  gantry --env prd image push deployer         # one image
  gantry --env prd image push --version 1.4.0  # also tag it 1.4.0

No Docker daemon needed. The image comes from an OCI layout or archive, a `docker save`
file, or is assembled from `base` plus `layers`. gantry hashes the files its `inputs`
select: if the repository already has the tag inputs-HASH, nothing is uploaded. Otherwise
only the blobs the registry lacks are sent, and every tag is read back and must be the
digest gantry computed; a tag in an immutable repository is never moved.
Exit codes: 2 unknown image, missing source or repository, or a tag that points elsewhere
in an immutable repository; 1 the push failed.";

const PIPELINE_START_HELP: &str = "\
Examples:
  gantry --env prd pipeline start                  # the latest published release
  gantry --env prd pipeline start --version 1.4.0  # a given published release

Without --version: the highest version whose release.json is committed in the release
bucket. When publishing already started an execution of that release (the S3 source saw
the object), that execution is printed and nothing is started (--new starts one anyway);
else one starts with the S3 source pinned to the release's object version and the
pipeline variable `version` set, so the two agree. Prints the execution id.
Exit codes: 2 no pipeline in gantry.toml or nothing published, 1 the pipeline or a call
failed.";

const PIPELINE_WATCH_HELP: &str = "\
Examples:
  gantry --env prd pipeline watch                   # the latest execution
  gantry --env prd pipeline watch --execution ID --timeout 45m

Prints each action as it starts and ends, a failed action's error and log link, and the
exact `gantry approve` command while a manual approval waits. Ctrl-C stops watching; the
pipeline goes on.
Exit codes: 0 the execution succeeded, 5 its approval was rejected, 1 it failed or the
timeout passed, 130 interrupted.";

const APPROVAL_HELP: &str = "\
Examples:
  gantry --env prd approve --comment \"ship it\"
  gantry --env prd reject --execution ID --comment \"not today\"

Finds the manual approval waiting in the environment's pipeline (it must belong to
--execution when given) and records the decision with who made it: the AWS caller, or the
GitHub actor inside Actions.
Exit codes: 5 nothing is waiting, or it waits for another execution; 1 the call failed.";

const AFTER_HELP: &str = "\
Configuration is read from gantry.toml in the current directory or the nearest parent
(or --config). Settings resolve as: command-line flag > GANTRY_* environment variable >
gantry.toml > default. Any key of gantry.toml can be overridden from the environment
with its path in upper case joined by double underscores, for example
GANTRY_ENVIRONMENTS__PRD__RELEASE_BUCKET=acme-releases.

Exit codes: 0 ok, 1 failed, 2 usage or config error, 3 health gate failed and rolled back,
4 rollback failed (manual action needed), 5 approval missing or rejected,
6 environment locked, 130 interrupted.";

/// gantry takes a release from source to production: it packages reproducible
/// artifacts, publishes them to S3 and images to ECR, starts CodePipeline with an
/// approval gate for production, and runs health-gated cutovers with automatic
/// rollback.
#[derive(Debug, Parser)]
#[command(name = "gantry", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Path to gantry.toml (default: search the current directory and its parents)
    #[arg(long, global = true, env = "GANTRY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Environment to act on, as named under [environments] in gantry.toml
    #[arg(long = "env", short = 'e', global = true, env = "GANTRY_ENV", value_name = "NAME")]
    pub env: Option<String>,

    /// Output format: human text on stderr, or JSON on stdout for scripts
    #[arg(long, global = true, env = "GANTRY_OUTPUT", value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// More detail (-v: debug logs, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Readable text on stderr, progress bars on a terminal
    Human,
    /// One JSON document (or JSON lines for streaming commands) on stdout
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter gantry.toml in the current directory
    Init(InitArgs),
    /// Show the exact steps `deploy` would take, without changing anything
    Plan(EnvTargetArgs),
    /// Build every artifact into reproducible zips with SHA256SUMS and release.json
    #[command(after_help = PACKAGE_HELP)]
    Package(PackageArgs),
    /// Upload the packaged release to the environment's S3 release bucket
    #[command(after_help = PUBLISH_HELP)]
    Publish(PublishArgs),
    /// Container images: push to ECR without a Docker daemon
    #[command(subcommand)]
    Image(ImageCommand),
    /// AWS CodePipeline: start, watch and inspect the environment's pipeline
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Approve the pending manual approval of the environment's pipeline
    #[command(after_help = APPROVAL_HELP)]
    Approve(ApprovalArgs),
    /// Reject the pending manual approval of the environment's pipeline
    #[command(after_help = APPROVAL_HELP)]
    Reject(ApprovalArgs),
    /// Cut the environment's targets over to a release, health-gated, rolling back on failure
    #[command(after_help = DEPLOY_HELP)]
    Deploy(DeployArgs),
    /// Go back to the previous good release (or --to VERSION), health-gated
    #[command(
        after_help = "Examples:\n  gantry --env dev rollback              # the good release before what is live\n  gantry --env dev rollback --to 1.4.0   # a release deployed from this machine before\n\nIt takes the fast path (start, gate, switch, verify, retire), gated on health like any\ndeploy. Exit codes: 0 ok, 3 that release failed its health gate and what was live is\nrestored, 4 manual action needed, 6 locked."
    )]
    Rollback(RollbackArgs),
    /// Cut a new version: tag, changelog, GitHub release, then publish to production
    #[command(after_help = RELEASE_HELP)]
    Release(ReleaseArgs),
    /// What is live per target, any deployment in flight, and who holds the lock
    Status(EnvTargetArgs),
    /// Past deployments of the environment, newest first
    History(HistoryArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing gantry.toml
    #[arg(long)]
    pub force: bool,
    /// Project name (default: the current directory's name)
    #[arg(long)]
    pub name: Option<String>,
    /// Instead of gantry.toml, write the --env environment's CodePipeline definition and the
    /// CodeBuild buildspec that runs `gantry deploy` (into pipeline/)
    #[arg(long)]
    pub pipeline: bool,
    /// Instead of gantry.toml, write the GitHub workflows (ci, deploy to dev on every push to
    /// main, release to production through its approval) into .github/workflows/
    #[arg(long, conflicts_with = "pipeline")]
    pub github: bool,
    /// With --github: the gantry action the workflows use (default: this gantry's own release)
    #[arg(long, value_name = "OWNER/REPO@REF", requires = "github")]
    pub action: Option<String>,
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// Release version (semver; a leading `v` is accepted). Default: from git tags
    #[arg(long = "version", env = "GANTRY_VERSION", value_name = "SEMVER")]
    pub release_version: Option<String>,
    /// Output folder (default: `dist` beside gantry.toml, or [project].dist)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Package only these artifacts (repeatable)
    #[arg(long = "artifact", short = 'a', value_name = "NAME")]
    pub artifacts: Vec<String>,
    /// Do not run the artifacts' build commands
    #[arg(long)]
    pub skip_build: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Version to publish (default: the one in the packaged release.json)
    #[arg(long = "version", value_name = "SEMVER")]
    pub release_version: Option<String>,
    /// Folder holding the packaged release (default: dist)
    #[arg(long, value_name = "DIR")]
    pub dist: Option<PathBuf>,
    /// Replace objects of an already published version whose bytes differ
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Push an image to its ECR repository, only when its inputs changed
    #[command(after_help = IMAGE_PUSH_HELP)]
    Push(ImagePushArgs),
}

#[derive(Debug, Args)]
pub struct ImagePushArgs {
    /// Image name under [images] (default: every image)
    pub name: Option<String>,
    /// Also tag the image with this release version
    #[arg(long = "version", value_name = "SEMVER")]
    pub release_version: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Start the environment's pipeline for a published release
    #[command(after_help = PIPELINE_START_HELP)]
    Start(PipelineStartArgs),
    /// Follow an execution stage by stage until it ends
    #[command(after_help = PIPELINE_WATCH_HELP)]
    Watch(PipelineWatchArgs),
    /// The latest executions and the state of each stage
    Status,
}

#[derive(Debug, Args)]
pub struct PipelineStartArgs {
    /// Published version to release (default: the latest published in the release bucket),
    /// passed as the pipeline's `version` variable and pinned as its S3 source revision
    #[arg(long = "version", value_name = "SEMVER")]
    pub release_version: Option<String>,
    /// Start a new execution even when one already runs (or ran) the release's source revision
    #[arg(long)]
    pub new: bool,
}

#[derive(Debug, Args)]
pub struct PipelineWatchArgs {
    /// Execution to follow (default: the latest)
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,
    /// Give up after this long (e.g. 45m)
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApprovalArgs {
    /// Pipeline execution the approval belongs to (default: the one waiting)
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,
    /// A comment recorded with the decision
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct EnvTargetArgs {
    /// Limit to these targets (repeatable)
    #[arg(long = "target", short = 't', value_name = "NAME")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Release version to deploy (default: package the working tree, for dev)
    #[arg(long = "version", value_name = "SEMVER")]
    pub release_version: Option<String>,
    /// Limit to these targets (repeatable)
    #[arg(long = "target", short = 't', value_name = "NAME")]
    pub targets: Vec<String>,
    /// Wait this long for another deployment's lock instead of exiting with code 6
    #[arg(long, value_name = "DURATION")]
    pub wait_lock: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Version to go back to (default: the previous good release)
    #[arg(long, value_name = "SEMVER")]
    pub to: Option<String>,
    /// Limit to these targets (repeatable)
    #[arg(long = "target", short = 't', value_name = "NAME")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Which part of the version to bump (auto: from conventional commits)
    #[arg(long, value_enum, default_value_t = Bump::Auto)]
    pub bump: Bump,
    /// Pre-release label, e.g. rc for 1.3.0-rc.1
    #[arg(long, value_name = "LABEL")]
    pub pre: Option<String>,
    /// Print the version, changelog and every step without touching anything
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bump {
    Auto,
    Major,
    Minor,
    Patch,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// How many deployments to show
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["gantry", "package", "--output", "json", "-vv", "--env", "dev"]).expect("parses");
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.verbose, 2);
        assert_eq!(cli.global.env.as_deref(), Some("dev"));
    }

    #[test]
    fn verbose_and_quiet_conflict() {
        let err = Cli::try_parse_from(["gantry", "-v", "-q", "status"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
