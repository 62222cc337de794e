//! The bake between deploy waves (multi-region): every target of the waves that already
//! finished is watched at once, each on its live URL with its own health checks and its
//! platform alarms, for the environment's `wave_bake`. It is the health gate a strategy's
//! own bake uses (`health::gate` in `Watch` mode, the same probe), run for several targets
//! together: the first target that fails (an unhealthy run of checks, a firing alarm)
//! fails the bake, and so does an interrupt.

use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::engine::{Cancel, firing_alarms};
use super::event::Event;
use super::health::{self, Mode, Probe};
use crate::config::HealthCheck;
use crate::targets::Target;

/// One finished target to watch.
pub struct Watched<'a, T: Target> {
    pub name: &'a str,
    pub target: &'a T,
    pub checks: &'a [HealthCheck],
}

/// Why a bake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BakeFailure {
    /// A target's checks or alarms failed.
    Unhealthy { target: String, reason: String },
    /// The user interrupted it.
    Interrupted,
}

impl std::fmt::Display for BakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unhealthy { target, reason } => write!(f, "target `{target}`: {reason}"),
            Self::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// Watches every target in `watched` for `duration`; `Health` events carry the phase
/// `wave-bake`. Passes when the time is up with every target healthy.
pub async fn bake<T: Target, P: Probe>(
    probe: &P,
    watched: &[Watched<'_, T>],
    duration: Duration,
    mut cancel: Cancel,
    emit: &dyn Fn(Event),
) -> Result<(), BakeFailure> {
    // A watch ends by itself when its time is up; the deadline only has to lie beyond that.
    let deadline = Instant::now() + duration * 2 + Duration::from_secs(10);
    let mut running: FuturesUnordered<_> =
        watched.iter().map(|w| watch_one(probe, w, duration, deadline, emit)).collect();
    let all = async {
        while let Some(result) = running.next().await {
            result?;
        }
        Ok(())
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(BakeFailure::Interrupted),
        result = all => result,
    }
}

async fn watch_one<T: Target, P: Probe>(
    probe: &P,
    w: &Watched<'_, T>,
    duration: Duration,
    deadline: Instant,
    emit: &dyn Fn(Event),
) -> Result<(), BakeFailure> {
    let url = w.target.public_url();
    let checks = health::gate(probe, w.checks, &url, Mode::Watch(duration), deadline, |s| {
        emit(Event::Health {
            target: w.name.to_owned(),
            phase: "wave-bake".into(),
            url: s.url,
            ok: s.ok,
            detail: s.detail,
            streak: s.streak,
            needed: s.needed,
        });
    });
    let every = w.checks.iter().map(|c| c.interval.get()).min().unwrap_or(Duration::from_secs(5));
    let alarms = async {
        loop {
            if let Some(firing) = firing_alarms(w.target).await {
                return firing;
            }
            tokio::time::sleep(every).await;
        }
    };
    let unhealthy = |reason: String| BakeFailure::Unhealthy { target: w.name.to_owned(), reason };
    tokio::select! {
        result = checks => result.map_err(|f| unhealthy(format!("health check failed: {f}")))?,
        firing = alarms => return Err(unhealthy(firing)),
    }
    // Read once more at the end: an alarm that fired as the time ran out still counts.
    match firing_alarms(w.target).await {
        Some(firing) => Err(unhealthy(firing)),
        None => Ok(()),
    }
}
