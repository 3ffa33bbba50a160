//! Registry credentials from the docker config of the user running shoal, as the docker CLI
//! finds them: `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`); a registry's
//! `credHelpers` entry, else the `credsStore`, runs `docker-credential-<helper> get`; else the
//! plain `auths` entry (`auth` is base64 of `user:password`, or an `identitytoken`).
//!
//! Credentials never reach output: [`Credentials`] prints as `<redacted>`.

use crate::model::reference::{Reference, DOCKER_HUB};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The key Docker Hub's credentials are stored under.
pub(crate) const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name (empty with an identity token).
    pub username: String,
    /// Password.
    pub password: String,
    /// An identity (refresh) token, instead of a password.
    pub identity_token: Option<String>,
    /// The registry the credentials are for, as the docker config names it.
    pub server: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}: <redacted>)", self.server)
    }
}

impl Credentials {
    /// The value of `Authorization: Basic …` for these credentials.
    pub fn basic(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password))
    }

    /// The credentials as bollard sends them in `X-Registry-Auth`.
    pub fn to_bollard(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: (!self.username.is_empty()).then(|| self.username.clone()),
            password: (!self.password.is_empty()).then(|| self.password.clone()),
            serveraddress: Some(self.server.clone()),
            identitytoken: self.identity_token.clone(),
            ..Default::default()
        }
    }
}

/// The parts of `config.json` that hold credentials.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DockerConfig {
    /// Credentials stored in the file, by registry.
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    /// The helper for every registry.
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
    /// Helpers by registry.
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: BTreeMap<String, String>,
}

/// One `auths` entry.
#[derive(Clone, Default, Deserialize)]
pub struct AuthEntry {
    /// base64 of `user:password`.
    #[serde(default)]
    pub auth: Option<String>,
    /// A user name written apart.
    #[serde(default)]
    pub username: Option<String>,
    /// A password written apart.
    #[serde(default)]
    pub password: Option<String>,
    /// An identity token.
    #[serde(default)]
    pub identitytoken: Option<String>,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

/// What a credential helper answers.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl DockerConfig {
    /// The docker config of this user: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`;
    /// empty when there is none or it cannot be read (a warning then).
    pub fn load() -> DockerConfig {
        let Some(path) = config_path() else {
            return DockerConfig::default();
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DockerConfig::default(),
            Err(e) => {
                tracing::warn!("cannot read the docker config {}: {e}", path.display());
                return DockerConfig::default();
            }
        };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(
                "the docker config {} is not valid JSON: {e}",
                path.display()
            );
            DockerConfig::default()
        })
    }

    /// The credentials for the registry of `reference`, if any.
    pub fn credentials(&self, reference: &Reference) -> Option<Credentials> {
        let keys = config_keys(&reference.domain);
        let helper = keys
            .iter()
            .find_map(|k| self.cred_helpers.get(k))
            .or(self.creds_store.as_ref());
        if let Some(helper) = helper {
            if let Some(found) = keys.iter().find_map(|k| from_helper(helper, k)) {
                return Some(found);
            }
        }
        keys.iter()
            .find_map(|k| self.auths.get(k).and_then(|e| from_entry(e, k)))
    }
}

/// The names a registry's credentials may be stored under: the host, with or without a
/// scheme; Docker Hub's historic index URL.
fn config_keys(domain: &str) -> Vec<String> {
    if domain == DOCKER_HUB {
        return vec![
            DOCKER_HUB_KEY.to_string(),
            "index.docker.io".to_string(),
            DOCKER_HUB.to_string(),
        ];
    }
    vec![
        domain.to_string(),
        format!("https://{domain}"),
        format!("http://{domain}"),
    ]
}

fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
        }
    }
}

/// Credentials from an `auths` entry.
pub(crate) fn from_entry(entry: &AuthEntry, server: &str) -> Option<Credentials> {
    let mut credentials = Credentials {
        server: server.to_string(),
        identity_token: entry.identitytoken.clone().filter(|t| !t.is_empty()),
        ..Credentials::default()
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        credentials.username = user.to_string();
        credentials.password = password.to_string();
    } else {
        credentials.username = entry.username.clone().unwrap_or_default();
        credentials.password = entry.password.clone().unwrap_or_default();
    }
    let empty = credentials.username.is_empty()
        && credentials.password.is_empty()
        && credentials.identity_token.is_none();
    (!empty).then_some(credentials)
}

/// Asks `docker-credential-<helper>` for the credentials of `server`.
fn from_helper(helper: &str, server: &str) -> Option<Credentials> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| tracing::warn!("cannot run the credential helper {program}: {e}"))
        .ok()?;
    child.stdin.take()?.write_all(server.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).ok()?;
    Some(if answer.username == "<token>" {
        Credentials {
            identity_token: Some(answer.secret),
            server: server.to_string(),
            ..Credentials::default()
        }
    } else {
        Credentials {
            username: answer.username,
            password: answer.secret,
            identity_token: None,
            server: server.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plain_auths_are_found_by_host_or_url() {
        let c = config(
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpodW50ZXIy"},
                          "127.0.0.1:5000": {"username": "ci", "password": "pw"},
                          "https://ghcr.io": {"identitytoken": "tok"}}}"#,
        );
        let hub = c.credentials(&Reference::parse("nginx").unwrap()).unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "hunter2")
        );
        assert_eq!(hub.server, DOCKER_HUB_KEY);
        let local = c
            .credentials(&Reference::parse("127.0.0.1:5000/app:1").unwrap())
            .unwrap();
        assert_eq!(local.basic(), "Y2k6cHc=");
        let ghcr = c
            .credentials(&Reference::parse("ghcr.io/o/app").unwrap())
            .unwrap();
        assert_eq!(ghcr.identity_token.as_deref(), Some("tok"));
        assert!(c
            .credentials(&Reference::parse("quay.io/o/app").unwrap())
            .is_none());
        assert!(!format!("{hub:?}").contains("hunter2"));
    }

    #[test]
    fn a_missing_helper_falls_back_to_auths() {
        let c = config(
            r#"{"credsStore": "shoal-test-missing", "auths": {"r.example": {"auth": "YTpi"}}}"#,
        );
        let found = c
            .credentials(&Reference::parse("r.example/app").unwrap())
            .unwrap();
        assert_eq!(found.username, "a");
    }
}
