//! `machines.yml`: the cluster's name, driver, machines (with `count` expansion), stacks and
//! policy, validated.

use super::endpoint::{canonical_endpoint, EndpointProblem};
use super::registry::RegistryOptions;
use super::{dns_problem, dns_safe, DEFAULT_COMPOSE_FILE, MACHINES_FILE};
use crate::diag::Diagnostic;
use crate::model::driver_options::{
    DindSettings, DockerMachineSettings, GenericSettings, QemuSettings, RegistrySettings,
};
use crate::model::{
    DriverKind, DriverOptions, ImagePolicy, MachineAccess, MachineSpec, OnFailure, Policy, Role,
    SshAccess,
};
use crate::yaml::decode::{join, to_json, Ctx, Fields};
use crate::yaml::files::{read_error, resolve_path, FileSource};
use crate::yaml::{self, yaml_diagnostic, Node, Pos, Value};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::path::Path;

/// Largest `count` accepted for one machine entry.
pub const MAX_COUNT: u64 = 1000;
/// Largest number of machines after `count` expansion (swarm's own tested scale is a few
/// thousand nodes).
pub const MAX_MACHINES: usize = 10_000;
/// Longest node label key.
const MAX_LABEL_KEY: usize = 255;

const TOP_KEYS: &[&str] = &[
    "cluster",
    "driver",
    "driver_options",
    "machines",
    "stacks",
    "policy",
    "notify",
    "images",
];
/// The Docker versions dind nodes can run (`driver_options.dind.engine`).
pub const DIND_ENGINES: &[&str] = &["host", "26", "28"];
const MACHINE_KEYS: &[&str] = &[
    "role", "count", "labels", "host", "tls", "ssh", "flags", "memory", "cpus",
];
const SSH_KEYS: &[&str] = &["key", "known_hosts"];
/// The files of a docker cert folder.
const TLS_FILES: [&str; 3] = ["ca.pem", "cert.pem", "key.pem"];
const POLICY_KEYS: &[&str] = &[
    "prune",
    "self_heal",
    "rebalance",
    "down_grace",
    "show_values",
    "images",
    "on_failure",
];
const DRIVERS: &[&str] = &DriverKind::NAMES;
/// The keys of `driver_options.dind`.
pub const DIND_OPTIONS: &[&str] = &[
    "image",
    "preload_images",
    "engine",
    "debian_mirror",
    "state_dir",
    "registry",
];
/// The keys of `driver_options.generic`.
const GENERIC_OPTIONS: &[&str] = &["tls", "ssh"];
/// The keys of `driver_options.docker-machine`.
pub const DOCKER_MACHINE_OPTIONS: &[&str] = &["binary", "storage_path", "driver", "flags", "adopt"];
/// The keys of `driver_options.qemu`.
pub const QEMU_OPTIONS: &[&str] = &[
    "memory",
    "cpus",
    "accel",
    "disk",
    "image",
    "preload_images",
    "subnet",
    "state_dir",
    "debian_mirror",
];
/// The accelerations `driver_options.qemu.accel` names.
pub const QEMU_ACCELS: &[&str] = &["auto", "kvm", "hvf", "tcg"];
/// The smallest VM memory, in MiB, that runs dockerd and a few tasks.
const QEMU_MIN_MEMORY: u64 = 256;
/// The most virtual CPUs a VM is given.
const QEMU_MAX_CPUS: u64 = 64;
/// The smallest VM disk: the root file system, with room for images.
const QEMU_MIN_DISK: i64 = 1 << 30;

const EXAMPLE: &str = "create machines.yml at the repository root, for example:\n\
    \n    cluster: dataapp\
    \n    machines:\
    \n      vm-manager:\
    \n        role: manager\
    \n      vm-worker:\
    \n        role: worker\
    \n        count: 2";

/// A stack named in `machines.yml` (or the default one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackRef {
    /// Stack name.
    pub name: String,
    /// Compose files, relative to the repository, merged in order (at least one).
    pub files: Vec<String>,
    /// Where `machines.yml` names it (0:0 for the default stack).
    pub pos: Pos,
    /// The default stack, used only when its compose file exists.
    pub optional: bool,
}

/// What `machines.yml` says, with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Machines {
    /// Cluster name.
    pub cluster: String,
    /// Machine driver.
    pub driver: DriverKind,
    /// The drivers' options, read.
    pub driver_options: DriverOptions,
    /// Machines after `count` expansion.
    pub machines: BTreeMap<String, MachineSpec>,
    /// How the driver reaches or makes each machine (generic, docker-machine), defaults applied.
    pub access: BTreeMap<String, MachineAccess>,
    /// The stacks to load.
    pub stacks: Vec<StackRef>,
    /// Policy switches.
    pub policy: Policy,
    /// The `notify:` webhooks as written (DESIGN §9).
    pub notify: Vec<super::notifications::NotifySpec>,
    /// The `images:` policies (DESIGN §9).
    pub images: Vec<crate::images::policy::ImageTrack>,
}

/// Reads and validates `machines.yml`, adding its problems to `diags`. When the file is
/// missing or unreadable, defaults are returned so that the compose files can still be checked.
/// Without `stacks:`, the default stack `{<cluster>: docker-compose.yml}` is returned as
/// optional: it exists when its file does.
pub fn load(files: &dyn FileSource, diags: &mut Vec<Diagnostic>) -> Machines {
    let mut ctx = Ctx::new(MACHINES_FILE);
    let default_cluster = dns_safe(&files.root_name());
    let mut out = Machines {
        cluster: default_cluster,
        driver: DriverKind::default(),
        driver_options: DriverOptions::default(),
        machines: BTreeMap::new(),
        access: BTreeMap::new(),
        stacks: Vec::new(),
        policy: Policy::default(),
        notify: Vec::new(),
        images: Vec::new(),
    };
    let mut stacks_written = false;
    match files.read(MACHINES_FILE) {
        Ok(None) => ctx.error_help(
            Pos::default(),
            "machines.yml is missing: shoal needs it to know the cluster's machines",
            EXAMPLE,
        ),
        Err(e) => ctx.diags.push(read_error(MACHINES_FILE, &e)),
        Ok(Some(bytes)) => match yaml::parse(&bytes) {
            Err(e) => ctx.diags.push(yaml_diagnostic(MACHINES_FILE, &e)),
            Ok(parsed) => {
                for e in &parsed.errors {
                    ctx.diags.push(yaml_diagnostic(MACHINES_FILE, e));
                }
                match parsed.root {
                    None => ctx.error_help(Pos::default(), "machines.yml is empty", EXAMPLE),
                    Some(root) => {
                        if let Some(fields) = ctx.fields(&root, "", TOP_KEYS, false) {
                            stacks_written = fields.entry("stacks").is_some();
                            let placed = read_top(&mut ctx, &fields, &mut out);
                            check_access(&mut ctx, files, &out, &placed);
                        }
                    }
                }
            }
        },
    }
    if !stacks_written {
        out.stacks.push(StackRef {
            name: out.cluster.clone(),
            files: vec![DEFAULT_COMPOSE_FILE.to_string()],
            pos: Pos::default(),
            optional: true,
        });
    }
    diags.extend(ctx.diags);
    out
}

/// Where each machine's entry is written, for messages about its access.
type Placed = BTreeMap<String, Pos>;

fn read_top(ctx: &mut Ctx, fields: &Fields<'_>, out: &mut Machines) -> Placed {
    let mut placed = Placed::new();
    if let Some(node) = fields.get("cluster") {
        if let Some(name) = ctx.string(node, "cluster") {
            if check_name(ctx, node.pos, "cluster name", &name) {
                out.cluster = name;
            }
        }
    }
    if let Some(node) = fields.get("driver") {
        if let Some(driver) = ctx.one_of(node, "driver", DRIVERS) {
            out.driver = DriverKind::named(&driver).unwrap_or_default();
        }
    }
    if let Some(node) = fields.get("driver_options") {
        out.driver_options = read_driver_options(ctx, node, out.driver);
    }
    if let Some(node) = fields.get("machines") {
        placed = read_machines(ctx, node, out);
    }
    let machines_pos = fields
        .key_pos("machines")
        .unwrap_or(Pos { line: 1, column: 1 });
    check_managers(ctx, machines_pos, &out.machines);
    if let Some(node) = fields.get("stacks") {
        read_stacks(ctx, node, out);
    }
    if let Some(node) = fields.get("policy") {
        read_policy(ctx, node, &mut out.policy);
    }
    if let Some(node) = fields.get("notify") {
        out.notify = super::notifications::read(ctx, node);
    }
    if let Some(node) = fields.get("images") {
        out.images = super::images::read(ctx, node);
    }
    placed
}

