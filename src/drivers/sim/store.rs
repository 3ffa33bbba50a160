//! Where the sim keeps its state: in memory, or in `<repo>/.shoal/sim.json`.
//!
//! A file store loads the state once and serves every call from memory. Before a call that
//! finds no unsaved changes it checks, with one `stat`, whether another process replaced the
//! file, and loads it again if so; reads take no lock and never create anything, since the
//! file is only ever replaced whole (a temporary file, synced, renamed over the old one).
//!
//! The first change of a batch takes the exclusive lock on `<repo>/.shoal/sim.lock`, loads the
//! latest file under it and keeps the lock until the batch is saved, so two processes never
//! lose each other's updates: the other one waits for the save, then loads the result. A batch
//! is saved when asked ([`Flush::Now`]), when its changes pause for [`IDLE`] or have waited
//! [`LATEST`] (a background thread), and when the last handle on the store is dropped. A
//! process killed mid-batch leaves the previous file, whole. Handles opened on the same folder
//! within one process share one store.

use super::state::SimState;
use fs4::fs_std::FileExt;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

/// The state file's name inside `.shoal`.
pub(super) const STATE_FILE: &str = "sim.json";
/// The lock file's name inside `.shoal`.
pub(super) const LOCK_FILE: &str = "sim.lock";
/// A batch is saved once no change came for this long.
const IDLE: Duration = Duration::from_millis(25);
/// A batch is saved at the latest this long after its first change, however busy.
const LATEST: Duration = Duration::from_millis(500);

/// When a change reaches the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flush {
    /// Before the call returns: faults injected from outside and the apply lock, which other
    /// processes must see at once.
    Now,
    /// With the rest of its batch.
    Later,
}

/// A shared handle on the sim's state.
#[derive(Clone, Debug)]
pub(super) enum Store {
    /// Kept in this process only.
    Memory(Arc<Mutex<SimState>>),
    /// Kept in files under a `.shoal` folder.
    File(Arc<FileStore>),
}

/// An I/O error that names the file it concerns.
fn at(path: &Path, error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {error}", path.display()))
}

/// Locks a mutex, going on after a panic elsewhere (the state is plain data).
fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// The store over `<dir>/sim.json`: the one this process has open already, or a new one.
    /// Nothing is created until the first change.
    pub(super) fn file(dir: PathBuf) -> Store {
        let dir = match (dir.parent().map(fs::canonicalize), dir.file_name()) {
            (Some(Ok(parent)), Some(name)) => parent.join(name),
            _ => dir,
        };
        static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<FileStore>>>> = OnceLock::new();
        let mut open = guard(OPEN.get_or_init(Mutex::default));
        if let Some(store) = open.get(&dir).and_then(Weak::upgrade) {
            return Store::File(store);
        }
        open.retain(|_, store| store.strong_count() > 0);
        let store = Arc::new(FileStore::new(dir.clone()));
        open.insert(dir, Arc::downgrade(&store));
        Store::File(store)
    }

    /// Runs `f` on the current state without changing it.
    pub(super) fn read<R>(&self, f: impl FnOnce(&SimState) -> R) -> io::Result<R> {
        match self {
            Store::Memory(state) => Ok(f(&guard(state))),
            Store::File(store) => {
                let mut cache = guard(&store.shared.cache);
                if cache.batch.is_none() {
                    store.shared.reload_if_replaced(&mut cache)?;
                }
                Ok(f(&cache.state))
            }
        }
    }

    /// Runs `f` on the current state and keeps what it changed, saved as `flush` says.
    pub(super) fn write<R>(
        &self,
        flush: Flush,
        f: impl FnOnce(&mut SimState) -> R,
    ) -> io::Result<R> {
        match self {
            Store::Memory(state) => Ok(f(&mut guard(state))),
            Store::File(store) => store.write(flush, f),
        }
    }
}

/// What identifies one version of the state file: a save makes a new file (inode) and stamps
/// it with the precise time, so a changed file never compares equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
}

impl Stamp {
    fn of(metadata: &fs::Metadata) -> Stamp {
        Stamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
        }
    }
}

/// Which file the cached state came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Not loaded yet.
    Unread,
    /// There was no file: an empty cluster.
    Missing,
    /// This version of the file.
    File(Stamp),
}

/// Unsaved changes, and the exclusive file lock held since the first of them.
struct Batch {
    _lock: LockGuard,
    started: Instant,
    last_change: Instant,
}

impl Batch {
    /// When the background thread should save it.
    fn due(&self) -> Instant {
        (self.last_change + IDLE).min(self.started + LATEST)
    }
}

/// The state in memory and what it was loaded from.
struct Cache {
    state: SimState,
    source: Source,
    batch: Option<Batch>,
    /// Whether the background saver runs.
    saver: bool,
    /// Set when the store is dropped: the saver stops.
    closed: bool,
}

