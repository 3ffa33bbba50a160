//! Tests of the sim driver: the engine rules, task placement, faults and persistence.

use super::sched::Constraint;
use super::*;
use crate::drivers::lock::LockHolder;
use crate::engine::{EngineError, NodeSpecUpdate};
use crate::model::spec::{
    ContainerSpec, EndpointSpec, FileTarget, NetworkAttachment, Placement, PortConfig,
    SecretReference, ServiceMode, TaskSpec,
};
use crate::model::{
    Availability, MachineSpec, NetworkSpec, NodeState, ObjectSpec, ObservedNode, Reachability,
    Role, ServiceSpec, LABEL_STACK_NAMESPACE,
};
use std::collections::BTreeMap;

const NOW: u64 = 1_000_000;

fn spec(name: &str, role: Role) -> MachineSpec {
    MachineSpec {
        name: name.to_string(),
        role,
        labels: BTreeMap::new(),
        host: None,
    }
}

fn driver() -> SimDriver {
    SimDriver::in_memory().with_clock(|| NOW)
}

fn engine(d: &SimDriver, machine: &str) -> SimEngine {
    d.sim_engine(machine).expect("machine exists")
}

/// Creates the machines, inits the swarm on the first manager and joins the rest.
async fn cluster(d: &SimDriver, managers: &[&str], workers: &[&str]) {
    for m in managers {
        d.create(&spec(m, Role::Manager)).await.unwrap();
    }
    for w in workers {
        d.create(&spec(w, Role::Worker)).await.unwrap();
    }
    let first = engine(d, managers[0]);
    first.init_swarm().await.unwrap();
    let tokens = first.join_tokens().await.unwrap();
    let addr = first.info().await.unwrap().node_addr;
    for m in &managers[1..] {
        engine(d, m)
            .join_swarm(&addr, &tokens.manager)
            .await
            .unwrap();
    }
    for w in workers {
        engine(d, w)
            .join_swarm(&addr, &tokens.worker)
            .await
            .unwrap();
    }
}

async fn node(e: &SimEngine, hostname: &str) -> ObservedNode {
    let nodes = e.list_nodes().await.unwrap();
    let mut found: Vec<ObservedNode> = nodes
        .into_iter()
        .filter(|n| n.hostname == hostname)
        .collect();
    found.sort_by_key(|n| n.state != NodeState::Ready);
    found.remove(0)
}

async fn set_node(
    e: &SimEngine,
    hostname: &str,
    f: impl FnOnce(&mut NodeSpecUpdate),
) -> Result<(), EngineError> {
    let n = node(e, hostname).await;
    let mut update = NodeSpecUpdate {
        role: n.role,
        availability: n.availability,
        labels: n.labels.clone(),
    };
    f(&mut update);
    e.update_node(&n.id, n.version, update).await
}

fn service(name: &str, replicas: u64) -> ServiceSpec {
    let mut s = ServiceSpec {
        name: name.to_string(),
        labels: BTreeMap::from([(LABEL_STACK_NAMESPACE.to_string(), "app".to_string())]),
        task_template: TaskSpec {
            container_spec: ContainerSpec {
                image: "nginx:1".to_string(),
                ..ContainerSpec::default()
            },
            ..TaskSpec::default()
        },
        ..ServiceSpec::default()
    };
    s.set_replicas(replicas);
    s
}

fn global(name: &str) -> ServiceSpec {
    let mut s = service(name, 1);
    s.mode = Some(ServiceMode {
        global: Some(Default::default()),
        ..ServiceMode::default()
    });
    s
}

fn constrained(mut s: ServiceSpec, constraint: &str) -> ServiceSpec {
    s.task_template.placement = Some(Placement {
        constraints: vec![constraint.to_string()],
        ..Placement::default()
    });
    s
}

fn spread(d: &SimDriver, service: &str) -> BTreeMap<String, u64> {
    d.snapshot().swarm().unwrap().task_spread(service)
}