fn check_name(ctx: &mut Ctx, pos: Pos, what: &str, name: &str) -> bool {
    match dns_problem(name) {
        None => true,
        Some(problem) => {
            ctx.error_help(
                pos,
                format!("{what} `{name}` {problem}"),
                format!("names must be DNS-safe, e.g. `{}`", dns_safe(name)),
            );
            false
        }
    }
}

fn read_machines(ctx: &mut Ctx, node: &Node, out: &mut Machines) -> Placed {
    let mut placed = Placed::new();
    let Some(entries) = ctx.mapping(node, "machines") else {
        return placed;
    };
    let defaults = access_defaults(out);
    let mut hosts: BTreeMap<String, (String, Pos)> = BTreeMap::new();
    let mut defined_at: BTreeMap<String, (Pos, String)> = BTreeMap::new();
    for entry in entries {
        let path = join("machines", &entry.key);
        if !check_name(ctx, entry.key_pos, "machine name", &entry.key) {
            continue;
        }
        let Some(fields) = ctx.fields(&entry.value, &path, MACHINE_KEYS, false) else {
            continue;
        };
        let role = match fields.get("role") {
            None => {
                ctx.error_help(
                    entry.key_pos,
                    format!("machine `{}` has no `role`", entry.key),
                    "add `role: manager` or `role: worker`",
                );
                None
            }
            Some(node) => match ctx
                .one_of(node, &join(&path, "role"), &["manager", "worker"])
                .as_deref()
            {
                Some("manager") => Some(Role::Manager),
                Some(_) => Some(Role::Worker),
                None => None,
            },
        };
        let count = fields
            .get("count")
            .and_then(|node| ctx.uint(node, &join(&path, "count")).map(|c| (node.pos, c)));
        if let Some((pos, count)) = count {
            if count > MAX_COUNT {
                ctx.error(
                    pos,
                    format!("`{path}.count` is {count}; at most {MAX_COUNT} machines per entry"),
                );
                continue;
            }
        }
        let labels = fields
            .get("labels")
            .map(|node| {
                let labels = ctx.labels(node, &join(&path, "labels"));
                check_label_keys(ctx, node, &join(&path, "labels"), &labels);
                labels
            })
            .unwrap_or_default();
        let host = fields
            .get("host")
            .and_then(|node| ctx.string(node, &join(&path, "host")));
        let generic = out.driver == DriverKind::Generic;
        match (&host, generic) {
            (Some(_), false) => ctx.error_help(
                fields.key_pos("host").unwrap_or(entry.key_pos),
                format!("`{path}.host` is only used by the generic driver"),
                "remove `host`, or set `driver: generic`",
            ),
            (None, true) => ctx.error_help(
                entry.key_pos,
                format!(
                    "machine `{}` has no `host`, which the generic driver needs",
                    entry.key
                ),
                "add `host: ssh://user@address` or `host: tcp://address:2376`",
            ),
            _ => {}
        }
        if let (true, Some((pos, _))) = (host.is_some() || generic, count) {
            ctx.error_help(
                pos,
                format!(
                    "`{path}.count` cannot be used with `host`: each machine is one existing host"
                ),
                "remove `count` and list each host as its own machine",
            );
            continue;
        }
        if let (Some(host), Some(node)) = (&host, fields.get("host")) {
            check_one_host_per_machine(ctx, node.pos, &path, host, &entry.key, &mut hosts);
            if generic {
                check_host(ctx, node.pos, &path, host);
            }
        }
        let access = read_access(ctx, &fields, &path, out.driver, &defaults, host.as_deref());
        let Some(role) = role else { continue };
        let names: Vec<String> = match count {
            None => vec![entry.key.clone()],
            Some((_, n)) => (1..=n).map(|i| format!("{}{i}", entry.key)).collect(),
        };
        for name in names {
            if name.len() > 63 {
                ctx.error(
                    entry.key_pos,
                    format!("machine name `{name}` is longer than 63 characters"),
                );
                continue;
            }
            if let Some((first, by)) = defined_at.get(&name) {
                ctx.error_help(
                    entry.key_pos,
                    format!(
                        "machine `{name}` is defined twice (by `{by}` at line {} and by `{}` here)",
                        first.line, entry.key
                    ),
                    "rename one of the entries",
                );
                continue;
            }
            defined_at.insert(name.clone(), (entry.key_pos, entry.key.clone()));
            if access != MachineAccess::default() {
                out.access.insert(name.clone(), access.clone());
                placed.insert(name.clone(), entry.key_pos);
            }
            out.machines.insert(
                name.clone(),
                MachineSpec {
                    name,
                    role,
                    labels: labels.clone(),
                    host: host.clone(),
                },
            );
        }
    }
    placed
}

/// The `tls`/`ssh` defaults of `driver_options.generic`, for the generic driver.
fn access_defaults(out: &Machines) -> MachineAccess {
    if out.driver != DriverKind::Generic {
        return MachineAccess::default();
    }
    let GenericSettings { tls, ssh } = out.driver_options.generic.clone();
    MachineAccess {
        tls,
        ssh,
        ..MachineAccess::default()
    }
}

/// `driver_options`, keyed by driver name (each driver's entry read) or written for `driver`
/// alone: each driver's options read into its struct, every problem reported where it is
/// written (an unknown key with a "did you mean").
fn read_driver_options(ctx: &mut Ctx, node: &Node, driver: DriverKind) -> DriverOptions {
    let mut options = DriverOptions::default();
    let Some(entries) = ctx.mapping(node, "driver_options") else {
        return options;
    };
    let keyed = entries.iter().any(|e| DRIVERS.contains(&e.key.as_str()));
    let written: Vec<(&Node, DriverKind, String)> = if keyed {
        (entries.iter())
            .filter_map(|e| {
                let path = join("driver_options", &e.key);
                DriverKind::named(&e.key).map(|driver| (&e.value, driver, path))
            })
            .collect()
    } else {
        vec![(node, driver, "driver_options".to_string())]
    };
    for (node, driver, path) in written {
        if matches!(node.value, yaml::Value::Null) {
            continue;
        }
        match driver {
            DriverKind::Dind => options.dind = read_dind_options(ctx, node, &path),
            DriverKind::Generic => options.generic = read_generic_options(ctx, node, &path),
            DriverKind::DockerMachine => {
                options.docker_machine = read_docker_machine_options(ctx, node, &path)
            }
            DriverKind::Qemu => options.qemu = read_qemu_options(ctx, node, &path),
            // The sim takes no options: what is written for it is another driver's.
            DriverKind::Sim => {}
        }
    }
    options
}

/// A string that must not be empty, or `None` (the problem reported, with `help`).
fn non_empty(ctx: &mut Ctx, node: &Node, at: &str, help: &str) -> Option<String> {
    match ctx.string(node, at) {
        Some(text) if !text.trim().is_empty() => Some(text),
        _ => {
            ctx.error_help(node.pos, format!("`{at}` is empty"), help);
            None
        }
    }
}

