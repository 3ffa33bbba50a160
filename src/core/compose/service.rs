//! One compose service → a validated [`Service`]: the keys swarm honours are typed and checked,
//! the keys it ignores give warnings (as `docker stack deploy` does), forbidden keys are errors,
//! and every reference to a network, volume, secret or config must be defined.

use super::load::{valid_key, Loader};
use super::syntax::{parse_port, parse_volume, shell_split};
use super::types::{
    ComposeFile, Deploy, DeployMode, FileRef, Healthcheck, Limits, Logging, Port, Reservations,
    RestartSettings, Service, ServiceNetwork, ServiceVolume, UpdateSettings,
};
use crate::diag::did_you_mean;
use crate::model::reference::Reference;
use crate::yaml::decode::{join, Fields};
use crate::yaml::{Entry, Node, Pos, Value};
use std::collections::BTreeMap;

const SUPPORTED: &[&str] = &[
    "cap_add",
    "cap_drop",
    "command",
    "configs",
    "deploy",
    "depends_on",
    "dns",
    "dns_opt",
    "dns_search",
    "entrypoint",
    "env_file",
    "environment",
    "extra_hosts",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "isolation",
    "labels",
    "logging",
    "networks",
    "oom_score_adj",
    "ports",
    "read_only",
    "restart",
    "secrets",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "sysctls",
    "tty",
    "ulimits",
    "user",
    "volumes",
    "working_dir",
];

/// Keys swarm ignores, with what Swarm offers instead: the docker CLI's unsupported and
/// deprecated service properties (`cli/compose/types`: it prints "Ignoring unsupported options"
/// and "Ignoring deprecated options" for them), but `restart`, which it converts all the same
/// (see `ServiceReader::restart`); and two it drops without a word (`tmpfs`,
/// `credential_spec`, which shoal does not send).
const IGNORED: &[(&str, &str)] = &[
    (
        "build",
        "build and push the image (or preload it on the nodes), then name it in `image`",
    ),
    (
        "cgroupns_mode",
        "swarm tasks get the engine's default cgroup namespace (dockerd --default-cgroupns-mode)",
    ),
    (
        "cgroup_parent",
        "swarm tasks get the engine's cgroup parent (dockerd --cgroup-parent)",
    ),
    (
        "container_name",
        "swarm names each task's container `<stack>_<service>.<slot>.<task>`: reach the service by its name",
    ),
    ("credential_spec", "shoal does not send credential specs (Windows gMSA)"),
    (
        "devices",
        "swarm services cannot map devices: reserve them as `deploy.resources.reservations.generic_resources`, or run that container outside swarm",
    ),
    (
        "domainname",
        "write the full name in `hostname`",
    ),
    (
        "expose",
        "services on the same network reach each other's containers on any port",
    ),
    (
        "external_links",
        "put the services on a shared network (`networks`, `external: true`) instead",
    ),
    ("ipc", "swarm tasks always get their own IPC namespace"),
    (
        "links",
        "services on the same network reach each other by service name",
    ),
    (
        "mac_address",
        "swarm assigns the addresses on its networks",
    ),
    ("network_mode", "use `networks` (overlay networks) instead"),
    ("pid", "swarm tasks always get their own PID namespace"),
    (
        "privileged",
        "swarm services cannot run privileged; use `cap_add` for specific capabilities",
    ),
    (
        "security_opt",
        "swarm services cannot set it: grant or drop capabilities with `cap_add` / `cap_drop`",
    ),
    (
        "shm_size",
        "mount a tmpfs at /dev/shm (a `volumes` entry with `type: tmpfs`) instead",
    ),
    ("tmpfs", "use a `volumes` entry with `type: tmpfs` instead"),
    (
        "userns_mode",
        "swarm tasks get the engine's user namespaces (dockerd --userns-remap)",
    ),
];

/// Keys `docker stack deploy` refuses, with why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("extends", "`extends` is not supported: write the service out, or share settings with YAML anchors and `<<`"),
    ("volume_driver", "define a volume in the top-level `volumes` with its `driver`, and reference it"),
    ("volumes_from", "define a volume in the top-level `volumes` and reference it from each service"),
    ("cpu_quota", "set resource limits under `deploy.resources`"),
    ("cpu_shares", "set resource limits under `deploy.resources`"),
    ("cpuset", "set resource limits under `deploy.resources`"),
    ("mem_limit", "set `deploy.resources.limits.memory` instead"),
    ("memswap_limit", "set resource limits under `deploy.resources`"),
];

const DEPLOY_KEYS: &[&str] = &[
    "mode",
    "endpoint_mode",
    "replicas",
    "labels",
    "rollback_config",
    "update_config",
    "resources",
    "restart_policy",
    "placement",
];
const UPDATE_KEYS: &[&str] = &[
    "parallelism",
    "delay",
    "failure_action",
    "monitor",
    "max_failure_ratio",
    "order",
];
const RESOURCES_KEYS: &[&str] = &["limits", "reservations"];
const LIMITS_KEYS: &[&str] = &["cpus", "memory", "pids"];
const RESERVATIONS_KEYS: &[&str] = &["cpus", "memory", "generic_resources"];
const RESTART_KEYS: &[&str] = &["condition", "delay", "max_attempts", "window"];
const PLACEMENT_KEYS: &[&str] = &["constraints", "preferences", "max_replicas_per_node"];
const HEALTH_KEYS: &[&str] = &[
    "disable",
    "interval",
    "retries",
    "test",
    "timeout",
    "start_period",
    "start_interval",
];
const PORT_KEYS: &[&str] = &["mode", "target", "published", "protocol", "name", "host_ip"];
const MOUNT_KEYS: &[&str] = &[
    "type",
    "source",
    "target",
    "read_only",
    "consistency",
    "bind",
    "volume",
    "tmpfs",
];
const FILE_REF_KEYS: &[&str] = &["source", "target", "uid", "gid", "mode"];
const SERVICE_NETWORK_KEYS: &[&str] = &["aliases", "driver_opts", "ipv4_address", "ipv6_address"];

