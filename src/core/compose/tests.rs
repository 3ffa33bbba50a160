//! Compose loading and conversion: the specs match what `docker stack deploy` sends, and every
//! problem of a file is reported at its place.

use super::load_stack;
use crate::diag::{Diagnostic, Severity};
use crate::model::Stack;
use crate::yaml::env::Vars;
use crate::yaml::files::MemSource;
use serde_json::json;

const FILE: &str = "docker-compose.yml";

fn load_with(
    compose: &str,
    extra: &[(&str, &str)],
    vars: &Vars,
) -> (Option<Stack>, Vec<Diagnostic>) {
    let source = MemSource::new("repo", extra.iter().copied());
    let mut diags = Vec::new();
    let stack = load_stack(
        "dataapp",
        &[(FILE, compose.as_bytes())],
        &source,
        vars,
        &Default::default(),
        &mut diags,
    );
    diags.sort_by_key(|d| (d.severity, d.line, d.column));
    (stack, diags)
}

fn load(compose: &str) -> (Option<Stack>, Vec<Diagnostic>) {
    load_with(compose, &[], &Vars::default())
}

/// Loads a compose file that must be valid and returns the stack and its warnings.
fn valid(compose: &str) -> (Stack, Vec<Diagnostic>) {
    let (stack, diags) = load(compose);
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
    (stack.unwrap(), diags)
}

fn service_json(compose: &str, name: &str) -> serde_json::Value {
    let (stack, _) = valid(compose);
    serde_json::to_value(&stack.services[name]).unwrap()
}

/// Errors as `line:column message`.
fn errors(compose: &str) -> Vec<String> {
    let (_, diags) = load(compose);
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect()
}

const TUTORIAL: &str = r#"version: "3"
services:
  dataservice:
    image: dataservice:1
    deploy:
      replicas: 5
      restart_policy:
        condition: on-failure
    ports:
      - "4000:8080"
"#;

#[test]
fn tutorial_converts_to_what_docker_sends() {
    let (stack, diags) = valid(TUTORIAL);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        serde_json::to_value(&stack.services["dataapp_dataservice"]).unwrap(),
        json!({
            "Name": "dataapp_dataservice",
            "Labels": {
                "com.docker.stack.image": "dataservice:1",
                "com.docker.stack.namespace": "dataapp"
            },
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "dataservice:1",
                    "Labels": {"com.docker.stack.namespace": "dataapp"},
                    "Privileges": {"NoNewPrivileges": false}
                },
                "Resources": {},
                "RestartPolicy": {"Condition": "on-failure"},
                "Placement": {},
                "Networks": [{"Target": "dataapp_default", "Aliases": ["dataservice"]}]
            },
            "Mode": {"Replicated": {"Replicas": 5}},
            "EndpointSpec": {
                "Ports": [{
                    "Protocol": "tcp",
                    "TargetPort": 8080,
                    "PublishedPort": 4000,
                    "PublishMode": "ingress"
                }]
            }
        })
    );
    assert_eq!(
        serde_json::to_value(&stack.networks).unwrap(),
        json!({"dataapp_default": {
            "Name": "dataapp_default",
            "Driver": "overlay",
            "Labels": {"com.docker.stack.namespace": "dataapp"}
        }})
    );
    assert!(stack.external_networks.is_empty());
}

#[test]
fn default_network_only_when_used() {
    let (stack, _) = valid(
        "services:\n  web:\n    image: nginx\n    networks: [front]\nnetworks:\n  front:\n  unused:\n",
    );
    assert_eq!(stack.networks.keys().collect::<Vec<_>>(), ["dataapp_front"]);
}

