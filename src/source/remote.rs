//! A remote repository followed at a branch: fetched into a bare repository in a cache folder,
//! read only through its commits.
//!
//! Credentials come from the environment, never from files shoal writes:
//! - https: `SHOAL_GIT_TOKEN` (a personal access or deploy token), sent as the password of
//!   `SHOAL_GIT_USERNAME` (default `x-access-token`, which GitHub wants for app tokens; GitLab and
//!   Gitea take any user name with a token);
//! - ssh: the key in `SHOAL_GIT_SSH_KEY` (with `SHOAL_GIT_SSH_PASSPHRASE` if it has one), else
//!   the ssh agent, else `~/.ssh/id_ed25519`, `~/.ssh/id_ecdsa`, `~/.ssh/id_rsa`. The host must be
//!   in `~/.ssh/known_hosts`.
//!
//! Each of these may instead name a file holding the value, as `<NAME>_FILE` (for swarm
//! secrets, mounted under `/run/secrets`). A token written into the URL works too, but is
//! shown nowhere: every URL shoal prints goes through [`redact`].

use super::follow::{branch_ref, tip_of, FollowError, Tip};
use super::{at_commit, Source};
use git2::{
    AutotagOption, Cred, CredentialType, Direction, FetchOptions, RemoteCallbacks, Repository,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The git config key where the remote's default branch is kept once learnt.
const DEFAULT_BRANCH_KEY: &str = "shoal.defaultbranch";
/// Credential callbacks answered before giving up (libgit2 asks again after each refusal).
const CREDENTIAL_TRIES: usize = 6;

/// A secret from the environment: the variable `name`, else the file named by `<name>_FILE`
/// (its trailing newline dropped). Empty values count as unset.
pub fn env_secret(name: &str) -> Option<String> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(value);
    }
    let file = std::env::var_os(format!("{name}_FILE"))?;
    match std::fs::read_to_string(&file) {
        Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_string()).filter(|v| !v.is_empty()),
        Err(e) => {
            tracing::warn!(
                "cannot read {name}_FILE ({}): {e}",
                Path::new(&file).display()
            );
            None
        }
    }
}

/// The URL without the user name and password it may carry.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The cache folder for `url` when none is given: `$XDG_CACHE_HOME/shoal/<hash>`, else
/// `$HOME/.cache/shoal/<hash>`, else under the system's temporary folder.
pub fn default_cache_dir(url: &str) -> PathBuf {
    let digest = hex::encode(Sha256::digest(url.as_bytes()));
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("shoal").join(&digest[..16])
}

/// The repository's name in its URL (`https://host/org/cluster.git` → `cluster`).
fn name_in_url(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .map(|last| last.trim_end_matches(".git"))
        .filter(|name| !name.is_empty())
        .unwrap_or("cluster")
        .to_string()
}

/// A branch of a remote repository, fetched into `<cache>/repo.git`.
#[derive(Clone, Debug)]
pub struct RemoteBranch {
    url: String,
    cache: PathBuf,
    branch: Option<String>,
    prefix: String,
    name: String,
}

impl RemoteBranch {
    /// Follows `branch` (default: the remote's default branch) of `url`, reading the cluster
    /// from the folder `path` of the repository ('' for its root). Nothing is fetched yet.
    pub fn new(url: &str, cache: &Path, branch: Option<&str>, path: &str) -> RemoteBranch {
        let prefix = path.trim_matches('/').to_string();
        let name = match prefix.rsplit('/').next() {
            Some(last) if !last.is_empty() && last != "." => last.to_string(),
            _ => name_in_url(url),
        };
        RemoteBranch {
            url: url.to_string(),
            cache: cache.to_path_buf(),
            branch: branch.map(|b| b.strip_prefix("refs/heads/").unwrap_or(b).to_string()),
            prefix,
            name,
        }
    }

    /// The URL without credentials.
    pub fn shown_url(&self) -> String {
        redact(&self.url)
    }

