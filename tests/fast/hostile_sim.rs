//! The sim refuses what the engine refuses, with the engine's texts: a published port held by
//! another service or published twice, two secrets or configs at one target, references to
//! missing networks, secrets and configs, and replica counts it cannot hold. Specs are sent
//! to the sim directly, as a plan made without `validate` would.

use shoal::drivers::sim::SimDriver;
use shoal::drivers::Driver;
use shoal::engine::{EngineError, Swarm};
use shoal::model::spec::{
    ConfigReference, ContainerSpec, EndpointSpec, FileTarget, NetworkAttachment, PortConfig,
    SecretReference, TaskSpec,
};
use shoal::model::{MachineSpec, ObjectSpec, Role, ServiceSpec, LABEL_STACK_NAMESPACE};
use std::collections::BTreeMap;

fn web(name: &str, ports: &[(u32, &str)]) -> ServiceSpec {
    ServiceSpec {
        name: name.to_string(),
        labels: BTreeMap::from([(LABEL_STACK_NAMESPACE.to_string(), "app".to_string())]),
        task_template: TaskSpec {
            container_spec: ContainerSpec {
                image: "nginx:1".to_string(),
                ..ContainerSpec::default()
            },
            ..TaskSpec::default()
        },
        endpoint_spec: Some(EndpointSpec {
            mode: String::new(),
            ports: ports
                .iter()
                .map(|&(port, mode)| PortConfig {
                    protocol: "tcp".into(),
                    target_port: 80,
                    published_port: Some(port),
                    publish_mode: mode.into(),
                    ..PortConfig::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..ServiceSpec::default()
    }
}

fn object(name: &str) -> ObjectSpec {
    ObjectSpec {
        name: name.to_string(),
        labels: BTreeMap::new(),
        sha256: String::new(),
        version: String::new(),
        source: "x".into(),
        data: b"data".to_vec(),
        ..Default::default()
    }
}

fn refused(result: Result<impl std::fmt::Debug, EngineError>, text: &str) {
    match result {
        Err(EngineError::Refused(message)) | Err(EngineError::NotFound(message)) => {
            assert!(message.contains(text), "{message:?} does not say {text:?}");
        }
        other => panic!("expected a refusal saying {text:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_sim_refuses_what_the_engine_refuses() {
    let driver = SimDriver::in_memory();
    driver
        .create(&MachineSpec {
            name: "m1".into(),
            role: Role::Manager,
            labels: BTreeMap::new(),
            host: None,
        })
        .await
        .unwrap();
    let engine = driver.sim_engine("m1").unwrap();
    engine.init_swarm().await.unwrap();
    let writes = driver.writes();

    engine
        .create_service(&web("a", &[(8080, "ingress")]))
        .await
        .unwrap();
    refused(
        engine.create_service(&web("b", &[(8080, "ingress")])).await,
        "port '8080' is already in use by service 'a'",
    );
    refused(
        engine.create_service(&web("b", &[(8080, "host")])).await,
        "as an ingress port",
    );
    engine
        .create_service(&web("h1", &[(9000, "host")]))
        .await
        .unwrap();
    engine
        .create_service(&web("h2", &[(9000, "host")]))
        .await
        .expect("two host-mode services may share a port");
    refused(
        engine.create_service(&web("c", &[(9000, "ingress")])).await,
        "as a host-published port",
    );
    refused(
        engine
            .create_service(&web("d", &[(7000, "ingress"), (7000, "ingress")]))
            .await,
        "EndpointSpec: duplicate published ports provided",
    );

    // An update may keep its own port, not take another's.
    let services = engine.list_services().await.unwrap();
    let a = services.iter().find(|s| s.spec.name == "a").unwrap();
    engine
        .update_service(&a.id, a.version, &web("a", &[(8080, "ingress")]))
        .await
        .unwrap();
    let h1 = services.iter().find(|s| s.spec.name == "h1").unwrap();
    refused(
        engine
            .update_service(&h1.id, h1.version, &web("h1", &[(8080, "host")]))
            .await,
        "port '8080' is already in use by service 'a'",
    );

    engine.create_secret(&object("s1")).await.unwrap();
    engine.create_secret(&object("s2")).await.unwrap();
    engine.create_config(&object("c1")).await.unwrap();
    engine.create_config(&object("c2")).await.unwrap();
    let target = |name: &str| FileTarget {
        name: name.into(),
        uid: "0".into(),
        gid: "0".into(),
        mode: 0o444,
        ..Default::default()
    };
    let mut secrets = web("e", &[]);
    secrets.task_template.container_spec.secrets = ["s1", "s2"]
        .map(|s| SecretReference {
            file: target("token"),
            secret_id: String::new(),
            secret_name: s.into(),
            ..Default::default()
        })
        .to_vec();
    refused(
        engine.create_service(&secrets).await,
        "secret references 's1' and 's2' have a conflicting target: 'token'",
    );
    let mut configs = web("f", &[]);
    configs.task_template.container_spec.configs = ["c1", "c2"]
        .map(|c| ConfigReference {
            file: target("/etc/x"),
            config_id: String::new(),
            config_name: c.into(),
            ..Default::default()
        })
        .to_vec();
    refused(
        engine.create_service(&configs).await,
        "config references 'c1' and 'c2' have a conflicting target: '/etc/x'",
    );

    let mut missing = web("g", &[]);
    missing.task_template.networks = vec![NetworkAttachment {
        target: "edge".into(),
        ..NetworkAttachment::default()
    }];
    refused(
        engine.create_service(&missing).await,
        "network edge not found",
    );
    let mut missing = web("g", &[]);
    missing.task_template.container_spec.secrets = vec![SecretReference {
        file: target("x"),
        secret_id: String::new(),
        secret_name: "nope".into(),
        ..Default::default()
    }];
    refused(
        engine.create_service(&missing).await,
        "secret not found: nope",
    );

    let mut huge = web("big", &[]);
    huge.set_replicas(u64::MAX);
    refused(engine.create_service(&huge).await, "at most");
    assert!(driver.set_replicas("a", u64::MAX).is_err());

    let names: Vec<String> = engine
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.spec.name)
        .collect();
    assert_eq!(
        names.len(),
        3,
        "only the accepted services exist: {names:?}"
    );
    assert!(driver.writes() > writes);
}

/// The desired state of one manager and a service `app_web` with `replicas`.
fn desired_web(replicas: u32) -> shoal::model::Desired {
    let machines = "cluster: exact\ndriver: sim\nmachines:\n  m1:\n    role: manager\nstacks:\n  app: docker-compose.yml\n";
    let compose =
        format!("services:\n  web:\n    image: nginx:1\n    deploy:\n      replicas: {replicas}\n");
    let files = shoal::config::MemSource::new(
        "exact",
        [
            ("machines.yml", machines),
            ("docker-compose.yml", compose.as_str()),
        ],
    );
    shoal::config::load(&files, &BTreeMap::new()).expect("valid")
}

/// Issue 18: apply carries out exactly the plan it showed. A hand change made after the plan's
/// observation and before the write (`docker service update --env-add`) is kept: the write is
/// refused as stale and says so, and the plan made afterwards shows the change.
#[tokio::test]
async fn a_write_never_overwrites_a_change_made_since_the_plan() {
    use shoal::apply::{apply, progress::Lines, ApplyOptions};
    use shoal::plan::{plan, PlanOptions};
    use std::sync::Arc;

    let driver: Arc<dyn Driver> = Arc::new(SimDriver::in_memory());
    let options = ApplyOptions {
        settle: std::time::Duration::ZERO,
        ..ApplyOptions::default()
    };
    let first = desired_web(1);
    let observed = shoal::observe::observe(&driver, 0).await.unwrap();
    let created = plan(&first, &observed, &PlanOptions::default()).unwrap();
    let report = apply(&created, &first, driver.clone(), &options, &Lines)
        .await
        .unwrap();
    assert!(report.converged, "{:?}", report.remaining);

    let scaled = desired_web(3);
    let observed = shoal::observe::observe(&driver, 0).await.unwrap();
    let planned = plan(&scaled, &observed, &PlanOptions::default()).unwrap();
    let steps: Vec<String> = planned
        .steps
        .iter()
        .map(|s| format!("{} {}", s.action(), s.target))
        .collect();
    assert_eq!(steps, ["scale_service app_web"]);

    // By hand, between the plan and its write.
    let service = observed.services["app_web"].clone();
    let mut by_hand = service.spec.clone();
    by_hand
        .task_template
        .container_spec
        .env
        .push("HOTFIX=1".to_string());
    let engine = driver.engine("m1").await.unwrap();
    engine
        .update_service(&service.id, service.version, &by_hand)
        .await
        .unwrap();

    let report = apply(&planned, &scaled, driver.clone(), &options, &Lines)
        .await
        .unwrap();
    let step = &report.steps[0];
    let error = step.error.clone().unwrap_or_default();
    assert!(
        error.contains("changed since the plan was made") && error.contains("Plan again"),
        "{error:?}"
    );
    let now = shoal::observe::observe(&driver, 0).await.unwrap();
    let kept = &now.services["app_web"].spec;
    assert!(kept
        .task_template
        .container_spec
        .env
        .contains(&"HOTFIX=1".to_string()));
    assert_eq!(kept.replicas(), Some(1), "nothing was written");
}
