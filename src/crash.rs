//! Crash points, for the crash tests of DESIGN §3.6: with `SHOAL_CRASH_AT=<point>` in its
//! environment, shoal kills itself with SIGKILL when it reaches that point, as a power cut or
//! `kill -9` would, leaving whatever it had done half-way. Points: `after-step-N` (apply, once
//! N steps have finished) and `dind-before-preload` (a dind machine is up, its images not yet
//! loaded). Without the variable, a point does nothing.

use std::time::Duration;

/// The environment variable naming the point to crash at.
pub const CRASH_AT_VAR: &str = "SHOAL_CRASH_AT";

/// How long a crash point waits before the kill, so that drivers that save in the background
/// (the sim saves 25 ms after its last change) have saved what was done: the crash then falls
/// exactly on the point, not somewhere before it.
const SETTLE: Duration = Duration::from_millis(200);

/// Kills this process if `SHOAL_CRASH_AT` names `point`.
pub fn point(point: &str) {
    if std::env::var(CRASH_AT_VAR).is_ok_and(|wanted| wanted == point) {
        eprintln!("shoal: crashing at {point} ({CRASH_AT_VAR})");
        std::thread::sleep(SETTLE);
        // SAFETY: kill(2) with this process's own id and a valid signal has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
