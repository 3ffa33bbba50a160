//! End-to-end tests of [`load`]: whole repositories, from files to `Desired` or `Invalid`.

use super::*;
use crate::yaml::files::resolve_path;
use std::path::Path;

fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// A folder of the repository (`fixtures/...`, `examples/...`) read into memory.
fn fixture(name: &str) -> MemSource {
    fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                read_tree(root, &path, files);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name);
    let mut files = BTreeMap::new();
    read_tree(&root, &root, &mut files);
    let name = root.file_name().unwrap().to_string_lossy().into_owned();
    MemSource { name, files }
}

const MACHINES: &str = "cluster: dataapp\nmachines:\n  vm-manager:\n    role: manager\n";

fn repo(compose: &str) -> MemSource {
    MemSource::new(
        "dataapp",
        [("machines.yml", MACHINES), ("docker-compose.yml", compose)],
    )
}

fn invalid(source: &MemSource) -> Vec<Diagnostic> {
    load(source, &no_env())
        .expect_err("the files should be invalid")
        .diagnostics
}

#[test]
fn webshop_fixture_loads() {
    let desired = load(&fixture("fixtures/compose/webshop"), &no_env()).unwrap();
    assert_eq!(desired.cluster, "webshop");
    assert_eq!(desired.machines.len(), 7);
    assert_eq!(desired.policy.down_grace_seconds, 120);
    let stack = &desired.stacks["shop"];
    assert_eq!(
        stack.services.keys().collect::<Vec<_>>(),
        [
            "shop_api",
            "shop_cache",
            "shop_db",
            "shop_frontend",
            "shop_migrate"
        ]
    );
    assert_eq!(
        stack.networks.keys().collect::<Vec<_>>(),
        ["shop_backend", "shop_frontend"]
    );
    assert_eq!(stack.configs.len(), 1);
    assert_eq!(stack.secrets.len(), 2);
    assert!(stack.secrets.contains_key("shop-payment-key"));
    let secret = &stack.secrets["shop_db_password"];
    assert_eq!(
        secret.version, "",
        "the planner versions it with the cluster's key"
    );
    assert_eq!(secret.data, b"s3cr3t-postgres-password\n");
    assert_eq!(secret.source, "secrets/db_password.txt");
    assert!(desired.warnings.is_empty(), "{:#?}", desired.warnings);
    insta::assert_json_snapshot!("webshop", desired);
}

#[test]
fn monitoring_fixture_loads() {
    let desired = load(&fixture("fixtures/compose/monitoring"), &no_env()).unwrap();
    let stack = &desired.stacks["monitoring"];
    assert!(stack.external_networks.is_empty());
    assert!(stack.networks.contains_key("traefik-public"));
    assert_eq!(stack.secrets.len(), 1);
    assert!(desired.policy.rebalance);
    insta::assert_json_snapshot!("monitoring", desired);
}

#[test]
fn example_repository_loads() {
    let desired = load(&fixture("examples/dataapp"), &no_env()).unwrap();
    assert_eq!(desired.stacks["dataapp"].services.len(), 1);
    assert!(desired.warnings.is_empty(), "{:?}", desired.warnings);
}

#[test]
fn environment_wins_over_dotenv() {
    let env = BTreeMap::from([("API_TAG".to_string(), "2.0.0".to_string())]);
    let desired = load(&fixture("fixtures/compose/webshop"), &env).unwrap();
    let api = &desired.stacks["shop"].services["shop_api"];
    assert_eq!(
        api.task_template.container_spec.image,
        "registry.example.com/shop/api:2.0.0"
    );
    let env = &api.task_template.container_spec.env;
    assert!(env.contains(&"LOG_LEVEL=warn".to_string()), "{env:?}");
}

#[test]
fn no_compose_file_no_stacks() {
    let source = MemSource::new("repo", [("machines.yml", MACHINES)]);
    let desired = load(&source, &no_env()).unwrap();
    assert!(desired.stacks.is_empty());
}

#[test]
fn default_stack_is_named_after_the_cluster() {
    let desired = load(
        &MemSource::new(
            "My Cluster",
            [
                ("machines.yml", "machines: {m: {role: manager}}\n"),
                (
                    "docker-compose.yml",
                    "services:\n  web:\n    image: nginx\n",
                ),
            ],
        ),
        &no_env(),
    )
    .unwrap();
    assert_eq!(desired.cluster, "my-cluster");
    assert!(desired.stacks["my-cluster"]
        .services
        .contains_key("my-cluster_web"));
}

