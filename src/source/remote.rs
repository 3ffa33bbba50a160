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
//! secrets, mounted under `/run/secrets`). A user name and password (or token) written into the
//! URL work too, and win over the environment, but are neither stored nor shown: the cache's
//! git config keeps the URL without them ([`without_credentials`]), they reach git only in
//! memory through its credential callback, and every URL shoal prints goes through [`redact`].

use super::follow::{branch_ref, tip_of, FollowError, Tip};
use super::{at_commit, Source};
use git2::{
    AutotagOption, Cred, CredentialType, Direction, FetchOptions, RemoteCallbacks, Repository,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The git config key where the remote's default branch is kept once learnt.
const DEFAULT_BRANCH_KEY: &str = "shoal.defaultbranch";
/// The shortest credential masked in git's messages.
const MASKED_LENGTH: usize = 6;
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

/// A URL without the credentials it may carry, and those credentials (percent-decoded).
#[derive(Clone, PartialEq, Eq)]
pub struct SplitUrl {
    /// What may be stored and shown: for `http(s)://`, the URL without its user name and
    /// password (either may be a token); for other schemes (`ssh://git@…`), without the password.
    pub url: String,
    /// The user name the URL carried.
    pub user: Option<String>,
    /// The password (or token) the URL carried.
    pub password: Option<String>,
}

impl std::fmt::Debug for SplitUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitUrl")
            .field("url", &self.url)
            .field("user", &self.user.as_ref().map(|_| "***"))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Splits the credentials off `url` (see [`SplitUrl`]); scp-like addresses (`git@host:path`)
/// and paths carry none.
pub fn without_credentials(url: &str) -> SplitUrl {
    let unchanged = || SplitUrl {
        url: url.to_string(),
        user: None,
        password: None,
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return unchanged();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return unchanged();
    };
    let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    let user = Some(percent_decode(user)).filter(|u| !u.is_empty());
    let password = password.map(percent_decode);
    let http = matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https");
    let url = match (&user, http) {
        (Some(_), false) => format!("{scheme}://{}@{host}", &userinfo[..user_end(userinfo)]),
        _ => format!("{scheme}://{host}"),
    };
    SplitUrl {
        url,
        user,
        password,
    }
}

/// Where the user name ends in a URL's user information.
fn user_end(userinfo: &str) -> usize {
    userinfo.find(':').unwrap_or(userinfo.len())
}

/// Decodes `%XX` escapes (as in a URL's user name and password); others are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A secret kept in memory only; its `Debug` form hides it.
#[derive(Clone, Default)]
struct InMemory(Option<String>);

impl std::fmt::Debug for InMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(***)"
        } else {
            "None"
        })
    }
}

/// The cache folder for `url` when none is given: `$XDG_CACHE_HOME/shoal/<hash>`, else
/// `$HOME/.cache/shoal/<hash>`, else under the system's temporary folder. The hash is of the
/// URL without credentials, so that no password can be guessed back from it.
pub fn default_cache_dir(url: &str) -> PathBuf {
    let stored = without_credentials(url).url;
    let digest = hex::encode(Sha256::digest(stored.as_bytes()));
    cache_root().join(&digest[..16])
}

/// shoal's cache folder: `$XDG_CACHE_HOME/shoal`, else `$HOME/.cache/shoal`, else `shoal`
/// under the system's temporary folder.
pub fn cache_root() -> PathBuf {
    xdg_dir("XDG_CACHE_HOME", ".cache").join("shoal")
}

