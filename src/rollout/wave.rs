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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::rollout::health::ProbeResult;
    use crate::targets::{Live, Release, TargetError};

    /// A target that is only watched: its live URL, and alarms that may fire.
    struct Watchee {
        url: &'static str,
        alarm: bool,
    }

    impl Target for Watchee {
        fn replicas(&self) -> u32 {
            1
        }
        fn public_url(&self) -> String {
            self.url.into()
        }
        async fn observe(&mut self) -> Result<Live, TargetError> {
            Ok(Live::default())
        }
        async fn start_new(&mut self, _: &Release, _: u32) -> Result<String, TargetError> {
            Ok(String::new())
        }
        async fn shift(&mut self, _: u8) -> Result<(), TargetError> {
            Ok(())
        }
        async fn replace(&mut self, _: u32) -> Result<(), TargetError> {
            Ok(())
        }
        async fn retire_old(&mut self) -> Result<(), TargetError> {
            Ok(())
        }
        async fn rollback(&mut self) -> Result<(), TargetError> {
            Ok(())
        }
        async fn alarms(&self) -> Result<Vec<String>, TargetError> {
            Ok(if self.alarm { vec!["p99-latency".into()] } else { Vec::new() })
        }
    }

    /// Unhealthy for URLs containing `sick` once `after` checks were answered.
    struct Scripted {
        answered: Cell<u32>,
        after: u32,
    }

    impl Probe for Scripted {
        async fn probe(&self, _: &HealthCheck, url: &str) -> ProbeResult {
            self.answered.set(self.answered.get() + 1);
            let ok = !(url.contains("sick") && self.answered.get() > self.after);
            ProbeResult { ok, detail: if ok { "status 200".into() } else { "status 503".into() } }
        }
    }

    fn checks() -> Vec<HealthCheck> {
        let mut c: HealthCheck = toml::from_str("url = '{url}/healthz'").unwrap();
        c.interval = crate::config::Duration::from_secs(1);
        vec![c]
    }

    async fn run(targets: &[Watchee], cancel: Cancel) -> (Result<(), BakeFailure>, Duration) {
        let probe = Scripted { answered: Cell::new(0), after: 6 };
        let checks = checks();
        let names = ["use1", "usw2"];
        let watched: Vec<_> =
            targets.iter().zip(names).map(|(target, name)| Watched { name, target, checks: &checks }).collect();
        let start = Instant::now();
        let result = bake(&probe, &watched, Duration::from_secs(60), cancel, &|_| {}).await;
        (result, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn healthy_targets_pass_when_the_time_is_up() {
        let targets = [Watchee { url: "http://use1", alarm: false }, Watchee { url: "http://usw2", alarm: false }];
        let (result, took) = run(&targets, Cancel::never()).await;
        assert_eq!(result, Ok(()));
        assert_eq!(took, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_target_to_fail_fails_the_bake_at_once() {
        let targets = [Watchee { url: "http://use1", alarm: false }, Watchee { url: "http://sick", alarm: false }];
        let (result, took) = run(&targets, Cancel::never()).await;
        let Err(BakeFailure::Unhealthy { target, reason }) = result else { panic!("{result:?}") };
        assert_eq!(target, "usw2");
        assert!(reason.starts_with("health check failed: http://sick/healthz failed 2 consecutive checks"), "{reason}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_firing_alarm_or_an_interrupt_fails_it() {
        let targets = [Watchee { url: "http://use1", alarm: true }];
        let (result, _) = run(&targets, Cancel::never()).await;
        assert_eq!(
            result,
            Err(BakeFailure::Unhealthy { target: "use1".into(), reason: "alarm firing: p99-latency".into() })
        );
        let (tx, rx) = tokio::sync::watch::channel(false);
        let targets = [Watchee { url: "http://use1", alarm: false }];
        let interrupt = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send(true).unwrap();
        };
        let ((result, took), ()) = tokio::join!(run(&targets, Cancel::new(rx)), interrupt);
        assert_eq!(result, Err(BakeFailure::Interrupted));
        assert_eq!(took, Duration::from_secs(5));
    }
}