fn object(name: &str, data: &str) -> ObjectSpec {
    ObjectSpec {
        name: name.to_string(),
        labels: BTreeMap::new(),
        sha256: String::new(),
        version: String::new(),
        source: "file".to_string(),
        data: data.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn refused(result: Result<impl std::fmt::Debug, EngineError>, text: &str) {
    match result {
        Err(EngineError::Refused(msg)) => assert!(msg.contains(text), "{msg:?} lacks {text:?}"),
        other => panic!("expected a refusal containing {text:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn init_makes_a_leader_and_refuses_twice() {
    let d = driver();
    d.create(&spec("m1", Role::Manager)).await.unwrap();
    let e = engine(&d, "m1");
    let info = e.info().await.unwrap();
    assert_eq!(info.swarm_state, LocalSwarmState::Inactive);
    assert!(!info.control_available);
    let id = e.init_swarm().await.unwrap();
    let info = e.info().await.unwrap();
    assert_eq!(info.swarm_state, LocalSwarmState::Active);
    assert_eq!(info.node_id.as_deref(), Some(id.as_str()));
    assert!(info.control_available);
    assert_eq!(info.node_addr, "m1:2377");
    let nodes = e.list_nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(nodes[0].leader);
    assert_eq!(nodes[0].role, Role::Manager);
    assert_eq!(nodes[0].availability, Availability::Active);
    assert_eq!(nodes[0].reachability, Some(Reachability::Reachable));
    assert!(nodes[0].labels.is_empty());
    refused(e.init_swarm().await, "already part of a swarm");
    assert!(e.list_networks().await.unwrap().contains_key("ingress"));
}

#[tokio::test]
async fn join_tokens_decide_the_role_and_are_checked() {
    let d = driver();
    cluster(&d, &["m1"], &[]).await;
    d.create(&spec("w1", Role::Worker)).await.unwrap();
    d.create(&spec("m2", Role::Manager)).await.unwrap();
    d.create(&spec("x", Role::Worker)).await.unwrap();
    let m1 = engine(&d, "m1");
    let tokens = m1.join_tokens().await.unwrap();
    assert_ne!(tokens.worker, tokens.manager);
    assert!(tokens.worker.starts_with("SWMTKN-1-"));
    assert_eq!(format!("{tokens:?}"), "JoinTokens { <redacted> }");

    refused(
        engine(&d, "x")
            .join_swarm("m1:2377", "SWMTKN-1-bogus")
            .await,
        "invalid join token",
    );
    refused(
        engine(&d, "x")
            .join_swarm("nowhere:2377", &tokens.worker)
            .await,
        "no swarm manager",
    );

    engine(&d, "w1")
        .join_swarm("m1:2377", &tokens.worker)
        .await
        .unwrap();
    engine(&d, "m2")
        .join_swarm("m1", &tokens.manager)
        .await
        .unwrap();
    refused(
        engine(&d, "x").join_swarm("w1:2377", &tokens.worker).await,
        "no swarm manager",
    );
    refused(
        engine(&d, "w1").join_swarm("m1:2377", &tokens.worker).await,
        "already part of a swarm",
    );

    assert_eq!(node(&m1, "w1").await.role, Role::Worker);
    assert_eq!(node(&m1, "m2").await.role, Role::Manager);
    assert_eq!(
        node(&m1, "m2").await.reachability,
        Some(Reachability::Reachable)
    );
    let w1 = engine(&d, "w1").info().await.unwrap();
    assert_eq!(w1.swarm_state, LocalSwarmState::Active);
    assert!(!w1.control_available);
    assert!(engine(&d, "m2").info().await.unwrap().control_available);

    let machines = d.list().await.unwrap();
    let w1 = machines.iter().find(|m| m.name == "w1").unwrap();
    assert_eq!(w1.created_role, Some(Role::Worker));
    assert_eq!(w1.swarm_state, LocalSwarmState::Active);
    assert!(w1.node_id.is_some());
}

#[tokio::test]
async fn manager_only_calls_refuse_workers_and_inactive_engines() {
    let d = driver();
    cluster(&d, &["m1"], &["w1"]).await;
    d.create(&spec("idle", Role::Worker)).await.unwrap();
    for name in ["w1", "idle"] {
        let e = engine(&d, name);
        assert!(matches!(
            e.list_nodes().await,
            Err(EngineError::NotManager(_))
        ));
        assert!(matches!(
            e.join_tokens().await,
            Err(EngineError::NotManager(_))
        ));
        assert!(matches!(
            e.inspect_swarm().await,
            Err(EngineError::NotManager(_))
        ));
        assert!(matches!(
            e.create_service(&service("app_web", 1)).await,
            Err(EngineError::NotManager(_))
        ));
        assert!(matches!(
            e.list_secrets().await,
            Err(EngineError::NotManager(_))
        ));
    }
    assert!(matches!(
        engine(&d, "idle").leave_swarm(false).await,
        Err(EngineError::NotManager(_))
    ));
}

#[tokio::test]
async fn stopped_and_missing_machines_are_unreachable() {
    let d = driver();
    cluster(&d, &["m1"], &["w1"]).await;
    let w1 = engine(&d, "w1");
    d.down_node("w1", NOW).unwrap();
    assert!(matches!(w1.info().await, Err(EngineError::Unreachable(_))));
    d.kill_machine("w1").unwrap();
    assert!(matches!(w1.info().await, Err(EngineError::Unreachable(_))));
    assert_eq!(
        d.engine("w1").await.err(),
        Some(DriverError::NoSuchMachine("w1".into()))
    );
    assert_eq!(d.endpoint("m1").await.unwrap(), "sim://sim/m1");
    assert_eq!(
        d.down_node("nope", NOW),
        Err(DriverError::NoSuchMachine("nope".into()))
    );
    assert_eq!(
        d.up_node("nope"),
        Err(DriverError::NoSuchMachine("nope".into()))
    );
    assert_eq!(
        d.kill_machine("nope"),
        Err(DriverError::NoSuchMachine("nope".into()))
    );
    assert!(matches!(
        d.set_replicas("nope", 2),
        Err(DriverError::Other(_))
    ));
}

#[tokio::test]
async fn losing_quorum_refuses_everything_but_info_leave_and_init() {
    let d = driver();
    cluster(&d, &["m1", "m2", "m3"], &["w1"]).await;
    let m1 = engine(&d, "m1");
    d.down_node("m2", NOW).unwrap();
    assert_eq!(
        m1.list_nodes().await.unwrap().len(),
        4,
        "2 of 3 is a majority"
    );
    d.down_node("m3", NOW).unwrap();
    assert!(matches!(
        m1.list_nodes().await,
        Err(EngineError::NoLeader(_))
    ));
    assert!(matches!(
        m1.inspect_swarm().await,
        Err(EngineError::NoLeader(_))
    ));
    assert!(matches!(
        m1.list_services().await,
        Err(EngineError::NoLeader(_))
    ));
    assert!(matches!(
        m1.create_network(&NetworkSpec {
            name: "n".into(),
            ..Default::default()
        })
        .await,
        Err(EngineError::NoLeader(_))
    ));
    assert!(matches!(
        m1.remove_node("w1", true).await,
        Err(EngineError::NoLeader(_))
    ));
    assert!(m1.info().await.unwrap().control_available);
    d.create(&spec("late", Role::Worker)).await.unwrap();
    let before = d.writes();
    assert!(matches!(
        engine(&d, "late").join_swarm("m1:2377", "t").await,
        Err(EngineError::NoLeader(_))
    ));
    assert_eq!(d.writes(), before + 1, "a refused request still counts");
    assert!(
        engine(&d, "late").init_swarm().await.is_ok(),
        "init makes a separate swarm"
    );
    d.up_node("m2").unwrap();
    let nodes = m1.list_nodes().await.unwrap();
    assert_eq!(nodes.iter().filter(|n| n.leader).count(), 1);
    let m3 = nodes.iter().find(|n| n.hostname == "m3").unwrap();
    assert_eq!(m3.reachability, Some(Reachability::Unreachable));
    assert_eq!(m3.state, NodeState::Down);
}

#[tokio::test]
async fn the_last_manager_cannot_be_demoted() {
    let d = driver();
    cluster(&d, &["m1"], &["w1"]).await;
    let m1 = engine(&d, "m1");
    refused(
        set_node(&m1, "m1", |u| u.role = Role::Worker).await,
        "attempting to demote the last manager of the swarm",
    );
    assert_eq!(node(&m1, "m1").await.role, Role::Manager);
}

#[tokio::test]
async fn demotion_that_would_lose_quorum_is_refused() {
    let d = driver();
    cluster(&d, &["m1", "m2", "m3"], &[]).await;
    let m1 = engine(&d, "m1");
    d.down_node("m3", NOW).unwrap();
    assert!(matches!(
        set_node(&m1, "m2", |u| u.role = Role::Worker).await,
        Err(EngineError::QuorumLoss(m)) if m.contains("would result in a loss of quorum")
    ));
    set_node(&m1, "m3", |u| u.role = Role::Worker)
        .await
        .unwrap();
    let m3 = node(&m1, "m3").await;
    assert_eq!(m3.role, Role::Worker);
    assert_eq!(m3.reachability, None);
    set_node(&m1, "m2", |u| u.role = Role::Worker)
        .await
        .unwrap();
}

#[tokio::test]
async fn demoting_the_leader_moves_leadership_and_promotion_adds_a_manager() {
    let d = driver();
    cluster(&d, &["m1", "m2"], &["w1"]).await;
    let m1 = engine(&d, "m1");
    assert!(node(&m1, "m1").await.leader);
    set_node(&m1, "w1", |u| u.role = Role::Manager)
        .await
        .unwrap();
    let w1 = node(&m1, "w1").await;
    assert_eq!(
        (w1.role, w1.reachability),
        (Role::Manager, Some(Reachability::Reachable))
    );
    assert!(engine(&d, "w1").info().await.unwrap().control_available);
    set_node(&m1, "m1", |u| u.role = Role::Worker)
        .await
        .unwrap();
    assert!(matches!(
        m1.list_nodes().await,
        Err(EngineError::NotManager(_))
    ));
    let m2 = engine(&d, "m2");
    let nodes = m2.list_nodes().await.unwrap();
    let leader = nodes.iter().find(|n| n.leader).unwrap();
    assert_ne!(leader.hostname, "m1");
    assert_eq!(leader.role, Role::Manager);
}

#[tokio::test]
async fn stale_versions_are_out_of_sequence() {
    let d = driver();
    cluster(&d, &["m1"], &["w1"]).await;
    let m1 = engine(&d, "m1");
    let w1 = node(&m1, "w1").await;
    let update = NodeSpecUpdate {
        role: Role::Worker,
        availability: Availability::Active,
        labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
    };
    m1.update_node(&w1.id, w1.version, update.clone())
        .await
        .unwrap();
    assert!(matches!(
        m1.update_node(&w1.id, w1.version, update).await,
        Err(EngineError::OutOfSequence(_))
    ));
    let after = node(&m1, "w1").await;
    assert!(after.version > w1.version);
    assert_eq!(after.labels.get("zone").map(String::as_str), Some("a"));

    let id = m1.create_service(&service("app_web", 1)).await.unwrap();
    let observed = m1.list_services().await.unwrap().remove(0);
    m1.update_service(&id, observed.version, &service("app_web", 3))
        .await
        .unwrap();
    assert!(matches!(
        m1.update_service(&id, observed.version, &service("app_web", 2))
            .await,
        Err(EngineError::OutOfSequence(_))
    ));

    let swarm = m1.inspect_swarm().await.unwrap();
    let labels = BTreeMap::from([("io.shoal.revision".to_string(), "abc".to_string())]);
    m1.update_swarm_labels(swarm.version, labels.clone())
        .await
        .unwrap();
    assert!(matches!(
        m1.update_swarm_labels(swarm.version, labels.clone()).await,
        Err(EngineError::OutOfSequence(_))
    ));
    let swarm = m1.inspect_swarm().await.unwrap();
    assert_eq!(swarm.labels, labels);
}

#[tokio::test]
async fn leave_rules_for_workers_and_managers() {
    let d = driver();
    cluster(&d, &["m1", "m2", "m3"], &["w1"]).await;
    let m1 = engine(&d, "m1");
    let w1_id = node(&m1, "w1").await.id;
    engine(&d, "w1").leave_swarm(false).await.unwrap();
    let w1 = node(&m1, "w1").await;
    assert_eq!(
        (w1.id.as_str(), w1.state),
        (w1_id.as_str(), NodeState::Down)
    );
    assert_eq!(w1.down_for_seconds, Some(0));
    assert_eq!(
        engine(&d, "w1").info().await.unwrap().swarm_state,
        LocalSwarmState::Inactive
    );

    refused(
        engine(&d, "m3").leave_swarm(false).await,
        "participating as a manager",
    );
    engine(&d, "m3").leave_swarm(true).await.unwrap();
    let m3 = node(&m1, "m3").await;
    assert_eq!((m3.role, m3.state), (Role::Manager, NodeState::Down));
    refused(
        engine(&d, "m2").leave_swarm(false).await,
        "Removing this node leaves 1 managers out of 3",
    );

    let single = driver();
    cluster(&single, &["solo"], &["w"]).await;
    let solo = engine(&single, "solo");
    refused(
        solo.leave_swarm(false).await,
        "Removing the last manager erases all current state",
    );
    solo.leave_swarm(true).await.unwrap();
    assert!(single.snapshot().swarms.is_empty());
    let w = engine(&single, "w").info().await.unwrap();
    assert_eq!(
        w.swarm_state,
        LocalSwarmState::Active,
        "a worker keeps believing"
    );
    assert!(matches!(
        engine(&single, "w").list_nodes().await,
        Err(EngineError::NotManager(_))
    ));
    engine(&single, "w").leave_swarm(false).await.unwrap();
    assert_eq!(
        engine(&single, "w").info().await.unwrap().swarm_state,
        LocalSwarmState::Inactive
    );
}

#[tokio::test]
async fn rejoining_gives_a_new_node_and_the_old_one_stays_down() {
    let d = driver();
    cluster(&d, &["m1"], &["w1"]).await;
    let m1 = engine(&d, "m1");
    let old = node(&m1, "w1").await.id;
    let w1 = engine(&d, "w1");
    w1.leave_swarm(false).await.unwrap();
    let token = m1.join_tokens().await.unwrap().worker;
    w1.join_swarm("m1:2377", &token).await.unwrap();
    let nodes = m1.list_nodes().await.unwrap();
    let mine: Vec<&ObservedNode> = nodes.iter().filter(|n| n.hostname == "w1").collect();
    assert_eq!(mine.len(), 2);
    let new = w1.info().await.unwrap().node_id.unwrap();
    assert_ne!(new, old);
    assert_eq!(
        nodes.iter().find(|n| n.id == old).unwrap().state,
        NodeState::Down
    );
    assert_eq!(
        nodes.iter().find(|n| n.id == new).unwrap().state,
        NodeState::Ready
    );
    refused(m1.remove_node("w1", false).await, "ambiguous");
    m1.remove_node(&old, false).await.unwrap();
    assert_eq!(m1.list_nodes().await.unwrap().len(), 2);
}

#[tokio::test]
async fn node_removal_rules() {
    let d = driver();
    cluster(&d, &["m1", "m2", "m3"], &["w1", "w2"]).await;
    let m1 = engine(&d, "m1");
    refused(
        m1.remove_node("m2", true).await,
        "must be demoted to worker before removal",
    );
    refused(
        m1.remove_node("w1", false).await,
        "is not down and can't be removed",
    );
    assert!(matches!(
        m1.remove_node("ghost", true).await,
        Err(EngineError::NotFound(_))
    ));
    d.down_node("w1", NOW).unwrap();
    m1.remove_node("w1", false).await.unwrap();
    m1.remove_node("w2", true).await.unwrap();
    assert_eq!(
        engine(&d, "w2").info().await.unwrap().swarm_state,
        LocalSwarmState::Inactive
    );
    d.up_node("w1").unwrap();
    assert_eq!(
        engine(&d, "w1").info().await.unwrap().swarm_state,
        LocalSwarmState::Inactive
    );
    assert_eq!(m1.list_nodes().await.unwrap().len(), 3);
}

#[tokio::test]
async fn destroying_a_machine_leaves_its_node_down() {
    let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(NOW));
    let clock = std::sync::Arc::clone(&now);
    let d =
        SimDriver::in_memory().with_clock(move || clock.load(std::sync::atomic::Ordering::SeqCst));
    cluster(&d, &["m1"], &["w1", "w2"]).await;
    d.destroy("w1").await.unwrap();
    assert_eq!(
        d.destroy("w1").await,
        Err(DriverError::NoSuchMachine("w1".into()))
    );
    d.down_node("w2", NOW + 5).unwrap();
    now.store(NOW + 30, std::sync::atomic::Ordering::SeqCst);
    let m1 = engine(&d, "m1");
    let w1 = node(&m1, "w1").await;
    assert_eq!((w1.state, w1.down_for_seconds), (NodeState::Down, Some(30)));
    assert_eq!(node(&m1, "w2").await.down_for_seconds, Some(25));
    let state = d.snapshot();
    let w2 = state
        .swarm()
        .unwrap()
        .nodes
        .values()
        .find(|n| n.hostname == "w2")
        .unwrap();
    assert_eq!((w2.down_since, w2.updated_at), (Some(NOW + 5), NOW + 5));
    let machines = d.list().await.unwrap();
    assert_eq!(
        machines.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["m1", "w2"]
    );
    assert_eq!(machines[1].state, MachineState::Stopped);
    d.up_node("w2").unwrap();
    let w2 = node(&m1, "w2").await;
    assert_eq!((w2.state, w2.down_for_seconds), (NodeState::Ready, None));
}

#[tokio::test]
async fn replicas_spread_over_ready_nodes_least_loaded_first() {
    let d = driver();
    cluster(&d, &["m1"], &["w1", "w2", "w3"]).await;
    let m1 = engine(&d, "m1");
    m1.create_service(&constrained(service("app_web", 6), "node.role==worker"))
        .await
        .unwrap();
    let expected = BTreeMap::from([("w1".into(), 2), ("w2".into(), 2), ("w3".into(), 2)]);
    assert_eq!(spread(&d, "app_web"), expected);
    m1.create_service(&service("app_api", 4)).await.unwrap();
    assert_eq!(
        spread(&d, "app_api"),
        BTreeMap::from([
            ("m1".into(), 1),
            ("w1".into(), 1),
            ("w2".into(), 1),
            ("w3".into(), 1)
        ])
    );
    m1.create_service(&global("app_agent")).await.unwrap();
    assert_eq!(spread(&d, "app_agent").len(), 4);
    m1.create_service(&constrained(service("app_db", 2), "node.labels.zone == a"))
        .await
        .unwrap();
    assert_eq!(
        spread(&d, "app_db"),
        BTreeMap::from([(String::new(), 2)]),
        "pending"
    );
    set_node(&m1, "w3", |u| {
        u.labels.insert("zone".into(), "a".into());
    })
    .await
    .unwrap();
    assert_eq!(spread(&d, "app_db"), BTreeMap::from([("w3".into(), 2)]));
    let services = m1.list_services().await.unwrap();
    let db = services.iter().find(|s| s.spec.name == "app_db").unwrap();
    assert_eq!((db.running, db.desired), (2, 2));
    let agent = services
        .iter()
        .find(|s| s.spec.name == "app_agent")
        .unwrap();
    assert_eq!((agent.running, agent.desired), (4, 4));
}

#[tokio::test]
async fn down_and_drained_nodes_lose_their_tasks_and_joins_do_not_rebalance() {
    let d = driver();
    cluster(&d, &["m1"], &["w1", "w2"]).await;
    let m1 = engine(&d, "m1");
    m1.create_service(&constrained(service("app_web", 4), "node.role!=manager"))
        .await
        .unwrap();
    m1.create_service(&constrained(global("app_agent"), "node.role==worker"))
        .await
        .unwrap();
    set_node(&m1, "w1", |u| u.availability = Availability::Drain)
        .await
        .unwrap();
    assert_eq!(spread(&d, "app_web"), BTreeMap::from([("w2".into(), 4)]));
    assert_eq!(spread(&d, "app_agent"), BTreeMap::from([("w2".into(), 1)]));
    d.down_node("w2", NOW).unwrap();
    assert_eq!(spread(&d, "app_web"), BTreeMap::from([(String::new(), 4)]));
    let web = m1
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.spec.name == "app_web")
        .unwrap();
    assert_eq!((web.running, web.desired), (0, 4));
    set_node(&m1, "w1", |u| u.availability = Availability::Active)
        .await
        .unwrap();
    assert_eq!(spread(&d, "app_web"), BTreeMap::from([("w1".into(), 4)]));
    d.up_node("w2").unwrap();
    assert_eq!(
        spread(&d, "app_web"),
        BTreeMap::from([("w1".into(), 4)]),
        "no rebalance"
    );
    assert_eq!(
        spread(&d, "app_agent").len(),
        2,
        "global services follow nodes"
    );
    d.set_replicas("app_web", 6).unwrap();
    assert_eq!(
        spread(&d, "app_web"),
        BTreeMap::from([("w1".into(), 4), ("w2".into(), 2)])
    );
    let web = m1
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.spec.name == "app_web")
        .unwrap();
    let mut forced = web.spec.clone();
    forced.task_template.force_update += 1;
    m1.update_service(&web.id, web.version, &forced)
        .await
        .unwrap();
    assert_eq!(
        spread(&d, "app_web"),
        BTreeMap::from([("w1".into(), 3), ("w2".into(), 3)]),
        "a forced update redeploys"
    );
    d.set_replicas("app_web", 2).unwrap();
    assert_eq!(spread(&d, "app_web").values().sum::<u64>(), 2);
}

#[tokio::test]
async fn without_quorum_tasks_stay_put() {
    let d = driver();
    cluster(&d, &["m1", "m2", "m3"], &["w1", "w2"]).await;
    let m1 = engine(&d, "m1");
    m1.create_service(&constrained(service("app_web", 2), "node.role==worker"))
        .await
        .unwrap();
    d.down_node("m2", NOW).unwrap();
    d.down_node("m3", NOW).unwrap();
    d.down_node("w1", NOW).unwrap();
    assert_eq!(
        spread(&d, "app_web"),
        BTreeMap::from([("w1".into(), 1), ("w2".into(), 1)])
    );
    assert!(matches!(
        d.set_replicas("app_web", 3),
        Err(DriverError::Other(_))
    ));
    d.up_node("m2").unwrap();
    assert_eq!(spread(&d, "app_web"), BTreeMap::from([("w2".into(), 2)]));
}

#[tokio::test]
async fn service_rules_conflicts_references_and_mode() {
    let d = driver();
    cluster(&d, &["m1"], &["w1"]).await;
    let m1 = engine(&d, "m1");
    let id = m1.create_service(&service("app_web", 1)).await.unwrap();
    assert!(matches!(
        m1.create_service(&service("app_web", 1)).await,
        Err(EngineError::Conflict(_))
    ));

    let mut with_net = service("app_api", 1);
    with_net.task_template.networks = vec![NetworkAttachment {
        target: "app_default".into(),
        aliases: vec![],
        ..Default::default()
    }];
    assert!(matches!(
        m1.create_service(&with_net).await,
        Err(EngineError::NotFound(_))
    ));
    let mut with_secret = service("app_db", 1);
    with_secret.task_template.container_spec.secrets = vec![SecretReference {
        file: FileTarget {
            name: "pw".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
            ..Default::default()
        },
        secret_id: String::new(),
        secret_name: "app_pw-0123abcd".into(),
        ..Default::default()
    }];
    assert!(matches!(
        m1.create_service(&with_secret).await,
        Err(EngineError::NotFound(_))
    ));
    refused(
        m1.create_service(&constrained(service("app_x", 1), "node.role"))
            .await,
        "invalid constraint",
    );

    let net = NetworkSpec {
        name: "app_default".into(),
        driver: "overlay".into(),
        ..Default::default()
    };
    let net_id = m1.create_network(&net).await.unwrap();
    assert!(matches!(
        m1.create_network(&net).await,
        Err(EngineError::Conflict(_))
    ));
    m1.create_service(&with_net).await.unwrap();
    refused(
        m1.remove_network("app_default").await,
        "is in use by service",
    );

    let secret_id = m1
        .create_secret(&object("app_pw-0123abcd", "hunter2"))
        .await
        .unwrap();
    assert!(matches!(
        m1.create_secret(&object("app_pw-0123abcd", "other")).await,
        Err(EngineError::Conflict(_))
    ));
    refused(
        m1.create_secret(&object("app_empty", "")).await,
        "data must be larger than 0",
    );
    m1.create_service(&with_secret).await.unwrap();
    let stored = m1
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.spec.name == "app_db")
        .unwrap();
    assert_eq!(
        stored.spec.task_template.container_spec.secrets[0].secret_id,
        secret_id
    );
    refused(
        m1.remove_secret(&secret_id).await,
        "secret 'app_pw-0123abcd' is in use by the following service: app_db",
    );

    m1.create_config(&object("app_conf-1", "x=1"))
        .await
        .unwrap();
    assert!(m1.list_configs().await.unwrap().contains_key("app_conf-1"));
    m1.remove_config("app_conf-1").await.unwrap();
    assert!(matches!(
        m1.remove_config("app_conf-1").await,
        Err(EngineError::NotFound(_))
    ));

    let web = m1
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap();
    refused(
        m1.update_service(&id, web.version, &global("app_web"))
            .await,
        "service mode change is not allowed",
    );
    refused(
        m1.update_service(&id, web.version, &service("app_other", 1))
            .await,
        "renaming services is not supported",
    );

    let mut published = service("app_edge", 1);
    published.endpoint_spec = Some(EndpointSpec {
        mode: String::new(),
        ports: vec![PortConfig {
            target_port: 80,
            published_port: Some(8080),
            ..Default::default()
        }],
        ..Default::default()
    });
    m1.create_service(&published).await.unwrap();
    refused(
        m1.remove_network("ingress").await,
        "ingress network cannot be removed",
    );

    m1.remove_service("app_api").await.unwrap();
    m1.remove_network(&net_id).await.unwrap();
    m1.remove_service("app_db").await.unwrap();
    m1.remove_secret("app_pw-0123abcd").await.unwrap();
    assert!(matches!(
        m1.remove_service("app_api").await,
        Err(EngineError::NotFound(_))
    ));
    let mut names: Vec<String> = m1
        .list_services()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.spec.name)
        .collect();
    names.sort();
    assert_eq!(names, ["app_edge", "app_web"]);
}