#[test]
fn warnings_are_displayed_diagnostics() {
    let desired = load(
        &repo("services:\n  web:\n    image: nginx${TAG}\n    privileged: true\n"),
        &no_env(),
    )
    .unwrap();
    assert_eq!(
        desired.warnings,
        [
            "warning: docker-compose.yml:3:12: variable TAG is not set, using an empty string\n  help: set TAG in the environment or in .env, or write a default: ${TAG:-value}",
            "warning: docker-compose.yml:4:5: ignoring unsupported option `privileged` (docker stack deploy ignores it too)\n  help: swarm services cannot run privileged; use `cap_add` for specific capabilities",
        ]
    );
}

#[test]
fn every_error_of_every_file_is_reported_in_order() {
    let source = MemSource::new(
        "repo",
        [
            (
                "machines.yml",
                "machines:\n  m:\n    role: manager\n    count: 4\nstacks:\n  a: a.yml\n  b: b.yml\n  c: missing.yml\n",
            ),
            ("a.yml", "services:\n  web:\n    imag: nginx\n"),
            ("b.yml", "services:\n  db:\n    image: postgres\n    ports: [\"99999:1\"]\n"),
        ],
    );
    let diags = invalid(&source);
    let shown: Vec<String> = diags
        .iter()
        .map(|d| format!("{:?} {}:{}:{}", d.severity, d.file, d.line, d.column))
        .collect();
    assert_eq!(
        shown,
        [
            "Error a.yml:2:3",
            "Error a.yml:3:5",
            "Error b.yml:4:13",
            "Error machines.yml:8:6",
            "Warning machines.yml:1:1",
        ]
    );
    assert_eq!(diags[1].help.as_deref(), Some("did you mean `image`?"));
    assert!(diags[3].message.contains("`missing.yml`"));
}

#[test]
fn missing_machines_file_still_checks_the_compose_file() {
    let source = MemSource::new(
        "repo",
        [(
            "docker-compose.yml",
            "services:\n  web: {image: nginx, replicas: 2}\n",
        )],
    );
    let diags = invalid(&source);
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert!(diags[0].message.contains("unknown key `replicas`"));
    assert_eq!(diags[1].file, "machines.yml");
    assert!(diags[1].help.as_deref().unwrap().contains("machines:"));
}

#[test]
fn dotenv_errors_are_located() {
    let source = MemSource::new(
        "repo",
        [("machines.yml", MACHINES), (".env", "A=1\nnot a pair\n")],
    );
    let diags = invalid(&source);
    assert_eq!((diags[0].file.as_str(), diags[0].line), (".env", 2));
}

#[test]
fn binary_compose_file_is_refused() {
    let mut source = repo("");
    source
        .files
        .insert("docker-compose.yml".into(), b"services:\0\x01\x02".to_vec());
    let diags = invalid(&source);
    assert_eq!(diags.len(), 1);
    assert!(diags[0].message.contains("NUL"), "{diags:?}");
}

#[test]
fn required_variable_error_names_the_variable() {
    let diags = invalid(&repo(
        "services:\n  web:\n    image: \"nginx:${TAG:?pick a tag}\"\n",
    ));
    assert_eq!(diags.len(), 1);
    assert_eq!(
        diags[0].to_string(),
        "error: docker-compose.yml:3:12: required variable TAG is missing a value: pick a tag"
    );
}

#[test]
fn an_object_created_by_two_stacks_is_an_error() {
    let compose = "services:\n  web: {image: x, networks: [shared]}\nnetworks:\n  shared: {name: shared-net}\n";
    let source = MemSource::new(
        "repo",
        [
            (
                "machines.yml",
                "machines: {m: {role: manager}}\nstacks:\n  a: one.yml\n  b: two.yml\n",
            ),
            ("one.yml", compose),
            ("two.yml", compose),
        ],
    );
    let diags = invalid(&source);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(
        diags[0].message,
        "stack `b` and stack `a` both create the network `shared-net`"
    );
}

#[test]
fn paths_resolve_inside_the_repository() {
    assert_eq!(
        resolve_path("stacks/web", "../secrets/a.txt"),
        Ok("stacks/secrets/a.txt".into())
    );
    assert_eq!(resolve_path("", "./a/./b"), Ok("a/b".into()));
    assert!(resolve_path("", "../x").is_err());
    assert!(resolve_path("a", "/etc/passwd").is_err());
    assert!(resolve_path("a", "C:\\x").is_err());
}

#[test]
fn dns_names() {
    assert_eq!(dns_safe("My_Repo.git"), "my-repo-git");
    assert_eq!(dns_safe("--9lives--"), "lives");
    assert_eq!(dns_safe("___"), "shoal");
    assert_eq!(dns_problem("ok-name1"), None);
    assert!(dns_problem("trailing-").is_some());
    assert!(dns_problem(&"a".repeat(64)).is_some());
}

