//! Exit codes: the one place they are defined. The README lists them; scripts and
//! the GitHub Action rely on them, so a value here never changes meaning.

/// Everything asked for was done.
pub const OK: u8 = 0;
/// The command failed (I/O, a remote call, a build command): see the message.
pub const FAILED: u8 = 1;
/// Bad usage or bad configuration: nothing was changed.
pub const USAGE: u8 = 2;
/// A health gate failed and the change was rolled back: what is live is the previous release.
pub const ROLLED_BACK: u8 = 3;
/// A rollback failed: the environment needs manual action (the message says what).
pub const ROLLBACK_FAILED: u8 = 4;
/// A required approval is missing or was rejected.
pub const APPROVAL: u8 = 5;
/// The environment is locked by another deployment.
pub const LOCKED: u8 = 6;
/// Interrupted by Ctrl-C (SIGINT).
pub const INTERRUPTED: u8 = 130;

/// Every code with its meaning, in the order the README lists them.
pub const ALL: &[(u8, &str)] = &[
    (OK, "ok"),
    (FAILED, "failed"),
    (USAGE, "usage or config error; nothing was changed"),
    (ROLLED_BACK, "health gate failed and the change was rolled back"),
    (ROLLBACK_FAILED, "rollback failed, manual action needed"),
    (APPROVAL, "approval missing or rejected"),
    (LOCKED, "environment locked by another deployment"),
    (INTERRUPTED, "interrupted"),
];

/// The code as one word, for the GitHub Action's `result` output.
pub fn result_name(code: u8) -> &'static str {
    match code {
        OK => "ok",
        USAGE => "usage",
        ROLLED_BACK => "rolled-back",
        ROLLBACK_FAILED => "rollback-failed",
        APPROVAL => "approval",
        LOCKED => "locked",
        INTERRUPTED => "interrupted",
        _ => "failed",
    }
}
