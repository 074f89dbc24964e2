//! The exit codes of `mandate` commands: a deny is an answer, not a crash,
//! so scripts can tell "no" from "could not ask".

/// The command did what it was asked; a decision was an allow.
pub const SUCCESS: u8 = 0;
/// A decision was a deny or needs an approval.
pub const DENY: u8 = 1;
/// The command line or the configuration is wrong; fix it and run again.
pub const USAGE: u8 = 2;
/// Mandate could not answer (unreachable, unavailable, internal error):
/// run again later.
pub const FAILURE: u8 = 3;