#[test]
fn networks_sorted_with_aliases_and_explicit_names() {
    let spec = service_json(
        "services:\n  api:\n    image: api\n    networks:\n      zeta: {aliases: [x]}\n      alpha:\n      outside:\nnetworks:\n  zeta:\n  alpha: {name: custom-alpha}\n  outside: {external: true}\n",
        "dataapp_api",
    );
    assert_eq!(
        spec["TaskTemplate"]["Networks"],
        json!([
            {"Target": "custom-alpha", "Aliases": ["api"]},
            {"Target": "dataapp_zeta", "Aliases": ["x", "api"]},
            {"Target": "outside", "Aliases": ["api"]}
        ])
    );
}

#[test]
fn per_service_network_driver_opts_are_sent_as_the_cli_sends_them() {
    let (_, diags) = valid(
        "services:\n  api:\n    image: api\n    networks:\n      back:\n        driver_opts: {com.docker.network.driver.mtu: 1400}\nnetworks:\n  back:\n",
    );
    assert!(diags.is_empty(), "no warning: {diags:?}");
    let spec = service_json(
        "services:\n  api:\n    image: api\n    networks:\n      back:\n        driver_opts: {com.docker.network.driver.mtu: 1400}\nnetworks:\n  back:\n",
        "dataapp_api",
    );
    assert_eq!(
        spec["TaskTemplate"]["Networks"],
        json!([{"Target": "dataapp_back", "Aliases": ["api"],
                "DriverOpts": {"com.docker.network.driver.mtu": "1400"}}])
    );
}

#[test]
fn oom_score_adj_warns_that_the_cli_drops_it() {
    let (stack, diags) = valid("services:\n  web:\n    image: web\n    oom_score_adj: 200\n");
    let warnings: Vec<_> = diags
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .starts_with("4:20 `services.web.oom_score_adj`: `docker stack deploy` drops this key"),
        "{warnings:?}"
    );
    let container = &stack.services["dataapp_web"].task_template.container_spec;
    assert_eq!(container.oom_score_adj, 200, "shoal still sends it");
}

#[test]
fn volume_subpath_is_read() {
    let spec = service_json(
        "services:\n  db:\n    image: postgres\n    volumes:\n      - type: volume\n        source: data\n        target: /etc/app\n        volume: {subpath: conf/app}\nvolumes:\n  data:\n",
        "dataapp_db",
    );
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["VolumeOptions"],
        json!({"Subpath": "conf/app", "Labels": {"com.docker.stack.namespace": "dataapp"}})
    );
}

#[test]
fn ports_sorted_long_syntax_keeps_empty_mode() {
    let spec = service_json(
        "services:\n  web:\n    image: web\n    ports:\n      - 9000\n      - \"53:53/udp\"\n      - target: 80\n        published: 8080\n      - target: 443\n        published: 443\n        protocol: tcp\n        mode: host\n        name: https\n",
        "dataapp_web",
    );
    assert_eq!(
        spec["EndpointSpec"]["Ports"],
        json!([
            {"Protocol": "tcp", "TargetPort": 9000, "PublishMode": "ingress"},
            {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53, "PublishMode": "ingress"},
            {"Name": "https", "Protocol": "tcp", "TargetPort": 443, "PublishedPort": 443, "PublishMode": "host"},
            {"TargetPort": 80, "PublishedPort": 8080}
        ])
    );
}

#[test]
fn modes_and_update_defaults() {
    let spec = service_json(
        "services:\n  agent:\n    image: agent\n    deploy:\n      mode: global\n      endpoint_mode: VIP\n      update_config: {delay: 1m30s}\n      rollback_config: {parallelism: 3, failure_action: pause}\n",
        "dataapp_agent",
    );
    assert_eq!(spec["Mode"], json!({"Global": {}}));
    assert_eq!(spec["EndpointSpec"], json!({"Mode": "vip"}));
    assert_eq!(
        spec["UpdateConfig"],
        json!({"Parallelism": 1, "Delay": 90_000_000_000i64, "MaxFailureRatio": 0.0})
    );
    assert_eq!(
        spec["RollbackConfig"],
        json!({"Parallelism": 3, "FailureAction": "pause", "MaxFailureRatio": 0.0})
    );
    let spec = service_json("services:\n  web:\n    image: web\n", "dataapp_web");
    assert_eq!(spec["Mode"], json!({"Replicated": {}}));
    assert!(spec.get("UpdateConfig").is_none());
    let spec = service_json(
        "services:\n  job:\n    image: job\n    deploy: {mode: global-job}\n",
        "dataapp_job",
    );
    assert_eq!(spec["Mode"], json!({"GlobalJob": {}}));
}