/// `driver_options.generic`: `tls` (a folder) and `ssh` (`{key, known_hosts}`).
fn read_generic_options(ctx: &mut Ctx, node: &Node, path: &str) -> GenericSettings {
    let mut out = GenericSettings::default();
    let Some(fields) = ctx.fields(node, path, GENERIC_OPTIONS, false) else {
        return out;
    };
    if let Some(tls) = fields.get("tls") {
        let at = join(path, "tls");
        out.tls = non_empty(
            ctx,
            tls,
            &at,
            "name a folder with ca.pem, cert.pem and key.pem",
        );
    }
    if let Some(ssh) = fields.get("ssh") {
        let at = join(path, "ssh");
        let help = "write `ssh: {key: keys/id_ed25519, known_hosts: keys/known_hosts}`";
        if let Some(ssh_fields) = ctx.fields(ssh, &at, SSH_KEYS, false) {
            let key = ssh_fields.get("key");
            let known_hosts = ssh_fields.get("known_hosts");
            match (key, known_hosts) {
                (Some(key), Some(known_hosts)) => {
                    let key = non_empty(ctx, key, &join(&at, "key"), help);
                    let known_hosts = non_empty(ctx, known_hosts, &join(&at, "known_hosts"), help);
                    if let (Some(key), Some(known_hosts)) = (key, known_hosts) {
                        out.ssh = Some(SshAccess { key, known_hosts });
                    }
                }
                _ => ctx.error_help(
                    ssh.pos,
                    format!("`{at}` needs `key` and `known_hosts`"),
                    help,
                ),
            }
        }
    }
    out
}

/// `driver_options.docker-machine`: known keys, non-empty strings, and `flags` and `adopt`
/// lists of strings.
fn read_docker_machine_options(ctx: &mut Ctx, node: &Node, path: &str) -> DockerMachineSettings {
    let mut out = DockerMachineSettings::default();
    let Some(fields) = ctx.fields(node, path, DOCKER_MACHINE_OPTIONS, false) else {
        return out;
    };
    for (key, help) in [
        ("binary", "name the docker-machine binary, e.g. `docker-machine` or `/usr/local/bin/docker-machine`"),
        ("storage_path", "name docker-machine's store folder, or remove the key for its default (~/.docker/machine)"),
        ("driver", "name a docker-machine driver, e.g. `virtualbox`, `amazonec2`, `google` or `none`"),
    ] {
        let Some(value) = fields.get(key) else {
            continue;
        };
        let text = non_empty(ctx, value, &join(path, key), help);
        match key {
            "binary" => out.binary = text,
            "storage_path" => out.storage_path = text,
            _ => out.driver = text,
        }
    }
    if let Some(flags) = fields.get("flags") {
        out.flags = ctx.strings(flags, &join(path, "flags"));
    }
    if let Some(adopt) = fields.get("adopt") {
        out.adopt = ctx.strings(adopt, &join(path, "adopt"));
    }
    out
}

/// `driver_options.qemu`: known keys, their types and ranges.
fn read_qemu_options(ctx: &mut Ctx, node: &Node, path: &str) -> QemuSettings {
    let mut out = QemuSettings::default();
    let Some(fields) = ctx.fields(node, path, QEMU_OPTIONS, false) else {
        return out;
    };
    if let Some(memory) = fields.get("memory") {
        out.memory = read_vm_memory(ctx, memory, &join(path, "memory"));
    }
    if let Some(cpus) = fields.get("cpus") {
        out.cpus = read_vm_cpus(ctx, cpus, &join(path, "cpus"));
    }
    if let Some(accel) = fields.get("accel") {
        out.accel = ctx.one_of(accel, &join(path, "accel"), QEMU_ACCELS);
    }
    if let Some(disk) = fields.get("disk") {
        let at = join(path, "disk");
        match ctx.size(disk, &at) {
            Some(bytes) if bytes >= QEMU_MIN_DISK => out.disk_bytes = u64::try_from(bytes).ok(),
            Some(_) => ctx.error_help(
                disk.pos,
                format!("`{at}` is smaller than 1G"),
                "give each VM at least `disk: 1G` (the default is 4G)",
            ),
            None => {}
        }
    }
    if let Some(image) = fields.get("image") {
        let help = "name a folder with vmlinuz, initrd.img and root.img, or write `auto` for the image shoal builds";
        out.image = non_empty(ctx, image, &join(path, "image"), help).filter(|i| i != "auto");
    }
    if let Some(images) = fields.get("preload_images") {
        out.preload_images = read_images(ctx, images, &join(path, "preload_images"));
    }
    if let Some(subnet) = fields.get("subnet") {
        let at = join(path, "subnet");
        if let Some(text) = ctx.string(subnet, &at) {
            match crate::model::vm_network::VmSubnet::parse(&text) {
                Ok(_) => out.subnet = Some(text),
                Err(problem) => ctx.error_help(
                    subnet.pos,
                    format!("`{at}`: {problem}"),
                    "write a private IPv4 network such as `10.213.7.0/24`, or remove the key to let shoal pick a free one",
                ),
            }
        }
    }
    if let Some(dir) = fields.get("state_dir") {
        let help = "name a folder, or remove the key for the default (~/.local/state/shoal/qemu)";
        out.state_dir = non_empty(ctx, dir, &join(path, "state_dir"), help);
    }
    if let Some(mirror) = fields.get("debian_mirror") {
        out.debian_mirror = read_mirror(ctx, mirror, &join(path, "debian_mirror"));
    }
    out
}

/// A list of image references (or one), none of them empty.
fn read_images(ctx: &mut Ctx, node: &Node, at: &str) -> Vec<String> {
    let mut images = ctx.string_or_list(node, at);
    if images.iter().any(|i| i.trim().is_empty()) {
        ctx.error(node.pos, format!("`{at}` names an empty image"));
        images.retain(|i| !i.trim().is_empty());
    }
    images
}

/// A VM's memory in MiB: at least [`QEMU_MIN_MEMORY`].
fn read_vm_memory(ctx: &mut Ctx, node: &Node, at: &str) -> Option<u32> {
    let memory = ctx.uint(node, at)?;
    if memory < QEMU_MIN_MEMORY {
        ctx.error_help(
            node.pos,
            format!("`{at}` is {memory} MiB, too little for dockerd"),
            format!("give at least {QEMU_MIN_MEMORY} (MiB; the default is 768)"),
        );
        return None;
    }
    u32::try_from(memory).ok()
}

/// A VM's virtual CPUs: 1 to [`QEMU_MAX_CPUS`].
fn read_vm_cpus(ctx: &mut Ctx, node: &Node, at: &str) -> Option<u32> {
    let cpus = ctx.uint(node, at)?;
    if !(1..=QEMU_MAX_CPUS).contains(&cpus) {
        ctx.error_help(
            node.pos,
            format!("`{at}` is {cpus}"),
            format!("give 1 to {QEMU_MAX_CPUS} virtual CPUs"),
        );
        return None;
    }
    u32::try_from(cpus).ok()
}

/// A Debian archive's URL: http:// or https://, without a trailing `/`.
fn read_mirror(ctx: &mut Ctx, node: &Node, at: &str) -> Option<String> {
    let url = ctx.string(node, at)?;
    if url.starts_with("http://") || url.starts_with("https://") {
        return Some(url.trim_end_matches('/').to_string());
    }
    ctx.error_help(
        node.pos,
        format!("`{at}` must be an http:// or https:// URL, found `{url}`"),
        "name a Debian archive such as http://deb.debian.org/debian",
    );
    None
}

/// `driver_options.dind`: known keys, their types, `registry` in full.
fn read_dind_options(ctx: &mut Ctx, node: &Node, path: &str) -> DindSettings {
    let mut out = DindSettings::default();
    let Some(fields) = ctx.fields(node, path, DIND_OPTIONS, false) else {
        return out;
    };
    if let Some(image) = fields.get("image") {
        let help =
            "name a node image on the host engine, or remove the key for the one shoal builds";
        out.image = non_empty(ctx, image, &join(path, "image"), help);
    }
    if let Some(dir) = fields.get("state_dir") {
        let help = "name a folder, or remove the key for the default (/tmp/shoal-dind)";
        out.state_dir = non_empty(ctx, dir, &join(path, "state_dir"), help);
    }
    if let Some(images) = fields.get("preload_images") {
        out.preload_images = read_images(ctx, images, &join(path, "preload_images"));
    }
    if let Some(engine) = fields.get("engine") {
        out.engine = ctx.one_of(engine, &join(path, "engine"), DIND_ENGINES);
    }
    if let Some(mirror) = fields.get("debian_mirror") {
        out.debian_mirror = read_mirror(ctx, mirror, &join(path, "debian_mirror"));
    }
    if let Some(registry) = fields.get("registry") {
        out.registry = read_registry(ctx, registry, &join(path, "registry"));
    }
    out
}

