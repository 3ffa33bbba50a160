//! `machines.yml`: the cluster's name, driver, machines (with `count` expansion), stacks and
//! policy, validated.

use super::{dns_problem, dns_safe, DEFAULT_COMPOSE_FILE, MACHINES_FILE};
use crate::diag::Diagnostic;
use crate::model::{DriverKind, ImagePolicy, MachineSpec, Policy, Role};
use crate::yaml::decode::{join, to_json, Ctx, Fields};
use crate::yaml::files::{read_error, resolve_path, FileSource};
use crate::yaml::{self, yaml_diagnostic, Node, Pos, Value};
use std::collections::BTreeMap;

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
];
const MACHINE_KEYS: &[&str] = &["role", "count", "labels", "host"];
const POLICY_KEYS: &[&str] = &[
    "prune",
    "self_heal",
    "rebalance",
    "down_grace",
    "show_values",
    "images",
];
const DRIVERS: &[&str] = &["dind", "sim", "generic", "docker-machine"];

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
    /// Driver options as written (an object).
    pub driver_options: serde_json::Value,
    /// Machines after `count` expansion.
    pub machines: BTreeMap<String, MachineSpec>,
    /// The stacks to load.
    pub stacks: Vec<StackRef>,
    /// Policy switches.
    pub policy: Policy,
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
        driver_options: serde_json::json!({}),
        machines: BTreeMap::new(),
        stacks: Vec::new(),
        policy: Policy::default(),
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
                            read_top(&mut ctx, &fields, &mut out);
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

fn read_top(ctx: &mut Ctx, fields: &Fields<'_>, out: &mut Machines) {
    if let Some(node) = fields.get("cluster") {
        if let Some(name) = ctx.string(node, "cluster") {
            if check_name(ctx, node.pos, "cluster name", &name) {
                out.cluster = name;
            }
        }
    }
    if let Some(node) = fields.get("driver") {
        out.driver = match ctx.one_of(node, "driver", DRIVERS).as_deref() {
            Some("sim") => DriverKind::Sim,
            Some("generic") => DriverKind::Generic,
            Some("docker-machine") => DriverKind::DockerMachine,
            _ => DriverKind::Dind,
        };
    }
    if let Some(node) = fields.get("driver_options") {
        if ctx.mapping(node, "driver_options").is_some() {
            out.driver_options = to_json(node);
        }
    }
    if let Some(node) = fields.get("machines") {
        read_machines(ctx, node, out);
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

fn read_machines(ctx: &mut Ctx, node: &Node, out: &mut Machines) {
    let Some(entries) = ctx.mapping(node, "machines") else {
        return;
    };
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
        if let (true, Some((pos, count))) = (generic, count) {
            if count > 1 {
                ctx.error_help(
                    pos,
                    format!(
                        "`{path}.count` cannot expand generic machines: each needs its own host"
                    ),
                    "list each host as its own machine",
                );
                continue;
            }
        }
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
        assert_eq!(out.driver_options, serde_json::json!({}));
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
            "driver: generic\nmachines:\n  a:\n    role: manager\n    host: ssh://u@h\n  b:\n    role: worker\n",
            &[],
        );
        assert_eq!(out.driver, DriverKind::Generic);
        assert_eq!(out.machines["a"].host.as_deref(), Some("ssh://u@h"));
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
    fn stacks_policy_and_options() {
        let (out, diags) = run(
            "cluster: dataapp\ndriver: dind\ndriver_options: {preload_images: [dataservice:1], n: 2}\nstacks:\n  web: stacks/web.yml\n  api: ./api/../api.yml\npolicy:\n  prune: false\n  rebalance: yes\n  down_grace: 2m\n",
            &[],
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            out.driver_options,
            serde_json::json!({"preload_images": ["dataservice:1"], "n": 2})
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
