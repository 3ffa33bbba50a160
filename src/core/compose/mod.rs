//! Compose files → swarm specs: the subset of the compose spec that `docker stack deploy`
//! reads (the v3 schema), validated with located diagnostics ([`load`], [`service`]) and
//! converted exactly as the docker CLI converts it ([`convert`]).

pub mod convert;
pub mod encrypted;
pub mod load;
pub mod merge;
pub mod service;
pub mod syntax;
pub mod types;
pub mod validate;

use crate::diag::Diagnostic;
use crate::model::Stack;
use crate::yaml::env::Vars;
use crate::yaml::files::FileSource;

/// Loads the compose files `sources` (path and content, merged in order) as stack `name`:
/// validates them, reading env files, secrets and configs through `files` (decrypting those
/// encrypted with age with `keys`), and converts them to swarm specs. Problems go to `diags`; `None` when a file could not be read as a compose file
/// at all.
pub fn load_stack(
    name: &str,
    sources: &[(&str, &[u8])],
    files: &dyn FileSource,
    vars: &Vars,
    keys: &encrypted::Keys,
    diags: &mut Vec<Diagnostic>,
) -> Option<Stack> {
    let compose = load::load_compose(name, sources, files, vars, keys, diags)?;
    let (file, _) = sources.first()?;
    Some(convert::convert_stack(name, file, &compose))
}

#[cfg(test)]
mod tests;