#[test]
fn container_fields() {
    let compose = r#"
services:
  app:
    image: app:1
    entrypoint: /bin/sh -c
    command: ["echo", "$$HOME"]
    environment:
      - ZED=last
      - EMPTY=
      - BARE
      - A=1
    labels: [com.example.team=core, flag]
    hostname: app-host
    extra_hosts:
      - "db:10.0.0.2"
      - "cache=10.0.0.3"
    dns: [10.0.0.53]
    dns_search: example.internal
    dns_opt: [ndots:2]
    user: "1000"
    working_dir: /srv
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    tty: true
    stdin_open: yes
    init: true
    oom_score_adj: -500
    isolation: default
    ulimits:
      nproc: 512
      nofile: {soft: 1024, hard: 2048}
    healthcheck:
      test: curl -f http://localhost/ || exit 1
      interval: 10s
      start_interval: 1s
      retries: 0
    logging:
      driver: syslog
      options: {syslog-address: "udp://10.0.0.1:514", tag: 7}
"#;
    let spec = service_json(compose, "dataapp_app");
    let container = &spec["TaskTemplate"]["ContainerSpec"];
    assert_eq!(container["Command"], json!(["/bin/sh", "-c"]));
    assert_eq!(container["Args"], json!(["echo", "$HOME"]));
    assert_eq!(
        container["Env"],
        json!(["A=1", "BARE", "EMPTY=", "ZED=last"])
    );
    assert_eq!(
        container["Labels"],
        json!({"com.docker.stack.namespace": "dataapp", "com.example.team": "core", "flag": ""})
    );
    assert_eq!(container["Hosts"], json!(["10.0.0.2 db", "10.0.0.3 cache"]));
    assert_eq!(
        container["DNSConfig"],
        json!({"Nameservers": ["10.0.0.53"], "Search": ["example.internal"], "Options": ["ndots:2"]})
    );
    assert_eq!(container["User"], "1000");
    assert_eq!(container["Dir"], "/srv");
    assert_eq!(container["StopSignal"], "SIGINT");
    assert_eq!(container["StopGracePeriod"], 90_000_000_000i64);
    assert_eq!(container["TTY"], true);
    assert_eq!(container["OpenStdin"], true);
    assert_eq!(container["Init"], true);
    assert_eq!(container["OomScoreAdj"], -500);
    assert_eq!(container["Isolation"], "default");
    assert_eq!(
        container["Ulimits"],
        json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}, {"Name": "nproc", "Soft": 512, "Hard": 512}])
    );
    assert_eq!(
        container["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"], "Interval": 10_000_000_000i64, "StartInterval": 1_000_000_000})
    );
    assert_eq!(
        spec["TaskTemplate"]["LogDriver"],
        json!({"Name": "syslog", "Options": {"syslog-address": "udp://10.0.0.1:514", "tag": "7"}})
    );
}

#[test]
fn restart_fallback_and_warning() {
    let spec = service_json(
        "services:\n  w:\n    image: w\n    restart: on-failure:3\n",
        "dataapp_w",
    );
    assert_eq!(
        spec["TaskTemplate"]["RestartPolicy"],
        json!({"Condition": "on-failure", "MaxAttempts": 3})
    );
    let spec = service_json(
        "services:\n  w:\n    image: w\n    restart: \"no\"\n",
        "dataapp_w",
    );
    assert!(spec["TaskTemplate"].get("RestartPolicy").is_none());
    let (stack, warnings) = valid(
        "services:\n  w:\n    image: w\n    restart: always\n    deploy:\n      restart_policy: {condition: none}\n",
    );
    assert_eq!(
        stack.services["dataapp_w"]
            .task_template
            .restart_policy
            .as_ref()
            .unwrap()
            .condition,
        "none"
    );
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].message.contains("`restart`"));
    assert_eq!(
        errors("services:\n  w:\n    image: w\n    restart: sometimes\n").len(),
        1
    );
}