#[tokio::test]
async fn unlabelled_services_are_not_listed() {
    let d = driver();
    cluster(&d, &["m1"], &[]).await;
    let m1 = engine(&d, "m1");
    let mut bare = service("portainer", 1);
    bare.labels.clear();
    m1.create_service(&bare).await.unwrap();
    assert!(m1.list_services().await.unwrap().is_empty());
    assert!(matches!(
        m1.create_service(&bare).await,
        Err(EngineError::Conflict(_))
    ));
}

#[tokio::test]
async fn writes_count_requests_but_not_reads_locks_or_faults() {
    let d = driver();
    d.create(&spec("m1", Role::Manager)).await.unwrap();
    assert_eq!(
        d.create(&spec("m1", Role::Manager)).await,
        Err(DriverError::MachineExists("m1".into()))
    );
    assert_eq!(d.writes(), 2);
    let m1 = engine(&d, "m1");
    m1.init_swarm().await.unwrap();
    assert_eq!(d.writes(), 3);
    m1.list_nodes().await.unwrap();
    m1.inspect_swarm().await.unwrap();
    d.list().await.unwrap();
    let me = LockHolder::this_process("test");
    d.lock(&me, NOW, 60).await.unwrap();
    d.unlock(&me).await.unwrap();
    assert_eq!(d.writes(), 3);
    d.down_node("m1", NOW).unwrap();
    assert!(matches!(
        m1.init_swarm().await,
        Err(EngineError::Unreachable(_))
    ));
    assert_eq!(d.writes(), 3, "a request that never arrives does not count");
    d.up_node("m1").unwrap();
    d.destroy_all().await.unwrap();
    assert_eq!(d.writes(), 4);
    assert!(d.list().await.unwrap().is_empty());
    assert!(d.snapshot().swarms.is_empty());
}

