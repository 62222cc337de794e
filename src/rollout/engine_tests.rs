//! The engine against a scripted fake target and probe, in paused time: success, failure
//! at every phase, interrupts at every phase, crash and resume at every phase.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;

use super::*;
use crate::config::{Duration as CfgDuration, Percent, StrategyConfig, StrategyKind};
use crate::rollout::health::ProbeResult;
use crate::rollout::plan;
use crate::state::record::Kind;
use crate::targets::{Live, LiveVersion};

/// The fake platform: what runs, what is healthy, and which call fails.
#[derive(Debug, Default)]
struct World {
    stable: Option<(String, u32)>,
    new: Option<(String, u32)>,
    weight: u8,
    calls: Vec<String>,
    /// Fail the call whose name starts with this (e.g. "shift:50").
    fail_call: Option<String>,
    /// The new version answers health checks unhealthily once it takes at least this weight.
    new_unhealthy_from: Option<u8>,
    /// The platform silently undoes a shift (it "rolled back by itself").
    platform_reverts: bool,
    fail_rollback: bool,
    /// A platform alarm fires once the new version takes at least this weight, and keeps
    /// firing (as a CloudWatch alarm does for minutes after the cause went away).
    alarm_from: Option<u8>,
    alarm_fired: bool,
}

struct Fake(Rc<RefCell<World>>);

fn release(v: &str) -> Release {
    Release { version: v.parse().unwrap(), digest: format!("digest-{v}"), artifacts: Default::default() }
}

fn live_version((v, replicas): &(String, u32)) -> LiveVersion {
    LiveVersion { version: v.parse().unwrap(), digest: format!("digest-{v}"), replicas: *replicas }
}

impl Fake {
    fn call(&self, name: String) -> Result<(), TargetError> {
        let mut w = self.0.borrow_mut();
        w.calls.push(name.clone());
        if w.fail_call.as_ref().is_some_and(|f| name.starts_with(f.as_str())) {
            w.fail_call = None; // once: the rollback's own calls go through
            return Err(TargetError::new(format!("{name} failed (scripted)")));
        }
        Ok(())
    }
}

impl Target for Fake {
    fn replicas(&self) -> u32 {
        2
    }
    fn public_url(&self) -> String {
        "http://public".into()
    }
    async fn observe(&mut self) -> Result<Live, TargetError> {
        self.call("observe".into())?;
        let w = self.0.borrow();
        Ok(Live {
            stable: w.stable.as_ref().map(live_version),
            new: w.new.as_ref().map(live_version),
            new_weight: w.weight,
        })
    }
    async fn start_new(&mut self, release: &Release, replicas: u32) -> Result<String, TargetError> {
        self.call(format!("start_new:{replicas}"))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.0.borrow_mut().new = Some((release.version.to_string(), replicas));
        Ok("http://preview".into())
    }
    async fn shift(&mut self, percent: u8) -> Result<(), TargetError> {
        self.call(format!("shift:{percent}"))?;
        let mut w = self.0.borrow_mut();
        if !w.platform_reverts {
            w.weight = percent;
        }
        Ok(())
    }
    async fn replace(&mut self, old: u32) -> Result<(), TargetError> {
        self.call(format!("replace:{old}"))?;
        let mut w = self.0.borrow_mut();
        if let Some(s) = w.stable.as_mut() {
            s.1 = old;
        }
        let (new, total) = (w.new.as_ref().map_or(0, |n| n.1), w.new.as_ref().map_or(0, |n| n.1) + old);
        w.weight = (new * 100).checked_div(total).unwrap_or(0) as u8;
        Ok(())
    }
    async fn retire_old(&mut self) -> Result<(), TargetError> {
        self.call("retire_old".into())?;
        let mut w = self.0.borrow_mut();
        if let Some(n) = w.new.take() {
            w.stable = Some(n);
        }
        w.weight = 0;
        Ok(())
    }
    async fn alarms(&self) -> Result<Vec<String>, TargetError> {
        let mut w = self.0.borrow_mut();
        if w.alarm_from.is_some_and(|from| w.weight >= from) {
            w.alarm_fired = true;
        }
        Ok(if w.alarm_fired { vec!["`errors` is in ALARM (scripted)".into()] } else { Vec::new() })
    }
    async fn rollback(&mut self) -> Result<(), TargetError> {
        self.call("rollback".into())?;
        let mut w = self.0.borrow_mut();
        if w.fail_rollback {
            return Err(TargetError::new("the old version would not start (scripted)"));
        }
        w.new = None;
        w.weight = 0;
        if let Some(s) = w.stable.as_mut() {
            s.1 = 2;
        }
        Ok(())
    }
}