#[test]
fn volumes_and_mounts() {
    let compose = r#"
services:
  db:
    image: postgres
    volumes:
      - data:/var/lib/postgresql/data
      - /srv/backups:/backups:ro
      - /scratch
      - type: volume
        source: named
        target: /named
        volume: {nocopy: true}
      - type: tmpfs
        target: /tmp
        tmpfs: {size: 67108864, mode: 1777}
      - type: volume
        source: outside
        target: /outside
volumes:
  data:
    driver: rexray
    driver_opts: {size: "20"}
    labels: {backup: "yes"}
  named: {name: shared-named}
  outside: {external: true, name: legacy}
"#;
    let spec = service_json(compose, "dataapp_db");
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Mounts"],
        json!([
            {"Type": "volume", "Source": "dataapp_data", "Target": "/var/lib/postgresql/data",
             "VolumeOptions": {"Labels": {"backup": "yes", "com.docker.stack.namespace": "dataapp"},
                               "DriverConfig": {"Name": "rexray", "Options": {"size": "20"}}}},
            {"Type": "bind", "Source": "/srv/backups", "Target": "/backups", "ReadOnly": true},
            {"Type": "volume", "Target": "/scratch"},
            {"Type": "volume", "Source": "shared-named", "Target": "/named",
             "VolumeOptions": {"NoCopy": true, "Labels": {"com.docker.stack.namespace": "dataapp"}}},
            {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 67108864, "Mode": 1777}},
            {"Type": "volume", "Source": "legacy", "Target": "/outside", "VolumeOptions": {}}
        ])
    );
}

#[test]
fn tmpfs_size_is_whole_bytes_as_the_cli_reads_it() {
    let compose = |size: &str| {
        format!(
            "services:\n  db:\n    image: postgres\n    volumes:\n      - type: tmpfs\n        target: /tmp\n        tmpfs: {{size: {size}}}\n"
        )
    };
    let found = errors(&compose("16m"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("7:23 "), "{found:?}");
    assert!(
        found[0].contains("`services.db.volumes[0].tmpfs.size`"),
        "{found:?}"
    );
    assert!(found[0].contains("must be a integer"), "{found:?}");
    assert!(found[0].contains("(`16m` is 16777216)"), "{found:?}");
    assert_eq!(errors(&compose("-1")).len(), 1);
    let spec = service_json(&compose("16777216"), "dataapp_db");
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["TmpfsOptions"],
        json!({"SizeBytes": 16777216})
    );
}

#[test]
fn config_template_driver_is_sent_as_the_cli_sends_it() {
    let compose = "services:\n  api:\n    image: api\n    configs: [settings]\nconfigs:\n  settings:\n    file: ./settings.tmpl\n    template_driver: golang\n";
    let (stack, diags) = load_with(
        compose,
        &[("settings.tmpl", "{{ .Service.Name }}")],
        &Vars::default(),
    );
    assert!(diags.is_empty(), "{diags:?}");
    let stack = stack.unwrap();
    let (name, config) = stack.configs.iter().next().unwrap();
    assert_eq!(config.template_driver.as_deref(), Some("golang"));
    let untemplated = crate::model::spec::content_sha256(b"{{ .Service.Name }}", None);
    assert!(
        !name.ends_with(&untemplated[..8]),
        "the template driver is part of what names the config: {name}"
    );
    assert_eq!(
        stack.services["dataapp_api"]
            .task_template
            .container_spec
            .configs[0]
            .config_name,
        *name
    );
}

