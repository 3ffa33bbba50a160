//! The repository's files → validated desired state: `machines.yml`, the stacks' compose
//! files, `.env` and the secret and config files, with every problem collected as a located
//! [`Diagnostic`].
//!
//! Pure: all file content arrives through the [`FileSource`] trait; the YAML reading, typed
//! decoding and interpolation shared with `compose` live in [`crate::yaml`].

pub mod endpoint;
pub mod images;
pub mod machines;
pub mod notifications;
pub mod registry;

pub use crate::yaml::files::{FileSource, MemSource};

pub use crate::compose::encrypted::{AGE_KEY_FILE_VAR, AGE_KEY_VAR};

use crate::compose::encrypted::Keys;
use crate::diag::{Diagnostic, Invalid, Severity};
use crate::model::Desired;
use crate::yaml::files::read_error;
use crate::yaml::{self, env, yaml_diagnostic};
use std::collections::BTreeMap;

/// The machines file every repository has.
pub const MACHINES_FILE: &str = "machines.yml";
/// The compose file used as the default stack.
pub const DEFAULT_COMPOSE_FILE: &str = "docker-compose.yml";
/// The file of interpolation variables.
pub const DOTENV_FILE: &str = ".env";
/// The prefix of shoal's own variables (`SHOAL_WEBHOOK_SECRET`, `SHOAL_GIT_TOKEN`,
/// `SHOAL_AGE_KEY`, ...), which `${VAR}` interpolation never sees.
pub const OWN_VAR_PREFIX: &str = "SHOAL_";

/// `vars` without shoal's own `SHOAL_*` variables, so that a committed
/// `environment: {X: ${SHOAL_WEBHOOK_SECRET}}` cannot copy the watcher's secrets into the cluster.
pub fn interpolation_vars(
    vars: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(name, _)| !name.starts_with(OWN_VAR_PREFIX))
        .collect()
}

/// Loads and validates machines.yml, the stacks' compose files, .env, and secret/config files.
/// `env` is the process environment used for interpolation (it wins over .env, as in docker
/// compose); the age identities that decrypt encrypted secret and config files travel in it
/// under [`AGE_KEY_VAR`] (put there by `source::interpolation_env`, with why the file
/// [`AGE_KEY_FILE_VAR`] names could not be read under that name), and interpolation never
/// sees them, nor any other `SHOAL_*` variable.
pub fn load(files: &dyn FileSource, env: &BTreeMap<String, String>) -> Result<Desired, Invalid> {
    let mut diags = Vec::new();
    let machines = machines::load(files, &mut diags);
    let keys = Keys::parse(env.get(AGE_KEY_VAR).map(String::as_str))
        .with_unreadable_file(env.get(AGE_KEY_FILE_VAR).map(String::as_str));
    let env = interpolation_vars(env.iter().map(|(n, v)| (n.clone(), v.clone())));
    let vars = env::Vars {
        dotenv: load_dotenv(files, &env, &mut diags),
        env,
    };
    let mut desired = without_stacks(&machines);
    let (targets, notify_diags) = notifications::resolve(&machines.notify, &vars);
    desired.notify = targets;
    diags.extend(notify_diags);
    let mut owners: BTreeMap<(&str, String), String> = BTreeMap::new();
    let mut first_files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for stack_ref in &machines.stacks {
        let Some(mut contents) = read_stack_files(files, stack_ref, &mut diags) else {
            continue;
        };
        let sources: Vec<(&str, &[u8])> = (stack_ref.files.iter())
            .zip(&contents)
            .map(|(file, bytes)| (file.as_str(), bytes.as_slice()))
            .collect();
        let Some(stack) =
            crate::compose::load_stack(&stack_ref.name, &sources, files, &vars, &keys, &mut diags)
        else {
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
                            &stack.file,
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
        first_files.insert(stack.name.clone(), contents.swap_remove(0));
        desired.stacks.insert(stack.name.clone(), stack);
    }
    let located: Vec<_> = (desired.stacks.values())
        .map(|stack| (stack, first_files[&stack.name].as_slice()))
        .collect();
    diags.extend(crate::compose::validate::check(&located));
    if let Some(port) = cluster_registry_port(&desired) {
        diags.extend(crate::compose::validate::registry_port_taken(
            &located, port,
        ));
    }
    finish(desired, diags)
}

/// The port of the dind cluster's own registry, when machines.yml asks for one.
fn cluster_registry_port(desired: &Desired) -> Option<u16> {
    if desired.driver != crate::model::DriverKind::Dind {
        return None;
    }
    desired
        .driver_options
        .dind
        .registry
        .as_ref()
        .map(|r| r.port)
}

/// The contents of a stack's compose files, in order; `None` when one is missing (reported,
/// unless the stack is the optional default one) or unreadable.
fn read_stack_files(
    files: &dyn FileSource,
    stack_ref: &machines::StackRef,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Vec<u8>>> {
    let mut contents = Vec::new();
    for file in &stack_ref.files {
        match files.read(file) {
            Ok(Some(bytes)) => contents.push(bytes),
            Ok(None) if stack_ref.optional => return None,
            Ok(None) => {
                diags.push(
                    Diagnostic::error(
                        MACHINES_FILE,
                        stack_ref.pos.line,
                        stack_ref.pos.column,
                        format!(
                            "compose file `{file}` of stack `{}` does not exist",
                            stack_ref.name
                        ),
                    )
                    .with_help("fix the path (it is relative to the repository root)"),
                );
                return None;
            }
            Err(e) => {
                diags.push(read_error(file, &e));
                return None;
            }
        }
    }
    Some(contents)
}

/// Loads and validates machines.yml alone: the desired state without its stacks, for the
/// commands that must work while a compose file is broken (status, env, destroy, sim).
pub fn load_machines(files: &dyn FileSource) -> Result<Desired, Invalid> {
    let mut diags = Vec::new();
    let machines = machines::load(files, &mut diags);
    finish(without_stacks(&machines), diags)
}

fn without_stacks(machines: &machines::Machines) -> Desired {
    Desired {
        cluster: machines.cluster.clone(),
        driver: machines.driver,
        driver_options: machines.driver_options.clone(),
        machines: machines.machines.clone(),
        access: machines.access.clone(),
        stacks: BTreeMap::new(),
        policy: machines.policy.clone(),
        warnings: Vec::new(),
        notify: Vec::new(),
    }
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

fn load_dotenv(
    files: &dyn FileSource,
    env: &BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, String> {
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
    let (vars, errors) = env::parse_dotenv(text, env);
    for (line, message) in errors {
        diags.push(
            Diagnostic::error(DOTENV_FILE, line, 0, message)
                .with_help("write one KEY=VALUE per line"),
        );
    }
    vars
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