/// Healthy unless the world says the new version is unhealthy at its current weight.
struct WorldProbe(Rc<RefCell<World>>);

impl Probe for WorldProbe {
    async fn probe(&self, _: &HealthCheck, url: &str) -> ProbeResult {
        let w = self.0.borrow();
        let new_sick =
            w.new_unhealthy_from.is_some_and(|from| w.weight >= from || url.contains("preview") && from == 0);
        let reaches_new = url.contains("preview") || w.weight > 0;
        let ok = !(new_sick && reaches_new);
        ProbeResult { ok, detail: if ok { "status 200".into() } else { "status 503 (expected 200-299)".into() } }
    }
}

/// Keeps every record saved, as the ledger would.
#[derive(Default)]
struct Memory(Vec<Deployment>);

impl Journal for Memory {
    async fn save(&mut self, d: &Deployment) -> Result<(), String> {
        self.0.push(d.clone());
        // A real ledger write takes time: a crash can land right after it.
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// An engine over the fake, with a 60 s phase deadline.
fn engine<'a>(
    target: &'a mut Fake,
    probe: &'a WorldProbe,
    journal: &'a mut Memory,
    checks: &'a [HealthCheck],
    cancel: Cancel,
    emit: &'a dyn Fn(Event),
) -> Engine<'a, Fake, WorldProbe, Memory> {
    Engine { target, probe, journal, checks, phase_deadline: Duration::from_secs(60), cancel, emit }
}

fn checks() -> Vec<HealthCheck> {
    let mut c: HealthCheck = toml::from_str("url = '{url}/healthz'").unwrap();
    c.interval = CfgDuration::from_secs(1);
    c.healthy_threshold = 2;
    c.unhealthy_threshold = 2;
    vec![c]
}

fn canary() -> StrategyConfig {
    StrategyConfig {
        kind: StrategyKind::Canary,
        steps: Some(vec![Percent::new(10).unwrap(), Percent::new(50).unwrap(), Percent::new(100).unwrap()]),
        bake: Some(CfgDuration::from_secs(10)),
        ..StrategyConfig::default()
    }
}

fn world() -> Rc<RefCell<World>> {
    Rc::new(RefCell::new(World { stable: Some(("1.0.0".into(), 2)), ..World::default() }))
}

struct Run {
    outcome: Outcome,
    records: Vec<Deployment>,
    /// Each event with the (paused) time it was emitted at.
    events: Vec<(tokio::time::Instant, Event)>,
}

async fn deploy(world: &Rc<RefCell<World>>, steps: &[Step], cancel_at_phase: Option<usize>) -> Run {
    let (tx, rx) = watch::channel(false);
    let events = RefCell::new(Vec::new());
    let emit = |e: Event| {
        if let (Some(at), Event::PhaseStarted { index, .. }) = (cancel_at_phase, &e)
            && *index == at
        {
            tx.send_replace(true);
        }
        events.borrow_mut().push((tokio::time::Instant::now(), e));
    };
    let mut target = Fake(Rc::clone(world));
    let probe = WorldProbe(Rc::clone(world));
    let mut journal = Memory::default();
    let checks = checks();
    let new = release("2.0.0");
    let previous = world.borrow().stable.as_ref().map(|(v, _)| ReleaseRef::from(&release(v)));
    let mut record = new_record("dev", "web", Kind::Deploy, &new, previous, "canary", "tester");
    let mut engine = engine(&mut target, &probe, &mut journal, &checks, Cancel::new(rx), &emit);
    let outcome = engine.run(&mut record, &new, steps).await;
    assert_eq!(journal.0.last(), Some(&record), "the last save is the final record");
    Run { outcome, records: journal.0, events: events.into_inner() }
}

