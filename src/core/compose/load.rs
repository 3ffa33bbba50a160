//! A compose file's YAML → a validated [`ComposeFile`]: interpolation, the top-level networks,
//! volumes, secrets and configs (reading their files), then every service, with every problem
//! located.

use super::convert::{object_name, VERSION_SUFFIX_LEN};
use super::encrypted::{AgeError, Keys, AGE_KEY_FILE_VAR, AGE_KEY_VAR};
use super::merge;
use super::service::read_service;
use super::types::{ComposeFile, FileObject, Network, Volume};
use crate::diag::Diagnostic;
use crate::yaml::decode::{join, Ctx, Fields};
use crate::yaml::env::{interpolate_tree, Vars};
use crate::yaml::files::{parent_dir, resolve_path, FileSource};
use crate::yaml::{self, yaml_diagnostic, Entry, Node, Pos, Value};
use std::collections::BTreeMap;

/// Swarm's size limit of a secret's data.
pub const MAX_SECRET_BYTES: usize = 500 * 1024;
/// Swarm's size limit of a config's data.
pub const MAX_CONFIG_BYTES: usize = 1000 * 1024;

const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "secrets", "configs",
];
const NETWORK_KEYS: &[&str] = &[
    "name",
    "driver",
    "driver_opts",
    "ipam",
    "external",
    "internal",
    "attachable",
    "labels",
];
const IPAM_KEYS: &[&str] = &["driver", "config"];
const IPAM_CONFIG_KEYS: &[&str] = &["subnet"];
const VOLUME_KEYS: &[&str] = &["name", "driver", "driver_opts", "external", "labels"];
const SECRET_KEYS: &[&str] = &[
    "name",
    "file",
    "external",
    "labels",
    "driver",
    "driver_opts",
    "template_driver",
    "environment",
];
const CONFIG_KEYS: &[&str] = &[
    "name",
    "file",
    "external",
    "labels",
    "template_driver",
    "environment",
    "content",
];

/// Everything a compose file is read with.
pub struct Loader<'a> {
    /// Problems of this file.
    pub ctx: Ctx,
    /// Stack name.
    pub stack: &'a str,
    /// Folder of the compose file, relative to the repository.
    pub dir: &'a str,
    /// Where other files are read from.
    pub files: &'a dyn FileSource,
    /// Interpolation variables.
    pub vars: &'a Vars,
    /// The identities that decrypt age-encrypted secret and config files.
    pub keys: &'a Keys,
}

/// Reads and validates the compose files of stack `stack` (`sources`: each file's repository
/// path and content), merged in order as `docker stack deploy -c a.yml -c b.yml` merges them
/// ([`super::merge`]). Each file is interpolated on its own; relative paths are relative to the
/// first file's folder, as for the docker CLI. Secret and config files encrypted with age are
/// decrypted with `keys`. Problems go to `diags`, each naming the file that introduced it;
/// `None` when a file could not be read at all.
pub fn load_compose(
    stack: &str,
    sources: &[(&str, &[u8])],
    files: &dyn FileSource,
    vars: &Vars,
    keys: &Keys,
    diags: &mut Vec<Diagnostic>,
) -> Option<ComposeFile> {
    let (first, _) = sources.first()?;
    let mut merged: Option<Node> = None;
    let mut quiet = std::collections::BTreeSet::new();
    for (index, (file, bytes)) in sources.iter().enumerate() {
        let parsed = match yaml::parse(bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                diags.push(yaml_diagnostic(file, &e));
                return None;
            }
        };
        diags.extend(parsed.errors.iter().map(|e| yaml_diagnostic(file, e)));
        let Some(mut root) = parsed.root else {
            diags.push(
                Diagnostic::error(file, 0, 0, "the compose file is empty")
                    .with_help("add a `services:` section"),
            );
            return None;
        };
        let mut ctx = Ctx::new(file);
        interpolate_tree(&mut root, vars, &mut ctx);
        diags.append(&mut ctx.diags);
        quiet.extend(ctx.quiet.into_iter().map(|pos| Pos {
            line: pos.line + index * merge::FILE_STRIDE,
            ..pos
        }));
        merge::tag_file(&mut root, index);
        merged = Some(match merged {
            None => root,
            Some(base) => merge::merge_files(base, root),
        });
    }
    let root = merged?;
    let mut loader = Loader {
        ctx: Ctx::new(first),
        stack,
        dir: parent_dir(first),
        files,
        vars,
        keys,
    };
    loader.ctx.quiet = quiet;
    let compose = loader.read_file(&root);
    for mut diag in loader.ctx.diags {
        let (index, line) = merge::origin(diag.line);
        if diag.file == *first && index > 0 {
            if let Some((file, _)) = sources.get(index) {
                diag.file = file.to_string();
                diag.line = line;
            }
        }
        diags.push(diag);
    }
    compose
}

