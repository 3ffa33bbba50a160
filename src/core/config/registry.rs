//! `driver_options.registry` of the dind driver, as machines.yml writes it: the port of the
//! cluster's own registry and its optional htpasswd file. Read here, so that validation can
//! check it; the driver (`drivers::dind::registry`) runs the registry.

use std::path::{Path, PathBuf};

/// The host port when `registry: true` names none.
pub const DEFAULT_REGISTRY_PORT: u16 = 5000;

/// `driver_options.registry`: the cluster's own registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryOptions {
    /// The port on the host's 127.0.0.1, and on every node's: images are named
    /// `localhost:<port>/…`.
    pub port: u16,
    /// An htpasswd file (bcrypt entries, `htpasswd -B`) that turns on basic authentication.
    pub htpasswd: Option<PathBuf>,
    /// The repository folder a relative `htpasswd` was written against: the file must stay
    /// inside it (symlinks followed).
    pub repository: Option<PathBuf>,
}

impl RegistryOptions {
    /// A registry on `port` without authentication.
    pub fn on_port(port: u16) -> RegistryOptions {
        RegistryOptions {
            port,
            htpasswd: None,
            repository: None,
        }
    }

    /// A registry on `port` whose htpasswd file is `htpasswd` as written: a relative path is
    /// taken from `base` (the repository folder), and must stay inside it.
    pub fn at(port: u16, htpasswd: Option<&str>, base: &Path) -> RegistryOptions {
        let mut options = RegistryOptions::on_port(port);
        if let Some(path) = htpasswd {
            options.htpasswd = Some(base.join(path));
            if Path::new(path).is_relative() {
                options.repository = Some(base.to_path_buf());
            }
        }
        options
    }

    /// Reads `registry: true | false | PORT | {port: PORT, htpasswd: FILE}`; a relative
    /// htpasswd path is taken from `base` (the repository folder).
    pub fn from_json(
        value: &serde_json::Value,
        base: &Path,
    ) -> Result<Option<RegistryOptions>, String> {
        let bad = || {
            "driver_options.registry must be true, a port, or {port: PORT, htpasswd: FILE}"
                .to_string()
        };
        let port_of = |value: &serde_json::Value| {
            value
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    format!(
                        "driver_options.registry.port must be a port number (1-65535), not {value}"
                    )
                })
        };
        match value {
            serde_json::Value::Null | serde_json::Value::Bool(false) => Ok(None),
            serde_json::Value::Bool(true) => {
                Ok(Some(RegistryOptions::on_port(DEFAULT_REGISTRY_PORT)))
            }
            serde_json::Value::Number(_) => Ok(Some(RegistryOptions::on_port(port_of(value)?))),
            serde_json::Value::Object(map) => {
                let mut options = RegistryOptions::on_port(DEFAULT_REGISTRY_PORT);
                for (key, item) in map {
                    match (key.as_str(), item) {
                        ("port", port) => options.port = port_of(port)?,
                        ("htpasswd", serde_json::Value::String(path)) if !path.is_empty() => {
                            options = RegistryOptions::at(options.port, Some(path), base);
                        }
                        ("htpasswd", _) => {
                            return Err(
                                "driver_options.registry.htpasswd must be a file path".to_string()
                            )
                        }
                        (other, _) => {
                            return Err(format!(
                                "unknown key `{other}` in driver_options.registry (known: port, htpasswd)"
                            ))
                        }
                    }
                }
                Ok(Some(options))
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(value: serde_json::Value) -> Option<RegistryOptions> {
        RegistryOptions::from_json(&value, Path::new("/repo")).unwrap()
    }

    #[test]
    fn registry_option_forms() {
        assert_eq!(options(json!(null)), None);
        assert_eq!(options(json!(false)), None);
        assert_eq!(options(json!(true)).unwrap().port, DEFAULT_REGISTRY_PORT);
        assert_eq!(options(json!(5001)).unwrap().port, 5001);
        let full = options(json!({"port": 5002, "htpasswd": "auth/htpasswd"})).unwrap();
        assert_eq!(full.port, 5002);
        assert_eq!(full.htpasswd, Some(PathBuf::from("/repo/auth/htpasswd")));
        assert_eq!(full.repository, Some(PathBuf::from("/repo")));
        let absolute = options(json!({"htpasswd": "/run/secrets/htpasswd"})).unwrap();
        assert_eq!(
            absolute.htpasswd,
            Some(PathBuf::from("/run/secrets/htpasswd"))
        );
        assert_eq!(absolute.repository, None);
        for bad in [
            json!(0),
            json!(70000),
            json!("yes"),
            json!({"port": "x"}),
            json!({"htpasswd": 3}),
            json!({"prot": 5000}),
        ] {
            assert!(
                RegistryOptions::from_json(&bad, Path::new("/repo")).is_err(),
                "{bad}"
            );
        }
    }
}
