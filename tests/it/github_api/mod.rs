//! A GitHub REST API emulator for tests: the calls gantry makes (releases, release assets
//! on a separate uploads host, git refs for tags, deployments and their statuses) over real
//! HTTP on two loopback ports, answering as GitHub's REST reference describes (status codes,
//! `errors[].code`, `Link` pagination, `x-ratelimit-*` headers, `digest` on assets).
//!
//! There is no open GitHub API server to run in tests. Like the CodePipeline emulator it runs
//! in the test process on plain threads with a hand-written HTTP/1.1 loop (no new
//! dependency), so a test can read and change its state directly: seed releases, cut an
//! upload off part way, rate-limit requests, hide asset digests.
//!
//! Not emulated: GraphQL, conditional requests (ETag/304), `label` on assets, release
//! `generate_release_notes`, permissions beyond one bearer token, annotated tags.

mod model;
mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use model::{State, hex};

pub const TOKEN: &str = "ghp_emulatorTOKEN0123456789";

/// A running emulator for one repository. Dropping it stops accepting connections.
pub struct GitHub {
    /// The API host, as `GITHUB_API_URL`.
    pub api: String,
    /// The uploads host, named in every release's `upload_url`.
    pub uploads: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl GitHub {
    pub fn start(owner: &str, repo: &str) -> Self {
        let state = Arc::new(Mutex::new(State::new(owner, repo, TOKEN)));
        let stop = Arc::new(AtomicBool::new(false));
        let api = server::serve(server::Host::Api, Arc::clone(&state), Arc::clone(&stop));
        let uploads = server::serve(server::Host::Uploads, Arc::clone(&state), Arc::clone(&stop));
        state.lock().unwrap().uploads_url.clone_from(&uploads);
        Self { api, uploads, state, stop }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The variables Actions sets that gantry reads: API URL, token and repository.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let s = self.state();
        vec![
            ("GITHUB_API_URL", self.api.clone()),
            ("GITHUB_TOKEN", TOKEN.to_owned()),
            ("GITHUB_REPOSITORY", format!("{}/{}", s.owner, s.repo)),
        ]
    }
}

impl Drop for GitHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
