//! Where the desired state is read from: the working tree, or a commit of its git repository.
//!
//! The cluster folder may be a subfolder of a larger repository (like `examples/dataapp`
//! here); paths are then read under that prefix.
//!
//! [`follow`] reads the tip commit of a followed branch, of a local repository or of a remote
//! one that [`remote`] clones and fetches into a cache; `shoal watch` builds on them.

pub mod dir;
pub mod follow;
pub mod publish;
pub mod remote;

pub use dir::DirSource;

use crate::yaml::files::{parent_dir, resolve_path, FileSource};
use git2::{ObjectType, Repository, Status, StatusOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the files could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `--rev` was given but the folder is in no git repository.
    #[error("{0} is not inside a git repository, so --rev cannot be used: run `git init` there, or drop --rev")]
    NotARepository(PathBuf),
    /// The revision does not name a commit.
    #[error("revision {rev} is not a commit of {repo}: {message}. Check `git log` for the commit or branch name")]
    BadRevision {
        /// What was asked.
        rev: String,
        /// The repository.
        repo: PathBuf,
        /// What git said.
        message: String,
    },
    /// The folder does not exist.
    #[error("{0} does not exist or is not a folder: pass the cluster repository with --repo DIR")]
    NoFolder(PathBuf),
    /// git failed.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// The files of one desired state, and the commit they came from.
pub struct Source {
    /// Reads the files.
    pub files: Box<dyn FileSource>,
    /// The commit, when the files are exactly a commit's.
    pub revision: Option<String>,
}

pub use crate::config::{interpolation_vars, OWN_VAR_PREFIX};

/// The environment for `${VAR}` interpolation in compose files: this process's variables but
/// shoal's own (see [`interpolation_vars`]), plus the age identities ([`age_identities`]) under
/// [`crate::config::AGE_KEY_VAR`], which `config::load` takes out before interpolating. The one
/// place the CLI and the watcher read it.
pub fn interpolation_env() -> BTreeMap<String, String> {
    let mut env = interpolation_vars(std::env::vars());
    if let Some(keys) = age_identities() {
        env.insert(crate::config::AGE_KEY_VAR.to_string(), keys);
    }
    if let Some(problem) = unreadable_age_key_file() {
        env.insert(crate::config::AGE_KEY_FILE_VAR.to_string(), problem);
    }
    env
}

/// Why the file `SHOAL_AGE_KEY_FILE` names cannot be read (its path and the system's reason),
/// when it is set and cannot: an encrypted file then says so instead of "no identity is set".
fn unreadable_age_key_file() -> Option<String> {
    let path = std::env::var_os(crate::config::AGE_KEY_FILE_VAR)?;
    let error = std::fs::read(&path).err()?;
    Some(format!("{}: {error}", Path::new(&path).display()))
}

/// The age identities that decrypt encrypted secret and config files: the text of
/// `SHOAL_AGE_KEY` and of the file `SHOAL_AGE_KEY_FILE` names, one after the other. A file that
/// cannot be read, or that others may read ([`KeyFileError::Unprotected`], as ssh refuses an
/// unprotected private key), is ignored with an error naming it (an encrypted file then fails
/// to load, saying which).
pub fn age_identities() -> Option<String> {
    use crate::config::{AGE_KEY_FILE_VAR, AGE_KEY_VAR};
    let mut text: Vec<String> = std::env::var(AGE_KEY_VAR).ok().into_iter().collect();
    if let Some(path) = std::env::var_os(AGE_KEY_FILE_VAR) {
        match read_key_file(Path::new(&path)) {
            Ok(keys) => text.push(keys),
            Err(e) => tracing::error!("{e}"),
        }
    }
    (!text.is_empty()).then(|| text.join("\n"))
}

/// Why the file `SHOAL_AGE_KEY_FILE` names is not used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It cannot be read.
    #[error("cannot read the age identities in {var}={}: {source}", file.display(), var = crate::config::AGE_KEY_FILE_VAR)]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// What reading it said.
        source: std::io::Error,
    },
    /// Its group or others may read or write it.
    #[error("UNPROTECTED AGE KEY FILE: the permissions {mode:04o} of {file} ({var}) let other users read the cluster's age identities, so they are ignored. Run `chmod 600 {file}`", var = crate::config::AGE_KEY_FILE_VAR, file = file.display())]
    Unprotected {
        /// The file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Refuses permission bits `mode` of the key file `file` that give its group or others any
/// access (pure).
pub fn check_key_file_mode(file: &Path, mode: u32) -> Result<(), KeyFileError> {
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(KeyFileError::Unprotected {
            file: file.to_path_buf(),
            mode: mode & 0o7777,
        })
    }
}