#[tokio::test]
async fn the_apply_lock_expires_and_belongs_to_its_holder() {
    let d = driver();
    let alice = LockHolder::this_process("alice");
    let bob = LockHolder::this_process("bob");
    d.lock(&alice, 100, 60).await.unwrap();
    match d.lock(&bob, 120, 60).await {
        Err(DriverError::Locked(held)) => {
            assert_eq!(
                (held.holder.id.as_str(), held.since, held.expires_at),
                (alice.id.as_str(), 100, 160)
            );
        }
        other => panic!("bob should be refused, got {other:?}"),
    }
    d.lock(&alice, 150, 60).await.unwrap();
    d.unlock(&bob).await.unwrap();
    assert!(d.lock(&bob, 200, 60).await.is_err());
    d.lock(&bob, 211, 60).await.unwrap();
    d.unlock(&bob).await.unwrap();
    assert_eq!(d.snapshot().lock, None);
}

#[tokio::test]
async fn a_lock_whose_holder_died_here_is_taken_over_and_unlock_removes_any_by_id() {
    let d = driver();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let mut dead = LockHolder::this_process("shoal apply");
    dead.pid = child.id();
    child.wait().unwrap();
    d.lock(&dead, 100, 600).await.unwrap();
    let me = LockHolder::this_process("shoal apply");
    d.lock(&me, 120, 600)
        .await
        .expect("a dead holder's lock is taken over at once");
    assert_eq!(d.force_unlock("no-such-id").await.unwrap(), None);
    let removed = d.force_unlock(&me.id).await.unwrap().expect("removed");
    assert_eq!(removed.holder, me);
    assert_eq!(d.snapshot().lock, None);
}

