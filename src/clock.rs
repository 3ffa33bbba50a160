//! The wall clock, read only at the edges: the core takes `now` as an argument.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, from the system clock (0 for a clock set before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch, from the system clock (0 for a clock set before 1970), as
/// engine events carry their time.
pub fn unix_now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
