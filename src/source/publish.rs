//! Writing changed files into git as `shoal` and pushing them (image policies, DESIGN §9): a
//! commit made from its parent's tree with only the changed files replaced, in a work tree's
//! repository or in the watcher's bare cache, and a push with the credentials `watch --remote`
//! uses (the URL's, else `SHOAL_GIT_TOKEN` or an ssh key; nothing stored).

use super::remote::{callbacks, redact, without_credentials};
use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, PushOptions, Repository, Signature};
use std::collections::BTreeMap;

/// The name and e-mail shoal's commits carry.
pub const AUTHOR: (&str, &str) = ("shoal", "shoal@localhost");

/// Why a commit or push failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// git failed.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// The remote refused the pushed reference (e.g. the branch moved meanwhile).
    #[error("{url} refused the push of {reference}: {message}; fetch, then run the update again")]
    Refused {
        /// The remote, without credentials.
        url: String,
        /// The reference pushed.
        reference: String,
        /// What the remote said.
        message: String,
    },
    /// The push could not be made.
    #[error("cannot push to {url}: {message}. Check the credentials (SHOAL_GIT_TOKEN for https, SHOAL_GIT_SSH_KEY or the ssh agent for ssh)")]
    Push {
        /// The remote, without credentials.
        url: String,
        /// What git said.
        message: String,
    },
}

/// Makes a commit whose parent is `parent` and whose tree is the parent's with the `files`
/// (paths under `prefix`) replaced, authored and committed by [`AUTHOR`]; moves `update_ref`
/// (e.g. `HEAD`) to it when given. A file keeps its mode (an executable stays executable).
pub fn commit_files(
    repo: &Repository,
    parent: Oid,
    prefix: &str,
    files: &BTreeMap<String, String>,
    message: &str,
    update_ref: Option<&str>,
) -> Result<Oid, PublishError> {
    let parent = repo.find_commit(parent)?;
    let base = parent.tree()?;
    let mut builder = TreeUpdateBuilder::new();
    for (file, text) in files {
        let path = if prefix.is_empty() {
            file.clone()
        } else {
            format!("{}/{file}", prefix.trim_end_matches('/'))
        };
        let mode = match base.get_path(std::path::Path::new(&path)) {
            Ok(entry) if entry.filemode() == i32::from(FileMode::BlobExecutable) => {
                FileMode::BlobExecutable
            }
            _ => FileMode::Blob,
        };
        let blob = repo.blob(text.as_bytes())?;
        builder.upsert(&path, blob, mode);
    }
    let tree = repo.find_tree(builder.create_updated(repo, &base)?)?;
    let signature = Signature::now(AUTHOR.0, AUTHOR.1)?;
    Ok(repo.commit(
        update_ref,
        &signature,
        &signature,
        message,
        &tree,
        &[&parent],
    )?)
}

/// Pushes `commit` to the branch `branch` of the remote at `url` (credentials in the URL are
/// used in memory only; else the environment's, as `watch --remote` takes them). Only a
/// fast-forward is pushed: a branch that moved meanwhile refuses it.
pub fn push(repo: &Repository, url: &str, commit: Oid, branch: &str) -> Result<(), PublishError> {
    let split = without_credentials(url);
    push_with(repo, &split.url, split.user, split.password, commit, branch)
}

/// [`push`] to `url` (without credentials) with the `user` and `password` kept in memory.
pub fn push_with(
    repo: &Repository,
    url: &str,
    user: Option<String>,
    password: Option<String>,
    commit: Oid,
    branch: &str,
) -> Result<(), PublishError> {
    let shown = redact(url);
    let reference = format!("refs/heads/{branch}");
    let mut remote = repo.remote_anonymous(url)?;
    let refused: std::rc::Rc<std::cell::RefCell<Option<String>>> = Default::default();
    let mut calls = callbacks(user, password);
    let seen = refused.clone();
    calls.push_update_reference(move |_, status| {
        if let Some(message) = status {
            *seen.borrow_mut() = Some(message.to_string());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(calls);
    remote
        .push(&[format!("{commit}:{reference}")], Some(&mut options))
        .map_err(|e| PublishError::Push {
            url: shown.clone(),
            message: e.message().to_string(),
        })?;
    let refused = refused.borrow_mut().take();
    match refused {
        Some(message) => Err(PublishError::Refused {
            url: shown,
            reference,
            message,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Repository, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let mut builder = TreeUpdateBuilder::new();
        let empty = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        for (path, text) in files {
            let blob = repo.blob(text.as_bytes()).unwrap();
            builder.upsert(*path, blob, FileMode::Blob);
        }
        let tree = repo
            .find_tree(builder.create_updated(&repo, &empty).unwrap())
            .unwrap();
        let who = Signature::now("t", "t@localhost").unwrap();
        let first = repo
            .commit(Some("HEAD"), &who, &who, "first", &tree, &[])
            .unwrap();
        drop(tree);
        drop(empty);
        (dir, repo, first)
    }

    #[test]
    fn a_commit_replaces_only_the_changed_files_and_is_shoals() {
        let (_dir, repo, first) = repo_with(&[
            ("cluster/docker-compose.yml", "image: a:1\n"),
            ("cluster/machines.yml", "machines: {}\n"),
            ("README", "x\n"),
        ]);
        let files = [("docker-compose.yml".to_string(), "image: a:2\n".to_string())].into();
        let made = commit_files(
            &repo,
            first,
            "cluster",
            &files,
            "images: a 1 → 2",
            Some("HEAD"),
        )
        .unwrap();
        let commit = repo.find_commit(made).unwrap();
        assert_eq!(commit.author().name(), Some("shoal"));
        assert_eq!(commit.message(), Some("images: a 1 → 2"));
        assert_eq!(commit.parent_id(0).unwrap(), first);
        let before = repo.find_commit(first).unwrap().tree().unwrap();
        let diff = repo
            .diff_tree_to_tree(Some(&before), Some(&commit.tree().unwrap()), None)
            .unwrap();
        let changed: Vec<String> = diff
            .deltas()
            .map(|d| d.new_file().path().unwrap().display().to_string())
            .collect();
        assert_eq!(changed, ["cluster/docker-compose.yml"]);
        assert_eq!(repo.head().unwrap().target(), Some(made));
    }

    #[test]
    fn a_push_that_is_not_a_fast_forward_is_refused() {
        let (_dir, repo, first) = repo_with(&[("a", "1\n")]);
        let bare_dir = tempfile::tempdir().unwrap();
        Repository::init_bare(bare_dir.path()).unwrap();
        let url = bare_dir.path().display().to_string();
        let files = [("a".to_string(), "2\n".to_string())].into();
        let second = commit_files(&repo, first, "", &files, "two", None).unwrap();
        push(&repo, &url, second, "main").unwrap();
        let bare = Repository::open_bare(bare_dir.path()).unwrap();
        assert_eq!(bare.refname_to_id("refs/heads/main").unwrap(), second);
        // A sibling of `second` (the branch moved meanwhile) is not pushed over it.
        let other = [("a".to_string(), "3\n".to_string())].into();
        let sibling = commit_files(&repo, first, "", &other, "three", None).unwrap();
        let error = push(&repo, &url, sibling, "main").unwrap_err();
        assert!(
            matches!(
                error,
                PublishError::Refused { .. } | PublishError::Push { .. }
            ),
            "{error}"
        );
        assert_eq!(bare.refname_to_id("refs/heads/main").unwrap(), second);
    }
}