fn assert_back_on_old(world: &Rc<RefCell<World>>) {
    let w = world.borrow();
    assert_eq!(w.stable, Some(("1.0.0".into(), 2)), "the old version serves at full count");
    assert_eq!(w.new, None, "the new version is gone");
    assert_eq!(w.weight, 0, "no traffic split is left");
}

#[tokio::test(start_paused = true)]
async fn a_good_canary_walks_every_weight_and_retires_the_old_version() {
    let world = world();
    let run = deploy(&world, &plan::steps(&canary(), 2), None).await;
    assert_eq!(run.outcome, Outcome::Succeeded);
    let calls = world.borrow().calls.clone();
    assert_eq!(calls, ["start_new:2", "shift:10", "shift:50", "shift:100", "observe", "retire_old", "observe"]);
    assert_eq!(world.borrow().stable, Some(("2.0.0".into(), 2)));
    let last = run.records.last().unwrap();
    assert_eq!(last.state, State::Succeeded);
    assert!(last.phases.iter().all(|p| p.ok == Some(true)), "{:?}", last.phases);
    assert_eq!(last.phases.len(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_firing_alarm_fails_the_bake_and_the_rollback_is_not_gated_on_it() {
    let world = world();
    world.borrow_mut().alarm_from = Some(50);
    let run = deploy(&world, &plan::steps(&canary(), 2), None).await;
    let Outcome::RolledBack { reason, .. } = &run.outcome else { panic!("{:?}", run.outcome) };
    assert_eq!(reason, "alarm firing: `errors` is in ALARM (scripted)");
    assert!(!world.borrow().calls.contains(&"shift:100".to_owned()), "the 100% step is skipped");
    assert_back_on_old(&world);
    assert!(world.borrow().alarm_fired, "still firing after the rollback, which passed on health checks alone");
}

#[tokio::test(start_paused = true)]
async fn a_failure_at_any_target_call_rolls_back_at_once() {
    for call in ["start_new", "shift:10", "shift:50", "shift:100", "observe"] {
        let world = world();
        world.borrow_mut().fail_call = Some(call.into());
        let run = deploy(&world, &plan::steps(&canary(), 2), None).await;
        let Outcome::RolledBack { reason, interrupted: false } = &run.outcome else {
            panic!("{call}: {:?}", run.outcome)
        };
        assert!(reason.contains("failed (scripted)"), "{call}: {reason}");
        assert_back_on_old(&world);
        let calls = world.borrow().calls.clone();
        let failed_at = calls.iter().position(|c| c.starts_with(call)).unwrap();
        assert_eq!(calls[failed_at + 1], "rollback", "{call}: nothing runs between the failure and the rollback");
        let last = run.records.last().unwrap();
        assert_eq!(last.phases.last().unwrap().name, "rollback");
    }
}

#[tokio::test(start_paused = true)]
async fn a_canary_that_sickens_at_50_percent_skips_the_rest_and_is_rolled_back_within_the_threshold() {
    let world = world();
    world.borrow_mut().new_unhealthy_from = Some(50);
    let run = deploy(&world, &plan::steps(&canary(), 2), None).await;
    let Outcome::RolledBack { reason, .. } = &run.outcome else { panic!("{:?}", run.outcome) };
    assert!(reason.contains("failed 2 consecutive checks over 1s"), "{reason}");
    assert!(!world.borrow().calls.contains(&"shift:100".to_owned()), "the 100% step is skipped");
    assert_back_on_old(&world);
    // Rolled back within unhealthy_threshold × interval + 1 s of the first failed check.
    let first_failure = run.events.iter().find(|(_, e)| matches!(e, Event::Health { ok: false, .. })).unwrap().0;
    let rollback = run.events.iter().find(|(_, e)| matches!(e, Event::RollbackStarted { .. })).unwrap().0;
    let threshold = checks()[0].interval.get() * checks()[0].unhealthy_threshold + Duration::from_secs(1);
    assert!(rollback - first_failure <= threshold, "{:?}", rollback - first_failure);
    assert_eq!(rollback - first_failure, Duration::from_secs(1), "the second failure, one interval later");
}

#[tokio::test(start_paused = true)]
async fn bakes_watch_the_new_version_on_its_own_endpoint() {
    let world = world();
    let run = deploy(&world, &plan::steps(&canary(), 2), None).await;
    assert_eq!(run.outcome, Outcome::Succeeded);
    let bake_urls: Vec<&str> = run
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Health { phase, url, .. } if phase == "bake" => Some(url.as_str()),
            _ => None,
        })
        .collect();
    assert!(!bake_urls.is_empty());
    assert!(bake_urls.iter().all(|u| u.starts_with("http://preview")), "{bake_urls:?}");
}

#[tokio::test(start_paused = true)]
async fn a_new_version_that_never_gets_healthy_gets_no_traffic() {
    let world = world();
    world.borrow_mut().new_unhealthy_from = Some(0);
    let run = deploy(&world, &plan::steps(&canary(), 2), None).await;
    assert!(matches!(run.outcome, Outcome::RolledBack { .. }), "{:?}", run.outcome);
    assert!(!world.borrow().calls.iter().any(|c| c.starts_with("shift")), "no traffic before the gate passed");
    assert_back_on_old(&world);
}

#[tokio::test(start_paused = true)]
async fn success_is_never_reported_when_the_platform_undid_the_switch() {
    let world = world();
    world.borrow_mut().platform_reverts = true;
    let run = deploy(&world, &plan::steps(&canary(), 2), None).await;
    let Outcome::RolledBack { reason, .. } = &run.outcome else { panic!("{:?}", run.outcome) };
    assert!(reason.contains("does not serve 2.0.0 to all users"), "{reason}");
    assert!(!world.borrow().calls.contains(&"retire_old".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_at_any_phase_rolls_back_that_phase() {
    let steps = plan::steps(&canary(), 2);
    for at in 0..steps.len() - 1 {
        let world = world();
        let run = deploy(&world, &steps, Some(at)).await;
        if steps[at] == Step::RetireOld {
            continue;
        }
        let Outcome::RolledBack { reason, interrupted: true } = &run.outcome else {
            panic!("phase {at}: {:?}", run.outcome)
        };
        assert_eq!(reason, &format!("interrupted during phase `{}`", steps[at].phase()));
        assert_back_on_old(&world);
        let last = run.records.last().unwrap();
        assert_eq!(last.phases[at].ok, Some(false));
        assert_eq!(last.phases.len(), at + 2, "phase {at}: nothing ran after the interrupt but the rollback");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_rollback_says_so() {
    let world = world();
    {
        let mut w = world.borrow_mut();
        w.new_unhealthy_from = Some(0);
        w.fail_rollback = true;
    }
    let run = deploy(&world, &plan::steps(&canary(), 2), None).await;
    let Outcome::RollbackFailed { rollback_error, .. } = &run.outcome else { panic!("{:?}", run.outcome) };
    assert!(rollback_error.contains("would not start"), "{rollback_error}");
    assert_eq!(run.records.last().unwrap().state, State::RollbackFailed);
}

/// A crash (the process dies mid-phase) at every phase, then a new process resumes by the
/// rule: finish what had verified, roll back anything else. No split is left either way.
#[tokio::test(start_paused = true)]
async fn a_crash_at_any_phase_is_resumed_or_rolled_back_by_the_rule() {
    let steps = plan::steps(&canary(), 2);
    for at in 0..steps.len() {
        let world = world();
        let (tx, mut rx) = watch::channel(false);
        let emit = |e: Event| {
            if let Event::PhaseStarted { index, .. } = e
                && index == at
            {
                tx.send_replace(true);
            }
        };
        let mut target = Fake(Rc::clone(&world));
        let probe = WorldProbe(Rc::clone(&world));
        let mut journal = Memory::default();
        let checks = checks();
        let new = release("2.0.0");
        let previous = Some(ReleaseRef::from(&release("1.0.0")));
        let mut record = new_record("dev", "web", Kind::Deploy, &new, previous, "canary", "tester");
        {
            let mut engine = engine(&mut target, &probe, &mut journal, &checks, Cancel::never(), &emit);
            // The "kill -9": the run is dropped in the middle of phase `at`.
            tokio::select! {
                biased;
                _ = rx.wait_for(|c| *c) => {}
                _ = engine.run(&mut record, &new, &steps) => panic!("phase {at}: the run should have been killed"),
            }
        }
        let mut left = journal.0.last().unwrap().clone();
        assert_eq!(left.state, State::Running);
        assert_eq!(left.phases.len(), at + 1, "the ledger names the phase in progress");
        let verified = left.verified();
        let mut target = Fake(Rc::clone(&world));
        let mut journal = Memory::default();
        let mut engine = engine(&mut target, &probe, &mut journal, &checks, Cancel::never(), &|_| {});
        let outcome = engine.resume(&mut left).await;
        let w = world.borrow();
        if verified {
            assert_eq!(outcome, Outcome::Succeeded, "phase {at}");
            assert_eq!(w.stable, Some(("2.0.0".into(), 2)));
        } else {
            assert!(matches!(outcome, Outcome::RolledBack { interrupted: true, .. }), "phase {at}: {outcome:?}");
            assert_eq!(w.stable, Some(("1.0.0".into(), 2)));
        }
        assert_eq!((w.new.is_none(), w.weight), (true, 0), "phase {at}: no split left behind");
    }
}

#[tokio::test(start_paused = true)]
async fn rolling_replaces_batch_by_batch_and_rolls_back_to_full_count() {
    let world = world();
    let strategy = StrategyConfig { kind: StrategyKind::Rolling, ..StrategyConfig::default() };
    let run = deploy(&world, &plan::steps(&strategy, 2), None).await;
    assert_eq!(run.outcome, Outcome::Succeeded);
    assert_eq!(
        world.borrow().calls,
        ["start_new:1", "replace:1", "start_new:2", "replace:0", "observe", "retire_old", "observe"]
    );

    let world = self::world();
    world.borrow_mut().fail_call = Some("start_new:2".into());
    let run = deploy(&world, &plan::steps(&strategy, 2), None).await;
    assert!(matches!(run.outcome, Outcome::RolledBack { .. }));
    assert_back_on_old(&world);
}

#[tokio::test(start_paused = true)]
async fn blue_green_keeps_blue_warm_and_switches_back_when_green_sickens_in_that_window() {
    let world = world();
    let strategy = StrategyConfig {
        kind: StrategyKind::BlueGreen,
        bake: Some(CfgDuration::from_secs(5)),
        keep_previous: Some(CfgDuration::from_secs(60)),
        ..StrategyConfig::default()
    };
    let steps = plan::steps(&strategy, 2);
    // Green turns sick 20 s after taking traffic: after the bake and verify, inside the keep window.
    let sicken = Rc::clone(&world);
    let (tx, rx) = watch::channel(false);
    let events = RefCell::new(Vec::new());
    let emit = |e: Event| {
        if let Event::PhaseStarted { phase, .. } = &e
            && phase == "keep-previous"
        {
            let w = Rc::clone(&sicken);
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_secs(20)).await;
                w.borrow_mut().new_unhealthy_from = Some(1);
            });
        }
        events.borrow_mut().push(e);
    };
    let local = tokio::task::LocalSet::new();
    let outcome = local
        .run_until(async {
            let mut target = Fake(Rc::clone(&world));
            let probe = WorldProbe(Rc::clone(&world));
            let mut journal = Memory::default();
            let checks = checks();
            let new = release("2.0.0");
            let mut record = new_record(
                "dev",
                "web",
                Kind::Deploy,
                &new,
                Some(ReleaseRef::from(&release("1.0.0"))),
                "blue-green",
                "t",
            );
            let mut engine = engine(&mut target, &probe, &mut journal, &checks, Cancel::new(rx), &emit);
            engine.run(&mut record, &new, &steps).await
        })
        .await;
    drop(tx);
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert!(!world.borrow().calls.contains(&"retire_old".to_owned()), "blue was never stopped");
    assert_back_on_old(&world);
}