#[test]
fn secrets_and_configs_are_content_named() {
    let compose = r#"
services:
  api:
    image: api
    secrets:
      - token
      - source: cert
        target: /certs/server.pem
        mode: 0440
    configs: [settings]
secrets:
  token: {file: ./secrets/token.txt, labels: {kind: token}}
  cert: {external: true}
configs:
  settings: {file: ../shared/settings.json}
"#;
    let files = [
        ("stacks/secrets/token.txt", "abc"),
        ("shared/settings.json", "{}"),
    ];
    let source = MemSource::new("repo", files);
    let mut diags = Vec::new();
    let stack = load_stack(
        "app",
        &[("stacks/compose.yml", compose.as_bytes())],
        &source,
        &Vars::default(),
        &Default::default(),
        &mut diags,
    )
    .unwrap();
    assert!(diags.is_empty(), "{diags:?}");
    let token = crate::compose::convert::object_name("app", "token", None);
    assert_eq!(
        token, "app_token",
        "the planner versions it with the cluster's key"
    );
    let secret = &stack.secrets[&token];
    assert_eq!(secret.data, b"abc");
    assert_eq!(secret.source, "stacks/secrets/token.txt");
    assert_eq!(
        secret.sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(secret.labels["kind"], "token");
    assert_eq!(secret.labels["com.docker.stack.namespace"], "app");
    let container =
        serde_json::to_value(&stack.services["app_api"].task_template.container_spec).unwrap();
    assert_eq!(
        container["Secrets"],
        json!([
            {"File": {"Name": "token", "UID": "0", "GID": "0", "Mode": 292}, "SecretName": token},
            {"File": {"Name": "/certs/server.pem", "UID": "0", "GID": "0", "Mode": 288}, "SecretName": "cert"}
        ])
    );
    assert_eq!(container["Configs"][0]["ConfigName"], "app_settings");
    assert_eq!(stack.configs["app_settings"].source, "shared/settings.json");
    let serialized = serde_json::to_string(&stack).unwrap();
    assert!(
        !serialized.contains("\"abc\""),
        "secret data must not be serialized"
    );
}

#[test]
fn resources_and_placement() {
    let spec = service_json(
        r#"
services:
  gpu:
    image: gpu
    deploy:
      resources:
        limits: {cpus: "1.5", memory: 1g, pids: 100}
        reservations:
          cpus: ".25"
          memory: 256mb
          generic_resources:
            - discrete_resource_spec: {kind: gpu, value: 2}
      placement:
        constraints: ["node.labels.gpu==true"]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 1
"#,
        "dataapp_gpu",
    );
    assert_eq!(
        spec["TaskTemplate"]["Resources"],
        json!({
            "Limits": {"NanoCPUs": 1_500_000_000i64, "MemoryBytes": 1_073_741_824i64, "Pids": 100},
            "Reservations": {"NanoCPUs": 250_000_000, "MemoryBytes": 268_435_456,
                             "GenericResources": [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 2}}]}
        })
    );
    assert_eq!(
        spec["TaskTemplate"]["Placement"],
        json!({"Constraints": ["node.labels.gpu==true"],
               "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}],
               "MaxReplicas": 1})
    );
}

#[test]
fn interpolation_in_values_not_keys() {
    let mut vars = Vars::default();
    vars.env.insert("TAG".into(), "2".into());
    vars.env.insert("REPLICAS".into(), "4".into());
    vars.dotenv.insert("FROM_DOTENV".into(), "yes".into());
    vars.env.insert("PASSTHROUGH".into(), "from-env".into());
    let (stack, diags) = load_with(
        "services:\n  web:\n    image: web:${TAG}\n    environment: [\"X=$FROM_DOTENV\", PASSTHROUGH, \"LIT=$$1\"]\n    deploy:\n      replicas: ${REPLICAS}\n",
        &[],
        &vars,
    );
    assert!(diags.is_empty(), "{diags:?}");
    let spec = &stack.unwrap().services["dataapp_web"];
    assert_eq!(spec.task_template.container_spec.image, "web:2");
    assert_eq!(spec.replicas(), Some(4));
    assert_eq!(
        spec.task_template.container_spec.env,
        ["LIT=$1", "PASSTHROUGH=from-env", "X=yes"]
    );
}