fn all_service_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = SUPPORTED.to_vec();
    keys.extend(IGNORED.iter().map(|(k, _)| *k));
    keys.extend(FORBIDDEN.iter().map(|(k, _)| *k));
    keys
}

/// Swarm's rule for service names: `[a-zA-Z0-9]` runs joined by `-` or `_`, at most 63 characters.
fn valid_service_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reads the service `entry`; `compose` holds the top-level definitions it may reference.
pub fn read_service(
    loader: &mut Loader<'_>,
    entry: &Entry,
    compose: &ComposeFile,
) -> Option<Service> {
    let name = &entry.key;
    let path = join("services", name);
    let full_name = format!("{}_{name}", loader.stack);
    if !valid_key(name) || !valid_service_name(&full_name) {
        loader.ctx.error_help(
            entry.key_pos,
            format!("service name `{full_name}` is not valid in swarm"),
            "use letters, digits, `-` and `_`, starting and ending with a letter or digit, at most 63 characters with the stack name",
        );
    }
    let keys = all_service_keys();
    let fields = loader.ctx.fields(&entry.value, &path, &keys, true)?;
    let mut reader = ServiceReader {
        loader,
        path,
        compose,
        service: Service::default(),
    };
    reader.read(entry, &fields);
    Some(reader.service)
}

struct ServiceReader<'l, 'a, 'c> {
    loader: &'l mut Loader<'a>,
    path: String,
    compose: &'c ComposeFile,
    service: Service,
}