    /// The cache folder.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    fn git_dir(&self) -> PathBuf {
        self.cache.join("repo.git")
    }

    fn fetch_error(&self, error: &git2::Error) -> FollowError {
        FollowError::Fetch {
            url: self.shown_url(),
            message: error.message().replace(&self.url, &self.shown_url()),
        }
    }

    /// The cached repository, made (empty, with the remote `origin`) when missing or when it
    /// follows another URL.
    fn open_or_init(&self) -> Result<Repository, FollowError> {
        let git_dir = self.git_dir();
        let cache_error = |message: String| FollowError::Cache {
            path: self.cache.clone(),
            message,
        };
        if let Ok(repo) = Repository::open_bare(&git_dir) {
            let same = repo
                .find_remote("origin")
                .ok()
                .and_then(|r| r.url().map(|u| u == self.url))
                .unwrap_or(false);
            if same {
                return Ok(repo);
            }
            std::fs::remove_dir_all(&git_dir).map_err(|e| cache_error(e.to_string()))?;
        } else if git_dir.exists() {
            std::fs::remove_dir_all(&git_dir).map_err(|e| cache_error(e.to_string()))?;
        }
        std::fs::create_dir_all(&self.cache).map_err(|e| cache_error(e.to_string()))?;
        let repo = Repository::init_bare(&git_dir).map_err(|e| cache_error(e.to_string()))?;
        repo.remote("origin", &self.url)?;
        Ok(repo)
    }

    /// The branch followed: the one given, else the remote's default branch as last learnt.
    pub fn branch(&self) -> Option<String> {
        if let Some(branch) = &self.branch {
            return Some(branch.clone());
        }
        let repo = Repository::open_bare(self.git_dir()).ok()?;
        let config = repo.config().ok()?;
        config.get_string(DEFAULT_BRANCH_KEY).ok()
    }

    /// Fetches the branch (cloning on first use, and learning the default branch when none
    /// was given).
    pub fn fetch(&self) -> Result<(), FollowError> {
        let repo = self.open_or_init()?;
        let branch = match self.branch() {
            Some(branch) => branch,
            None => {
                let learnt = self.default_branch(&repo)?;
                repo.config()?.set_str(DEFAULT_BRANCH_KEY, &learnt)?;
                learnt
            }
        };
        let mut remote = repo.find_remote("origin")?;
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks())
            .download_tags(AutotagOption::None);
        let refspec = format!("+{}:{}", branch_ref(&branch), tracking_ref(&branch));
        remote
            .fetch(&[refspec.as_str()], Some(&mut options), None)
            .map_err(|e| self.fetch_error(&e))
    }

    /// Asks the remote which branch its HEAD names.
    fn default_branch(&self, repo: &Repository) -> Result<String, FollowError> {
        let mut remote = repo.find_remote("origin")?;
        remote
            .connect_auth(Direction::Fetch, Some(callbacks()), None)
            .map_err(|e| self.fetch_error(&e))?;
        let name = remote
            .default_branch()
            .map_err(|e| self.fetch_error(&e))?
            .as_str()
            .map(|s| s.strip_prefix("refs/heads/").unwrap_or(s).to_string())
            .ok_or_else(|| FollowError::Fetch {
                url: self.shown_url(),
                message: "the remote's HEAD is not a UTF-8 branch name".to_string(),
            })?;
        remote.disconnect()?;
        Ok(name)
    }

    /// The commit the branch pointed at when last fetched.
    pub fn tip(&self) -> Result<Tip, FollowError> {
        let shown = self.shown_url();
        let no_commit = |branch: &str| FollowError::NoCommit {
            branch: branch.to_string(),
            repo: shown.clone(),
        };
        let branch = self.branch().ok_or_else(|| no_commit("(default)"))?;
        let repo = Repository::open_bare(self.git_dir()).map_err(|_| no_commit(&branch))?;
        tip_of(&repo, &tracking_ref(&branch), &branch, &shown)
    }

    /// The files of the cluster folder in `commit`.
    pub fn files(&self, commit: &str) -> Source {
        at_commit(&self.git_dir(), commit, &self.prefix, &self.name)
    }
}

fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
}

/// Credentials from the environment: a token for https, a key or the agent for ssh.
fn callbacks<'a>() -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let mut tries = 0usize;
    let mut agent_tried = false;
    let mut keys: Vec<PathBuf> = ssh_keys();
    callbacks.credentials(move |_url, username, allowed| {
        tries += 1;
        if tries > CREDENTIAL_TRIES {
            return Err(git2::Error::from_str(
                "authentication failed: check SHOAL_GIT_TOKEN (https) or the ssh key (SHOAL_GIT_SSH_KEY, the agent, ~/.ssh)",
            ));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(token) = env_secret("SHOAL_GIT_TOKEN") {
                let user = std::env::var("SHOAL_GIT_USERNAME")
                    .ok()
                    .or_else(|| username.map(str::to_string))
                    .unwrap_or_else(|| "x-access-token".to_string());
                return Cred::userpass_plaintext(&user, &token);
            }
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            let user = username.unwrap_or("git");
            if !agent_tried && std::env::var_os("SHOAL_GIT_SSH_KEY").is_none() {
                agent_tried = true;
                if std::env::var_os("SSH_AUTH_SOCK").is_some() {
                    return Cred::ssh_key_from_agent(user);
                }
            }
            if let Some(key) = keys.pop() {
                let passphrase = env_secret("SHOAL_GIT_SSH_PASSPHRASE");
                return Cred::ssh_key(user, None, &key, passphrase.as_deref());
            }
        }
        if allowed.contains(CredentialType::DEFAULT) {
            return Cred::default();
        }
        Err(git2::Error::from_str(
            "the remote wants credentials: set SHOAL_GIT_TOKEN for https, or give an ssh key (SHOAL_GIT_SSH_KEY, the agent, ~/.ssh)",
        ))
    });
    callbacks
}

/// The ssh private keys to try, the last one first.
fn ssh_keys() -> Vec<PathBuf> {
    if let Some(key) = std::env::var_os("SHOAL_GIT_SSH_KEY") {
        return vec![PathBuf::from(key)];
    }
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    let ssh = PathBuf::from(home).join(".ssh");
    ["id_rsa", "id_ecdsa", "id_ed25519"]
        .iter()
        .map(|name| ssh.join(name))
        .filter(|path| path.is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("https://user:token@example.com/org/repo.git"),
            "https://***@example.com/org/repo.git"
        );
        assert_eq!(
            redact("https://example.com/a@b/repo.git"),
            "https://example.com/a@b/repo.git"
        );
        assert_eq!(redact("/srv/git/cluster.git"), "/srv/git/cluster.git");
        assert_eq!(
            redact("ssh://git@example.com/org/r.git"),
            "ssh://***@example.com/org/r.git"
        );
    }

    #[test]
    fn names_come_from_the_path_or_the_url() {
        let cache = Path::new("/tmp/cache");
        let r = RemoteBranch::new("https://example.com/org/prod-cluster.git", cache, None, "");
        assert_eq!(r.name, "prod-cluster");
        let r = RemoteBranch::new("git@example.com:org/infra.git", cache, None, "clusters/eu/");
        assert_eq!((r.name.as_str(), r.prefix.as_str()), ("eu", "clusters/eu"));
        let r = RemoteBranch::new("file:///srv/git/dataapp/", cache, Some("refs/heads/x"), "");
        assert_eq!(
            (r.name.as_str(), r.branch.as_deref()),
            ("dataapp", Some("x"))
        );
    }

    #[test]
    fn cache_folders_differ_by_url() {
        assert_ne!(
            default_cache_dir("https://a/x.git"),
            default_cache_dir("https://a/y.git")
        );
        assert!(default_cache_dir("https://a/x.git")
            .ends_with(&hex::encode(Sha256::digest(b"https://a/x.git"))[..16]));
    }
}