/// `registry: true | false | PORT | {port: PORT, htpasswd: FILE}`.
fn read_registry(ctx: &mut Ctx, node: &Node, path: &str) -> Option<RegistrySettings> {
    match RegistryOptions::from_json(&to_json(node), Path::new("")) {
        Ok(registry) => registry.map(|r| RegistrySettings {
            port: r.port,
            htpasswd: r.htpasswd.map(|p| p.to_string_lossy().into_owned()),
        }),
        Err(problem) => {
            ctx.error_help(
                node.pos,
                problem.replacen("driver_options.registry", path, 1),
                "write `registry: true` (port 5000), a port such as `registry: 5001`, or `registry: {port: 5001, htpasswd: registry.htpasswd}`",
            );
            None
        }
    }
}

/// One host, one machine: `host` in canonical form (see [`canonical_endpoint`]) must not be
/// another machine's already (`hosts`: canonical address → machine and where it is written).
fn check_one_host_per_machine(
    ctx: &mut Ctx,
    pos: Pos,
    path: &str,
    host: &str,
    machine: &str,
    hosts: &mut BTreeMap<String, (String, Pos)>,
) {
    let canonical = match canonical_endpoint(host) {
        Some(Ok(canonical)) => canonical,
        Some(Err(EndpointProblem::AmbiguousIpv4 { written, decimal })) => {
            ctx.error_help(
                pos,
                format!("`{path}.host` {host}: the address {written} has an octet with a leading zero, which some resolvers read as octal"),
                format!("write it without leading zeros ({decimal}) if that is the host meant"),
            );
            host.to_string()
        }
        None => host.to_string(),
    };
    if let Some((other, _)) = hosts.get(&canonical) {
        ctx.error_help(
            pos,
            format!("`{path}.host` {host} is also the host of machine `{other}`"),
            "each machine must be its own host: keep one of the two machines, or fix the address",
        );
    } else {
        hosts.insert(canonical, (machine.to_string(), pos));
    }
}

/// A generic host's address: `ssh://`, `tcp://` or `unix://`.
fn check_host(ctx: &mut Ctx, pos: Pos, path: &str, host: &str) {
    let known = ["ssh://", "tcp://", "unix:///"];
    if !known.iter().any(|scheme| host.starts_with(scheme)) || host.len() <= "tcp://".len() {
        ctx.error_help(
            pos,
            format!("`{path}.host` `{host}` is not an engine address"),
            "write `ssh://user@address[:port]`, `tcp://address:2376` (with `tls:`) or `unix:///var/run/docker.sock`",
        );
    }
}

/// A machine's `tls`, `ssh` and `flags`, with the defaults applied where its host needs them.
fn read_access(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    path: &str,
    driver: DriverKind,
    defaults: &MachineAccess,
    host: Option<&str>,
) -> MachineAccess {
    let mut access = MachineAccess::default();
    let generic = driver == DriverKind::Generic;
    for key in ["tls", "ssh"] {
        if let (Some(pos), false) = (fields.key_pos(key), generic) {
            ctx.error_help(
                pos,
                format!("`{path}.{key}` is only used by the generic driver"),
                format!("remove `{key}`, or set `driver: generic`"),
            );
        }
    }
    if let Some(pos) = fields.key_pos("flags") {
        if driver != DriverKind::DockerMachine {
            ctx.error_help(
                pos,
                format!("`{path}.flags` is only used by the docker-machine driver"),
                "remove `flags`, or set `driver: docker-machine`",
            );
        }
    }
    if let Some(node) = fields.get("flags") {
        access.flags = ctx.strings(node, &join(path, "flags"));
    }
    for key in ["memory", "cpus"] {
        if let (Some(pos), false) = (fields.key_pos(key), driver == DriverKind::Qemu) {
            ctx.error_help(
                pos,
                format!("`{path}.{key}` is only used by the qemu driver"),
                format!("remove `{key}`, or set `driver: qemu`"),
            );
        }
    }
    if let Some(node) = fields.get("memory") {
        access.memory = read_vm_memory(ctx, node, &join(path, "memory"));
    }
    if let Some(node) = fields.get("cpus") {
        access.cpus = read_vm_cpus(ctx, node, &join(path, "cpus"));
    }
    if !generic {
        return access;
    }
    let tls = fields
        .get("tls")
        .and_then(|node| ctx.string(node, &join(path, "tls")))
        .or_else(|| defaults.tls.clone());
    let ssh = match fields.get("ssh") {
        None => defaults.ssh.clone(),
        Some(node) => {
            let ssh_path = join(path, "ssh");
            ctx.fields(node, &ssh_path, SSH_KEYS, false)
                .and_then(|ssh| {
                    let file = |ctx: &mut Ctx, key: &str| {
                        ssh.get(key)
                            .and_then(|n| ctx.string(n, &join(&ssh_path, key)))
                    };
                    match (file(ctx, "key"), file(ctx, "known_hosts")) {
                        (Some(key), Some(known_hosts)) => Some(SshAccess { key, known_hosts }),
                        _ => {
                            ctx.error_help(
                            node.pos,
                            format!("`{ssh_path}` needs `key` and `known_hosts`"),
                            "write `ssh: {key: keys/id_ed25519, known_hosts: keys/known_hosts}`",
                        );
                            None
                        }
                    }
                })
        }
    };
    let at = fields.key_pos("host").unwrap_or(fields.pos);
    match host {
        Some(host) if host.starts_with("tcp://") => {
            if tls.is_none() {
                ctx.error_help(
                    at,
                    format!("`{path}.host` {host} has no TLS: plain tcp:// is refused, it would hand the engine to anyone on the network"),
                    "add `tls: certs/<machine>` (a folder with ca.pem, cert.pem, key.pem) or `driver_options.generic.tls`",
                );
            }
            access.tls = tls;
        }
        Some(host) if host.starts_with("ssh://") => {
            if ssh.is_none() {
                ctx.error_help(
                    at,
                    format!("`{path}.host` {host} has no ssh key and known_hosts"),
                    "add `ssh: {key: keys/id_ed25519, known_hosts: keys/known_hosts}` or `driver_options.generic.ssh`",
                );
            }
            access.ssh = ssh;
        }
        _ => {}
    }
    access
}