/// The text of the key file `file`, when only its owner may read it (on Unix).
fn read_key_file(file: &Path) -> Result<String, KeyFileError> {
    let unreadable = |source| KeyFileError::Unreadable {
        file: file.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file)
            .map_err(unreadable)?
            .permissions()
            .mode();
        check_key_file_mode(file, mode)?;
    }
    std::fs::read_to_string(file).map_err(unreadable)
}

/// The working tree of `dir`; its revision is HEAD's commit when no tracked file under `dir`
/// differs from HEAD, and `None` otherwise (or outside git).
pub fn working_tree(dir: &Path) -> Result<Source, SourceError> {
    if !dir.is_dir() {
        return Err(SourceError::NoFolder(dir.to_path_buf()));
    }
    let revision = match locate(dir) {
        Some((repo, prefix)) => clean_head(&repo, &prefix)?,
        None => None,
    };
    Ok(Source {
        files: Box::new(DirSource(dir.to_path_buf())),
        revision,
    })
}

/// The files of `dir` as they are in commit `rev` (a hash, branch, tag or `HEAD~2`).
pub fn at_revision(dir: &Path, rev: &str) -> Result<Source, SourceError> {
    if !dir.is_dir() {
        return Err(SourceError::NoFolder(dir.to_path_buf()));
    }
    let (repo, prefix) =
        locate(dir).ok_or_else(|| SourceError::NotARepository(dir.to_path_buf()))?;
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| SourceError::BadRevision {
            rev: rev.to_string(),
            repo: dir.to_path_buf(),
            message: e.message().to_string(),
        })?;
    let revision = commit.id().to_string();
    Ok(Source {
        files: Box::new(CommitSource {
            repo_path: repo.path().to_path_buf(),
            commit: revision.clone(),
            prefix,
            name: folder_name(dir),
            repo: Mutex::new(None),
        }),
        revision: Some(revision),
    })
}

/// Most commits [`commits_missing`] lists.
const MISSING_LIMIT: usize = 50;

/// The commits reachable from `applied` (the cluster's applied revision) and not from
/// `planned` (the revision planned; HEAD when `None`) in the repository of `dir`, newest first,
/// as `<short id> <summary>`: what applying `planned` would undo (a stale branch). At most
/// [`MISSING_LIMIT`], then a line saying how many more.
pub fn commits_missing(
    dir: &Path,
    applied: &str,
    planned: Option<&str>,
) -> Result<Vec<String>, SourceError> {
    let (repo, _) = locate(dir).ok_or_else(|| SourceError::NotARepository(dir.to_path_buf()))?;
    let commit_of = |rev: &str| {
        repo.revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| SourceError::BadRevision {
                rev: rev.to_string(),
                repo: dir.to_path_buf(),
                message: format!(
                    "{} (the cluster's applied revision must be in this repository: git fetch it)",
                    e.message()
                ),
            })
    };
    let applied = commit_of(applied)?;
    let planned = commit_of(planned.unwrap_or("HEAD"))?;
    let mut walk = repo.revwalk()?;
    walk.push(applied.id())?;
    walk.hide(planned.id())?;
    let mut lines = Vec::new();
    let mut more = 0usize;
    for id in walk {
        let id = id?;
        if lines.len() == MISSING_LIMIT {
            more += 1;
            continue;
        }
        let commit = repo.find_commit(id)?;
        let short = id.to_string();
        lines.push(format!(
            "{} {}",
            &short[..short.len().min(12)],
            commit.summary().unwrap_or_default()
        ));
    }
    if more > 0 {
        lines.push(format!("and {more} more"));
    }
    Ok(lines)
}