#[test]
fn unset_variables_warn_once() {
    let (_, diags) =
        load("services:\n  a:\n    image: a:$V\n  b:\n    image: b:${V:-1}\n    hostname: $V\n");
    let warnings: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!((warnings[0].line, warnings[0].column), (3, 12));
}

#[test]
fn env_file_then_environment() {
    let (stack, diags) = load_with(
        "services:\n  web:\n    image: web\n    env_file: [conf/web.env]\n    environment: {A: override}\n",
        &[("conf/web.env", "A=from-file\nB=\"kept\"\n")],
        &Vars::default(),
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        stack.unwrap().services["dataapp_web"]
            .task_template
            .container_spec
            .env,
        ["A=override", "B=\"kept\""]
    );
    assert_eq!(
        errors("services:\n  web:\n    image: web\n    env_file: missing.env\n"),
        ["4:15 env file `missing.env` does not exist"]
    );
}

#[test]
fn unknown_keys_with_suggestions_and_positions() {
    let (_, diags) = load(
        "services:\n  web:\n    imgae: nginx\n    deploy:\n      replicsa: 2\n      restart_policy: {condtion: any}\n    helthcheck: {}\nnetwork: {}\nx-anything: {whatever: 1}\n",
    );
    let found: Vec<(usize, usize, &str, Option<&str>)> = diags
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str(), d.help.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (
                2,
                3,
                "service `web` has no `image`",
                Some("swarm services run images: build and push one, then name it in `image:`")
            ),
            (
                3,
                5,
                "unknown key `imgae` in `services.web`",
                Some("did you mean `image`?")
            ),
            (
                5,
                7,
                "unknown key `replicsa` in `services.web.deploy`",
                Some("did you mean `replicas`?")
            ),
            (
                6,
                24,
                "unknown key `condtion` in `services.web.deploy.restart_policy`",
                Some("did you mean `condition`?")
            ),
            (
                7,
                5,
                "unknown key `helthcheck` in `services.web`",
                Some("did you mean `healthcheck`?")
            ),
            (
                8,
                1,
                "unknown key `network`",
                Some("did you mean `networks`?")
            ),
        ]
    );
}

#[test]
fn all_errors_of_a_file_are_collected() {
    let compose = r#"
services:
  web:
    image: web
    extends: base
    ports: ["80:80:80:80", "8080/tcpx"]
    networks: [back, frnt]
    volumes: [data:/data, ./rel:/rel]
    secrets: [nope]
    configs: [cfg]
    deploy:
      mode: global
      replicas: 2
      update_config: {delay: 10, order: first}
      resources: {limits: {memory: lots, cpus: "0.0000000001"}}
      placement: {constraints: [node.role]}
    healthcheck: {test: [CMD, true], disable: true}
    stop_grace_period: soon
  Bad.Name:
    image: Upper/Case
networks:
  front:
  back:
configs:
  cfg: {file: cfg.txt}
"#;
    let found = errors(compose);
    assert_eq!(
        found,
        [
            "5:5 `services.web.extends` is not supported by swarm stacks",
            "6:13 `services.web.ports[0]`: invalid IP address `80:80`",
            "6:28 `services.web.ports[1]`: invalid protocol `tcpx` (use tcp, udp or sctp)",
            "7:22 undefined network `frnt`",
            "8:15 undefined volume `data`",
            "8:27 bind mount source `./rel` is not an absolute path",
            "9:15 undefined secret `nope`",
            "13:7 replicas can only be used with replicated or replicated-job mode",
            "14:30 `services.web.deploy.update_config.delay`: `10` has no unit (write e.g. `10s`)",
            "14:41 `services.web.deploy.update_config.order` must be one of `start-first`, `stop-first`, found `first`",
            "15:36 `services.web.deploy.resources.limits.memory`: `lots` is not a size (write e.g. `512M` or `1g`)",
            "15:48 `services.web.deploy.resources.limits.cpus`: `0.0000000001` is too precise (at most 9 decimals)",
            "16:33 placement constraint `node.role` has no `==` or `!=`",
            "17:47 healthcheck `test` and `disable` can't be set at the same time",
            "18:24 `services.web.stop_grace_period`: `soon` is not a duration",
            "19:3 service name `dataapp_Bad.Name` is not valid in swarm",
            "20:12 invalid image reference `Upper/Case`: repository name must be lowercase",
            "25:15 config file `cfg.txt` does not exist",
        ]
    );
}

