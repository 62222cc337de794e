//! The `static` target: a site from a release zip in an S3 bucket, behind CloudFront.
//!
//! Layout under the target's `prefix` (`P`) in the bucket:
//! - `P/releases/ID/…`: each release's own complete copy (`ID` = `VERSION-DIGEST12`),
//!   written by `start_new` (hashed assets first, entry points last). `preview_url` with
//!   `{prefix}` set to `P/releases/ID` serves it before it goes live.
//! - `P/.gantry/releases/ID.json`: what each release holds (path, SHA-256, hashed or not).
//! - `P/.gantry/state.json`: the stable release, the one being deployed, whether it is
//!   live yet, and the releases kept (newest first). Written after each change it records.
//!
//! Going live (`shift`), by strategy:
//! - `all-at-once` (in place): the release's files are copied server-side to `P/…`,
//!   hashed assets first, entry points last, each skipped when it already holds the
//!   same bytes; entry points the old release had and this one has not are removed.
//! - `blue-green`: the distribution's origin path is switched to `/P/releases/ID` in one
//!   `UpdateDistribution` (with `If-Match`), and gantry waits until it is deployed.
//!
//! Either way the entry points (unhashed files) are then invalidated and gantry waits for
//! the invalidation to complete. Rollback does the same toward the stable release, whose
//! files are still there: the newest `keep_releases` releases are kept (their copies and,
//! in place, their assets at the root) so pages already open keep loading and a rollback
//! copies or switches nothing but entry points. `retire_old` prunes the older ones.

mod cdn;
mod files;
mod store;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use self::cdn::Cdn;
use self::files::SiteFile;
use self::store::Store;
use super::{Live, LiveVersion, Release, Target, TargetEnv, TargetError};
use crate::config;

/// Releases kept by default (the live one included).
const DEFAULT_KEEP: u32 = 3;

pub struct StaticTarget {
    name: String,
    settings: config::StaticTarget,
    blue_green: bool,
    env: TargetEnv,
    clients: OnceCell<Clients>,
}

struct Clients {
    store: Store,
    cdn: Option<Cdn>,
}

/// A release as the bucket records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Rel {
    version: semver::Version,
    digest: String,
}

impl Rel {
    fn of(release: &Release) -> Self {
        Self { version: release.version.clone(), digest: release.digest.clone() }
    }

    /// `1.2.0-abcdef012345`: the release's folder name.
    fn id(&self) -> String {
        format!("{}-{}", self.version.to_string().replace('+', "_"), &self.digest[..self.digest.len().min(12)])
    }

    fn live(&self) -> LiveVersion {
        LiveVersion { version: self.version.clone(), digest: self.digest.clone(), replicas: 1 }
    }
}

/// `P/.gantry/state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SiteState {
    stable: Option<Rel>,
    new: Option<Rel>,
    /// In place: whether the root serves `new` (100) or not yet (0).
    #[serde(default)]
    percent: u8,
    /// Releases whose files are kept, newest first.
    #[serde(default)]
    kept: Vec<Rel>,
    /// Blue-green, first deploy: the origin path before gantry switched it (a rollback
    /// with no stable release puts it back).
    #[serde(default)]
    origin_before: Option<String>,
}

/// `P/.gantry/releases/ID.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReleaseRecord {
    version: semver::Version,
    digest: String,
    files: Vec<FileRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileRecord {
    path: String,
    sha256: String,
    hashed: bool,
}

