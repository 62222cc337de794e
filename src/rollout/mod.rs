//! The rollout engine: strategies, health gates and the cutover state machine. Pure
//! logic over the [`crate::targets::Target`] trait and the [`health::Probe`] trait: no
//! provider SDK is imported here, and nothing here prints (it emits [`Event`]s).
//!
//! - `plan.rs`: the steps each strategy takes (what `gantry plan` shows).
//! - `health.rs`: health gates and bakes, and the HTTP probe.
//! - `engine.rs`: runs steps as phases with deadlines, records them, rolls back.
//! - `event.rs`: the typed events reporters consume.
//! - `wave.rs`: the bake between multi-region deploy waves (the same health gate, on
//!   several finished targets at once).

pub mod engine;
pub mod event;
pub mod health;
pub mod plan;
pub mod wave;

pub use engine::{Cancel, Engine, Journal, Outcome};
pub use event::Event;
pub use plan::Step;