#[test]
fn ignored_options_warn_like_the_docker_cli() {
    let (stack, diags) = valid(
        "services:\n  web:\n    image: web\n    build: .\n    depends_on: [db]\n    container_name: web\n    ports: [\"127.0.0.1:80:80\"]\n  db:\n    image: db\n",
    );
    let warnings: Vec<String> = diags
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect();
    assert_eq!(
        warnings,
        [
            "4:5 ignoring unsupported option `build` (docker stack deploy ignores it too)",
            "5:5 ignoring unsupported option `depends_on` (docker stack deploy ignores it too)",
            "6:5 ignoring unsupported option `container_name` (docker stack deploy ignores it too)",
            "7:13 ignoring IP address `127.0.0.1` in `127.0.0.1:80:80`: the service will listen on 0.0.0.0",
        ]
    );
    assert_eq!(stack.services.len(), 2);
}

#[test]
fn environment_backed_secrets_are_refused() {
    assert_eq!(
        errors("services: {}\nsecrets:\n  token: {environment: TOKEN}\n"),
        ["3:11 `secrets.token.environment`: secrets from environment variables are not supported by swarm stacks"]
    );
    assert_eq!(
        errors("services: {}\nsecrets:\n  token: {}\n"),
        ["3:3 secret `token` has neither `file` nor `external`"]
    );
}

#[test]
fn dnsrr_with_ingress_ports_is_refused() {
    assert_eq!(
        errors("services:\n  db:\n    image: db\n    ports: [\"5432:5432\"]\n    deploy: {endpoint_mode: dnsrr}\n"),
        ["5:14 `endpoint_mode: dnsrr` cannot be used with ports published in ingress mode"]
    );
}

#[test]
fn merge_keys_and_anchors_in_compose() {
    let spec = service_json(
        "x-base: &base\n  image: base:1\n  environment: {A: \"1\"}\nservices:\n  one:\n    <<: *base\n  two:\n    <<: *base\n    image: base:2\n",
        "dataapp_two",
    );
    assert_eq!(spec["TaskTemplate"]["ContainerSpec"]["Image"], "base:2");
    assert_eq!(spec["TaskTemplate"]["ContainerSpec"]["Env"], json!(["A=1"]));
}

#[test]
fn duplicate_keys_are_reported_with_the_other_errors() {
    assert_eq!(
        errors("services:\n  web:\n    image: a\n    image: b\n    replicas: 2\n"),
        [
            "4:5 duplicate key `image` (first written at line 3)",
            "5:5 unknown key `replicas` in `services.web`",
        ]
    );
}

#[test]
fn broken_yaml_is_one_located_error() {
    let (stack, diags) = load("services:\n  web:\n    image: [unclosed\n");
    assert!(stack.is_none());
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].file, FILE);
    assert_eq!(diags[0].line, 4);
}

#[test]
fn empty_file_is_an_error() {
    let (stack, diags) = load("# nothing here\n");
    assert!(stack.is_none());
    assert_eq!(diags[0].message, "the compose file is empty");
}

#[test]
fn old_versions_are_refused() {
    assert_eq!(
        errors("version: \"2.4\"\nservices: {}\n"),
        ["1:10 compose file version `2.4` is not supported by swarm stacks"]
    );
}