/// Checks the files each machine's access names: cert folders hold three PEM files that parse,
/// and a known_hosts file holds an entry for its ssh host. Absolute paths (outside the
/// repository) are checked too, where shoal runs, as the driver will read them.
fn check_access(ctx: &mut Ctx, files: &dyn FileSource, out: &Machines, placed: &Placed) {
    for (name, access) in &out.access {
        let pos = placed.get(name).copied().unwrap_or_default();
        if let Some(dir) = access.tls.as_deref() {
            let problems: Vec<(String, String)> = TLS_FILES
                .iter()
                .filter_map(|file| {
                    let path = format!("{}/{file}", dir.trim_end_matches('/'));
                    pem_problem(files, &path, *file == "key.pem").map(|problem| (path, problem))
                })
                .collect();
            let folder_elsewhere = problems.len() == TLS_FILES.len()
                && problems.iter().all(|(p, why)| missing_elsewhere(p, why));
            if folder_elsewhere {
                ctx.warn_help(
                    pos,
                    format!("machine `{name}`: TLS folder {dir} does not exist here"),
                    ELSEWHERE,
                );
            } else {
                for (path, problem) in problems {
                    ctx.error_help(
                        pos,
                        format!("machine `{name}`: TLS file {path} {problem}"),
                        "the tls folder holds ca.pem (the engine's CA), cert.pem and key.pem (a client certificate that CA signed), as `docker-machine` or `DOCKER_CERT_PATH` use them",
                    );
                }
            }
        }
        let Some(ssh) = &access.ssh else { continue };
        let host = out.machines.get(name).and_then(|m| m.host.as_deref());
        match readable(files, &ssh.key) {
            Some(problem) if missing_elsewhere(&ssh.key, &problem) => ctx.warn_help(
                pos,
                format!("machine `{name}`: ssh key {} does not exist here", ssh.key),
                ELSEWHERE,
            ),
            Some(problem) => ctx.error(
                pos,
                format!("machine `{name}`: ssh key {} {problem}", ssh.key),
            ),
            None => {}
        }
        match read_file(files, &ssh.known_hosts) {
            Ok(Some(bytes)) => {
                let Some((host, port)) = host.and_then(ssh_host) else {
                    continue;
                };
                if !known_host(&String::from_utf8_lossy(&bytes), &host, port) {
                    let entry = if port == 22 {
                        host.clone()
                    } else {
                        format!("[{host}]:{port}")
                    };
                    ctx.error_help(
                        pos,
                        format!(
                            "machine `{name}`: {} has no entry for {entry}",
                            ssh.known_hosts
                        ),
                        format!(
                            "add the host's key, after checking it: ssh-keyscan{} {host} >> {}",
                            if port == 22 {
                                String::new()
                            } else {
                                format!(" -p {port}")
                            },
                            ssh.known_hosts
                        ),
                    );
                }
            }
            Ok(None) if ssh.known_hosts.starts_with('/') => ctx.warn_help(
                pos,
                format!(
                    "machine `{name}`: known_hosts file {} does not exist here",
                    ssh.known_hosts
                ),
                ELSEWHERE,
            ),
            Ok(None) => ctx.error(
                pos,
                format!(
                    "machine `{name}`: known_hosts file {} does not exist",
                    ssh.known_hosts
                ),
            ),
            Err(problem) => ctx.error(
                pos,
                format!(
                    "machine `{name}`: known_hosts file {} {problem}",
                    ssh.known_hosts
                ),
            ),
        }
    }
}

/// What to do about an absolute path that does not exist where validate runs.
const ELSEWHERE: &str = "an absolute path is read where shoal runs (e.g. a swarm secret under /run/secrets in a watcher's container): make sure it exists there; a file that exists here is checked";

/// Whether `problem` with `path` is only that an absolute path does not exist here: it may
/// exist where shoal runs, so it is a warning, not an error.
fn missing_elsewhere(path: &str, problem: &str) -> bool {
    path.starts_with('/') && problem == "does not exist"
}

/// A file machines.yml names: inside the repository by relative path, else (absolute) where
/// shoal runs; `None` when it does not exist, else what keeps it from being read.
fn read_file(files: &dyn FileSource, path: &str) -> Result<Option<Vec<u8>>, String> {
    let read = if path.starts_with('/') {
        files.read_outside(path)
    } else {
        files.read(&resolve_path("", path)?)
    };
    read.map_err(|e| format!("cannot be read: {e}"))
}

fn readable(files: &dyn FileSource, path: &str) -> Option<String> {
    match read_file(files, path) {
        Err(problem) => Some(problem),
        Ok(Some(_)) => None,
        Ok(None) => Some("does not exist".to_string()),
    }
}

/// What is wrong with a PEM file of a cert folder, if anything.
fn pem_problem(files: &dyn FileSource, path: &str, key: bool) -> Option<String> {
    let bytes = match read_file(files, path) {
        Err(problem) => return Some(problem),
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Some("does not exist".to_string()),
    };
    if key {
        return PrivateKeyDer::from_pem_slice(&bytes)
            .err()
            .map(|_| "is not a PEM private key".to_string());
    }
    match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => None,
        _ => Some("is not a PEM certificate".to_string()),
    }
}

/// The host and port of an `ssh://[user@]host[:port]` address.
fn ssh_host(address: &str) -> Option<(String, u16)> {
    let rest = address.strip_prefix("ssh://")?.trim_end_matches('/');
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(22), |p| p.parse().ok())?;
        return Some((host.to_string(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((host_port.to_string(), 22)),
    }
}

/// Whether a known_hosts text has an entry that may be `host`'s (hashed entries cannot be read
/// without the host's name hashed the same way, so they count as possible matches).
fn known_host(text: &str, host: &str, port: u16) -> bool {
    let wanted = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let first = words.next()?;
            if first == "@revoked" {
                return None;
            }
            if first.starts_with('@') {
                words.next()
            } else {
                Some(first)
            }
        })
        .any(|hosts| hosts.starts_with("|1|") || hosts.split(',').any(|h| h == wanted))
}

/// Refuses node label keys that the docker CLI and the engine cannot take back apart:
/// `node update --label-add key=value` splits at the first `=`, and an empty or spaced key
/// cannot be named in a placement constraint.
fn check_label_keys(ctx: &mut Ctx, node: &Node, path: &str, labels: &BTreeMap<String, String>) {
    for key in labels.keys() {
        let problem = if key.is_empty() {
            "is empty"
        } else if key.contains('=') {
            "holds `=`"
        } else if key.chars().any(char::is_whitespace) {
            "holds white space"
        } else if key.len() > MAX_LABEL_KEY {
            "is longer than 255 characters"
        } else if key.starts_with(crate::model::LABEL_PREFIX) {
            "is one of shoal's own (`io.shoal.`), which record which machine a node is"
        } else {
            continue;
        };
        let pos = node
            .entries()
            .and_then(|entries| entries.iter().find(|e| &e.key == key))
            .map_or(node.pos, |e| e.key_pos);
        ctx.error_help(
            pos,
            format!("`{path}`: label key `{}` {problem}", shorten(key)),
            "use a key of letters, digits, `.`, `_` and `-` (e.g. `zone`), and put the rest in the value",
        );
    }
}

/// `text` cut to a length that fits in a message.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 64 {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(64).collect::<String>())
    }
}

fn check_managers(ctx: &mut Ctx, pos: Pos, machines: &BTreeMap<String, MachineSpec>) {
    if machines.is_empty() {
        return;
    }
    if machines.len() > MAX_MACHINES {
        ctx.error_help(
            pos,
            format!(
                "machines.yml describes {} machines; shoal manages at most {MAX_MACHINES}",
                machines.len()
            ),
            "lower the `count`s, or split the cluster",
        );
    }
    let managers = machines
        .values()
        .filter(|m| m.role == Role::Manager)
        .count();
    if managers == 0 {
        ctx.error_help(
            pos,
            "no machine has `role: manager`: a swarm needs at least one manager",
            "give one machine (or three, for fault tolerance) `role: manager`",
        );
    } else if managers % 2 == 0 {
        let tolerated = (managers - 1) / 2;
        ctx.warn_help(
            pos,
            format!(
                "{managers} managers: Raft tolerates (N-1)/2 = {tolerated} lost manager(s), so {managers} is no safer than {}",
                managers - 1
            ),
            format!("use an odd number of managers ({} or {})", managers - 1, managers + 1),
        );
    }
}

fn read_stacks(ctx: &mut Ctx, node: &Node, out: &mut Machines) {
    let Some(entries) = ctx.mapping(node, "stacks") else {
        return;
    };
    for entry in entries {
        if !check_name(ctx, entry.key_pos, "stack name", &entry.key) {
            continue;
        }
        let path = join("stacks", &entry.key);
        let written = match &entry.value.value {
            Value::Seq(_) => ctx.strings(&entry.value, &path),
            _ => ctx.string(&entry.value, &path).into_iter().collect(),
        };
        if written.is_empty() {
            ctx.error_help(
                entry.key_pos,
                format!("stack `{}` names no compose file", entry.key),
                format!(
                    "write `{0}: docker-compose.yml`, or a list merged in order: `{0}: [docker-compose.yml, docker-compose.prod.yml]`",
                    entry.key
                ),
            );
            continue;
        }
        let files: Vec<String> = written
            .iter()
            .filter_map(|file| match resolve_path("", file) {
                Ok(file) => Some(file),
                Err(problem) => {
                    ctx.error(entry.value.pos, format!("stack `{}`: {problem}", entry.key));
                    None
                }
            })
            .collect();
        if files.len() == written.len() {
            out.stacks.push(StackRef {
                name: entry.key.clone(),
                files,
                pos: entry.value.pos,
                optional: false,
            });
        }
    }
}

