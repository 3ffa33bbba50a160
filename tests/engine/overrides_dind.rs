//! Compose overrides on a real engine (issue 12): a stack of two files
//! (`fixtures/overrides/`) deployed with `docker stack deploy -c docker-compose.yml -c
//! docker-compose.prod.yml` plans to nothing in shoal when machines.yml names the same files,
//! with each file interpolated on its own.
//!
//! Needs Docker: fails, saying so, when no engine answers. The
//! cluster is destroyed when the test ends, failed or not.

use crate::common;

use common::{DindCluster, Repo};

/// A one-manager dind cluster with the override fixture and no stack yet; destroyed on drop.
fn override_cluster() -> DindCluster {
    common::build_demo_image();
    let cluster = DindCluster::new(Repo::copy_of("fixtures/overrides"), "overrides");
    write_machines(&cluster, "{}");
    cluster
}

/// Writes machines.yml with these `stacks`.
fn write_machines(cluster: &DindCluster, stacks: &str) {
    std::fs::write(
        cluster.repo.path().join("machines.yml"),
        format!(
            "cluster: {}\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1]\nmachines:\n  m:\n    role: manager\nstacks: {stacks}\n",
            cluster.name
        ),
    )
    .unwrap();
}

#[test]
fn a_stack_deployed_with_two_files_by_the_cli_plans_to_nothing() {
    let _turn = common::engine_turn("the override scenario");
    let cluster = override_cluster();
    cluster.repo.apply();
    cluster.deploy_by_cli(
        "m",
        &[("COLOR", "green")],
        &["docker-compose.yml", "docker-compose.prod.yml"],
        "app",
    );
    write_machines(
        &cluster,
        "{app: [docker-compose.yml, docker-compose.prod.yml]}",
    );
    std::fs::write(cluster.repo.path().join(".env"), "COLOR=green\n").unwrap();
    let steps = common::steps_of(&cluster.repo.plan());
    assert!(
        steps.is_empty(),
        "a stack the CLI deployed from two files must plan to nothing: {steps:?}"
    );

    // The merged result is what the override asks for.
    let inspect = cluster.docker(
        "m",
        &[
            "service",
            "inspect",
            "app_web",
            "--format",
            "{{json .Spec}}",
        ],
    );
    let spec: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(spec["Mode"]["Replicated"]["Replicas"], 2);
    let env = spec["TaskTemplate"]["ContainerSpec"]["Env"].to_string();
    assert!(
        env.contains("MODE=prod") && env.contains("COLOR=green"),
        "{env}"
    );

    // Each file is interpolated on its own, with the same variables.
    cluster.repo.edit(
        "docker-compose.yml",
        "\"18080:8080\"",
        "\"${WEB_PORT:-18080}:8080\"",
    );
    cluster.repo.edit(
        "docker-compose.prod.yml",
        "\"18081:8080\"",
        "\"${PROD_PORT:-18081}:8080\"",
    );
    let steps = common::steps_of(&cluster.repo.plan());
    assert!(steps.is_empty(), "defaults keep the same ports: {steps:?}");
}