impl StaticTarget {
    pub fn new(name: &str, settings: &config::StaticTarget, blue_green: bool, env: TargetEnv) -> Self {
        Self { name: name.to_owned(), settings: settings.clone(), blue_green, env, clients: OnceCell::new() }
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| async {
                let sdk = crate::aws::load_for(self.env.region.as_deref(), self.env.role_arn.as_deref()).await;
                Clients {
                    store: Store { client: crate::aws::s3(&sdk), bucket: self.settings.bucket.as_str().to_owned() },
                    cdn: self.settings.distribution.as_ref().map(|id| Cdn {
                        client: crate::aws::cloudfront(&sdk),
                        id: id.clone(),
                        origin_id: self.settings.origin_id.clone(),
                    }),
                }
            })
            .await
    }

    /// The site's root in the bucket: `` or `www/`.
    fn root(&self) -> String {
        match self.settings.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => format!("{p}/"),
            _ => String::new(),
        }
    }

    fn release_prefix(&self, rel: &Rel) -> String {
        format!("{}releases/{}/", self.root(), rel.id())
    }

    fn origin_path(&self, rel: &Rel) -> String {
        format!("/{}", self.release_prefix(rel).trim_end_matches('/'))
    }

    fn state_key(&self) -> String {
        format!("{}.gantry/state.json", self.root())
    }

    fn record_key(&self, rel: &Rel) -> String {
        format!("{}.gantry/releases/{}.json", self.root(), rel.id())
    }

    async fn state(&self) -> Result<SiteState, TargetError> {
        Ok(self.clients().await.store.get_json(&self.state_key()).await?.unwrap_or_default())
    }

    async fn save(&self, state: &SiteState) -> Result<(), TargetError> {
        self.clients().await.store.put_json(&self.state_key(), state).await
    }

    async fn record(&self, rel: &Rel) -> Result<ReleaseRecord, TargetError> {
        self.clients().await.store.get_json(&self.record_key(rel)).await?.ok_or_else(|| {
            TargetError::new(format!(
                "s3://{}/{} is missing: the files of release {} are not in the bucket any more",
                self.settings.bucket,
                self.record_key(rel),
                rel.version
            ))
            .with_hint("deploy that release again to upload it")
        })
    }

    /// The site's zip in the release.
    fn artifact(&self, release: &Release) -> Result<std::path::PathBuf, TargetError> {
        release.artifact(self.settings.artifact.as_str()).cloned()
    }

    fn cdn<'c>(&self, clients: &'c Clients) -> Result<&'c Cdn, TargetError> {
        clients.cdn.as_ref().ok_or_else(|| {
            TargetError::new(format!("target `{}`: blue-green needs `distribution`", self.name))
                .with_hint("set `distribution` to the CloudFront distribution id")
        })
    }

    /// Makes `to` what users get, replacing `from` (whose entry points `to` lacks are removed
    /// in place); `None` with blue-green puts back `origin_before`.
    async fn go_live(
        &self,
        to: Option<&Rel>,
        from: Option<&Rel>,
        origin_before: Option<&str>,
    ) -> Result<(), TargetError> {
        let clients = self.clients().await;
        let to_record = match to {
            Some(rel) => Some(self.record(rel).await?),
            None => None,
        };
        let from_record = match from {
            Some(rel) => self.record(rel).await.ok(),
            None => None,
        };
        if self.blue_green {
            let cdn = self.cdn(clients)?;
            let path = match to {
                Some(rel) => self.origin_path(rel),
                None => origin_before.unwrap_or_default().to_owned(),
            };
            cdn.switch_origin(&path).await?;
        } else {
            let root = self.root();
            if let (Some(rel), Some(record)) = (to, &to_record) {
                let prefix = self.release_prefix(rel);
                let copies = |hashed: bool| {
                    record
                        .files
                        .iter()
                        .filter(|f| f.hashed == hashed)
                        .map(|f| (format!("{prefix}{}", f.path), format!("{root}{}", f.path), f.sha256.clone()))
                        .collect::<Vec<_>>()
                };
                // Assets first: an entry point never names an asset that is not there yet.
                clients.store.copy_all(&copies(true)).await?;
                clients.store.copy_all(&copies(false)).await?;
            }
            if let Some(old) = &from_record {
                let keep: BTreeSet<&str> =
                    to_record.iter().flat_map(|r| r.files.iter().map(|f| f.path.as_str())).collect();
                let gone: Vec<String> = old
                    .files
                    .iter()
                    .filter(|f| !f.hashed && !keep.contains(f.path.as_str()))
                    .map(|f| format!("{root}{}", f.path))
                    .collect();
                clients.store.delete(&gone).await?;
            }
        }
        if let Some(cdn) = &clients.cdn {
            let mut paths = BTreeSet::new();
            for record in to_record.iter().chain(from_record.iter()) {
                for f in record.files.iter().filter(|f| !f.hashed) {
                    paths.insert(format!("/{}", f.path));
                    if let Some(dir) = f.path.strip_suffix("index.html") {
                        paths.insert(format!("/{dir}"));
                    }
                }
            }
            cdn.invalidate(&paths.into_iter().collect::<Vec<_>>()).await?;
        }
        Ok(())
    }

    /// In place: whether every entry point at the root holds `rel`'s bytes.
    async fn root_serves(&self, rel: &Rel) -> Result<bool, TargetError> {
        let record = self.record(rel).await?;
        let store = &self.clients().await.store;
        for f in record.files.iter().filter(|f| !f.hashed) {
            if store.recorded_sha256(&format!("{}{}", self.root(), f.path)).await?.as_deref() != Some(f.sha256.as_str())
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes the files of every release but the newest `keep_releases` kept ones (and the
    /// one being deployed): older ones and those rolled back. Then forgets them.
    async fn prune(&self, state: &mut SiteState) -> Result<(), TargetError> {
        let keep = self.settings.keep_releases.unwrap_or(DEFAULT_KEEP).max(1) as usize;
        state.kept.truncate(keep);
        let store = &self.clients().await.store;
        let records = format!("{}.gantry/releases/", self.root());
        let keep_ids: BTreeSet<String> = state.kept.iter().chain(state.new.iter()).map(Rel::id).collect();
        let mut kept_paths = BTreeSet::new();
        for rel in state.kept.iter().chain(state.new.iter()) {
            // A record a crashed prune already deleted keeps nothing.
            if let Ok(record) = self.record(rel).await {
                kept_paths.extend(record.files.into_iter().map(|f| f.path));
            }
        }
        for key in store.list(&records).await? {
            let Some(id) = key.strip_prefix(&records).and_then(|k| k.strip_suffix(".json")) else { continue };
            if keep_ids.contains(id) {
                continue;
            }
            if !self.blue_green
                && let Some(record) = store.get_json::<ReleaseRecord>(&key).await?
            {
                let gone: Vec<String> = record
                    .files
                    .iter()
                    .filter(|f| !kept_paths.contains(&f.path))
                    .map(|f| format!("{}{}", self.root(), f.path))
                    .collect();
                store.delete(&gone).await?;
            }
            let copy = store.list(&format!("{}releases/{id}/", self.root())).await?;
            store.delete(&copy).await?;
            store.delete(std::slice::from_ref(&key)).await?;
        }
        self.save(state).await
    }
}

impl Target for StaticTarget {
    fn replicas(&self) -> u32 {
        1
    }

    fn public_url(&self) -> String {
        self.settings.url.clone()
    }

    async fn observe(&mut self) -> Result<Live, TargetError> {
        let clients = self.clients().await;
        clients.store.check().await?;
        let live_path = match &clients.cdn {
            Some(cdn) => Some(cdn.origin_path().await?.0),
            None => None,
        };
        let state = self.state().await?;
        let (stable, percent) = if self.blue_green {
            let live_path = live_path.unwrap_or_default();
            let on = |rel: &Option<Rel>| rel.as_ref().is_some_and(|r| self.origin_path(r) == live_path);
            let percent = if on(&state.new) { 100 } else { 0 };
            // An origin path gantry did not set means what is live is not a release it knows.
            let stable = if on(&state.new) || on(&state.stable) { state.stable.clone() } else { None };
            (stable, percent)
        } else {
            let percent = match &state.new {
                Some(new) if state.percent == 100 && self.root_serves(new).await? => 100,
                _ => 0,
            };
            (state.stable.clone(), percent)
        };
        let new = state.new.as_ref().map(Rel::live);
        Ok(Live { stable: stable.as_ref().map(Rel::live), new_weight: if new.is_some() { percent } else { 0 }, new })
    }

    async fn preflight(&mut self, release: &Release) -> Result<(), TargetError> {
        let path = self.artifact(release)?;
        tokio::task::spawn_blocking(move || files::read_zip(&path))
            .await
            .map_err(|e| TargetError::new("reading the site archive stopped unexpectedly").with_source(e))??;
        Ok(())
    }

    async fn start_new(&mut self, release: &Release, _replicas: u32) -> Result<String, TargetError> {
        let path = self.artifact(release)?;
        let site = tokio::task::spawn_blocking(move || files::read_zip(&path))
            .await
            .map_err(|e| TargetError::new("reading the site archive stopped unexpectedly").with_source(e))??;
        let rel = Rel::of(release);
        let prefix = self.release_prefix(&rel);
        let clients = self.clients().await;
        let (hashed, entry): (Vec<&SiteFile>, Vec<&SiteFile>) = site.iter().partition(|f| f.hashed);
        clients.store.put_files(&prefix, &hashed).await?;
        clients.store.put_files(&prefix, &entry).await?;
        let record = ReleaseRecord {
            version: rel.version.clone(),
            digest: rel.digest.clone(),
            files: site
                .iter()
                .map(|f| FileRecord {
                    path: f.path.clone(),
                    sha256: crate::publish::s3::hex(&f.sha256),
                    hashed: f.hashed,
                })
                .collect(),
        };
        clients.store.put_json(&self.record_key(&rel), &record).await?;
        let mut state = self.state().await?;
        if state.new.as_ref() != Some(&rel) {
            if self.blue_green && state.stable.is_none() {
                state.origin_before = Some(self.cdn(clients)?.origin_path().await?.0);
            }
            state.new = Some(rel);
            state.percent = 0;
            self.save(&state).await?;
        }
        Ok(self.settings.preview_url.replace("{prefix}", prefix.trim_end_matches('/')))
    }

    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        let mut state = self.state().await?;
        let Some(new) = state.new.clone() else {
            return Err(TargetError::new(format!("no new release of `{}` to send traffic to", self.name)));
        };
        if percent == 0 {
            self.go_live(state.stable.as_ref(), Some(&new), state.origin_before.as_deref()).await?;
        } else {
            self.go_live(Some(&new), state.stable.as_ref(), None).await?;
        }
        state.percent = if percent == 0 { 0 } else { 100 };
        self.save(&state).await
    }

    async fn replace(&mut self, old: u32) -> Result<(), TargetError> {
        self.shift(if old == 0 { 100 } else { 0 }).await
    }

    async fn retire_old(&mut self) -> Result<(), TargetError> {
        let mut state = self.state().await?;
        if let Some(new) = state.new.take() {
            state.kept.retain(|r| *r != new);
            state.kept.insert(0, new.clone());
            state.stable = Some(new);
            state.percent = 0;
            state.origin_before = None;
            self.save(&state).await?;
        }
        self.prune(&mut state).await
    }

    async fn rollback(&mut self) -> Result<(), TargetError> {
        let mut state = self.state().await?;
        let Some(new) = state.new.clone() else { return Ok(()) };
        self.go_live(state.stable.as_ref(), Some(&new), state.origin_before.as_deref()).await?;
        state.new = None;
        state.percent = 0;
        state.origin_before = None;
        self.save(&state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(prefix: Option<&str>) -> StaticTarget {
        let toml = format!(
            "bucket = 'site'\nartifact = 'web'\nurl = 'https://www'\npreview_url = 'https://p/{{prefix}}'\n{}",
            prefix.map(|p| format!("prefix = '{p}'")).unwrap_or_default()
        );
        StaticTarget::new("site", &toml::from_str(&toml).unwrap(), true, TargetEnv::default())
    }

    #[test]
    fn releases_live_under_versioned_prefixes() {
        let rel = Rel { version: "1.2.0+build.5".parse().unwrap(), digest: "abcdef0123456789".into() };
        assert_eq!(rel.id(), "1.2.0_build.5-abcdef012345");
        let t = target(Some("/www/"));
        assert_eq!(t.release_prefix(&rel), "www/releases/1.2.0_build.5-abcdef012345/");
        assert_eq!(t.origin_path(&rel), "/www/releases/1.2.0_build.5-abcdef012345");
        assert_eq!(t.state_key(), "www/.gantry/state.json");
        let bare = target(None);
        assert_eq!(bare.origin_path(&rel), "/releases/1.2.0_build.5-abcdef012345");
        assert_eq!(bare.record_key(&rel), ".gantry/releases/1.2.0_build.5-abcdef012345.json");
    }
}
