//! Crash points, for the crash tests of DESIGN §3.6: with `SHOAL_CRASH_AT=<point>` in its
//! environment, shoal kills itself with SIGKILL when it reaches that point, as a power cut or
//! `kill -9` would, leaving whatever it had done half-way. Points: `after-step-N` (apply, once
//! N steps have finished) and `dind-before-preload` (a dind machine is up, its images not yet
//! loaded). Without the variable, a point does nothing; in release builds (no
//! `debug_assertions`: what users run) the points are not compiled in at all.

#[cfg(debug_assertions)]
use std::time::Duration;

/// The environment variable naming the point to crash at.
pub const CRASH_AT_VAR: &str = "SHOAL_CRASH_AT";

/// How long a crash point waits before the kill, so that drivers that save in the background
/// (the sim saves 25 ms after its last change) have saved what was done: the crash then falls
/// exactly on the point, not somewhere before it.
#[cfg(debug_assertions)]
const SETTLE: Duration = Duration::from_millis(200);

/// Kills this process if `SHOAL_CRASH_AT` names `point` (debug builds, which the tests run).
#[cfg(debug_assertions)]
pub fn point(point: &str) {
    if std::env::var(CRASH_AT_VAR).is_ok_and(|wanted| wanted == point) {
        eprintln!("shoal: crashing at {point} ({CRASH_AT_VAR})");
        std::thread::sleep(SETTLE);
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Does nothing: release builds have no crash points.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_point: &str) {}