impl Loader<'_> {
    fn read_file(&mut self, root: &Node) -> Option<ComposeFile> {
        let fields = self.ctx.fields(root, "", TOP_KEYS, true)?;
        if let Some(node) = fields.get("version") {
            self.check_version(node);
        }
        let mut compose = ComposeFile::default();
        if let Some(node) = fields.get("networks") {
            compose.networks = self.definitions(node, "networks", Self::network);
        }
        if let Some(node) = fields.get("volumes") {
            compose.volumes = self.definitions(node, "volumes", Self::volume);
        }
        if let Some(node) = fields.get("secrets") {
            compose.secrets = self.definitions(node, "secrets", Self::secret);
        }
        if let Some(node) = fields.get("configs") {
            compose.configs = self.definitions(node, "configs", Self::config);
        }
        match fields.get("services") {
            Some(node) => {
                if let Some(entries) = self.ctx.mapping(node, "services") {
                    for entry in entries {
                        if let Some(service) = read_service(self, entry, &compose) {
                            compose.services.insert(entry.key.clone(), service);
                        }
                    }
                }
            }
            None => self.ctx.warn(
                fields
                    .key_pos("services")
                    .unwrap_or(Pos { line: 1, column: 1 }),
                "the compose file defines no services",
            ),
        }
        Some(compose)
    }

    fn check_version(&mut self, node: &Node) {
        let Some(version) = self.ctx.string(node, "version") else {
            return;
        };
        if version.starts_with('1') || version.starts_with('2') {
            self.ctx.error_help(
                node.pos,
                format!("compose file version `{version}` is not supported by swarm stacks"),
                "use version 3 (`version: \"3.8\"`) or remove `version`",
            );
        }
    }

    /// Reads a section of definitions. One that is broken (already reported) is kept as a
    /// default value, so that references to it give no further errors.
    fn definitions<T: Default>(
        &mut self,
        node: &Node,
        section: &str,
        read: fn(&mut Self, &Entry, &str) -> Option<T>,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.ctx.mapping(node, section) else {
            return out;
        };
        for entry in entries {
            if !valid_key(&entry.key) {
                self.ctx.error(
                    entry.key_pos,
                    format!(
                        "`{section}.{}`: names may hold only letters, digits, `.`, `_` and `-`",
                        entry.key
                    ),
                );
            }
            let path = join(section, &entry.key);
            let value = read(self, entry, &path).unwrap_or_default();
            out.insert(entry.key.clone(), value);
        }
        out
    }

    /// `external: true|false` or the deprecated `external: {name: x}` (returned as the name).
    fn external(&mut self, fields: &Fields<'_>, path: &str) -> (bool, Option<String>) {
        let Some(node) = fields.get("external") else {
            return (false, None);
        };
        let path = join(path, "external");
        match &node.value {
            Value::Map(_) => {
                let Some(inner) = self.ctx.fields(node, &path, &["name"], false) else {
                    return (true, None);
                };
                let name = inner
                    .get("name")
                    .and_then(|n| self.ctx.string(n, &join(&path, "name")));
                if name.is_some() {
                    self.ctx.warn_help(
                        node.pos,
                        format!("`{path}.name` is deprecated"),
                        "write `external: true` and `name:` next to it",
                    );
                }
                (true, name)
            }
            _ => (self.ctx.bool(node, &path).unwrap_or(false), None),
        }
    }

    /// The object's explicit name: `name:`, or the deprecated `external.name`.
    fn explicit_name(
        &mut self,
        fields: &Fields<'_>,
        path: &str,
        external_name: Option<String>,
    ) -> Option<String> {
        let name = fields
            .get("name")
            .and_then(|n| self.ctx.string(n, &join(path, "name")));
        match (name, external_name) {
            (Some(_), Some(_)) => {
                self.ctx.error_help(
                    fields.key_pos("name").unwrap_or(fields.pos),
                    format!("`{path}.external.name` and `{path}.name` conflict"),
                    "keep only `name`",
                );
                None
            }
            (name, external_name) => name.or(external_name),
        }
    }

    fn network(&mut self, entry: &Entry, path: &str) -> Option<Network> {
        let fields = self.ctx.fields(&entry.value, path, NETWORK_KEYS, true)?;
        let (external, external_name) = self.external(&fields, path);
        let mut network = Network {
            name: self.explicit_name(&fields, path, external_name),
            external,
            ..Network::default()
        };
        if let Some(n) = fields.get("driver") {
            network.driver = self
                .ctx
                .string(n, &join(path, "driver"))
                .unwrap_or_default();
        }
        if let Some(n) = fields.get("driver_opts") {
            network.driver_opts = self.ctx.string_map(n, &join(path, "driver_opts"));
        }
        if let Some(n) = fields.get("attachable") {
            network.attachable = self.ctx.bool(n, &join(path, "attachable")).unwrap_or(false);
        }
        if let Some(n) = fields.get("internal") {
            network.internal = self.ctx.bool(n, &join(path, "internal")).unwrap_or(false);
        }
        if let Some(n) = fields.get("labels") {
            network.labels = self.ctx.labels(n, &join(path, "labels"));
        }
        if let Some(n) = fields.get("ipam") {
            self.ipam(n, &join(path, "ipam"), &mut network);
        }
        if external {
            for key in [
                "driver",
                "driver_opts",
                "ipam",
                "internal",
                "attachable",
                "labels",
            ] {
                if let Some(pos) = fields.key_pos(key) {
                    self.ctx.warn(
                        pos,
                        format!("`{path}.{key}` is ignored: the network is external"),
                    );
                }
            }
            if network.name.is_none() {
                network.name = Some(entry.key.clone());
            }
        }
        Some(network)
    }

    fn ipam(&mut self, node: &Node, path: &str, network: &mut Network) {
        let Some(fields) = self.ctx.fields(node, path, IPAM_KEYS, false) else {
            return;
        };
        if let Some(pos) = fields.key_pos("driver") {
            self.ctx.warn(
                pos,
                format!("`{path}.driver` is not supported by shoal and is ignored"),
            );
        }
        let Some(config) = fields.get("config") else {
            return;
        };
        let config_path = join(path, "config");
        let Some(items) = self.ctx.list(config, &config_path) else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{config_path}[{i}]");
            let Some(pool) = self.ctx.fields(item, &item_path, IPAM_CONFIG_KEYS, false) else {
                continue;
            };
            let Some(subnet_node) = pool.get("subnet") else {
                continue;
            };
            if let Some(subnet) = self.ctx.string(subnet_node, &join(&item_path, "subnet")) {
                if is_cidr(&subnet) {
                    network.subnets.push(subnet);
                } else {
                    self.ctx.error_help(
                        subnet_node.pos,
                        format!("`{item_path}.subnet` is not a subnet: `{subnet}`"),
                        "write it in CIDR form, e.g. `10.0.9.0/24`",
                    );
                }
            }
        }
    }

    fn volume(&mut self, entry: &Entry, path: &str) -> Option<Volume> {
        let fields = self.ctx.fields(&entry.value, path, VOLUME_KEYS, true)?;
        let (external, external_name) = self.external(&fields, path);
        let mut volume = Volume {
            name: self.explicit_name(&fields, path, external_name),
            external,
            ..Volume::default()
        };
        if let Some(n) = fields.get("driver") {
            volume.driver = self
                .ctx
                .string(n, &join(path, "driver"))
                .unwrap_or_default();
        }
        if let Some(n) = fields.get("driver_opts") {
            volume.driver_opts = Some(self.ctx.string_map(n, &join(path, "driver_opts")));
        }
        if let Some(n) = fields.get("labels") {
            volume.labels = self.ctx.labels(n, &join(path, "labels"));
        }
        if external {
            for key in ["driver", "driver_opts", "labels"] {
                if let Some(pos) = fields.key_pos(key) {
                    self.ctx.error_help(
                        pos,
                        format!("`{path}` is external and sets `{key}`"),
                        format!("remove `{key}`, or `external`"),
                    );
                }
            }
            if volume.name.is_none() {
                volume.name = Some(entry.key.clone());
            }
        }
        Some(volume)
    }

    fn secret(&mut self, entry: &Entry, path: &str) -> Option<FileObject> {
        let fields = self.ctx.fields(&entry.value, path, SECRET_KEYS, true)?;
        for key in ["driver", "driver_opts", "template_driver"] {
            if let Some(pos) = fields.key_pos(key) {
                self.ctx.error_help(
                    pos,
                    format!("`{path}.{key}` is not supported by shoal"),
                    "use a file-backed secret (`file:`) or an external one",
                );
            }
        }
        self.file_object(entry, &fields, path, "secret", MAX_SECRET_BYTES, None)
    }

    fn config(&mut self, entry: &Entry, path: &str) -> Option<FileObject> {
        let fields = self.ctx.fields(&entry.value, path, CONFIG_KEYS, true)?;
        let template_driver = fields
            .get("template_driver")
            .and_then(|n| self.ctx.string(n, &join(path, "template_driver")))
            .filter(|driver| !driver.is_empty());
        if let Some(pos) = fields.key_pos("content") {
            self.ctx.error_help(
                pos,
                format!("`{path}.content` is not supported by swarm stacks"),
                "put the content in a file and write `file: <path>`",
            );
        }
        self.file_object(
            entry,
            &fields,
            path,
            "config",
            MAX_CONFIG_BYTES,
            template_driver,
        )
    }

    fn file_object(
        &mut self,
        entry: &Entry,
        fields: &Fields<'_>,
        path: &str,
        kind: &str,
        max_bytes: usize,
        template_driver: Option<String>,
    ) -> Option<FileObject> {
        if let Some(pos) = fields.key_pos("environment") {
            self.ctx.error_help(
                pos,
                format!("`{path}.environment`: {kind}s from environment variables are not supported by swarm stacks"),
                "write the value to a file and use `file: <path>`",
            );
            return None;
        }
        let (external, external_name) = self.external(fields, path);
        let mut object = FileObject {
            name: self.explicit_name(fields, path, external_name),
            external,
            template_driver,
            ..FileObject::default()
        };
        if let Some(n) = fields.get("labels") {
            object.labels = self.ctx.labels(n, &join(path, "labels"));
        }
        let file_node = fields.get("file");
        match (external, file_node) {
            (true, Some(node)) => {
                self.ctx.error_help(
                    node.pos,
                    format!("`{path}` is external and names a file"),
                    format!("remove `file`, or `external` to have shoal create the {kind}"),
                );
                return None;
            }
            (true, None) => {
                if object.name.is_none() {
                    object.name = Some(entry.key.clone());
                }
                return Some(object);
            }
            (false, None) => {
                self.ctx.error_help(
                    entry.key_pos,
                    format!("{kind} `{}` has neither `file` nor `external`", entry.key),
                    format!("add `file: <path>` (relative to the compose file), or `external: true` for a {kind} created outside the stack"),
                );
                return None;
            }
            (false, Some(_)) => {}
        }
        let node = file_node?;
        let (file, data) = self.read_file_at(node, &join(path, "file"), kind)?;
        let data = if super::encrypted::is_encrypted(&file, &data) {
            match self.keys.decrypt(&data) {
                Ok(plaintext) => plaintext,
                Err(e) => {
                    self.ctx.error_help(
                        node.pos,
                        format!("{kind} file `{file}` is encrypted with age, and {e}"),
                        age_help(&e),
                    );
                    return None;
                }
            }
        } else {
            data
        };
        if data.len() > max_bytes {
            self.ctx.error(
                node.pos,
                format!(
                    "{kind} file `{file}` is {} bytes; swarm allows at most {max_bytes}",
                    data.len()
                ),
            );
            return None;
        }
        object.file = file;
        object.data = data;
        let name = object_name(self.stack, &entry.key, object.name.as_deref());
        if name.len() + VERSION_SUFFIX_LEN > 64 {
            self.ctx.error_help(
                entry.key_pos,
                format!("{kind} name `{name}` with its 9-character version suffix (`-<8 hex>`) is longer than swarm's 64 characters"),
                "use a shorter key or `name:`",
            );
            return None;
        }
        Some(object)
    }

    /// Reads the file named by the string `node` (relative to the compose file's folder):
    /// its repository path and content, or `None` after reporting why not.
    fn read_file_at(&mut self, node: &Node, path: &str, kind: &str) -> Option<(String, Vec<u8>)> {
        let relative = self.ctx.string(node, path)?;
        let file = match resolve_path(self.dir, &relative) {
            Ok(file) => file,
            Err(problem) => {
                self.ctx.error(node.pos, format!("`{path}`: {problem}"));
                return None;
            }
        };
        match self.files.read(&file) {
            Ok(Some(data)) => Some((file, data)),
            Ok(None) => {
                self.ctx.error_help(
                    node.pos,
                    format!("{kind} file `{file}` does not exist"),
                    "the path is relative to the compose file's folder",
                );
                None
            }
            Err(e) => {
                self.ctx
                    .error(node.pos, format!("cannot read {kind} file `{file}`: {e}"));
                None
            }
        }
    }

    /// Reads an `env_file` and returns its `KEY=VALUE` pairs.
    pub fn env_file(&mut self, node: &Node, path: &str) -> Vec<(String, String)> {
        let Some((file, bytes)) = self.read_file_at(node, path, "env") else {
            return Vec::new();
        };
        let text = match yaml::decode_text(&bytes) {
            Ok(text) => text,
            Err(e) => {
                self.ctx.diags.push(yaml_diagnostic(&file, &e));
                return Vec::new();
            }
        };
        match crate::yaml::env::parse_env_file(text, self.vars) {
            Ok(pairs) => pairs,
            Err((line, message)) => {
                self.ctx
                    .diags
                    .push(Diagnostic::error(&file, line, 0, message));
                Vec::new()
            }
        }
    }
}