impl ServiceReader<'_, '_, '_> {
    fn p(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn read(&mut self, entry: &Entry, fields: &Fields<'_>) {
        self.check_unsupported(fields);
        match fields.get("image") {
            Some(node) => {
                if let Some(image) = self.loader.ctx.string(node, &self.p("image")) {
                    if let Err(problem) = Reference::parse(&image) {
                        self.loader.ctx.error(node.pos, problem);
                    }
                    self.service.image = image;
                }
            }
            None => self.loader.ctx.error_help(
                entry.key_pos,
                format!("service `{}` has no `image`", entry.key),
                "swarm services run images: build and push one, then name it in `image:`",
            ),
        }
        if let Some(node) = fields.get("command") {
            self.service.command = self.command(node, "command");
        }
        if let Some(node) = fields.get("entrypoint") {
            self.service.entrypoint = self.command(node, "entrypoint");
        }
        self.environment(fields);
        if let Some(node) = fields.get("ports") {
            self.ports(node);
        }
        if let Some(node) = fields.get("deploy") {
            self.deploy(node);
        }
        if let Some(node) = fields.get("healthcheck") {
            self.healthcheck(node);
        }
        if let Some(node) = fields.get("labels") {
            self.service.labels = self.loader.ctx.labels(node, &self.p("labels"));
        }
        if let Some(node) = fields.get("networks") {
            self.networks(node);
        }
        if let Some(node) = fields.get("volumes") {
            self.volumes(node);
        }
        if let Some(node) = fields.get("secrets") {
            self.service.secrets = self.file_refs(node, "secrets");
        }
        if let Some(node) = fields.get("configs") {
            self.service.configs = self.file_refs(node, "configs");
        }
        self.restart(fields);
        self.scalars(fields);
        if let Some(node) = fields.get("ulimits") {
            self.ulimits(node);
        }
        if let Some(node) = fields.get("logging") {
            self.logging(node);
        }
        if let Some(node) = fields.get("extra_hosts") {
            self.extra_hosts(node);
        }
        if let Some(node) = fields.get("depends_on") {
            let path = self.p("depends_on");
            self.service.depends_on = super::depends_on::read(&mut self.loader.ctx, node, &path);
        }
    }

    fn check_unsupported(&mut self, fields: &Fields<'_>) {
        for (key, help) in FORBIDDEN {
            if let Some(pos) = fields.key_pos(key) {
                self.loader.ctx.error_help(
                    pos,
                    format!("`{}` is not supported by swarm stacks", self.p(key)),
                    *help,
                );
            }
        }
        for (key, help) in IGNORED {
            if let Some(pos) = fields.key_pos(key) {
                self.loader.ctx.warn_help(
                    pos,
                    format!(
                        "ignoring unsupported option `{key}` (docker stack deploy ignores it too)"
                    ),
                    *help,
                );
            }
        }
    }

    fn command(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        let path = self.p(key);
        match &node.value {
            Value::Scalar(s) => match shell_split(&s.text) {
                Ok(words) => Some(words),
                Err(problem) => {
                    self.loader
                        .ctx
                        .error(node.pos, format!("`{path}`: {problem}"));
                    None
                }
            },
            _ => Some(self.loader.ctx.strings(node, &path)),
        }
    }

    /// `env_file` then `environment`; an empty or missing value is taken from the variables
    /// when set there, as the docker CLI does.
    fn environment(&mut self, fields: &Fields<'_>) {
        let mut environment: BTreeMap<String, Option<String>> = BTreeMap::new();
        let vars = self.loader.vars;
        let mut update = |key: String, value: Option<String>| {
            let value = match value {
                Some(v) if !v.is_empty() => Some(v),
                other => vars.get(&key).map(str::to_string).or(other),
            };
            environment.insert(key, value);
        };
        if let Some(node) = fields.get("env_file") {
            let path = self.p("env_file");
            let files: Vec<(String, &Node)> = match &node.value {
                Value::Seq(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (format!("{path}[{i}]"), item))
                    .collect(),
                _ => vec![(path, node)],
            };
            for (item_path, file) in files {
                for (key, value) in self.loader.env_file(file, &item_path) {
                    update(key, Some(value));
                }
            }
        }
        if let Some(node) = fields.get("environment") {
            let path = self.p("environment");
            for (key, value) in self.loader.ctx.list_or_dict(node, &path, '=') {
                update(key, value);
            }
        }
        self.service.environment = environment;
    }

    fn ports(&mut self, node: &Node) {
        let path = self.p("ports");
        let Some(items) = self.loader.ctx.list(node, &path) else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match &item.value {
                Value::Scalar(s) => match parse_port(&s.text) {
                    Ok(short) => {
                        if let Some(ip) = short.ignored_ip {
                            self.loader.ctx.warn_help(
                                item.pos,
                                format!("ignoring IP address `{ip}` in `{}`: the service will listen on 0.0.0.0", s.text),
                                "swarm publishes ports on every address of every node; remove the IP",
                            );
                        }
                        self.service.ports.extend(short.ports);
                    }
                    Err(problem) => self.loader.ctx.error_help(
                        item.pos,
                        format!("`{item_path}`: {problem}"),
                        "write `[published:]target[/protocol]`, e.g. `4000:8080` or `53:53/udp`",
                    ),
                },
                _ => {
                    if let Some(port) = self.long_port(item, &item_path) {
                        self.service.ports.push(port);
                    }
                }
            }
        }
    }

    /// A long-syntax port entry; every problem of the entry is reported, not only the first.
    fn long_port(&mut self, node: &Node, path: &str) -> Option<Port> {
        let ctx = &mut self.loader.ctx;
        let fields = ctx.fields(node, path, PORT_KEYS, false)?;
        let mut port = Port::default();
        let mut ok = true;
        let number = |ctx: &mut crate::yaml::decode::Ctx, key: &str| -> Option<u32> {
            let n = fields.get(key)?;
            let value = ctx.uint(n, &join(path, key))?;
            if (1..=65535).contains(&value) {
                return Some(value as u32);
            }
            ctx.error(
                n.pos,
                format!("`{path}.{key}` must be a port from 1 to 65535"),
            );
            None
        };
        match number(ctx, "target") {
            Some(target) => port.target = target,
            None => ok = false,
        }
        if fields.get("target").is_none() {
            ctx.error(node.pos, format!("`{path}` has no `target` port"));
        }
        if fields.get("published").is_some() {
            match number(ctx, "published") {
                Some(published) => port.published = published,
                None => ok = false,
            }
        }
        if let Some(n) = fields.get("protocol") {
            match ctx.one_of(n, &join(path, "protocol"), &["tcp", "udp", "sctp"]) {
                Some(protocol) => port.protocol = protocol,
                None => ok = false,
            }
        }
        if let Some(n) = fields.get("mode") {
            match ctx.one_of(n, &join(path, "mode"), &["ingress", "host"]) {
                Some(mode) => port.mode = mode,
                None => ok = false,
            }
        }
        if let Some(n) = fields.get("name") {
            port.name = ctx.string(n, &join(path, "name")).unwrap_or_default();
        }
        if let Some(pos) = fields.key_pos("host_ip") {
            ctx.warn(
                pos,
                format!("ignoring `{path}.host_ip`: swarm publishes ports on every address"),
            );
        }
        ok.then_some(port)
    }

    fn deploy(&mut self, node: &Node) {
        let path = self.p("deploy");
        let Some(fields) = self.loader.ctx.fields(node, &path, DEPLOY_KEYS, false) else {
            return;
        };
        let mut deploy = Deploy::default();
        let ctx = &mut self.loader.ctx;
        if let Some(n) = fields.get("mode") {
            deploy.mode = match ctx
                .one_of(
                    n,
                    &join(&path, "mode"),
                    &["replicated", "global", "replicated-job", "global-job"],
                )
                .as_deref()
            {
                Some("global") => DeployMode::Global,
                Some("replicated-job") => DeployMode::ReplicatedJob,
                Some("global-job") => DeployMode::GlobalJob,
                _ => DeployMode::Replicated,
            };
        }
        if let Some(n) = fields.get("replicas") {
            deploy.replicas = ctx.uint(n, &join(&path, "replicas"));
            if matches!(deploy.mode, DeployMode::Global | DeployMode::GlobalJob) {
                ctx.error_help(
                    fields.key_pos("replicas").unwrap_or(n.pos),
                    "replicas can only be used with replicated or replicated-job mode",
                    "remove `replicas`: a global service runs one task on every node",
                );
            }
        }
        if let Some(n) = fields.get("labels") {
            deploy.labels = ctx.labels(n, &join(&path, "labels"));
        }
        if let Some(n) = fields.get("endpoint_mode") {
            if let Some(mode) = ctx.string(n, &join(&path, "endpoint_mode")) {
                let mode = mode.to_lowercase();
                if mode == "vip" || mode == "dnsrr" {
                    deploy.endpoint_mode = mode;
                } else {
                    ctx.error(
                        n.pos,
                        format!("`{path}.endpoint_mode` must be `vip` or `dnsrr`, found `{mode}`"),
                    );
                }
            }
        }
        if let Some(n) = fields.get("update_config") {
            let actions = ["continue", "rollback", "pause"];
            deploy.update_config = self.update_settings(n, &join(&path, "update_config"), &actions);
        }
        if let Some(n) = fields.get("rollback_config") {
            let actions = ["continue", "pause"];
            deploy.rollback_config =
                self.update_settings(n, &join(&path, "rollback_config"), &actions);
        }
        if let Some(n) = fields.get("resources") {
            self.resources(n, &join(&path, "resources"), &mut deploy);
        }
        if let Some(n) = fields.get("restart_policy") {
            deploy.restart_policy = self.restart_policy(n, &join(&path, "restart_policy"));
        }
        if let Some(n) = fields.get("placement") {
            self.placement(n, &join(&path, "placement"), &mut deploy);
        }
        if deploy.endpoint_mode == "dnsrr" {
            let ingress = self
                .service
                .ports
                .iter()
                .any(|p| p.mode.is_empty() || p.mode == "ingress");
            if ingress {
                self.loader.ctx.error_help(
                    fields.key_pos("endpoint_mode").unwrap_or(fields.pos),
                    "`endpoint_mode: dnsrr` cannot be used with ports published in ingress mode",
                    "publish the ports with `mode: host` (long syntax), or use `endpoint_mode: vip`",
                );
            }
        }
        self.service.deploy = deploy;
    }

    fn update_settings(
        &mut self,
        node: &Node,
        path: &str,
        actions: &[&str],
    ) -> Option<UpdateSettings> {
        let ctx = &mut self.loader.ctx;
        let fields = ctx.fields(node, path, UPDATE_KEYS, false)?;
        let mut settings = UpdateSettings::default();
        if let Some(n) = fields.get("parallelism") {
            settings.parallelism = ctx.uint(n, &join(path, "parallelism"));
        }
        if let Some(n) = fields.get("delay") {
            settings.delay = ctx.duration(n, &join(path, "delay")).unwrap_or(0);
        }
        if let Some(n) = fields.get("failure_action") {
            settings.failure_action = ctx
                .one_of(n, &join(path, "failure_action"), actions)
                .unwrap_or_default();
        }
        if let Some(n) = fields.get("monitor") {
            settings.monitor = ctx.duration(n, &join(path, "monitor")).unwrap_or(0);
        }
        if let Some(n) = fields.get("max_failure_ratio") {
            let ratio = ctx.float(n, &join(path, "max_failure_ratio"));
            match ratio {
                Some(r) if (0.0..=1.0).contains(&r) => settings.max_failure_ratio = r,
                Some(_) => ctx.error(
                    n.pos,
                    format!("`{path}.max_failure_ratio` must be between 0 and 1"),
                ),
                None => {}
            }
        }
        if let Some(n) = fields.get("order") {
            settings.order = ctx
                .one_of(n, &join(path, "order"), &["start-first", "stop-first"])
                .unwrap_or_default();
        }
        Some(settings)
    }

    fn resources(&mut self, node: &Node, path: &str, deploy: &mut Deploy) {
        let ctx = &mut self.loader.ctx;
        let Some(fields) = ctx.fields(node, path, RESOURCES_KEYS, false) else {
            return;
        };
        let cpus = |ctx: &mut crate::yaml::decode::Ctx, n: &Node, path: &str| {
            ctx.parsed(n, path, |text, _| crate::yaml::units::parse_cpus(text))
                .unwrap_or(0)
        };
        if let Some(n) = fields.get("limits") {
            let path = join(path, "limits");
            if let Some(f) = ctx.fields(n, &path, LIMITS_KEYS, false) {
                let mut limits = Limits::default();
                if let Some(n) = f.get("cpus") {
                    limits.nano_cpus = cpus(ctx, n, &join(&path, "cpus"));
                }
                if let Some(n) = f.get("memory") {
                    limits.memory = ctx.size(n, &join(&path, "memory")).unwrap_or(0);
                }
                if let Some(n) = f.get("pids") {
                    limits.pids = ctx.int(n, &join(&path, "pids")).unwrap_or(0);
                }
                deploy.limits = Some(limits);
            }
        }
        if let Some(n) = fields.get("reservations") {
            let path = join(path, "reservations");
            if let Some(f) = ctx.fields(n, &path, RESERVATIONS_KEYS, false) {
                let mut reservations = Reservations::default();
                if let Some(n) = f.get("cpus") {
                    reservations.nano_cpus = cpus(ctx, n, &join(&path, "cpus"));
                }
                if let Some(n) = f.get("memory") {
                    reservations.memory = ctx.size(n, &join(&path, "memory")).unwrap_or(0);
                }
                if let Some(n) = f.get("generic_resources") {
                    let list_path = join(&path, "generic_resources");
                    for (i, item) in ctx
                        .list(n, &list_path)
                        .unwrap_or_default()
                        .iter()
                        .enumerate()
                    {
                        let item_path = format!("{list_path}[{i}]");
                        let Some(g) =
                            ctx.fields(item, &item_path, &["discrete_resource_spec"], false)
                        else {
                            continue;
                        };
                        let Some(spec) = g.get("discrete_resource_spec") else {
                            reservations.generic_resources.push(None);
                            continue;
                        };
                        let spec_path = join(&item_path, "discrete_resource_spec");
                        let Some(s) = ctx.fields(spec, &spec_path, &["kind", "value"], false)
                        else {
                            continue;
                        };
                        let kind = s
                            .get("kind")
                            .and_then(|k| ctx.string(k, &join(&spec_path, "kind")));
                        let value = s
                            .get("value")
                            .and_then(|v| ctx.int(v, &join(&spec_path, "value")));
                        reservations
                            .generic_resources
                            .push(Some((kind.unwrap_or_default(), value.unwrap_or(0))));
                    }
                }
                deploy.reservations = Some(reservations);
            }
        }
    }

    fn restart_policy(&mut self, node: &Node, path: &str) -> Option<RestartSettings> {
        let ctx = &mut self.loader.ctx;
        let fields = ctx.fields(node, path, RESTART_KEYS, false)?;
        let mut policy = RestartSettings::default();
        if let Some(n) = fields.get("condition") {
            policy.condition = ctx
                .one_of(n, &join(path, "condition"), &["none", "on-failure", "any"])
                .unwrap_or_default();
        }
        if let Some(n) = fields.get("delay") {
            policy.delay = ctx.duration(n, &join(path, "delay"));
        }
        if let Some(n) = fields.get("max_attempts") {
            policy.max_attempts = ctx.uint(n, &join(path, "max_attempts"));
        }
        if let Some(n) = fields.get("window") {
            policy.window = ctx.duration(n, &join(path, "window"));
        }
        Some(policy)
    }

    fn placement(&mut self, node: &Node, path: &str, deploy: &mut Deploy) {
        let ctx = &mut self.loader.ctx;
        let Some(fields) = ctx.fields(node, path, PLACEMENT_KEYS, false) else {
            return;
        };
        if let Some(n) = fields.get("constraints") {
            let list_path = join(path, "constraints");
            for (i, item) in ctx
                .list(n, &list_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let Some(constraint) = ctx.string(item, &format!("{list_path}[{i}]")) else {
                    continue;
                };
                if constraint.contains("==") || constraint.contains("!=") {
                    deploy.constraints.push(constraint);
                } else {
                    ctx.error_help(
                        item.pos,
                        format!("placement constraint `{constraint}` has no `==` or `!=`"),
                        "write e.g. `node.role==manager` or `node.labels.zone!=a`",
                    );
                }
            }
        }
        if let Some(n) = fields.get("preferences") {
            let list_path = join(path, "preferences");
            for (i, item) in ctx
                .list(n, &list_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let item_path = format!("{list_path}[{i}]");
                let Some(f) = ctx.fields(item, &item_path, &["spread"], false) else {
                    continue;
                };
                if let Some(spread) = f
                    .get("spread")
                    .and_then(|s| ctx.string(s, &join(&item_path, "spread")))
                {
                    deploy.preferences.push(spread);
                }
            }
        }
        if let Some(n) = fields.get("max_replicas_per_node") {
            deploy.max_replicas_per_node = ctx
                .uint(n, &join(path, "max_replicas_per_node"))
                .unwrap_or(0);
        }
    }

    fn healthcheck(&mut self, node: &Node) {
        let path = self.p("healthcheck");
        let ctx = &mut self.loader.ctx;
        let Some(fields) = ctx.fields(node, &path, HEALTH_KEYS, false) else {
            return;
        };
        let mut health = Healthcheck::default();
        if let Some(n) = fields.get("test") {
            health.test = match &n.value {
                Value::Scalar(s) => vec!["CMD-SHELL".to_string(), s.text.clone()],
                _ => ctx.strings(n, &join(&path, "test")),
            };
        }
        for (key, slot) in [
            ("interval", &mut health.interval),
            ("timeout", &mut health.timeout),
            ("start_period", &mut health.start_period),
            ("start_interval", &mut health.start_interval),
        ] {
            if let Some(n) = fields.get(key) {
                *slot = ctx.duration(n, &join(&path, key));
            }
        }
        if let Some(n) = fields.get("retries") {
            health.retries = ctx.uint(n, &join(&path, "retries"));
        }
        if let Some(n) = fields.get("disable") {
            health.disable = ctx.bool(n, &join(&path, "disable")).unwrap_or(false);
            if health.disable && !health.test.is_empty() {
                ctx.error_help(
                    n.pos,
                    "healthcheck `test` and `disable` can't be set at the same time",
                    "remove `test` to disable the image's health check, or remove `disable`",
                );
            }
        }
        self.service.healthcheck = Some(health);
    }

    fn networks(&mut self, node: &Node) {
        let path = self.p("networks");
        let mut names: Vec<(Pos, String, Option<&Node>)> = Vec::new();
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = self.loader.ctx.string(item, &format!("{path}[{i}]")) {
                        names.push((item.pos, name, None));
                    }
                }
            }
            Value::Map(entries) => {
                for entry in entries {
                    names.push((entry.key_pos, entry.key.clone(), Some(&entry.value)));
                }
            }
            _ => {
                self.loader.ctx.expected(node, &path, "a list or a mapping");
                return;
            }
        }
        for (at_pos, name, config) in names {
            if name != "default" && !self.compose.networks.contains_key(&name) {
                let defined: Vec<&str> = self.compose.networks.keys().map(String::as_str).collect();
                let help = match did_you_mean(&name, defined.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => "define it under the top-level `networks:` key (or use `default`)"
                        .to_string(),
                };
                self.loader
                    .ctx
                    .error_help(at_pos, format!("undefined network `{name}`"), help);
                continue;
            }
            let mut attachment = ServiceNetwork::default();
            if let Some(config) = config.filter(|c| c.value != Value::Null) {
                let item_path = join(&path, &name);
                let ctx = &mut self.loader.ctx;
                if let Some(f) = ctx.fields(config, &item_path, SERVICE_NETWORK_KEYS, false) {
                    if let Some(n) = f.get("aliases") {
                        attachment.aliases = ctx.strings(n, &join(&item_path, "aliases"));
                    }
                    if let Some(n) = f.get("driver_opts") {
                        attachment.driver_opts =
                            ctx.string_map(n, &join(&item_path, "driver_opts"));
                    }
                    for key in ["ipv4_address", "ipv6_address"] {
                        if let Some(pos) = f.key_pos(key) {
                            ctx.warn(pos, format!("ignoring `{item_path}.{key}`: swarm assigns task addresses itself"));
                        }
                    }
                }
            }
            self.service.networks.insert(name, attachment);
        }
    }

    fn volumes(&mut self, node: &Node) {
        let path = self.p("volumes");
        let Some(items) = self.loader.ctx.list(node, &path) else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let mount = match &item.value {
                Value::Scalar(s) => match parse_volume(&s.text) {
                    Ok(short) => {
                        for option in &short.ignored_options {
                            self.loader.ctx.warn(
                                item.pos,
                                format!("ignoring volume option `{option}` in `{}`", s.text),
                            );
                        }
                        Some(short.volume)
                    }
                    Err(problem) => {
                        self.loader.ctx.error_help(
                            item.pos,
                            format!("`{item_path}`: {problem}"),
                            "write `volume:/path[:ro]` or `/host/path:/path[:ro]`",
                        );
                        None
                    }
                },
                _ => self.long_volume(item, &item_path),
            };
            if let Some(mount) = mount {
                if self.check_mount(&mount, item, &item_path) {
                    self.service.volumes.push(mount);
                }
            }
        }
    }

    fn long_volume(&mut self, node: &Node, path: &str) -> Option<ServiceVolume> {
        let ctx = &mut self.loader.ctx;
        let fields = ctx.fields(node, path, MOUNT_KEYS, false)?;
        let mut mount = ServiceVolume::default();
        match fields.get("type") {
            None => {
                ctx.error_help(
                    node.pos,
                    format!("`{path}` has no `type`"),
                    "add `type: volume`, `bind` or `tmpfs`",
                );
                return None;
            }
            Some(n) => {
                mount.kind = ctx.one_of(
                    n,
                    &join(path, "type"),
                    &["volume", "bind", "tmpfs", "npipe"],
                )?
            }
        }
        if let Some(n) = fields.get("source") {
            mount.source = ctx.string(n, &join(path, "source")).unwrap_or_default();
        }
        match fields.get("target") {
            Some(n) => mount.target = ctx.string(n, &join(path, "target")).unwrap_or_default(),
            None => {
                ctx.error(node.pos, format!("`{path}` has no `target`"));
                return None;
            }
        }
        if let Some(n) = fields.get("read_only") {
            mount.read_only = ctx.bool(n, &join(path, "read_only")).unwrap_or(false);
        }
        if let Some(n) = fields.get("consistency") {
            mount.consistency = ctx
                .one_of(
                    n,
                    &join(path, "consistency"),
                    &["default", "consistent", "cached", "delegated"],
                )
                .unwrap_or_default();
        }
        let mut blocks = Vec::new();
        if let Some(n) = fields.get("bind") {
            blocks.push(("bind", n.pos));
            let bind_path = join(path, "bind");
            if let Some(f) = ctx.fields(n, &bind_path, &["propagation"], false) {
                let propagation = f
                    .get("propagation")
                    .and_then(|p| ctx.one_of(p, &join(&bind_path, "propagation"), PROPAGATIONS));
                mount.bind_propagation = Some(propagation.unwrap_or_default());
            }
        }
        if let Some(n) = fields.get("volume") {
            blocks.push(("volume", n.pos));
            let volume_path = join(path, "volume");
            if let Some(f) = ctx.fields(n, &volume_path, &["nocopy", "subpath"], false) {
                mount.nocopy = f
                    .get("nocopy")
                    .and_then(|v| ctx.bool(v, &join(&volume_path, "nocopy")))
                    .unwrap_or(false);
                if let Some(v) = f.get("subpath") {
                    mount.subpath = ctx
                        .string(v, &join(&volume_path, "subpath"))
                        .unwrap_or_default();
                }
            }
        }
        if let Some(n) = fields.get("tmpfs") {
            blocks.push(("tmpfs", n.pos));
            let tmpfs_path = join(path, "tmpfs");
            if let Some(f) = ctx.fields(n, &tmpfs_path, &["size", "mode"], false) {
                let size = f
                    .get("size")
                    .and_then(|s| tmpfs_size(ctx, s, &join(&tmpfs_path, "size")));
                let mode = f
                    .get("mode")
                    .and_then(|m| ctx.uint(m, &join(&tmpfs_path, "mode")))
                    .map(|m| m as u32);
                if let (Some(_), Some(pos)) = (mode, f.key_pos("mode")) {
                    ctx.warn(pos, format!("`{tmpfs_path}.mode`: `docker stack deploy` drops this key (the docker CLI's tmpfs options hold only `size`), so a stack it deploys has no mode; shoal sends it, and does not restart a running service for it alone (docs/compose.md)"));
                }
                mount.tmpfs = Some((size, mode));
            }
        }
        for (block, pos) in blocks {
            let fits = match block {
                "bind" => mount.kind == "bind" || mount.kind == "npipe",
                other => mount.kind == other,
            };
            if !fits {
                ctx.error(
                    pos,
                    format!(
                        "`{block}` options are incompatible with type `{}`",
                        mount.kind
                    ),
                );
                return None;
            }
        }
        Some(mount)
    }

    /// Checks sources: named volumes must be defined, bind sources absolute, tmpfs sourceless.
    fn check_mount(&mut self, mount: &ServiceVolume, node: &Node, path: &str) -> bool {
        let ctx = &mut self.loader.ctx;
        match mount.kind.as_str() {
            "volume" => {
                if mount.bind_propagation.is_some() {
                    ctx.error(
                        node.pos,
                        format!("`{path}`: bind options are incompatible with type `volume`"),
                    );
                    return false;
                }
                if !mount.source.is_empty() && !self.compose.volumes.contains_key(&mount.source) {
                    let defined: Vec<&str> =
                        self.compose.volumes.keys().map(String::as_str).collect();
                    let help = match did_you_mean(&mount.source, defined.iter().copied()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => "define it under the top-level `volumes:` key".to_string(),
                    };
                    ctx.error_help(
                        node.pos,
                        format!("undefined volume `{}`", mount.source),
                        help,
                    );
                    return false;
                }
            }
            "bind" | "npipe" => {
                if mount.source.is_empty() {
                    ctx.error(
                        node.pos,
                        format!("`{path}`: a {} mount needs a `source`", mount.kind),
                    );
                    return false;
                }
                let absolute = mount.source.starts_with('/')
                    || mount.source.starts_with("\\\\")
                    || mount.source.chars().nth(1) == Some(':');
                if !absolute {
                    ctx.error_help(
                        node.pos,
                        format!("bind mount source `{}` is not an absolute path", mount.source),
                        "swarm mounts a path of the node the task runs on: write an absolute path, or use a named volume",
                    );
                    return false;
                }
            }
            _ => {
                if !mount.source.is_empty() {
                    ctx.error(node.pos, format!("`{path}`: a tmpfs mount has no `source`"));
                    return false;
                }
            }
        }
        true
    }

    fn file_refs(&mut self, node: &Node, key: &str) -> Vec<FileRef> {
        let path = self.p(key);
        let (kind, defined) = if key == "secrets" {
            ("secret", &self.compose.secrets)
        } else {
            ("config", &self.compose.configs)
        };
        let ctx = &mut self.loader.ctx;
        let mut refs = Vec::new();
        for (i, item) in ctx.list(node, &path).unwrap_or_default().iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let mut file_ref = FileRef::default();
            let source_pos;
            match &item.value {
                Value::Scalar(s) => {
                    file_ref.source = s.text.clone();
                    source_pos = item.pos;
                }
                _ => {
                    let Some(f) = ctx.fields(item, &item_path, FILE_REF_KEYS, false) else {
                        continue;
                    };
                    let Some(source) = f.get("source") else {
                        ctx.error(item.pos, format!("`{item_path}` has no `source`"));
                        continue;
                    };
                    source_pos = source.pos;
                    file_ref.source = ctx
                        .string(source, &join(&item_path, "source"))
                        .unwrap_or_default();
                    for (field, slot) in [
                        ("target", &mut file_ref.target),
                        ("uid", &mut file_ref.uid),
                        ("gid", &mut file_ref.gid),
                    ] {
                        if let Some(n) = f.get(field) {
                            *slot = ctx.string(n, &join(&item_path, field)).unwrap_or_default();
                        }
                    }
                    if let Some(n) = f.get("mode") {
                        file_ref.mode = ctx.uint(n, &join(&item_path, "mode")).map(|m| m as u32);
                    }
                }
            }
            if !defined.contains_key(&file_ref.source) {
                let names: Vec<&str> = defined.keys().map(String::as_str).collect();
                let help = match did_you_mean(&file_ref.source, names.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("define it under the top-level `{key}:` key"),
                };
                ctx.error_help(
                    source_pos,
                    format!("undefined {kind} `{}`", file_ref.source),
                    help,
                );
                continue;
            }
            refs.push(file_ref);
        }
        refs
    }

    fn restart(&mut self, fields: &Fields<'_>) {
        let Some(node) = fields.get("restart") else {
            return;
        };
        let path = self.p("restart");
        let ctx = &mut self.loader.ctx;
        let Some(text) = ctx.string(node, &path) else {
            return;
        };
        if self.service.deploy.restart_policy.is_some() {
            ctx.warn_help(
                fields.key_pos("restart").unwrap_or(node.pos),
                "ignoring unsupported option `restart`: `deploy.restart_policy` is set",
                "remove `restart`",
            );
            return;
        }
        ctx.warn_help(
            fields.key_pos("restart").unwrap_or(node.pos),
            "`restart` is a fallback: docker stack deploy says it ignores it, yet turns it into the restart policy when `deploy.restart_policy` is unset, and so does shoal",
            "use `deploy.restart_policy` (e.g. `condition: on-failure`), Swarm's own way",
        );
        match parse_restart(&text) {
            Ok(policy) => self.service.restart = policy,
            Err(problem) => ctx.error_help(
                node.pos,
                problem,
                "use `no`, `always`, `unless-stopped` or `on-failure[:N]`, or `deploy.restart_policy`",
            ),
        }
    }

    fn scalars(&mut self, fields: &Fields<'_>) {
        let path = self.path.clone();
        let ctx = &mut self.loader.ctx;
        let service = &mut self.service;
        for (key, slot) in [
            ("hostname", &mut service.hostname),
            ("user", &mut service.user),
            ("working_dir", &mut service.working_dir),
            ("stop_signal", &mut service.stop_signal),
            ("isolation", &mut service.isolation),
        ] {
            if let Some(n) = fields.get(key) {
                *slot = ctx.string(n, &join(&path, key)).unwrap_or_default();
            }
        }
        for (key, slot) in [
            ("tty", &mut service.tty),
            ("stdin_open", &mut service.stdin_open),
            ("read_only", &mut service.read_only),
        ] {
            if let Some(n) = fields.get(key) {
                *slot = ctx.bool(n, &join(&path, key)).unwrap_or(false);
            }
        }
        if let Some(n) = fields.get("init") {
            service.init = ctx.bool(n, &join(&path, "init"));
        }
        if let Some(n) = fields.get("stop_grace_period") {
            service.stop_grace_period = ctx.duration(n, &join(&path, "stop_grace_period"));
        }
        if let Some(n) = fields.get("oom_score_adj") {
            match ctx.int(n, &join(&path, "oom_score_adj")) {
                Some(v) if (-1000..=1000).contains(&v) => {
                    service.oom_score_adj = v;
                    if v != 0 {
                        ctx.warn(n.pos, format!("`{path}.oom_score_adj`: `docker stack deploy` drops this key (the docker CLI reads no value for it), so a stack it deploys runs without it; shoal sends it to engines with API 1.46 or later (Docker 27+), and does not restart a running service for it alone (docs/compose.md)"));
                    }
                }
                Some(_) => ctx.error(
                    n.pos,
                    format!("`{path}.oom_score_adj` must be between -1000 and 1000"),
                ),
                None => {}
            }
        }
        if let Some(n) = fields.get("sysctls") {
            service.sysctls = ctx.labels(n, &join(&path, "sysctls"));
        }
        for (key, slot) in [
            ("cap_add", &mut service.cap_add),
            ("cap_drop", &mut service.cap_drop),
        ] {
            if let Some(n) = fields.get(key) {
                *slot = ctx.strings(n, &join(&path, key));
            }
        }
        for (key, slot) in [
            ("dns", &mut service.dns),
            ("dns_search", &mut service.dns_search),
        ] {
            if let Some(n) = fields.get(key) {
                *slot = ctx.string_or_list(n, &join(&path, key));
            }
        }
        if let Some(n) = fields.get("dns_opt") {
            service.dns_opt = ctx.strings(n, &join(&path, "dns_opt"));
        }
        if let Some(n) = fields.get("dns") {
            for server in &service.dns {
                if server.parse::<core::net::IpAddr>().is_err() {
                    ctx.error(
                        n.pos,
                        format!("`{path}.dns`: `{server}` is not an IP address"),
                    );
                }
            }
        }
    }

    fn ulimits(&mut self, node: &Node) {
        let path = self.p("ulimits");
        let ctx = &mut self.loader.ctx;
        let Some(entries) = ctx.mapping(node, &path) else {
            return;
        };
        for entry in entries {
            let item_path = join(&path, &entry.key);
            if entry.key.is_empty() || !entry.key.chars().all(|c| c.is_ascii_lowercase()) {
                ctx.error(
                    entry.key_pos,
                    format!("`{item_path}`: ulimit names are lowercase letters (e.g. `nofile`)"),
                );
                continue;
            }
            let limits = match &entry.value.value {
                Value::Map(_) => {
                    let Some(f) = ctx.fields(&entry.value, &item_path, &["soft", "hard"], false)
                    else {
                        continue;
                    };
                    let soft = f
                        .get("soft")
                        .and_then(|n| ctx.int(n, &join(&item_path, "soft")));
                    let hard = f
                        .get("hard")
                        .and_then(|n| ctx.int(n, &join(&item_path, "hard")));
                    match (soft, hard) {
                        (Some(soft), Some(hard)) => (soft, hard),
                        _ => {
                            ctx.error(
                                entry.key_pos,
                                format!("`{item_path}` needs both `soft` and `hard`"),
                            );
                            continue;
                        }
                    }
                }
                _ => match ctx.int(&entry.value, &item_path) {
                    Some(single) => (single, single),
                    None => continue,
                },
            };
            self.service.ulimits.insert(entry.key.clone(), limits);
        }
    }

    fn logging(&mut self, node: &Node) {
        let path = self.p("logging");
        let ctx = &mut self.loader.ctx;
        let Some(f) = ctx.fields(node, &path, &["driver", "options"], false) else {
            return;
        };
        let mut logging = Logging::default();
        if let Some(n) = f.get("driver") {
            logging.driver = ctx.string(n, &join(&path, "driver")).unwrap_or_default();
        }
        if let Some(n) = f.get("options") {
            logging.options = ctx.string_map(n, &join(&path, "options"));
        }
        self.service.logging = Some(logging);
    }

    /// `extra_hosts` as `host:ip` (from a `host:ip`/`host=ip` list or a mapping, sorted).
    fn extra_hosts(&mut self, node: &Node) {
        let path = self.p("extra_hosts");
        let ctx = &mut self.loader.ctx;
        let mut hosts = Vec::new();
        match &node.value {
            Value::Map(_) => {
                let mut pairs: Vec<String> = ctx
                    .string_map(node, &path)
                    .into_iter()
                    .map(|(host, ip)| format!("{host}:{ip}"))
                    .collect();
                pairs.sort();
                hosts.extend(pairs.into_iter().map(|pair| (pair, node.pos)));
            }
            _ => {
                for (i, item) in ctx.list(node, &path).unwrap_or_default().iter().enumerate() {
                    let Some(text) = ctx.string(item, &format!("{path}[{i}]")) else {
                        continue;
                    };
                    let Some((host, ip)) = text.split_once('=').or_else(|| text.split_once(':'))
                    else {
                        ctx.error_help(
                            item.pos,
                            format!("`{path}[{i}]` is not `host:ip`: `{text}`"),
                            "write e.g. `db:10.0.0.5`",
                        );
                        continue;
                    };
                    hosts.push((format!("{host}:{ip}"), item.pos));
                }
            }
        }
        for (pair, pos) in hosts {
            let (host, ip) = pair.split_once(':').unwrap_or((&pair, ""));
            let ip = ip
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(ip);
            if ip.parse::<core::net::IpAddr>().is_err() && ip != "host-gateway" {
                ctx.error(
                    pos,
                    format!("`{path}`: `{ip}` is not an IP address (for host `{host}`)"),
                );
                continue;
            }
            self.service.extra_hosts.push(format!("{host}:{ip}"));
        }
    }
}

