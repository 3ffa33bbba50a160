//! The repository's files → validated desired state: `machines.yml`, the stacks' compose
//! files, `.env` and the secret and config files, with every problem collected as a located
//! [`Diagnostic`].
//!
//! Pure apart from the [`FileSource`] trait, through which all file content arrives.

pub mod decode;
pub mod env;
pub mod machines;
pub mod source;
pub mod units;
pub mod yaml;

pub use source::{DirSource, MemSource};

use crate::diag::{Diagnostic, Invalid, Severity};
use crate::model::Desired;
use std::collections::BTreeMap;

/// The machines file every repository has.
pub const MACHINES_FILE: &str = "machines.yml";
/// The compose file used as the default stack.
pub const DEFAULT_COMPOSE_FILE: &str = "docker-compose.yml";
/// The file of interpolation variables.
pub const DOTENV_FILE: &str = ".env";

/// Where the repository's files come from (working tree or a git commit); paths are relative, '/'-separated.
pub trait FileSource {
    /// The file's bytes, Ok(None) when it does not exist.
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// The repository folder's name (default cluster name).
    fn root_name(&self) -> String;
}

/// Loads and validates machines.yml, the stacks' compose files, .env, and secret/config files.
/// `env` is the process environment used for interpolation (it wins over .env, as in docker compose).
pub fn load(files: &dyn FileSource, env: &BTreeMap<String, String>) -> Result<Desired, Invalid> {
    let mut diags = Vec::new();
    let machines = machines::load(files, &mut diags);
    let vars = env::Vars {
        env: env.clone(),
        dotenv: load_dotenv(files, &mut diags),
    };
    let mut desired = Desired {
        cluster: machines.cluster,
        driver: machines.driver,
        driver_options: machines.driver_options,
        machines: machines.machines,
        stacks: BTreeMap::new(),
        policy: machines.policy,
        warnings: Vec::new(),
    };
    let mut owners: BTreeMap<(&str, String), String> = BTreeMap::new();
    for stack_ref in &machines.stacks {
        let bytes = match files.read(&stack_ref.file) {
            Ok(Some(bytes)) => bytes,
            Ok(None) if stack_ref.optional => continue,
            Ok(None) => {
                diags.push(
                    Diagnostic::error(
                        MACHINES_FILE,
                        stack_ref.pos.line,
                        stack_ref.pos.column,
                        format!(
                            "compose file `{}` of stack `{}` does not exist",
                            stack_ref.file, stack_ref.name
                        ),
                    )
                    .with_help("fix the path (it is relative to the repository root)"),
                );
                continue;
            }
            Err(e) => {
                diags.push(read_error(&stack_ref.file, &e));
                continue;
            }
        };
        let Some(stack) = crate::compose::load_stack(
            &stack_ref.name,
            &stack_ref.file,
            &bytes,
            files,
            &vars,
            &mut diags,
        ) else {
            continue;
        };
        let named = [
            ("service", stack.services.keys().collect::<Vec<_>>()),
            ("network", stack.networks.keys().collect()),
            ("secret", stack.secrets.keys().collect()),
            ("config", stack.configs.keys().collect()),
        ];
        for (kind, names) in named {
            for name in names {
                if let Some(other) = owners.insert((kind, name.clone()), stack.name.clone()) {
                    diags.push(
                        Diagnostic::error(
                            &stack_ref.file,
                            0,
                            0,
                            format!(
                                "stack `{}` and stack `{other}` both create the {kind} `{name}`",
                                stack.name
                            ),
                        )
                        .with_help(format!("give the {kind} a different `name:` in one of the stacks, or make it `external` in one")),
                    );
                }
            }
        }
        desired.stacks.insert(stack.name.clone(), stack);
    }
    finish(desired, diags)
}

fn finish(mut desired: Desired, diags: Vec<Diagnostic>) -> Result<Desired, Invalid> {
    let key = |d: &Diagnostic| (d.file.clone(), d.line, d.column, d.message.clone());
    let (mut errors, mut warnings): (Vec<_>, Vec<_>) = diags
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    errors.sort_by_key(key);
    errors.dedup();
    warnings.sort_by_key(key);
    warnings.dedup();
    if errors.is_empty() {
        desired.warnings = warnings.iter().map(ToString::to_string).collect();
        Ok(desired)
    } else {
        errors.extend(warnings);
        Err(Invalid {
            diagnostics: errors,
        })
    }
}

/// An error for a file that exists but could not be read.
pub fn read_error(file: &str, error: &std::io::Error) -> Diagnostic {
    Diagnostic::error(file, 0, 0, format!("cannot read the file: {error}"))
}

/// The diagnostic for a file that could not be read as YAML.
pub fn yaml_diagnostic(file: &str, error: &yaml::YamlError) -> Diagnostic {
    let diagnostic = Diagnostic::error(file, error.pos.line, error.pos.column, &error.message);
    match &error.help {
        Some(help) => diagnostic.with_help(help),
        None => diagnostic,
    }
}

fn load_dotenv(files: &dyn FileSource, diags: &mut Vec<Diagnostic>) -> BTreeMap<String, String> {
    let bytes = match files.read(DOTENV_FILE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return BTreeMap::new(),
        Err(e) => {
            diags.push(read_error(DOTENV_FILE, &e));
            return BTreeMap::new();
        }
    };
    let text = match yaml::decode_text(&bytes) {
        Ok(text) => text,
        Err(e) => {
            diags.push(yaml_diagnostic(DOTENV_FILE, &e));
            return BTreeMap::new();
        }
    };
    let (vars, errors) = env::parse_dotenv(text);
    for (line, message) in errors {
        diags.push(
            Diagnostic::error(DOTENV_FILE, line, 0, message)
                .with_help("write one KEY=VALUE per line"),
        );
    }
    vars
}

/// The folder part of a '/'-separated path (`""` for a file at the root).
pub fn parent_dir(path: &str) -> &str {
    path.rfind('/').map_or("", |at| &path[..at])
}

/// Joins `relative` onto the folder `base` and normalizes `.` and `..`; refuses absolute paths
/// and paths that leave the repository.
pub fn resolve_path(base: &str, relative: &str) -> Result<String, String> {
    let is_windows_absolute = relative.len() > 1
        && relative.as_bytes()[1] == b':'
        && relative.as_bytes()[0].is_ascii_alphabetic();
    if relative.starts_with('/') || relative.starts_with('\\') || is_windows_absolute {
        return Err(format!(
            "`{relative}` is an absolute path; shoal reads files from the repository only"
        ));
    }
    if relative.is_empty() {
        return Err("the path is empty".to_string());
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("`{relative}` points outside the repository"));
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{relative}` is a folder, not a file"));
    }
    Ok(parts.join("/"))
}

/// What makes `name` not DNS-safe (lowercase letters, digits and `-`, starting with a letter,
/// not ending with `-`, at most 63 characters), if anything.
pub fn dns_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 63 {
        Some("is longer than 63 characters")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("must start with a lowercase letter")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("may hold only lowercase letters, digits and `-`")
    } else if name.ends_with('-') {
        Some("must not end with `-`")
    } else {
        None
    }
}

/// `name` made DNS-safe: lowercased, other characters turned into `-`, trimmed to start with a
/// letter and to 63 characters (`shoal` when nothing is left).
pub fn dns_safe(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        if out.is_empty() && !c.is_ascii_lowercase() {
            continue;
        }
        out.push(c);
    }
    out.truncate(63);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "shoal".to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests;