/// An XDG base folder: the variable `var` when set, else `home_relative` under `$HOME`, else
/// the temporary folder.
pub fn xdg_dir(var: &str, home_relative: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(home_relative))
        })
        .unwrap_or_else(std::env::temp_dir)
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
    /// The URL without credentials: what the cache's git config holds.
    url: String,
    /// The URL as shown: credentials masked.
    shown: String,
    /// The user name the URL carried, in memory only.
    user: InMemory,
    /// The password or token the URL carried, in memory only.
    password: InMemory,
    /// Why the last fetch failed (shared by the clones that fetch and read the tip).
    last_fetch_error: Arc<Mutex<Option<String>>>,
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
        let split = without_credentials(url);
        RemoteBranch {
            url: split.url,
            shown: redact(url),
            user: InMemory(split.user),
            password: InMemory(split.password),
            last_fetch_error: Arc::default(),
            cache: cache.to_path_buf(),
            branch: branch.map(|b| b.strip_prefix("refs/heads/").unwrap_or(b).to_string()),
            prefix,
            name,
        }
    }

    /// The URL without credentials.
    pub fn shown_url(&self) -> String {
        self.shown.clone()
    }

    /// The cache folder.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    fn git_dir(&self) -> PathBuf {
        self.cache.join("repo.git")
    }

    fn fetch_error(&self, error: &git2::Error) -> FollowError {
        let mut message = error.message().replace(&self.url, &self.shown);
        // git never sees the credentials in a URL, so they should not be in its messages;
        // masked anyway, the password or the token given as the user name (a plain user
        // name, or a very short value, would mask ordinary words rather than a secret).
        let token = self.password.0.as_ref().or(self.user.0.as_ref());
        if let Some(secret) = token.filter(|secret| secret.len() >= MASKED_LENGTH) {
            message = message.replace(secret.as_str(), "***");
        }
        FollowError::Fetch {
            url: self.shown_url(),
            message,
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
    /// was given). A failure is remembered, so that [`RemoteBranch::tip`] of a remote never
    /// fetched says it is unreachable rather than empty.
    pub fn fetch(&self) -> Result<(), FollowError> {
        let fetched = self.try_fetch();
        *self
            .last_fetch_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            fetched.as_ref().err().map(|e| match e {
                FollowError::Fetch { message, .. } => message.clone(),
                other => other.to_string(),
            });
        fetched
    }

    fn try_fetch(&self) -> Result<(), FollowError> {
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
            .remote_callbacks(self.callbacks())
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
            .connect_auth(Direction::Fetch, Some(self.callbacks()), None)
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

    /// The commit the branch pointed at when last fetched; [`FollowError::Unreachable`] when
    /// it was never fetched because the last fetch failed.
    pub fn tip(&self) -> Result<Tip, FollowError> {
        let tip = self.fetched_tip();
        if let Err(FollowError::NoCommit { .. }) = &tip {
            let failed = self
                .last_fetch_error
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            if let Some(error) = failed {
                return Err(FollowError::Unreachable {
                    url: self.shown_url(),
                    error,
                });
            }
        }
        tip
    }

    fn fetched_tip(&self) -> Result<Tip, FollowError> {
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

impl RemoteBranch {
    /// Commits `files` (paths in the cluster folder) on `parent` as shoal and pushes the commit
    /// to the branch (a fast-forward only); the cache's copy of the branch then points at it.
    pub fn publish(
        &self,
        parent: &str,
        files: &std::collections::BTreeMap<String, String>,
        message: &str,
    ) -> Result<String, super::publish::PublishError> {
        let repo = Repository::open_bare(self.git_dir())?;
        let branch = self.branch().ok_or_else(|| {
            git2::Error::from_str("the remote's branch is not known yet (nothing was fetched)")
        })?;
        let parent = git2::Oid::from_str(parent)?;
        let made = super::publish::commit_files(&repo, parent, &self.prefix, files, message, None)?;
        super::publish::push_with(
            &repo,
            &self.url,
            self.user.0.clone(),
            self.password.0.clone(),
            made,
            &branch,
        )?;
        repo.reference(&tracking_ref(&branch), made, true, "shoal images")?;
        Ok(made.to_string())
    }
}

fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
}

impl RemoteBranch {
    /// Credentials, in memory only: those of the URL, else from the environment (a token for
    /// https, a key or the agent for ssh).
    fn callbacks<'a>(&self) -> RemoteCallbacks<'a> {
        callbacks(self.user.0.clone(), self.password.0.clone())
    }
}

/// Credentials: `url_user` and `url_password` (from the URL) first, else from the environment.
pub(crate) fn callbacks<'a>(
    url_user: Option<String>,
    url_password: Option<String>,
) -> RemoteCallbacks<'a> {
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
            let user = || {
                url_user
                    .clone()
                    .or_else(|| std::env::var("SHOAL_GIT_USERNAME").ok())
                    .or_else(|| username.map(str::to_string))
                    .unwrap_or_else(|| "x-access-token".to_string())
            };
            if let Some(password) = &url_password {
                return Cred::userpass_plaintext(&user(), password);
            }
            if let Some(token) = env_secret("SHOAL_GIT_TOKEN") {
                return Cred::userpass_plaintext(&user(), &token);
            }
            if let Some(token_as_user) = &url_user {
                // `https://<token>@host/…`: the forges take a token as the user name.
                return Cred::userpass_plaintext(token_as_user, "");
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
    fn credentials_are_split_off_the_stored_url() {
        let split = without_credentials("https://user:s3cret%40x@example.com:8443/org/r.git");
        assert_eq!(split.url, "https://example.com:8443/org/r.git");
        assert_eq!(split.user.as_deref(), Some("user"));
        assert_eq!(split.password.as_deref(), Some("s3cret@x"));
        assert!(!format!("{split:?}").contains("s3cret"));
        let token = without_credentials("https://ghp_token@github.com/o/r.git");
        assert_eq!(token.url, "https://github.com/o/r.git");
        assert_eq!(
            (token.user.as_deref(), token.password),
            (Some("ghp_token"), None)
        );
        let ssh = without_credentials("ssh://git:pw@example.com/o/r.git");
        assert_eq!(ssh.url, "ssh://git@example.com/o/r.git");
        assert_eq!(ssh.password.as_deref(), Some("pw"));
        for plain in [
            "git@example.com:o/r.git",
            "/srv/r.git",
            "https://h/a@b/r.git",
        ] {
            assert_eq!(without_credentials(plain).url, plain);
        }
        let remote = RemoteBranch::new(
            "https://user:s3cret@127.0.0.1:9/x.git",
            Path::new("/tmp/c"),
            None,
            "",
        );
        assert!(!format!("{remote:?}").contains("s3cret"));
        assert_eq!(remote.shown_url(), "https://***@127.0.0.1:9/x.git");
        assert_eq!(
            default_cache_dir("https://user:s3cret@h/x.git"),
            default_cache_dir("https://h/x.git")
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