/// What the store's handles and its background saver share.
struct Shared {
    dir: PathBuf,
    cache: Mutex<Cache>,
    /// Wakes the saver when a batch starts or the store closes.
    wake: Condvar,
}

/// The state of one `.shoal` folder, cached in this process.
pub(super) struct FileStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    fn new(dir: PathBuf) -> FileStore {
        FileStore {
            shared: Arc::new(Shared {
                dir,
                cache: Mutex::new(Cache {
                    state: SimState::default(),
                    source: Source::Unread,
                    batch: None,
                    saver: false,
                    closed: false,
                }),
                wake: Condvar::new(),
            }),
        }
    }

    fn write<R>(&self, flush: Flush, f: impl FnOnce(&mut SimState) -> R) -> io::Result<R> {
        let shared = &self.shared;
        let mut cache = guard(&shared.cache);
        let now = Instant::now();
        if cache.batch.is_none() {
            fs::create_dir_all(&shared.dir).map_err(|e| at(&shared.dir, e))?;
            let lock = lock(&shared.dir)?;
            shared.reload_if_replaced(&mut cache)?;
            cache.batch = Some(Batch {
                _lock: lock,
                started: now,
                last_change: now,
            });
        }
        let result = f(&mut cache.state);
        if let Some(batch) = cache.batch.as_mut() {
            batch.last_change = now;
        }
        match flush {
            Flush::Now => shared.save(&mut cache)?,
            Flush::Later if !cache.saver => {
                cache.saver = true;
                let saver = Arc::clone(shared);
                std::thread::Builder::new()
                    .name("shoal-sim-saver".into())
                    .spawn(move || saver.save_in_background())
                    .map_err(|e| at(&shared.dir, e))?;
            }
            Flush::Later => shared.wake.notify_one(),
        }
        Ok(result)
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        let mut cache = guard(&self.shared.cache);
        if let Err(e) = self.shared.save(&mut cache) {
            tracing::error!("the sim's last changes are lost: {e}");
        }
        cache.closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    /// Loads the file again when another process replaced it since it was last read.
    fn reload_if_replaced(&self, cache: &mut Cache) -> io::Result<()> {
        let path = self.dir.join(STATE_FILE);
        let stamp = match fs::metadata(&path) {
            Ok(metadata) => Source::File(Stamp::of(&metadata)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Source::Missing,
            Err(e) => return Err(at(&path, e)),
        };
        if stamp == cache.source {
            return Ok(());
        }
        match File::open(&path) {
            Ok(mut file) => {
                // The stamp of the file actually read, should it have been replaced again.
                let metadata = file.metadata().map_err(|e| at(&path, e))?;
                let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
                file.read_to_end(&mut bytes).map_err(|e| at(&path, e))?;
                cache.state = serde_json::from_slice(&bytes).map_err(|e| {
                    at(
                        &path,
                        format!("{e}; fix or delete the file (deleting it empties the sim)"),
                    )
                })?;
                cache.source = Source::File(Stamp::of(&metadata));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                cache.state = SimState::default();
                cache.source = Source::Missing;
            }
            Err(e) => return Err(at(&path, e)),
        }
        Ok(())
    }

    /// Writes the pending batch, if any, over the file and releases the file lock.
    fn save(&self, cache: &mut Cache) -> io::Result<()> {
        if cache.batch.is_none() {
            return Ok(());
        }
        let path = self.dir.join(STATE_FILE);
        let temporary = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut bytes = serde_json::to_vec(&cache.state).map_err(|e| at(&path, e))?;
        bytes.push(b'\n');
        let mut file = File::create(&temporary).map_err(|e| at(&temporary, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.set_modified(SystemTime::now()))
            .and_then(|()| file.sync_all())
            .map_err(|e| at(&temporary, e))?;
        drop(file);
        fs::rename(&temporary, &path).map_err(|e| at(&path, e))?;
        let metadata = fs::metadata(&path).map_err(|e| at(&path, e))?;
        cache.source = Source::File(Stamp::of(&metadata));
        cache.batch = None;
        Ok(())
    }

    /// The background saver: saves each batch when it is due, until the store closes.
    fn save_in_background(&self) {
        let mut cache = guard(&self.cache);
        while !cache.closed {
            let wait = match cache.batch.as_ref().map(Batch::due) {
                None => None,
                Some(due) if due <= Instant::now() => match self.save(&mut cache) {
                    Ok(()) => continue,
                    Err(e) => {
                        tracing::warn!("cannot save the sim's state (trying again): {e}");
                        Some(LATEST)
                    }
                },
                Some(due) => Some(due.saturating_duration_since(Instant::now())),
            };
            cache = match wait {
                Some(wait) => {
                    self.wake
                        .wait_timeout(cache, wait)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
                None => self
                    .wake
                    .wait(cache)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
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