/// `tmpfs.size` of a mount, as the docker CLI reads it: a whole number of bytes, at least 0.
/// Its schema says `"type": "integer"`, so `16m` is refused ("must be a integer"), unlike
/// `shm_size` or memory limits, which take units.
fn tmpfs_size(ctx: &mut crate::yaml::decode::Ctx, node: &Node, path: &str) -> Option<i64> {
    ctx.parsed(node, path, |text, plain| {
        let bytes = crate::yaml::units::parse_int(text, plain).map_err(|_| {
            let hint = crate::yaml::units::parse_size(text)
                .map(|b| format!(" (`{text}` is {b})"))
                .unwrap_or_default();
            format!("`{text}` is not a whole number of bytes: the docker CLI refuses units here (\"must be a integer\"); write the size in bytes{hint}")
        })?;
        if bytes < 0 {
            return Err(format!("`{text}` is negative: write a size in bytes, 0 or more"));
        }
        Ok(bytes)
    })
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// Parses `restart:` into the restart policy `docker stack deploy` falls back to
/// (`no` gives none).
pub fn parse_restart(text: &str) -> Result<Option<RestartSettings>, String> {
    let (name, count) = match text.split_once(':') {
        Some((name, count)) => {
            let count: u64 = count.parse().map_err(|_| {
                format!("invalid restart policy `{text}`: `{count}` is not a count")
            })?;
            (name, Some(count))
        }
        None => (text, None),
    };
    let condition = match name {
        "" | "no" => return Ok(None),
        "always" | "unless-stopped" => {
            if count.is_some() {
                return Err(format!(
                    "invalid restart policy `{text}`: a maximum retry count can only be used with `on-failure`"
                ));
            }
            "any"
        }
        "on-failure" => "on-failure",
        other => return Err(format!("invalid restart policy: unknown policy `{other}`")),
    };
    Ok(Some(RestartSettings {
        condition: condition.to_string(),
        max_attempts: count.filter(|&c| c > 0),
        ..RestartSettings::default()
    }))
}
