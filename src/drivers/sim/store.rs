//! Where the sim keeps its state: in memory, or in `<repo>/.shoal/sim.json`.
//!
//! With a file, every operation takes an exclusive lock on `<repo>/.shoal/sim.lock`, loads the
//! state, runs, writes the state back atomically (a temporary file renamed over the old one)
//! and releases the lock, so several processes and threads can share one simulated cluster
//! without losing updates.

use super::state::SimState;
use fs4::fs_std::FileExt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The state file's name inside `.shoal`.
pub(super) const STATE_FILE: &str = "sim.json";
/// The lock file's name inside `.shoal`.
pub(super) const LOCK_FILE: &str = "sim.lock";

/// A shared handle on the sim's state.
#[derive(Clone, Debug)]
pub(super) enum Store {
    /// Kept in this process only.
    Memory(Arc<Mutex<SimState>>),
    /// Kept in files under this `.shoal` folder.
    File(Arc<PathBuf>),
}

/// An I/O error that names the file it concerns.
fn at(path: &Path, error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {error}", path.display()))
}

impl Store {
    /// A store over `<dir>/sim.json`, creating `dir` when missing.
    pub(super) fn file(dir: PathBuf) -> io::Result<Store> {
        fs::create_dir_all(&dir).map_err(|e| at(&dir, e))?;
        Ok(Store::File(Arc::new(dir)))
    }

    /// Runs `f` on the current state without changing it.
    pub(super) fn read<R>(&self, f: impl FnOnce(&SimState) -> R) -> io::Result<R> {
        match self {
            Store::Memory(state) => {
                let guard = state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                Ok(f(&guard))
            }
            Store::File(dir) => {
                let _lock = lock(dir)?;
                Ok(f(&load(dir)?))
            }
        }
    }

    /// Runs `f` on the current state and keeps what it changed.
    pub(super) fn write<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> io::Result<R> {
        match self {
            Store::Memory(state) => {
                let mut guard = state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                Ok(f(&mut guard))
            }
            Store::File(dir) => {
                let _lock = lock(dir)?;
                let mut state = load(dir)?;
                let result = f(&mut state);
                save(dir, &state)?;
                Ok(result)
            }
        }
    }
}

/// Holds the exclusive lock on `sim.lock` until dropped (closing the file releases it).
struct LockGuard(File);

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock as well; unlocking first makes it prompt.
        let _ = FileExt::unlock(&self.0);
    }
}

fn lock(dir: &Path) -> io::Result<LockGuard> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| at(&path, e))?;
    FileExt::lock_exclusive(&file).map_err(|e| at(&path, e))?;
    Ok(LockGuard(file))
}

fn load(dir: &Path) -> io::Result<SimState> {
    let path = dir.join(STATE_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| at(&path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SimState::default()),
        Err(e) => Err(at(&path, e)),
    }
}

fn save(dir: &Path, state: &SimState) -> io::Result<()> {
    let path = dir.join(STATE_FILE);
    let temporary = dir.join(format!("{STATE_FILE}.tmp"));
    let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| at(&path, e))?;
    bytes.push(b'\n');
    fs::write(&temporary, bytes).map_err(|e| at(&temporary, e))?;
    fs::rename(&temporary, &path).map_err(|e| at(&path, e))
}
