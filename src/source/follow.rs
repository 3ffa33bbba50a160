//! Following a branch of a local repository: its tip commit, the files of that commit, and the
//! paths whose changes mean the branch may have moved.
//!
//! Only commits are read, never the work tree, so uncommitted edits are never seen.

use super::{at_commit, folder_name, locate, Source};
use git2::Repository;
use std::path::{Path, PathBuf};

/// The commit at the tip of a followed branch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tip {
    /// The commit's full hash.
    pub commit: String,
    /// The first line of its message.
    pub summary: String,
    /// Its committer time, seconds since the epoch.
    pub time: i64,
}

/// Why a branch could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The folder does not exist.
    #[error("{0} does not exist or is not a folder: pass the cluster repository with --repo DIR")]
    NoFolder(PathBuf),
    /// The folder is in no git repository.
    #[error("{0} is not inside a git repository: `shoal watch` follows commits, so run `git init` and commit the files there, or use --remote URL")]
    NotARepository(PathBuf),
    /// HEAD names no branch and none was given.
    #[error(
        "HEAD of {0} is detached, so there is no checked-out branch to follow: pass --branch NAME"
    )]
    Detached(PathBuf),
    /// The branch has no commit (yet).
    #[error("branch {branch} of {repo} has no commit yet: commit machines.yml on it, or pass the right --branch")]
    NoCommit {
        /// The branch followed.
        branch: String,
        /// The repository (a path or a URL without credentials).
        repo: String,
    },
    /// The remote could not be cloned or fetched.
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// The remote, without credentials.
        url: String,
        /// What git said.
        message: String,
    },
    /// A remote never fetched, because fetching it fails.
    #[error("cannot reach {url}, and nothing was fetched from it before, so there is nothing to apply: {error}. Check the URL, the network and the credentials (SHOAL_GIT_TOKEN for https, SHOAL_GIT_SSH_KEY or the ssh agent for ssh)")]
    Unreachable {
        /// The remote, without credentials.
        url: String,
        /// Why the last fetch failed.
        error: String,
    },
    /// The cache folder could not be made or used.
    #[error("cannot use the cache folder {path}: {message}. Pass another one with --cache DIR")]
    Cache {
        /// The folder.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// git failed.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// `refs/heads/<name>` for a branch given as `name` or as `refs/heads/name`.
pub(crate) fn branch_ref(branch: &str) -> String {
    let name = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    format!("refs/heads/{name}")
}

/// The tip of the reference `name` in `repo`, or [`FollowError::NoCommit`] naming `branch`.
pub(crate) fn tip_of(
    repo: &Repository,
    name: &str,
    branch: &str,
    shown: &str,
) -> Result<Tip, FollowError> {
    let no_commit = || FollowError::NoCommit {
        branch: branch.to_string(),
        repo: shown.to_string(),
    };
    let reference = match repo.find_reference(name) {
        Ok(reference) => reference,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(no_commit()),
        Err(e) => return Err(e.into()),
    };
    let commit = reference.peel_to_commit().map_err(|_| no_commit())?;
    Ok(Tip {
        commit: commit.id().to_string(),
        summary: commit.summary().unwrap_or("").to_string(),
        time: commit.time().seconds(),
    })
}

/// A branch of a repository on this machine.
#[derive(Clone, Debug)]
pub struct LocalBranch {
    dir: PathBuf,
    git_dir: PathBuf,
    common_dir: PathBuf,
    prefix: String,
    name: String,
    branch: String,
}

impl LocalBranch {
    /// Follows `branch` (default: the branch checked out now) of the repository holding `dir`;
    /// `dir` may be a subfolder of the repository's work tree, or a bare repository.
    pub fn open(dir: &Path, branch: Option<&str>) -> Result<LocalBranch, FollowError> {
        if !dir.is_dir() {
            return Err(FollowError::NoFolder(dir.to_path_buf()));
        }
        let (repo, prefix) = match locate(dir) {
            Some(found) => found,
            None => {
                let repo = Repository::open_bare(dir)
                    .map_err(|_| FollowError::NotARepository(dir.to_path_buf()))?;
                (repo, String::new())
            }
        };
        let branch = match branch {
            Some(branch) => branch
                .strip_prefix("refs/heads/")
                .unwrap_or(branch)
                .to_string(),
            None => {
                let head = repo.find_reference("HEAD")?;
                head.symbolic_target()
                    .and_then(|target| target.strip_prefix("refs/heads/"))
                    .map(str::to_string)
                    .ok_or_else(|| FollowError::Detached(dir.to_path_buf()))?
            }
        };
        Ok(LocalBranch {
            dir: dir.to_path_buf(),
            git_dir: repo.path().to_path_buf(),
            common_dir: repo.commondir().to_path_buf(),
            prefix,
            name: folder_name(dir),
            branch,
        })
    }

    /// The branch followed (without `refs/heads/`).
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The cluster folder given.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The commit the branch points at now.
    pub fn tip(&self) -> Result<Tip, FollowError> {
        let repo = Repository::open(&self.git_dir)?;
        tip_of(
            &repo,
            &branch_ref(&self.branch),
            &self.branch,
            &self.dir.display().to_string(),
        )
    }

    /// The files of the cluster folder in `commit`.
    pub fn files(&self, commit: &str) -> Source {
        at_commit(&self.git_dir, commit, &self.prefix, &self.name)
    }

    /// Commits `files` (paths in the cluster folder) on `parent` as shoal and moves the branch
    /// to the commit, only if it still points at `parent`. When the branch is checked out and
    /// a file's working copy is `parent`'s, the working copy and the index follow, so the work
    /// tree does not appear to undo the commit.
    pub fn publish(
        &self,
        parent: &str,
        files: &std::collections::BTreeMap<String, String>,
        message: &str,
    ) -> Result<String, super::publish::PublishError> {
        let repo = Repository::open(&self.git_dir)?;
        let parent = git2::Oid::from_str(parent)?;
        let made = super::publish::commit_files(&repo, parent, &self.prefix, files, message, None)?;
        let reference = branch_ref(&self.branch);
        repo.reference_matching(&reference, made, true, parent, "shoal images")?;
        let checked_out = repo
            .find_reference("HEAD")
            .ok()
            .and_then(|head| head.symbolic_target().map(|t| t == reference))
            .unwrap_or(false);
        if let (true, Some(workdir)) = (checked_out, repo.workdir()) {
            let old = repo.find_commit(parent)?.tree()?;
            let mut index = repo.index()?;
            for (file, text) in files {
                let path = if self.prefix.is_empty() {
                    file.clone()
                } else {
                    format!("{}/{file}", self.prefix)
                };
                let was = old
                    .get_path(Path::new(&path))
                    .and_then(|e| e.to_object(&repo))
                    .ok()
                    .and_then(|o| o.as_blob().map(|b| b.content().to_vec()));
                let full = workdir.join(&path);
                if was.is_some() && std::fs::read(&full).ok() == was {
                    std::fs::write(&full, text)
                        .map_err(|e| git2::Error::from_str(&e.to_string()))?;
                    index.add_path(Path::new(&path))?;
                }
            }
            index.write()?;
        }
        Ok(made.to_string())
    }

    /// The folders to watch for the branch moving: the git folder (HEAD, packed-refs) and, for
    /// a linked work tree, the common one, each without recursion, and `refs/heads` with it.
    pub fn watched(&self) -> Vec<(PathBuf, bool)> {
        let mut paths = vec![(self.git_dir.clone(), false)];
        if self.common_dir != self.git_dir {
            paths.push((self.common_dir.clone(), false));
        }
        paths.push((self.common_dir.join("refs").join("heads"), true));
        paths
    }

    /// Whether a change at `path` can move a branch: HEAD, packed-refs, or under `refs/heads`.
    pub fn moves_branch(&self, path: &Path) -> bool {
        let heads = self.common_dir.join("refs").join("heads");
        if path.starts_with(&heads) {
            return true;
        }
        let in_git_dir = path.parent().is_some_and(|parent| {
            parent == self.git_dir.as_path() || parent == self.common_dir.as_path()
        });
        in_git_dir
            && path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    matches!(
                        name,
                        "HEAD" | "packed-refs" | "HEAD.lock" | "packed-refs.lock"
                    )
                })
    }
}
