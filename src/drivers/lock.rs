//! The apply lock's record: who holds it (host, process, its start time, a lock ID), since when
//! and until when, and when another process may take it over.
//!
//! A lock is taken over at once when its holder is this very holder (a renewal), when it has
//! expired, or when its holder process is dead on this host: a process ID is only trusted
//! together with the process's start time, so a recycled ID does not keep a dead lock alive.
//! Any other lock is refused with who holds it, since and until when (local time), and the
//! `shoal unlock LOCK_ID` that removes it by hand.

use super::{DriverError, DriverResult};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A process that holds, or asks for, the apply lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The lock's ID, for `shoal unlock`: new for every process.
    pub id: String,
    /// What holds it, e.g. `shoal apply` or `shoal watch`.
    pub program: String,
    /// The host it runs on.
    pub host: String,
    /// Its process ID on that host.
    pub pid: u32,
    /// Its start time in clock ticks since the host booted (`/proc/PID/stat`), 0 when unknown.
    pub process_start: u64,
}

/// A lock as recorded by a driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLock {
    /// Who holds it.
    pub holder: LockHolder,
    /// When it was taken, seconds since the epoch.
    pub since: u64,
    /// When it expires, seconds since the epoch.
    pub expires_at: u64,
}

impl LockHolder {
    /// This process, as `program`, with a fresh lock ID.
    pub fn this_process(program: &str) -> LockHolder {
        let pid = std::process::id();
        LockHolder {
            id: fresh_id(),
            program: program.to_string(),
            host: this_host(),
            pid,
            process_start: process_start(pid).unwrap_or(0),
        }
    }

    /// Whether the holder is known to be dead: it ran on this host and no process with its ID
    /// and start time runs now. A holder on another host is never judged dead.
    pub fn is_dead(&self) -> bool {
        // Without /proc (macOS, BSD) nothing here can prove a process dead.
        if self.host != this_host() || self.pid == 0 || process_start(std::process::id()).is_none()
        {
            return false;
        }
        match process_start(self.pid) {
            None => true,
            Some(start) => self.process_start != 0 && start != self.process_start,
        }
    }

    /// The holder as one label value (JSON).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A holder from [`LockHolder::encode`]'s text; an unreadable one (an older shoal) becomes a
    /// holder of that name on no known host, which only expiry or `shoal unlock` releases.
    pub fn decode(text: &str) -> LockHolder {
        serde_json::from_str(text).unwrap_or_else(|_| LockHolder {
            id: text.to_string(),
            program: text.to_string(),
            host: String::new(),
            pid: 0,
            process_start: 0,
        })
    }
}

/// Label naming the lock's holder (JSON of a [`LockHolder`]).
pub const LABEL_LOCK_HOLDER: &str = "io.shoal.lock.holder";
/// Label holding the lock's expiry, seconds since the epoch.
pub const LABEL_LOCK_EXPIRES: &str = "io.shoal.lock.expires_at";
/// Label holding when the lock was taken, seconds since the epoch.
pub const LABEL_LOCK_SINCE: &str = "io.shoal.lock.since";

impl HeldLock {
    /// Whether `holder` may take this lock at `now`: its own, expired, or its holder is dead.
    pub fn can_be_taken_by(&self, holder: &LockHolder, now: u64) -> bool {
        self.holder.id == holder.id || self.expires_at <= now || self.holder.is_dead()
    }

    /// The lock `labels` record, if they record one.
    pub fn from_labels(labels: &std::collections::BTreeMap<String, String>) -> Option<HeldLock> {
        let holder = labels.get(LABEL_LOCK_HOLDER)?;
        let number = |key: &str| labels.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        Some(HeldLock {
            holder: LockHolder::decode(holder),
            since: number(LABEL_LOCK_SINCE),
            expires_at: number(LABEL_LOCK_EXPIRES),
        })
    }