#[test]
fn constraints_parse_and_match() {
    let state_node = |role: Role| SimNode {
        id: "abc".into(),
        hostname: "vm-1".into(),
        role,
        availability: Availability::Active,
        labels: BTreeMap::from([("zone".to_string(), "A".to_string())]),
        version: 1,
        state: NodeState::Ready,
        reachability: None,
        updated_at: 0,
        down_since: None,
    };
    let worker = state_node(Role::Worker);
    let check = |c: &str| Constraint::parse(c).unwrap().matches(&worker);
    assert!(check("node.role==worker"));
    assert!(check("node.role != manager"));
    assert!(!check("node.role==manager"));
    assert!(check("node.hostname==vm-1"));
    assert!(check("node.labels.zone==a"));
    assert!(!check("node.labels.zone!=a"));
    assert!(check("node.labels.rack!=r1"));
    assert!(!check("node.labels.rack==r1"));
    assert!(check("node.platform.os==linux"));
    assert!(!check("engine.labels.x==y"));
    assert!(Constraint::parse("node.role").is_err());
    assert!(Constraint::parse("==x").is_err());
    assert!(Constraint::parse("node.role==").is_err());
    assert!(Constraint::parse("node.role==manager")
        .unwrap()
        .matches(&state_node(Role::Manager)));
}