/// The files under `prefix` ('' for the root) of `commit` in the repository at `git_dir` (a
/// `.git` folder or a bare repository); `name` is the default cluster name.
pub fn at_commit(git_dir: &Path, commit: &str, prefix: &str, name: &str) -> Source {
    Source {
        files: Box::new(CommitSource {
            repo_path: git_dir.to_path_buf(),
            commit: commit.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            name: name.to_string(),
            repo: Mutex::new(None),
        }),
        revision: Some(commit.to_string()),
    }
}

pub(crate) fn folder_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "cluster".to_string())
}

/// The repository containing `dir` and the path of `dir` inside its work tree ('' at the root).
pub fn locate(dir: &Path) -> Option<(Repository, String)> {
    if !may_be_in_repository(dir) {
        return None;
    }
    let repo = Repository::discover(dir).ok()?;
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let dir = dir.canonicalize().ok()?;
    let prefix = dir
        .strip_prefix(&workdir)
        .ok()?
        .to_string_lossy()
        .replace('\\', "/");
    Some((repo, prefix))
}

/// Whether `dir` or a folder above it may hold a git repository: a `.git` entry (a folder, or
/// the file of a worktree or submodule), or the layout of a bare repository (`HEAD` and
/// `objects`), the markers git's discovery looks for. Where there is none, git is not asked: its
/// first use starts libgit2, which loads the system's CA certificates for https (tens of
/// milliseconds, every run of a folder outside git).
fn may_be_in_repository(dir: &Path) -> bool {
    let Ok(start) = dir.canonicalize() else {
        return true;
    };
    start.ancestors().any(|folder| {
        folder.join(".git").exists()
            || (folder.join("HEAD").is_file() && folder.join("objects").is_dir())
    })
}

/// HEAD's commit if no tracked file under `prefix` is modified, staged or deleted.
fn clean_head(repo: &Repository, prefix: &str) -> Result<Option<String>, SourceError> {
    let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
        return Ok(None);
    };
    let mut options = StatusOptions::new();
    options.include_untracked(false).include_ignored(false);
    if !prefix.is_empty() {
        options.pathspec(prefix);
    }
    let statuses = repo.statuses(Some(&mut options))?;
    let dirty = statuses
        .iter()
        .any(|s| s.status() != Status::CURRENT && !s.status().contains(Status::IGNORED));
    Ok((!dirty).then(|| head.id().to_string()))
}

/// The git file mode of a symbolic link.
const LINK_MODE: i32 = 0o120_000;
/// How many symbolic links a path may go through.
const MAX_LINKS: usize = 8;