fn read_policy(ctx: &mut Ctx, node: &Node, policy: &mut Policy) {
    let Some(fields) = ctx.fields(node, "policy", POLICY_KEYS, false) else {
        return;
    };
    let flags: [(&str, &mut bool); 3] = [
        ("prune", &mut policy.prune),
        ("self_heal", &mut policy.self_heal),
        ("rebalance", &mut policy.rebalance),
    ];
    for (key, slot) in flags {
        if let Some(value) = fields
            .get(key)
            .and_then(|n| ctx.bool(n, &join("policy", key)))
        {
            *slot = value;
        }
    }
    if let Some(ns) = fields
        .get("down_grace")
        .and_then(|n| ctx.duration(n, "policy.down_grace"))
    {
        policy.down_grace_seconds = (ns / 1_000_000_000) as u64;
    }
    if let Some(node) = fields.get("show_values") {
        policy.show_values = ctx.strings(node, "policy.show_values");
    }
    if let Some(node) = fields.get("images") {
        match ctx.string(node, "policy.images").as_deref() {
            Some("pin") => policy.images = ImagePolicy::Pin,
            Some("as-written") => policy.images = ImagePolicy::AsWritten,
            Some(other) => ctx.error_help(
                node.pos,
                format!("`policy.images` is `{other}`"),
                "write `pin` (resolve tags to digests, the default) or `as-written`",
            ),
            None => {}
        }
    }
    if let Some(node) = fields.get("on_failure") {
        match ctx.string(node, "policy.on_failure").as_deref() {
            Some("hold") => policy.on_failure = OnFailure::Hold,
            Some("rollback") => policy.on_failure = OnFailure::Rollback,
            Some(other) => ctx.error_help(
                node.pos,
                format!("`policy.on_failure` is `{other}`"),
                "write `hold` (keep the failed commit, the default) or `rollback` (apply the last healthy revision's services, secrets and configs again)",
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MemSource;
    use crate::diag::Severity;

    fn run(machines: &str, extra: &[(&str, &str)]) -> (Machines, Vec<Diagnostic>) {
        let mut files = vec![("machines.yml", machines)];
        files.extend_from_slice(extra);
        let source = MemSource::new("My_Repo", files);
        let mut diags = Vec::new();
        let out = load(&source, &mut diags);
        (out, diags)
    }

    fn errors(diags: &[Diagnostic]) -> Vec<&Diagnostic> {
        let mut errors: Vec<&Diagnostic> = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        errors.sort_by_key(|d| (d.line, d.column));
        errors
    }

    #[test]
    fn expands_counts_and_defaults() {
        let (out, diags) = run(
            "machines:\n  vm-manager:\n    role: manager\n  vm-worker:\n    role: worker\n    count: 3\n    labels: {zone: a}\n  spare:\n    role: worker\n    count: 0\n",
            &[("docker-compose.yml", "services: {}\n")],
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(out.cluster, "my-repo");
        assert_eq!(
            out.machines.keys().collect::<Vec<_>>(),
            ["vm-manager", "vm-worker1", "vm-worker2", "vm-worker3"]
        );
        assert_eq!(out.machines["vm-worker2"].labels["zone"], "a");
        assert_eq!(out.stacks.len(), 1);
        assert_eq!(out.stacks[0].name, "my-repo");
        assert!(out.stacks[0].optional);
        assert_eq!(out.policy, Policy::default());
        assert_eq!(out.driver_options, DriverOptions::default());
    }

    #[test]
    fn explicit_empty_stacks() {
        let (out, diags) = run("cluster: c\nstacks: {}\n", &[("docker-compose.yml", "")]);
        assert!(diags.is_empty(), "{diags:?}");
        assert!(out.stacks.is_empty());
        assert!(out.machines.is_empty());
    }

    #[test]
    fn unknown_keys_and_typos() {
        let (_, diags) = run(
            "cluster: c\ndriverr: sim\nmachines:\n  m:\n    role: manger\n    cnt: 2\npolicy:\n  prun: false\n",
            &[],
        );
        let errors = errors(&diags);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (2, 1));
        assert_eq!(errors[0].help.as_deref(), Some("did you mean `driver`?"));
        assert!(errors[1].message.contains("`manger`"), "{errors:?}");
        assert_eq!(errors[1].help.as_deref(), Some("did you mean `manager`?"));
        assert_eq!(errors[2].message, "unknown key `cnt` in `machines.m`");
        assert_eq!(errors[3].help.as_deref(), Some("did you mean `prune`?"));
    }

    #[test]
    fn on_failure_is_hold_or_rollback_with_the_line_of_a_wrong_one() {
        let (out, diags) = run("cluster: c\npolicy:\n  on_failure: rollback\n", &[]);
        assert!(errors(&diags).is_empty(), "{diags:?}");
        assert_eq!(out.policy.on_failure, OnFailure::Rollback);
        let (out, _) = run("cluster: c\npolicy:\n  on_failure: hold\n", &[]);
        assert_eq!(out.policy.on_failure, OnFailure::Hold);
        let (out, diags) = run(
            "cluster: c\npolicy:\n  prune: true\n  on_failure: revert\n",
            &[],
        );
        let errors = errors(&diags);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (4, 15));
        assert_eq!(errors[0].message, "`policy.on_failure` is `revert`");
        assert!(errors[0].help.as_deref().unwrap().contains("`rollback`"));
        assert_eq!(
            out.policy.on_failure,
            OnFailure::Hold,
            "a bad value keeps the default"
        );
        let (_, diags) = run("cluster: c\npolicy:\n  on_failur: rollback\n", &[]);
        assert_eq!(
            self::errors(&diags)[0].help.as_deref(),
            Some("did you mean `on_failure`?")
        );
    }

    #[test]
    fn names_must_be_dns_safe_and_unique() {
        let (_, diags) = run(
            "cluster: Bad_Name\nmachines:\n  m:\n    role: manager\n  w:\n    role: worker\n    count: 2\n  w1:\n    role: worker\n  9x:\n    role: worker\n",
            &[],
        );
        let errors = errors(&diags);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].message.contains("cluster name `Bad_Name`"));
        assert_eq!(
            errors[0].help.as_deref(),
            Some("names must be DNS-safe, e.g. `bad-name`")
        );
        assert!(
            errors[1].message.contains("`w1` is defined twice"),
            "{errors:?}"
        );
        assert!(errors[2]
            .message
            .contains("`9x` must start with a lowercase letter"));
    }

    #[test]
    fn managers_rules() {
        let (_, diags) = run("machines:\n  w:\n    role: worker\n", &[]);
        assert!(errors(&diags)[0].message.contains("at least one manager"));
        let (_, diags) = run("machines:\n  m:\n    role: manager\n    count: 4\n", &[]);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, Severity::Warning);
        assert!(
            diags[0].message.contains("4 is no safer than 3"),
            "{diags:?}"
        );
    }

    #[test]
    fn generic_hosts() {
        let (out, diags) = run(
            "driver: generic\nmachines:\n  a:\n    role: manager\n    host: unix:///var/run/docker.sock\n  b:\n    role: worker\n",
            &[],
        );
        assert_eq!(out.driver, DriverKind::Generic);
        assert_eq!(
            out.machines["a"].host.as_deref(),
            Some("unix:///var/run/docker.sock")
        );
        assert!(errors(&diags)[0].message.contains("no `host`"));
        let (_, diags) = run(
            "machines:\n  a:\n    role: manager\n    host: ssh://u@h\n",
            &[],
        );
        assert!(errors(&diags)[0]
            .message
            .contains("only used by the generic driver"));
    }

    #[test]
    fn docker_machine_options() {
        let (out, diags) = run(
            "driver: docker-machine\ndriver_options:\n  docker-machine:\n    driver: none\n    flags: [\"--engine-label=a\"]\nmachines:\n  a:\n    role: manager\n    flags: [\"--url\", \"tcp://10.1.0.2:2376\"]\n",
            &[],
        );
        assert!(errors(&diags).is_empty(), "{diags:?}");
        assert_eq!(out.access["a"].flags, ["--url", "tcp://10.1.0.2:2376"]);
        let (_, diags) = run(
            "driver: docker-machine\ndriver_options:\n  drvier: none\n  storage_path: ''\n  flags: --x\nmachines:\n  a:\n    role: manager\n",
            &[],
        );
        let messages: Vec<String> = errors(&diags).iter().map(|d| d.message.clone()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            messages[0].contains("unknown key `drvier` in `driver_options`"),
            "{messages:?}"
        );
        assert_eq!(diags[0].help.as_deref(), Some("did you mean `driver`?"));
        assert!(
            messages[1].contains("`driver_options.storage_path` is empty"),
            "{messages:?}"
        );
        assert!(messages[2].contains("driver_options.flags"), "{messages:?}");
        // Options keyed by another driver's name are read too (`--driver` may pick them).
        let (_, diags) = run(
            "driver: dind\ndriver_options:\n  docker-machine: {drvier: x}\nmachines:\n  a:\n    role: manager\n",
            &[],
        );
        let errors = errors(&diags);
        assert_eq!(errors.len(), 1, "{diags:?}");
        assert!(
            errors[0]
                .message
                .contains("unknown key `drvier` in `driver_options.docker-machine`"),
            "{diags:?}"
        );
    }

    #[test]
    fn qemu_options_and_per_machine_sizes() {
        let (out, diags) = run(
            "driver: qemu\ndriver_options:\n  qemu:\n    memory: 1024\n    cpus: 2\n    accel: tcg\n    disk: 8G\n    image: auto\n    subnet: 10.213.7.0/24\n    preload_images: [dataservice:1]\nmachines:\n  a:\n    role: manager\n    memory: 512\n    cpus: 1\n",
            &[],
        );
        assert!(errors(&diags).is_empty(), "{diags:?}");
        let qemu = &out.driver_options.qemu;
        assert_eq!((qemu.memory, qemu.cpus), (Some(1024), Some(2)));
        assert_eq!(qemu.accel.as_deref(), Some("tcg"));
        assert_eq!(qemu.disk_bytes, Some(8 << 30));
        assert_eq!(qemu.image, None, "`auto` is the built image");
        assert_eq!(qemu.subnet.as_deref(), Some("10.213.7.0/24"));
        assert_eq!(qemu.preload_images, ["dataservice:1"]);
        assert_eq!(
            (out.access["a"].memory, out.access["a"].cpus),
            (Some(512), Some(1))
        );
        let (_, diags) = run(
            "driver: qemu\ndriver_options:\n  memory: 64\n  cpus: 0\n  accel: fast\n  disk: 10M\n  subnet: 8.8.8.0/24\n  memroy: 1\nmachines:\n  a:\n    role: manager\n",
            &[],
        );
        let messages: Vec<String> = errors(&diags).iter().map(|d| d.message.clone()).collect();
        for (says, line) in [
            ("unknown key `memroy`", 8),
            ("`driver_options.memory` is 64 MiB", 3),
            ("`driver_options.cpus` is 0", 4),
            ("driver_options.accel", 5),
            ("`driver_options.disk` is smaller than 1G", 6),
            ("not in a private range", 7),
        ] {
            let found = errors(&diags)
                .into_iter()
                .find(|d| d.message.contains(says))
                .unwrap_or_else(|| panic!("no error saying {says}: {messages:?}"));
            assert_eq!(found.line, line, "{says}: {messages:?}");
        }
        let (_, diags) = run(
            "driver: dind\nmachines:\n  a:\n    role: manager\n    memory: 1024\n",
            &[],
        );
        let errors = errors(&diags);
        assert_eq!(errors.len(), 1, "{diags:?}");
        assert!(
            errors[0]
                .message
                .contains("`machines.a.memory` is only used by the qemu driver"),
            "{diags:?}"
        );
        assert_eq!(errors[0].line, 5);
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAo=\n-----END CERTIFICATE-----\n";

    #[test]
    fn absolute_files_missing_here_are_warned_about_not_refused() {
        let machines = "driver: generic\nmachines:\n  a:\n    role: manager\n    host: tcp://10.1.0.2:2376\n    tls: /run/secrets/certs\n  b:\n    role: worker\n    host: ssh://root@10.1.0.3\n    ssh: {key: /run/secrets/key, known_hosts: /run/secrets/known_hosts}\n";
        let (_, diags) = run(machines, &[]);
        assert!(errors(&diags).is_empty(), "{diags:#?}");
        let warned: Vec<&String> = diags.iter().map(|d| &d.message).collect();
        assert_eq!(warned.len(), 3, "{warned:#?}");
        assert!(warned.iter().all(|w| w.contains("does not exist here")));
    }

    #[test]
    fn absolute_tls_folders_and_ssh_files_are_checked_too() {
        let machines = "driver: generic\nmachines:\n  a:\n    role: manager\n    host: tcp://10.1.0.2:2376\n    tls: /etc/shoal/certs\n  b:\n    role: worker\n    host: ssh://root@10.1.0.3\n    ssh: {key: /etc/shoal/id, known_hosts: /etc/shoal/known_hosts}\n";
        let files = [
            ("/etc/shoal/certs/ca.pem", CERT),
            ("/etc/shoal/certs/key.pem", KEY),
            ("/etc/shoal/id", "key"),
            ("/etc/shoal/known_hosts", "10.9.9.9 ssh-ed25519 AAAA\n"),
        ];
        let (_, diags) = run(machines, &files);
        let found: Vec<String> = errors(&diags).iter().map(|d| d.message.clone()).collect();
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found
            .iter()
            .any(|e| e.contains("TLS file /etc/shoal/certs/cert.pem does not exist")));
        assert!(found
            .iter()
            .any(|e| e.contains("/etc/shoal/known_hosts has no entry for 10.1.0.3")));
    }
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAo=\n-----END PRIVATE KEY-----\n";

    #[test]
    fn generic_access_is_checked() {
        let machines = "driver: generic\ndriver_options:\n  generic:\n    tls: certs\nmachines:\n  a:\n    role: manager\n    host: tcp://10.1.0.2:2376\n  b:\n    role: worker\n    host: ssh://root@10.1.0.3:2222\n    ssh: {key: keys/id, known_hosts: keys/known_hosts}\n  c:\n    role: worker\n    host: tcp://10.1.0.2:2376\n    count: 2\n";
        let files = [
            ("certs/ca.pem", CERT),
            ("certs/cert.pem", "not pem"),
            ("certs/key.pem", KEY),
            ("keys/id", "key"),
            ("keys/known_hosts", "10.1.0.3 ssh-ed25519 AAAA\n"),
        ];
        let (out, diags) = run(machines, &files);
        let found: Vec<String> = errors(&diags).iter().map(|d| d.message.clone()).collect();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found
            .iter()
            .any(|e| e.contains("`machines.c.count` cannot be used with `host`")));
        assert!(found
            .iter()
            .any(|e| e.contains("certs/cert.pem is not a PEM certificate")));
        assert!(found
            .iter()
            .any(|e| e.contains("has no entry for [10.1.0.3]:2222")));
        assert_eq!(out.access["a"].tls.as_deref(), Some("certs"));
        assert_eq!(out.access["b"].ssh.as_ref().unwrap().key, "keys/id");
        let (_, diags) = run(
            "driver: generic\nmachines:\n  a:\n    role: manager\n    host: tcp://10.1.0.2:2375\n  b:\n    role: worker\n    host: tcp://10.1.0.2:2375\n",
            &[],
        );
        let found: Vec<String> = errors(&diags).iter().map(|d| d.message.clone()).collect();
        assert!(
            found.iter().any(|e| e.contains("plain tcp:// is refused")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|e| e.contains("is also the host of machine `a`")),
            "{found:?}"
        );
    }

    #[test]
    fn one_host_written_two_ways_is_one_host() {
        for (a, b) in [
            ("tcp://10.1.0.2:2376", "tcp://10.1.0.2:2376/"),
            ("tcp://10.1.0.2:2376", "tcp://10.1.0.2"),
            ("tcp://10.1.0.2:2376", "tcp://[::ffff:10.1.0.2]:2376"),
            ("ssh://root@h1", "ssh://admin@H1:22"),
        ] {
            let (_, diags) = run(
                &format!("driver: generic\ndriver_options:\n  generic:\n    tls: /etc/certs\n    ssh: {{key: /etc/id, known_hosts: /etc/kh}}\nmachines:\n  a:\n    role: manager\n    host: {a}\n  b:\n    role: worker\n    host: {b}\n"),
                &[],
            );
            let found: Vec<String> = errors(&diags).iter().map(|d| d.message.clone()).collect();
            assert!(
                found
                    .iter()
                    .any(|e| e.contains("is also the host of machine `a`")),
                "{a} / {b}: {found:?}"
            );
        }
        let (_, diags) = run(
            "driver: generic\nmachines:\n  a:\n    role: manager\n    host: tcp://172.030.078.014:2376\n    tls: /etc/certs\n",
            &[],
        );
        let found: Vec<String> = errors(&diags).iter().map(|d| d.message.clone()).collect();
        assert!(
            found.iter().any(|e| e.contains("leading zero")),
            "{found:?}"
        );
    }

    #[test]
    fn known_hosts_entries() {
        let text =
            "# c\n@revoked h1 ssh-ed25519 A\nh2,10.0.0.2 ssh-ed25519 A\n[h3]:2222 ssh-rsa B\n";
        assert!(!known_host(text, "h1", 22));
        assert!(known_host(text, "10.0.0.2", 22));
        assert!(known_host(text, "h3", 2222));
        assert!(!known_host(text, "h3", 22));
        assert!(known_host("|1|abc|def ssh-ed25519 A\n", "any", 22));
        assert_eq!(ssh_host("ssh://u@h:2222"), Some(("h".to_string(), 2222)));
        assert_eq!(ssh_host("ssh://h"), Some(("h".to_string(), 22)));
    }

    #[test]
    fn dind_registry_options_are_checked_with_their_line() {
        let machines = |options: &str| {
            format!("driver: dind\ndriver_options:\n{options}machines:\n  a:\n    role: manager\n")
        };
        for good in [
            "  registry: true\n",
            "  registry: 5001\n",
            "  dind:\n    registry: {port: 5001, htpasswd: auth/htpasswd}\n",
            "  registry: false\n  preload_images: app:1\n",
            "  engine: 28\n",
            "  dind:\n    engine: \"26\"\n    debian_mirror: https://deb.example/debian\n",
        ] {
            let (_, diags) = run(&machines(good), &[]);
            assert!(errors(&diags).is_empty(), "{good}: {diags:?}");
        }
        for (bad, line, says) in [
            ("  registry: yes please\n", 3, "must be true, a port"),
            ("  registry: 70000\n", 3, "must be a port number"),
            ("  registry:\n    port: x\n", 4, "must be a port number"),
            ("  registry:\n    prot: 5001\n", 4, "unknown key `prot`"),
            ("  registry:\n    htpasswd: ''\n", 4, "must be a file path"),
            (
                "  dind:\n    registry: [1]\n",
                4,
                "driver_options.dind.registry must be",
            ),
            (
                "  engine: \"27\"\n",
                3,
                "`driver_options.engine` must be one of `host`, `26`, `28`, found `27`",
            ),
            (
                "  debian_mirror: deb.debian.org\n",
                3,
                "must be an http:// or https:// URL",
            ),
        ] {
            let (_, diags) = run(&machines(bad), &[]);
            let errors = errors(&diags);
            assert_eq!(errors.len(), 1, "{bad}: {diags:?}");
            assert_eq!(errors[0].line, line, "{bad}: {diags:?}");
            assert!(errors[0].message.contains(says), "{bad}: {diags:?}");
        }
        let (_, diags) = run(
            "driver: sim\ndriver_options:\n  registry: nonsense\nmachines:\n  a:\n    role: manager\n",
            &[],
        );
        assert!(
            errors(&diags).is_empty(),
            "only the driver in use is checked"
        );
    }

    #[test]
    fn an_unknown_dind_option_is_an_error_with_its_line_and_a_suggestion() {
        for (options, line, says, help) in [
            (
                "  preload_imgaes: [app:1]\n",
                3,
                "unknown key `preload_imgaes` in `driver_options`",
                "did you mean `preload_images`?",
            ),
            (
                "  dind:\n    engnie: 28\n",
                4,
                "unknown key `engnie` in `driver_options.dind`",
                "did you mean `engine`?",
            ),
            (
                "  dind:\n    n: 2\n",
                4,
                "unknown key `n` in `driver_options.dind`",
                "known keys: image, preload_images, engine",
            ),
        ] {
            let (_, diags) = run(
                &format!(
                    "driver: dind\ndriver_options:\n{options}machines:\n  a:\n    role: manager\n"
                ),
                &[],
            );
            let errors = errors(&diags);
            assert_eq!(errors.len(), 1, "{options}: {diags:?}");
            assert_eq!(errors[0].line, line, "{options}: {diags:?}");
            assert!(errors[0].message.contains(says), "{options}: {diags:?}");
            let shown = errors[0].help.as_deref().unwrap_or_default();
            assert!(shown.contains(help), "{options}: {diags:?}");
        }
    }

    #[test]
    fn generic_option_problems_name_their_line() {
        for (options, line, says) in [
            (
                "  generic:\n    tls: ''\n",
                4,
                "`driver_options.generic.tls` is empty",
            ),
            (
                "  generic:\n    ssh: {key: keys/id}\n",
                4,
                "`driver_options.generic.ssh` needs `key` and `known_hosts`",
            ),
            (
                "  generic:\n    tsl: certs\n",
                4,
                "unknown key `tsl` in `driver_options.generic`",
            ),
        ] {
            let (_, diags) = run(
                &format!("driver: generic\ndriver_options:\n{options}machines:\n  a:\n    role: manager\n    host: unix:///var/run/docker.sock\n"),
                &[],
            );
            let errors = errors(&diags);
            assert_eq!(errors.len(), 1, "{options}: {diags:?}");
            assert_eq!(errors[0].line, line, "{options}: {diags:?}");
            assert!(errors[0].message.contains(says), "{options}: {diags:?}");
        }
    }

    #[test]
    fn stacks_policy_and_options() {
        let (out, diags) = run(
            "cluster: dataapp\ndriver: dind\ndriver_options: {preload_images: [dataservice:1], engine: host}\nstacks:\n  web: stacks/web.yml\n  api: ./api/../api.yml\npolicy:\n  prune: false\n  rebalance: yes\n  down_grace: 2m\n",
            &[],
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            out.driver_options.dind,
            DindSettings {
                preload_images: vec!["dataservice:1".into()],
                engine: Some("host".into()),
                ..DindSettings::default()
            }
        );
        let files: Vec<_> = out
            .stacks
            .iter()
            .map(|s| (s.name.as_str(), s.files[0].as_str()))
            .collect();
        assert_eq!(files, [("web", "stacks/web.yml"), ("api", "api.yml")]);
        assert!(!out.policy.prune);
        assert!(out.policy.self_heal);
        assert!(out.policy.rebalance);
        assert_eq!(out.policy.down_grace_seconds, 120);
    }

    #[test]
    fn missing_file_says_how_to_create_it() {
        let source = MemSource::new("repo", []);
        let mut diags = Vec::new();
        load(&source, &mut diags);
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.contains("machines.yml is missing"));
        assert!(diags[0].help.as_deref().unwrap().contains("role: manager"));
    }
}