#[tokio::test]
async fn state_persists_in_the_repository_across_drivers() {
    let dir = tempfile::tempdir().unwrap();
    let first = SimDriver::open(dir.path(), "demo")
        .unwrap()
        .with_clock(|| NOW);
    cluster(&first, &["m1"], &["w1"]).await;
    engine(&first, "m1")
        .create_secret(&object("app_pw-1", "s3cret-data"))
        .await
        .unwrap();
    let second = SimDriver::open(dir.path(), "demo").unwrap();
    assert_eq!(second.snapshot(), first.snapshot());
    assert_eq!(second.endpoint("w1").await.unwrap(), "sim://demo/w1");
    let m1 = second.sim_engine("m1").unwrap();
    assert_eq!(m1.list_nodes().await.unwrap().len(), 2);
    m1.create_service(&service("app_web", 2)).await.unwrap();
    assert_eq!(first.snapshot().swarm().unwrap().services.len(), 1);
    assert_eq!(first.writes(), second.writes());
    let expected = first.snapshot();
    drop((first, second, m1));
    let text = std::fs::read_to_string(dir.path().join(".shoal/sim.json")).unwrap();
    let saved: SimState = serde_json::from_str(&text).unwrap();
    assert_eq!(
        saved, expected,
        "the last handle dropped saves the last changes"
    );
    assert!(
        !text.contains("s3cret-data"),
        "secret data never reaches the file"
    );
    let digest = super::state::sha256_hex(b"s3cret-data");
    assert!(
        !text.contains(&digest[..8]),
        "no digest of a secret either: it would be an offline guessing oracle"
    );
}