#[test]
fn machines_alone_load_while_a_compose_file_is_broken() {
    let broken = repo("services:\n  web:\n    image: nginx:1.27\n    replicsa: 3\n");
    assert!(!invalid(&broken).is_empty());
    let desired = load_machines(&broken).unwrap();
    assert_eq!(desired.cluster, "dataapp");
    assert_eq!(desired.machines.len(), 1);
    assert!(desired.stacks.is_empty());
    let no_machines = MemSource::new("dataapp", [("machines.yml", "machines: [\n")]);
    assert!(load_machines(&no_machines).is_err());
}

const OVERRIDE_MACHINES: &str = "cluster: app\nmachines:\n  m:\n    role: manager\nstacks:\n  app: [docker-compose.yml, prod/docker-compose.prod.yml]\n";

#[test]
fn a_stack_of_several_files_is_merged_in_order() {
    let source = MemSource::new(
        "repo",
        [
            ("machines.yml", OVERRIDE_MACHINES),
            (".env", "TAG=1\nIMAGE=web:${TAG}\n"),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: ${IMAGE}\n    environment: [A=1, B=2]\n    ports: ['8080:80']\n    secrets: [s]\nsecrets:\n  s: {file: s.txt}\n",
            ),
            (
                "prod/docker-compose.prod.yml",
                "services:\n  web:\n    environment: {B: '3'}\n    deploy: {replicas: 3}\n    ports: ['8080:8080']\n  worker:\n    image: worker:2\n",
            ),
            ("s.txt", "hello"),
        ],
    );
    let desired = load(&source, &no_env()).unwrap();
    let stack = &desired.stacks["app"];
    assert_eq!(stack.file, "docker-compose.yml");
    assert_eq!(
        stack.services.keys().collect::<Vec<_>>(),
        ["app_web", "app_worker"]
    );
    let web = &stack.services["app_web"];
    assert_eq!(web.replicas(), Some(3));
    let container = &web.task_template.container_spec;
    assert!(container.image.starts_with("web:1"), "{}", container.image);
    assert_eq!(container.env, ["A=1", "B=3"]);
    let ports = &web.endpoint_spec.as_ref().unwrap().ports;
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].target_port, 8080);
}

#[test]
fn problems_of_an_override_name_its_file() {
    let source = MemSource::new(
        "repo",
        [
            ("machines.yml", OVERRIDE_MACHINES),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: web:1\n",
            ),
            (
                "prod/docker-compose.prod.yml",
                "services:\n  web:\n    replicas: 3\n    deploy: {replicas: many}\n",
            ),
        ],
    );
    let diags = invalid(&source);
    let located: Vec<_> = diags.iter().map(|d| (d.file.as_str(), d.line)).collect();
    assert!(
        located.contains(&("prod/docker-compose.prod.yml", 3)),
        "{diags:?}"
    );
    assert!(
        located.contains(&("prod/docker-compose.prod.yml", 4)),
        "{diags:?}"
    );
    assert!(located.iter().all(|(_, line)| *line < 100), "{diags:?}");
}

#[test]
fn a_missing_override_file_is_named() {
    let source = MemSource::new(
        "repo",
        [
            ("machines.yml", OVERRIDE_MACHINES),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: web:1\n",
            ),
        ],
    );
    let diags = invalid(&source);
    assert!(
        diags[0]
            .message
            .contains("`prod/docker-compose.prod.yml` of stack `app` does not exist"),
        "{diags:?}"
    );
}

#[test]
fn a_service_published_on_the_cluster_registrys_port_is_refused() {
    let machines = "cluster: shop\ndriver: dind\ndriver_options:\n  registry: 5001\nmachines:\n  m:\n    role: manager\nstacks:\n  web: docker-compose.yml\n";
    let compose = |port: u16| {
        format!("services:\n  front:\n    image: nginx\n    ports:\n      - \"{port}:80\"\n")
    };
    let (taken_compose, free_compose) = (compose(5001), compose(8080));
    let sim_machines = machines.replace("driver: dind", "driver: sim");
    let taken = MemSource::new(
        "repo",
        [
            ("machines.yml", machines),
            ("docker-compose.yml", taken_compose.as_str()),
        ],
    );
    let errors = invalid(&taken);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].file.as_str(), errors[0].line),
        ("docker-compose.yml", 5),
        "{errors:?}"
    );
    assert!(
        errors[0]
            .message
            .contains("port of the cluster's own registry"),
        "{errors:?}"
    );
    let free = MemSource::new(
        "repo",
        [
            ("machines.yml", machines),
            ("docker-compose.yml", free_compose.as_str()),
        ],
    );
    assert!(load(&free, &no_env()).is_ok());
    let sim = MemSource::new(
        "repo",
        [
            ("machines.yml", sim_machines.as_str()),
            ("docker-compose.yml", taken_compose.as_str()),
        ],
    );
    assert!(
        load(&sim, &no_env()).is_ok(),
        "only dind clusters run the registry"
    );
}