    /// `labels` with this lock recorded in them.
    pub fn record_in(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> std::collections::BTreeMap<String, String> {
        let mut labels = labels.clone();
        labels.insert(LABEL_LOCK_HOLDER.to_string(), self.holder.encode());
        labels.insert(LABEL_LOCK_SINCE.to_string(), self.since.to_string());
        labels.insert(LABEL_LOCK_EXPIRES.to_string(), self.expires_at.to_string());
        labels
    }

    /// `labels` without any lock.
    pub fn erased_from(
        labels: &std::collections::BTreeMap<String, String>,
    ) -> std::collections::BTreeMap<String, String> {
        let mut labels = labels.clone();
        for key in [LABEL_LOCK_HOLDER, LABEL_LOCK_SINCE, LABEL_LOCK_EXPIRES] {
            labels.remove(key);
        }
        labels
    }

    /// The lock `holder` holds after taking or renewing it at `now` over `current` (a renewal
    /// keeps when it was first taken).
    pub fn taken(
        current: Option<&HeldLock>,
        holder: &LockHolder,
        now: u64,
        ttl_seconds: u64,
    ) -> HeldLock {
        let since = current
            .filter(|held| held.holder.id == holder.id)
            .map_or(now, |held| held.since);
        HeldLock {
            holder: holder.clone(),
            since,
            expires_at: now.saturating_add(ttl_seconds),
        }
    }
}

impl fmt::Display for HeldLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.holder;
        write!(
            f,
            "the cluster is locked by {} (pid {} on {}) since {}, until {} (local time): another apply or destroy is running.\n  Wait for it to finish. If that process is gone (a crash on another host, or a killed container), remove the lock with:\n    shoal unlock {}",
            h.program,
            h.pid,
            if h.host.is_empty() { "an unknown host" } else { &h.host },
            local_time(self.since),
            local_time(self.expires_at),
            h.id
        )
    }
}

/// A new lock ID: the first 12 hex digits of a random (version 4) UUID.
fn fresh_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// This host's name (the kernel's), empty when it cannot be read.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`), `None`
/// when no such process runs.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` in the local time zone.
pub fn local_time(seconds: u64) -> String {
    let timestamp = i64::try_from(seconds)
        .ok()
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok());
    match timestamp {
        Some(timestamp) => timestamp
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => format!("{seconds} (Unix time)"),
    }
}

/// Takes the lock kept in the file at `path` for `holder` until `now + ttl_seconds` (see
/// [`with_lock_file`]), refusing while another holder's lock is live.
pub fn take_lock_file(
    path: &std::path::Path,
    advice: &str,
    holder: &LockHolder,
    now: u64,
    ttl_seconds: u64,
) -> DriverResult<()> {
    with_lock_file(path, advice, |held| match held {
        Some(lock) if !lock.can_be_taken_by(holder, now) => {
            Err(DriverError::Locked(Box::new(lock.clone())))
        }
        _ => {
            *held = Some(HeldLock {
                holder: holder.clone(),
                since: now,
                expires_at: now.saturating_add(ttl_seconds),
            });
            Ok(())
        }
    })
}

/// Removes the lock whose ID is `lock_id` from the file at `path`; returns it, `None` when the
/// file holds another lock or none.
pub fn release_lock_file(
    path: &std::path::Path,
    advice: &str,
    lock_id: &str,
) -> DriverResult<Option<HeldLock>> {
    with_lock_file(path, advice, |held| {
        Ok(if held.as_ref().is_some_and(|l| l.holder.id == lock_id) {
            held.take()
        } else {
            None
        })
    })
}