/// Whether the repository path `path` is `prefix` or under it ('' holds everything).
fn within(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Reads files from a commit's tree.
struct CommitSource {
    repo_path: PathBuf,
    commit: String,
    prefix: String,
    name: String,
    /// The repository, opened on the first read and kept for the next ones.
    repo: Mutex<Option<Repository>>,
}

impl FileSource for CommitSource {
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        let to_io = |e: git2::Error| std::io::Error::other(e.message().to_string());
        let mut opened = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let repo = match opened.take() {
            Some(repo) => opened.insert(repo),
            None => opened.insert(Repository::open(&self.repo_path).map_err(to_io)?),
        };
        let oid = git2::Oid::from_str(&self.commit).map_err(to_io)?;
        let tree = repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(to_io)?;
        let mut full = if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        };
        // A committed symbolic link is a blob holding the link's text: followed while it stays
        // in the cluster folder, refused when it leads out, as the working tree refuses it.
        for _ in 0..=MAX_LINKS {
            let Ok(entry) = tree.get_path(Path::new(&full)) else {
                return Ok(None);
            };
            if entry.kind() != Some(ObjectType::Blob) {
                return Ok(None);
            }
            let blob = repo.find_blob(entry.id()).map_err(to_io)?;
            if entry.filemode() != LINK_MODE {
                return Ok(Some(blob.content().to_vec()));
            }
            let target = String::from_utf8_lossy(blob.content()).into_owned();
            full = resolve_path(parent_dir(&full), &target)
                .ok()
                .filter(|inside| within(inside, &self.prefix))
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!("`{path}` is a symbolic link that leads outside the repository (to `{target}`); commit the file itself"),
                    )
                })?;
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("`{path}`: too many levels of symbolic links"),
        ))
    }

    fn root_name(&self) -> String {
        self.name.clone()
    }

    fn read_outside(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        dir::read_local(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, MemSource};

    #[test]
    fn git_is_asked_only_where_a_repository_may_be() {
        let outside = tempfile::tempdir().unwrap();
        let folder = outside.path().join("cluster");
        std::fs::create_dir(&folder).unwrap();
        assert!(!may_be_in_repository(&folder));
        assert!(locate(&folder).is_none());
        git2::Repository::init(outside.path()).unwrap();
        assert!(may_be_in_repository(&folder));
        assert!(locate(&folder).is_some_and(|(_, prefix)| prefix == "cluster"));
        let bare = tempfile::tempdir().unwrap();
        git2::Repository::init_bare(bare.path()).unwrap();
        assert!(may_be_in_repository(bare.path()));
        assert!(
            may_be_in_repository(Path::new("/no/such/folder")),
            "git decides"
        );
    }

    #[test]
    fn a_key_file_others_may_read_is_refused_with_the_fix() {
        let file = Path::new("/keys/cluster.key");
        assert!(check_key_file_mode(file, 0o100600).is_ok());
        assert!(check_key_file_mode(file, 0o100400).is_ok());
        for mode in [0o100644, 0o100640, 0o100604, 0o100660, 0o100666] {
            let err = check_key_file_mode(file, mode).unwrap_err().to_string();
            assert!(err.contains("UNPROTECTED AGE KEY FILE"), "{err}");
            assert!(err.contains("/keys/cluster.key"), "{err}");
            assert!(err.contains("chmod 600 /keys/cluster.key"), "{err}");
            assert!(err.contains(&format!("{:04o}", mode & 0o7777)), "{err}");
        }
    }

    #[test]
    fn interpolation_never_sees_shoal_variables() {
        let process = [
            ("SHOAL_WEBHOOK_SECRET", "hunter2"),
            ("SHOAL_GIT_TOKEN", "ghp_token"),
            ("GREETING", "hello"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = interpolation_vars(process);
        assert_eq!(env.keys().collect::<Vec<_>>(), ["GREETING"]);

        let files = MemSource::new(
            "c",
            [
                ("machines.yml", "cluster: c\ndriver: sim\nmachines:\n  m1: {role: manager}\n"),
                (
                    "docker-compose.yml",
                    "services:\n  web:\n    image: nginx:1.27\n    environment:\n      SECRET: ${SHOAL_WEBHOOK_SECRET}\n      TOKEN: $SHOAL_GIT_TOKEN\n      GREETING: ${GREETING}\n",
                ),
            ],
        );
        let desired = load(&files, &env).unwrap();
        let spec = serde_json::to_string(&desired.stacks).unwrap();
        assert!(
            !spec.contains("hunter2") && !spec.contains("ghp_token"),
            "{spec}"
        );
        assert!(spec.contains("hello"), "{spec}");
    }
}
