//! Compose files → swarm specs: the subset of the compose spec that `docker stack deploy`
//! reads (the v3 schema), validated with located diagnostics ([`load`], [`service`]) and
//! converted exactly as the docker CLI converts it ([`convert`]).

pub mod convert;
pub mod load;
pub mod service;
pub mod syntax;
pub mod types;
pub mod validate;

use crate::diag::Diagnostic;
use crate::model::Stack;
use crate::yaml::env::Vars;
use crate::yaml::files::FileSource;

/// Loads compose file `file` (its content is `bytes`) as stack `name`: validates it, reading
/// env files, secrets and configs through `files`, and converts it to swarm specs. Problems go
/// to `diags`; `None` when the file could not be read as a compose file at all.
pub fn load_stack(
    name: &str,
    file: &str,
    bytes: &[u8],
    files: &dyn FileSource,
    vars: &Vars,
    diags: &mut Vec<Diagnostic>,
) -> Option<Stack> {
    let compose = load::load_compose(name, file, bytes, files, vars, diags)?;
    Some(convert::convert_stack(name, file, &compose))
}

#[cfg(test)]
mod tests;