/// Reads the lock file at `path`, lets `change` decide, and writes it back when it changed, all
/// under an exclusive lock of the file (for drivers whose lock lives in a file before a swarm
/// exists); `advice` says what to check when the file cannot be used.
pub fn with_lock_file<T>(
    path: &std::path::Path,
    advice: &str,
    change: impl FnOnce(&mut Option<HeldLock>) -> DriverResult<T>,
) -> DriverResult<T> {
    use fs4::fs_std::FileExt;
    use std::io::{Read, Seek, Write};
    let problem = |e: std::io::Error| {
        DriverError::Unavailable(format!(
            "the apply lock {} cannot be used: {e}; {advice}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(problem)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(problem)?;
    file.lock_exclusive().map_err(problem)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(problem)?;
    let mut held: Option<HeldLock> = serde_json::from_str(&text).ok();
    let before = held.clone();
    let result = change(&mut held);
    if held != before {
        let text = held
            .as_ref()
            .map(|h| serde_json::to_string(h).unwrap_or_default())
            .unwrap_or_default();
        file.set_len(0).map_err(problem)?;
        file.rewind().map_err(problem)?;
        file.write_all(text.as_bytes()).map_err(problem)?;
        file.sync_all().map_err(problem)?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_of(holder: LockHolder, expires_at: u64) -> HeldLock {
        HeldLock {
            holder,
            since: 1_000,
            expires_at,
        }
    }

    #[test]
    fn times_are_local_dates_and_impossible_ones_stay_numbers() {
        let shown = local_time(86_400 * 365);
        assert_eq!(shown.len(), "1971-01-01 00:00:00".len(), "{shown}");
        assert!(
            shown.starts_with("1970-12-31") || shown.starts_with("1971-01-01"),
            "{shown}"
        );
        assert_eq!(local_time(u64::MAX), format!("{} (Unix time)", u64::MAX));
    }

    #[test]
    fn lock_ids_are_twelve_random_hex_digits() {
        let (a, b) = (fresh_id(), fresh_id());
        assert_ne!(a, b);
        assert!(
            a.len() == 12 && a.chars().all(|c| c.is_ascii_hexdigit()),
            "{a}"
        );
    }

    #[test]
    fn a_live_holder_keeps_its_lock_until_it_expires() {
        let me = LockHolder::this_process("shoal apply");
        let other = LockHolder::this_process("shoal apply");
        assert_ne!(me.id, other.id);
        let held = lock_of(me.clone(), 2_000);
        assert!(!me.is_dead());
        assert!(held.can_be_taken_by(&me, 1_500), "a renewal");
        assert!(!held.can_be_taken_by(&other, 1_500));
        assert!(held.can_be_taken_by(&other, 2_000), "expired");
    }

    #[test]
    fn a_dead_holder_on_this_host_is_taken_over_at_once() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut dead = LockHolder::this_process("shoal apply");
        dead.pid = pid;
        assert!(dead.is_dead());
        let held = lock_of(dead, u64::MAX);
        assert!(held.can_be_taken_by(&LockHolder::this_process("shoal apply"), 1_500));
    }

    #[test]
    fn a_recycled_pid_does_not_keep_a_dead_lock_alive() {
        let mut recycled = LockHolder::this_process("shoal apply");
        recycled.process_start += 1;
        assert!(recycled.is_dead());
    }

    #[test]
    fn a_holder_on_another_host_is_never_judged_dead() {
        let mut remote = LockHolder::this_process("shoal watch");
        remote.host = "elsewhere.example".into();
        remote.pid = u32::MAX;
        assert!(!remote.is_dead());
    }

    #[test]
    fn the_refusal_says_who_since_until_and_how_to_unlock() {
        let mut holder = LockHolder::this_process("shoal watch");
        holder.id = "0123456789ab".into();
        let text = lock_of(holder, 4_000_000_000).to_string();
        assert!(text.contains("shoal watch (pid"), "{text}");
        assert!(text.contains("since 19"), "{text}");
        assert!(text.contains("shoal unlock 0123456789ab"), "{text}");
        assert!(!text.contains("Unix time"), "{text}");
    }

    #[test]
    fn a_lock_round_trips_through_labels_and_a_renewal_keeps_its_start() {
        let me = LockHolder::this_process("shoal apply");
        let first = HeldLock::taken(None, &me, 100, 30);
        let labels = first.record_in(&std::collections::BTreeMap::from([(
            "io.shoal.revision".to_string(),
            "abc".to_string(),
        )]));
        assert_eq!(HeldLock::from_labels(&labels), Some(first.clone()));
        let renewed = HeldLock::taken(Some(&first), &me, 120, 30);
        assert_eq!((renewed.since, renewed.expires_at), (100, 150));
        let other = LockHolder::this_process("shoal apply");
        assert_eq!(HeldLock::taken(Some(&first), &other, 140, 30).since, 140);
        let erased = HeldLock::erased_from(&labels);
        assert_eq!(HeldLock::from_labels(&erased), None);
        assert_eq!(erased["io.shoal.revision"], "abc");
    }

    #[test]
    fn holders_round_trip_through_a_label() {
        let holder = LockHolder::this_process("shoal apply");
        assert_eq!(LockHolder::decode(&holder.encode()), holder);
        assert_eq!(LockHolder::decode("shoal-123").id, "shoal-123");
    }
}