/// What to do about a file that could not be decrypted.
fn age_help(error: &AgeError) -> String {
    match error {
        AgeError::NoIdentity => format!(
            "set {AGE_KEY_VAR} to the cluster's age identity (`AGE-SECRET-KEY-1…`), or {AGE_KEY_FILE_VAR} to a file of identities as `age-keygen` writes it"
        ),
        AgeError::InvalidIdentity { .. } => format!(
            "{AGE_KEY_VAR} (or the file {AGE_KEY_FILE_VAR} names) must hold age identities, one per line, `#` comments allowed"
        ),
        AgeError::NoMatchingKey { .. } => "encrypt the file to the cluster's public key (`age -r age1… -o FILE.age FILE`), or give the identity it was encrypted to".to_string(),
        AgeError::UnreadableKeyFile(_) => format!(
            "make the file {AGE_KEY_FILE_VAR} names readable by the user running shoal, or point {AGE_KEY_FILE_VAR} at the cluster's identity file"
        ),
        AgeError::Malformed(_) => "encrypt the file again with `age -r <public key> -o FILE.age FILE`".to_string(),
    }
}

/// Whether `key` matches the compose schema's name pattern `^[a-zA-Z0-9._-]+$`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_cidr(text: &str) -> bool {
    let Some((address, bits)) = text.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match address.parse::<core::net::IpAddr>() {
        Ok(core::net::IpAddr::V4(_)) => bits <= 32,
        Ok(core::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}