/// The state in `<dir>/.shoal/sim.json`, as another process would read it.
fn saved_state(dir: &std::path::Path) -> Option<SimState> {
    let text = std::fs::read_to_string(dir.join(".shoal/sim.json")).ok()?;
    Some(serde_json::from_str(&text).expect("a whole state file"))
}

#[tokio::test]
async fn reading_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = SimDriver::open(dir.path(), "demo").unwrap();
    assert!(d.list().await.unwrap().is_empty());
    assert!(matches!(
        d.sim_engine("m1"),
        Err(DriverError::NoSuchMachine(_))
    ));
    assert!(!dir.path().join(STATE_DIR).exists());
}

#[tokio::test]
async fn a_batch_reaches_the_file_once_its_changes_pause() {
    let dir = tempfile::tempdir().unwrap();
    let d = SimDriver::open(dir.path(), "demo").unwrap();
    cluster(&d, &["m1"], &["w1", "w2"]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while saved_state(dir.path()).as_ref() != Some(&d.snapshot()) {
        assert!(std::time::Instant::now() < deadline, "never saved");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!dir.path().join(".shoal/sim.json.tmp").exists());
}

#[tokio::test]
async fn faults_and_the_apply_lock_reach_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = SimDriver::open(dir.path(), "demo").unwrap();
    cluster(&d, &["m1"], &["w1"]).await;
    d.kill_machine("w1").unwrap();
    assert!(!saved_state(dir.path()).unwrap().machines.contains_key("w1"));
    let me = LockHolder::this_process("me");
    d.lock(&me, NOW, 60).await.unwrap();
    assert_eq!(saved_state(dir.path()).unwrap().lock.unwrap().holder, me);
    d.unlock(&me).await.unwrap();
    assert_eq!(saved_state(dir.path()), Some(d.snapshot()));
}

