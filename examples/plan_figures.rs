//! Prints planning figures: plan time for 10/100/1,000 machines with 20/200/2,000 services,
//! cold (nothing exists) and converged (everything matches). Run with
//! `cargo run --release --example plan_figures` (`-- --quick` for a short smoke run).

use shoal::model::spec::{
    EndpointSpec, NetworkAttachment, NetworkSpec, PortConfig, ReplicatedService, RestartPolicy,
    ServiceMode,
};
use shoal::model::{
    Desired, DriverKind, MachineSpec, Observed, ObservedObject, ObservedService, Policy, Role,
    ServiceSpec, Stack, LABEL_STACK_IMAGE, LABEL_STACK_NAMESPACE,
};
use shoal::plan::{plan, PlanOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn desired(machines: usize, services: usize) -> Desired {
    let managers = 3.min(machines);
    let mut desired = Desired {
        cluster: "bench".into(),
        driver: DriverKind::Sim,
        driver_options: Default::default(),
        policy: Policy::default(),
        ..Desired::default()
    };
    for i in 0..machines {
        let role = if i < managers {
            Role::Manager
        } else {
            Role::Worker
        };
        let name = format!("vm-{i:05}");
        desired.machines.insert(
            name.clone(),
            MachineSpec {
                name,
                role,
                labels: BTreeMap::from([("zone".to_string(), format!("z{}", i % 3))]),
                host: None,
            },
        );
    }
    let stacks = (services / 20).max(1);
    for s in 0..stacks {
        let stack_name = format!("stack{s:03}");
        let network = format!("{stack_name}_default");
        let labels = BTreeMap::from([(LABEL_STACK_NAMESPACE.to_string(), stack_name.clone())]);
        let mut stack = Stack {
            name: stack_name.clone(),
            file: format!("{stack_name}.yml"),
            ..Stack::default()
        };
        stack.networks.insert(
            network.clone(),
            NetworkSpec {
                name: network.clone(),
                driver: "overlay".into(),
                labels: labels.clone(),
                ..NetworkSpec::default()
            },
        );
        for v in 0..(services / stacks) {
            let name = format!("{stack_name}_svc{v:03}");
            let image = format!("registry.local/app{v}:1.{s}");
            let mut spec = ServiceSpec {
                name: name.clone(),
                labels: labels.clone(),
                ..ServiceSpec::default()
            };
            spec.labels.insert(LABEL_STACK_IMAGE.into(), image.clone());
            let container = &mut spec.task_template.container_spec;
            container.image = image;
            container.labels = labels.clone();
            container.env = (0..8).map(|e| format!("VAR{e}=value{e}")).collect();
            spec.task_template.networks = vec![NetworkAttachment {
                target: network.clone(),
                aliases: vec![format!("svc{v:03}")],
                ..Default::default()
            }];
            spec.task_template.restart_policy = Some(RestartPolicy {
                condition: "on-failure".into(),
                ..RestartPolicy::default()
            });
            spec.mode = Some(ServiceMode {
                replicated: Some(ReplicatedService {
                    replicas: Some(1 + (v as u64 % 5)),
                    ..Default::default()
                }),
                ..ServiceMode::default()
            });
            spec.endpoint_spec = Some(EndpointSpec {
                mode: String::new(),
                ports: vec![PortConfig {
                    protocol: "tcp".into(),
                    target_port: 8080,
                    published_port: Some(20000 + (s * 100 + v) as u32),
                    publish_mode: "ingress".into(),
                    ..PortConfig::default()
                }],
                ..Default::default()
            });
            stack.services.insert(name, spec);
        }
        desired.stacks.insert(stack_name, stack);
    }
    desired
}

/// The observed state of a cluster that already matches `desired`.
fn converged(desired: &Desired) -> Observed {
    let mut observed = Observed::with_members_of(desired);
    for stack in desired.stacks.values() {
        for (name, network) in &stack.networks {
            observed.networks.insert(
                name.clone(),
                ObservedObject {
                    id: format!("net-{name}"),
                    labels: network.labels.clone(),
                    network: None,
                    content_sha256: None,
                },
            );
        }
        for (name, spec) in &stack.services {
            observed.services.insert(
                name.clone(),
                ObservedService {
                    id: format!("svc-{name}"),
                    version: 42,
                    spec: spec.clone(),
                    running: spec.replicas().unwrap_or(1),
                    desired: spec.replicas().unwrap_or(1),
                    update_status: None,
                    template_key: None,
                },
            );
        }
    }
    observed
}

/// Median time of `runs` plans, and the number of steps.
fn measure(desired: &Desired, observed: &Observed, runs: usize) -> (Duration, usize) {
    let options = PlanOptions {
        content_key: Some(shoal::model::content_key::ContentKey::from_bytes([1; 32])),
        ..PlanOptions::default()
    };
    let mut times = Vec::with_capacity(runs);
    let mut steps = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let plan = plan(desired, observed, &options).expect("plan");
        times.push(start.elapsed());
        steps = plan.steps.len();
    }
    times.sort();
    (times[times.len() / 2], steps)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[(usize, usize)] = if quick {
        &[(10, 20), (100, 200)]
    } else {
        &[(10, 20), (100, 200), (1_000, 2_000)]
    };
    let runs = if quick { 3 } else { 11 };
    println!(
        "{:>9} {:>9} {:>12} {:>8} {:>15} {:>8}",
        "machines", "services", "cold (ms)", "steps", "converged (ms)", "steps"
    );
    for &(machines, services) in sizes {
        let desired = desired(machines, services);
        let (cold, cold_steps) = measure(&desired, &Observed::default(), runs);
        let observed = converged(&desired);
        let (warm, warm_steps) = measure(&desired, &observed, runs);
        assert_eq!(warm_steps, 0, "a converged cluster must plan to nothing");
        println!(
            "{machines:>9} {services:>9} {:>12.3} {cold_steps:>8} {:>15.3} {warm_steps:>8}",
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3
        );
    }
}
