//! Adoption of what `docker stack deploy` left (issue 13), planned from captured engine output
//! (`fixtures/no_drift/adopt_*`, see `capture_adopt.sh`) changed the way real clusters differ:
//! a config of other content is rotated, a CLI secret is adopted unless the file asks for its
//! rotation, an unreadable service of another stack only warns, engine fields shoal does not
//! model are neither compared nor lost. Secret data never appears in a plan.

use crate::common;

use serde_json::{json, Value};
use shoal::config::load;
use shoal::docker::EngineDump;
use shoal::model::content_key::ContentKey;
use shoal::model::Desired;
use shoal::plan::{plan, Plan, PlanOptions};
use shoal::source::DirSource;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/no_drift")
        .join(name)
}

fn dump_of(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("engine.json")).unwrap()).unwrap()
}

/// Plans the files of `dir` against `dump`.
fn plan_of(dir: &Path, dump: Value) -> (Desired, Plan) {
    let desired = load(&DirSource(dir.to_path_buf()), &BTreeMap::new()).expect("files load");
    let dump: EngineDump = serde_json::from_value(dump).unwrap();
    let observed = common::observed_from_dump(&desired, &dump);
    let options = PlanOptions {
        content_key: Some(ContentKey::from_bytes([3; 32])),
        ..PlanOptions::default()
    };
    let plan = plan(&desired, &observed, &options).expect("plans");
    (desired, plan)
}

fn steps(plan: &Plan) -> Vec<String> {
    common::steps_of(&serde_json::to_value(plan).unwrap())
}

/// A copy of the case `name` in a temporary folder.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(case(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn a_cli_config_of_the_same_content_is_adopted_and_of_another_rotated() {
    let dir = case("adopt_nginx_proxy");
    let (_, same) = plan_of(&dir, dump_of(&dir));
    assert!(steps(&same).is_empty(), "{:?}", steps(&same));

    let mut dump = dump_of(&dir);
    for config in dump["configs"].as_array_mut().unwrap() {
        if config["Spec"]["Name"] == "nginxproxy_nginx_conf" {
            config["Spec"]["Data"] = json!("b2xkIGNvbnRlbnQK");
        }
    }
    let (_, changed) = plan_of(&dir, dump);
    let steps = steps(&changed);
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(
        steps[0].starts_with("create_config nginxproxy_nginx_conf-"),
        "{steps:?}"
    );
    assert_eq!(steps[1], "update_service nginxproxy_nginx");
    assert_eq!(steps[2], "remove_config nginxproxy_nginx_conf");
}

#[test]
fn a_cli_secret_is_adopted_with_a_warning_or_rotated_on_request() {
    let dir = case("adopt_wordpress");
    let (_, adopted) = plan_of(&dir, dump_of(&dir));
    assert!(steps(&adopted).is_empty());
    assert!(
        adopted
            .warnings
            .iter()
            .any(|w| w.to_string().contains("secret wordpress_db_password ")
                && w.to_string().contains("io.shoal.rotate")),
        "{:?}",
        adopted.warnings
    );

    let copy = copy_of("adopt_wordpress");
    let compose = copy.path().join("docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap().replace(
        "    file: db_password.txt\n",
        "    file: db_password.txt\n    labels:\n      io.shoal.rotate: \"true\"\n",
    );
    std::fs::write(&compose, text).unwrap();
    let (_, rotated) = plan_of(copy.path(), dump_of(&dir));
    let steps = steps(&rotated);
    assert!(
        steps[0].starts_with("create_secret wordpress_db_password-"),
        "{steps:?}"
    );
    assert!(steps.contains(&"update_service wordpress_db".to_string()));
    assert!(steps.contains(&"update_service wordpress_wordpress".to_string()));
    assert_eq!(steps.last().unwrap(), "remove_secret wordpress_db_password");
    let json = serde_json::to_string(&rotated).unwrap();
    let text = shoal::render::render_plan(&rotated, shoal::render::Style::PLAIN);
    for output in [json, text] {
        assert!(!output.contains("wp-secret-1"), "secret data in the plan");
    }
}

#[test]
fn an_unreadable_service_of_another_stack_only_warns() {
    let dir = case("adopt_wordpress");
    let mut dump = dump_of(&dir);
    dump["services"].as_array_mut().unwrap().push(json!({
        "ID": "other1", "Version": {"Index": 9},
        "Spec": {
            "Name": "other_web",
            "Labels": {"com.docker.stack.namespace": "other"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "web", "Mounts": "not a list", "FutureField": {"a": 1}},
                "LogDriver": {"Options": {"max-size": "1m"}}
            },
            "Mode": {"Replicated": {"Replicas": 1}}
        }
    }));
    let (_, plan) = plan_of(&dir, dump);
    assert!(steps(&plan).is_empty(), "{:?}", steps(&plan));
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.to_string().contains("other_web")
                && w.to_string().contains("TaskTemplate.ContainerSpec.Mounts")
                && w.to_string().contains("leaves it as it is")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn engine_fields_shoal_does_not_model_are_not_drift() {
    let dir = case("adopt_logging_anchors");
    let mut dump = dump_of(&dir);
    for service in dump["services"].as_array_mut().unwrap() {
        let task = &mut service["Spec"]["TaskTemplate"];
        task["ContainerSpec"]["FutureField"] = json!({"enabled": true});
        task["FutureTaskField"] = json!([1, 2]);
        service["Spec"]["FutureServiceField"] = json!("x");
    }
    let (_, plan) = plan_of(&dir, dump);
    assert!(steps(&plan).is_empty(), "{:?}", steps(&plan));
}