#[tokio::test]
async fn a_file_replaced_by_another_process_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = SimDriver::open(dir.path(), "demo").unwrap();
    d.create(&spec("m1", Role::Manager)).await.unwrap();
    d.unlock(&LockHolder::this_process("nobody")).await.unwrap();
    // Another process saves its own change the same way: a whole new file renamed over.
    let mut theirs = saved_state(dir.path()).unwrap();
    theirs.create_machine("w9", Role::Worker);
    let temporary = dir.path().join(".shoal/other.tmp");
    std::fs::write(&temporary, serde_json::to_vec(&theirs).unwrap()).unwrap();
    std::fs::rename(&temporary, dir.path().join(".shoal/sim.json")).unwrap();
    let names: Vec<String> = d
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["m1", "w9"]);
    d.create(&spec("w1", Role::Worker)).await.unwrap();
    assert_eq!(d.snapshot().machines.len(), 3, "their change is kept");
}

#[test]
fn concurrent_writers_do_not_lose_updates() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let path = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let d = SimDriver::open(&path, "demo").unwrap();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    for i in 0..25 {
                        d.create(&spec(&format!("t{t}-m{i}"), Role::Worker))
                            .await
                            .unwrap();
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let d = SimDriver::open(dir.path(), "demo").unwrap();
    assert_eq!(d.snapshot().machines.len(), 50);
    assert_eq!(d.writes(), 50);
}

#[tokio::test]
async fn many_nodes_stay_consistent() {
    let d = driver();
    let workers: Vec<String> = (0..200).map(|i| format!("w{i:03}")).collect();
    let names: Vec<&str> = workers.iter().map(String::as_str).collect();
    cluster(&d, &["m1", "m2", "m3"], &names).await;
    let m1 = engine(&d, "m1");
    m1.create_service(&service("app_web", 1000)).await.unwrap();
    let counts = spread(&d, "app_web");
    assert_eq!(counts.values().sum::<u64>(), 1000);
    assert!(counts.values().all(|c| (4..=5).contains(c)), "{counts:?}");
    for w in &names[..50] {
        d.down_node(w, NOW).unwrap();
    }
    let web = m1.list_services().await.unwrap().remove(0);
    assert_eq!((web.running, web.desired), (1000, 1000));
    assert!(!spread(&d, "app_web").contains_key(""));
}
