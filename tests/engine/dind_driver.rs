//! The dind driver against the real local Docker engine: a two-node cluster is created, made a
//! swarm by hand through the node sockets, given the demo service from a preloaded image, partly
//! destroyed, locked and unlocked, and destroyed; nothing labelled for it may be left.
//!
//! Needs a Docker engine answering on the local socket: without one (or where the static demo
//! binary cannot be built) it fails, saying what is missing. The node image needs nothing else
//! from the host: shoal's own binary is the node's init.
//! Timings are printed; see them with `cargo test --test engine dind_driver -- --nocapture`.

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, ServiceSpec, ServiceSpecMode, SwarmInitRequest,
    SwarmJoinRequest, TaskSpec, TaskSpecContainerSpec, TaskState,
};
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListTasksOptions, ListVolumesOptions,
    RemoveImageOptions, RemoveVolumeOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};

use shoal::drivers::dind::{self, DindDriver};
use shoal::drivers::lock::LockHolder;
use shoal::drivers::{Driver, DriverError};
use shoal::model::driver_options::DindSettings;
use shoal::model::observed::LocalSwarmState;
use shoal::model::{MachineSpec, MachineState, Role};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Fails the test, in and out of CI, with what it lacks and how to get it.
fn missing(reason: &str) -> ! {
    panic!(
        "the dind driver test cannot run: {reason} (`.ci/test` installs the tests' packages; a \
         Docker Engine must answer on the local socket)"
    );
}

async fn host_engine() -> Option<Docker> {
    let docker = Docker::connect_with_local_defaults().ok()?;
    tokio::time::timeout(Duration::from_secs(5), docker.ping())
        .await
        .ok()?
        .ok()?;
    docker.negotiate_version().await.ok()
}

/// Removes everything the test made, whether it passed or not.
struct Cleanup {
    cluster: String,
    state_dir: PathBuf,
    demo_image_created: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cluster = self.cluster.clone();
        let state_dir = self.state_dir.clone();
        let remove_demo = self.demo_image_created;
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime for the cleanup");
            let options = DindSettings {
                state_dir: Some(state_dir.to_string_lossy().into_owned()),
                ..DindSettings::default()
            };
            runtime.block_on(async move {
                if let Ok(driver) =
                    DindDriver::connect(&cluster, &options, std::path::Path::new(".")).await
                {
                    if let Err(e) = driver.destroy_all().await {
                        eprintln!("cleanup of {cluster} failed: {e}");
                    }
                    if remove_demo {
                        let _ = driver
                            .docker()
                            .remove_image(dind::DEMO_IMAGE, None::<RemoveImageOptions>, None)
                            .await;
                    }
                }
            });
            let _ = std::fs::remove_dir_all(&state_dir);
        })
        .join();
        if done.is_err() {
            eprintln!("the cleanup of {} panicked", self.cluster);
        }
    }
}

fn machine(name: &str, role: Role) -> MachineSpec {
    MachineSpec {
        name: name.to_string(),
        role,
        labels: BTreeMap::new(),
        host: None,
    }
}

/// Builds the demo service statically with rustc (std only, so this is quick).
fn build_dataservice(out_dir: &Path) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dataservice.rs");
    let binary = out_dir.join(format!("dataservice-{}", std::process::id()));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let output = std::process::Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-name",
            "dataservice",
            "-C",
            "opt-level=2",
        ])
        .args([
            "-C",
            "target-feature=+crt-static",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rustc failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(binary)
}

async fn node_client(socket: &Path) -> Docker {
    Docker::connect_with_unix(&socket.to_string_lossy(), 120, API_DEFAULT_VERSION)
        .expect("node socket")
        .negotiate_version()
        .await
        .expect("node engine answers")
}

fn label_filter(cluster: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("io.shoal.cluster={cluster}")],
    )])
}

// The engine tier's turn is held for the whole test, across its awaits: the test's future runs
// on the test's own thread (`block_on`), and no other task takes the lock.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dind_cluster_of_two_nodes_lives_and_leaves_nothing() {
    let _turn = crate::common::engine_turn("the dind driver test");
    let Some(host) = host_engine().await else {
        missing("no Docker engine answers on the local socket");
    };
    let cluster = format!("shoaltest{}", std::process::id());
    let state_dir = std::env::temp_dir().join(format!("shoal-dind-test-{}", std::process::id()));
    let demo_existed = host.inspect_image(dind::DEMO_IMAGE).await.is_ok();
    let mut cleanup = Cleanup {
        cluster: cluster.clone(),
        state_dir: state_dir.clone(),
        demo_image_created: false,
    };

    if demo_existed {
        println!("using the host's {}", dind::DEMO_IMAGE);
    } else {
        let binary = match build_dataservice(&std::env::temp_dir()) {
            Ok(binary) => binary,
            Err(e) => missing(&format!("the static demo binary cannot be built here: {e}")),
        };
        let started = Instant::now();
        let built = dind::build_demo_image(&binary).await;
        let _ = std::fs::remove_file(&binary);
        built.expect("demo image");
        cleanup.demo_image_created = true;
        println!(
            "demo image {} imported in {:.2} s",
            dind::DEMO_IMAGE,
            started.elapsed().as_secs_f64()
        );
    }

    let options = DindSettings {
        preload_images: vec![dind::DEMO_IMAGE.to_string()],
        state_dir: Some(state_dir.to_string_lossy().into_owned()),
        ..DindSettings::default()
    };
    let driver = DindDriver::connect(&cluster, &options, std::path::Path::new("."))
        .await
        .expect("driver connects");
    let image = match driver.node_image().await {
        Ok(image) => image,
        Err(e) => panic!("node image: {e}"),
    };
    println!(
        "node image {}: {} in {:.2} s ({} MB sent)",
        image.tag,
        if image.built { "built" } else { "reused" },
        image.seconds,
        image.bytes / 1_000_000
    );

    let manager = machine("m1", Role::Manager);
    let worker = machine("w1", Role::Worker);
    let started = Instant::now();
    let (first, second) = tokio::join!(driver.create(&manager), driver.create(&worker));
    first.expect("m1 created");
    second.expect("w1 created");
    println!(
        "2 machines created, engines answering, {} preloaded: {:.2} s ({})",
        dind::DEMO_IMAGE,
        started.elapsed().as_secs_f64(),
        driver.security().map(|s| s.to_string()).unwrap_or_default()
    );
    assert!(matches!(
        driver.create(&manager).await,
        Err(DriverError::MachineExists(_))
    ));

    let machines = driver.list().await.expect("list");
    let summary: Vec<(&str, MachineState, Option<Role>)> = machines
        .iter()
        .map(|m| (m.name.as_str(), m.state, m.created_role))
        .collect();
    assert_eq!(
        summary,
        [
            ("m1", MachineState::Running, Some(Role::Manager)),
            ("w1", MachineState::Running, Some(Role::Worker)),
        ]
    );

    let endpoint = driver.endpoint("m1").await.expect("endpoint");
    let m1_socket = driver.socket_path("m1");
    let w1_socket = driver.socket_path("w1");
    assert_eq!(endpoint, format!("unix://{}", m1_socket.display()));
    let m1 = node_client(&m1_socket).await;
    let w1 = node_client(&w1_socket).await;
    for (name, node) in [("m1", &m1), ("w1", &w1)] {
        let info = node.info().await.expect("node info");
        assert_eq!(
            info.name.as_deref(),
            Some(name),
            "hostname is the machine name"
        );
        println!(
            "{name}: storage driver {}, preloaded image present: {}",
            info.driver.unwrap_or_default(),
            node.inspect_image(dind::DEMO_IMAGE).await.is_ok()
        );
        node.inspect_image(dind::DEMO_IMAGE)
            .await
            .expect("the preloaded image is in the node");
    }

    // The node has no shell and no busybox: shoal's own binary is its init.
    let node_container = format!("{cluster}-m1");
    let shell = std::process::Command::new("docker")
        .args(["exec", &node_container, "/bin/sh", "-c", "true"])
        .output()
        .expect("docker exec");
    assert!(
        !shell.status.success(),
        "a shell ran in the node: the node image must need none from the host"
    );
    let init = std::process::Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}}",
            &node_container,
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(
        String::from_utf8_lossy(&init.stdout).trim(),
        r#"["/usr/bin/docker-init","--","/usr/bin/shoal","node-init"]"#
    );

    let m1_ip = driver.address("m1").await.expect("m1 address");
    let w1_ip = driver.address("w1").await.expect("w1 address");
    let started = Instant::now();
    m1.init_swarm(SwarmInitRequest {
        listen_addr: Some("0.0.0.0:2377".to_string()),
        advertise_addr: Some(m1_ip.clone()),
        ..Default::default()
    })
    .await
    .expect("swarm init");
    let token = m1
        .inspect_swarm()
        .await
        .expect("swarm")
        .join_tokens
        .and_then(|t| t.worker)
        .expect("worker token");
    w1.join_swarm(SwarmJoinRequest {
        listen_addr: Some("0.0.0.0:2377".to_string()),
        advertise_addr: Some(w1_ip.clone()),
        remote_addrs: Some(vec![format!("{m1_ip}:2377")]),
        join_token: Some(token),
        ..Default::default()
    })
    .await
    .expect("swarm join");
    let nodes = m1.list_nodes(None).await.expect("nodes");
    assert_eq!(nodes.len(), 2);
    println!(
        "swarm init + join: {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let engine = driver.engine("m1").await.expect("engine of m1");
    let info = engine.info().await.expect("engine info");
    assert_eq!(info.swarm_state, LocalSwarmState::Active);

    let started = Instant::now();
    m1.create_service(
        ServiceSpec {
            name: Some("dataservice".to_string()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(dind::DEMO_IMAGE.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: Some(vec![EndpointPortConfig {
                    protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                    target_port: Some(8080),
                    published_port: Some(8080),
                    publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("service created");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let tasks = m1
            .list_tasks(Some(ListTasksOptions {
                filters: Some(HashMap::from([(
                    "service".to_string(),
                    vec!["dataservice".to_string()],
                )])),
            }))
            .await
            .expect("tasks");
        let running = tasks
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
            .count();
        if running == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not reach 2 running tasks: {:?}",
            tasks
                .iter()
                .map(|t| t.status.as_ref().and_then(|s| s.err.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "global service from the preloaded image: 2/2 running after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut answer = String::new();
    for _ in 0..40 {
        // Straight to w1's address on the cluster network: the node has no tools to ask from.
        answer = http_get(&format!("{w1_ip}:8080")).await.unwrap_or_default();
        if answer.contains("<result>") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        answer.contains("<result><name>hello</name><id>"),
        "dataservice answer: {answer}"
    );
    println!(
        "dataservice in w1 answers: {}",
        answer.lines().last().unwrap_or_default()
    );

    let started = Instant::now();
    host.restart_container(&driver.container_name("w1"), None)
        .await
        .expect("w1 restarted");
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let answer =
            match Docker::connect_with_unix(&w1_socket.to_string_lossy(), 5, API_DEFAULT_VERSION) {
                Ok(node) => match node.negotiate_version().await {
                    Ok(node) => node.info().await.ok(),
                    Err(_) => None,
                },
                Err(_) => None,
            };
        if let Some(state) = answer
            .and_then(|i| i.swarm)
            .and_then(|s| s.local_node_state)
        {
            break state;
        }
        assert!(
            Instant::now() < deadline,
            "w1 did not come back after a restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state.to_string(), "active", "w1 keeps its swarm membership");
    println!(
        "w1 restarted, engine back and still in the swarm after {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // A stopped machine is reported as stopped (not gone), and start brings it back at the
    // address the swarm knows it by, still a member.
    let address_before = driver.address("w1").await.expect("w1 address");
    host.stop_container(&driver.container_name("w1"), None)
        .await
        .expect("w1 stopped");
    let state_of = |machines: Vec<shoal::model::ObservedMachine>, name: &str| {
        machines
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.state)
    };
    assert_eq!(
        state_of(driver.list().await.expect("list"), "w1"),
        Some(MachineState::Stopped)
    );
    let started = Instant::now();
    driver.start("w1").await.expect("w1 started");
    assert_eq!(
        state_of(driver.list().await.expect("list"), "w1"),
        Some(MachineState::Running)
    );
    assert_eq!(
        driver.address("w1").await.expect("w1 address"),
        address_before
    );
    let info = driver
        .engine("w1")
        .await
        .expect("w1 engine")
        .info()
        .await
        .expect("w1 info");
    assert_eq!(info.swarm_state, LocalSwarmState::Active);
    println!(
        "w1 stopped, started again at {address_before} in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // A machine whose setup never finished (no ready marker) is reported incomplete.
    host.remove_volume(&driver.ready_marker_name("w1"), None::<RemoveVolumeOptions>)
        .await
        .expect("marker removed");
    assert_eq!(
        state_of(driver.list().await.expect("list"), "w1"),
        Some(MachineState::Incomplete)
    );

    let alice = LockHolder::this_process("alice");
    let bob = LockHolder::this_process("bob");
    driver.lock(&alice, 1_000, 60).await.expect("lock taken");
    driver.lock(&alice, 1_010, 60).await.expect("lock renewed");
    match driver.lock(&bob, 1_020, 60).await {
        Err(DriverError::Locked(held)) => {
            assert_eq!(
                (held.holder.id.clone(), held.since, held.expires_at),
                (alice.id.clone(), 1_010, 1_070)
            );
            assert!(held
                .to_string()
                .contains(&format!("shoal unlock {}", alice.id)));
        }
        other => panic!("bob should be refused, got {other:?}"),
    }
    driver
        .unlock(&bob)
        .await
        .expect("unlock by another is a no-op");
    driver
        .lock(&bob, 2_000, 60)
        .await
        .expect("an expired lock is taken over");
    driver.unlock(&bob).await.expect("unlock");
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("true runs");
    let mut dead = LockHolder::this_process("shoal apply");
    dead.pid = child.id();
    child.wait().expect("true exits");
    driver.lock(&dead, 2_001, 600).await.expect("free again");
    let carol = LockHolder::this_process("carol");
    driver
        .lock(&carol, 2_002, 5)
        .await
        .expect("a dead holder's lock is taken over at once");
    let removed = driver
        .force_unlock(&carol.id)
        .await
        .expect("force unlock")
        .expect("the lock was there");
    assert_eq!(removed.holder, carol);

    let started = Instant::now();
    driver.destroy("w1").await.expect("destroy w1");
    assert!(matches!(
        driver.destroy("w1").await,
        Err(DriverError::NoSuchMachine(_))
    ));
    assert!(!w1_socket.parent().expect("host dir").exists());
    let names: Vec<String> = driver
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["m1"]);
    driver.destroy_all().await.expect("destroy all");
    println!(
        "destroy w1 + destroy_all: {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let filter = label_filter(&cluster);
    let containers = host
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filter.clone()),
            ..Default::default()
        }))
        .await
        .expect("containers");
    let volumes = host
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filter.clone()),
        }))
        .await
        .expect("volumes")
        .volumes
        .unwrap_or_default();
    let networks = host
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filter),
        }))
        .await
        .expect("networks");
    assert!(containers.is_empty(), "containers left: {containers:?}");
    assert!(volumes.is_empty(), "volumes left: {volumes:?}");
    assert!(networks.is_empty(), "networks left: {networks:?}");
    assert!(!driver.cluster_dir().exists(), "host folder left");
    assert!(driver.list().await.expect("list").is_empty());
    drop(cleanup);
}

// The engine tier's turn is held for the whole test, across its awaits: the test's future runs
// on the test's own thread (`block_on`), and no other task takes the lock.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_on_this_engine_and_cleans_up() {
    let _turn = crate::common::engine_turn("the dind doctor test");
    let Some(host) = host_engine().await else {
        missing("no Docker engine answers on the local socket");
    };
    let state_dir = std::env::temp_dir().join(format!("shoal-dind-doctor-{}", std::process::id()));
    let options = DindSettings {
        state_dir: Some(state_dir.to_string_lossy().into_owned()),
        ..DindSettings::default()
    };
    let started = Instant::now();
    let report = dind::doctor(&options, std::path::Path::new(".")).await;
    println!(
        "shoal doctor ({:.2} s):\n{report}",
        started.elapsed().as_secs_f64()
    );
    assert!(report.ok(), "{report}");
    for name in [
        "engine",
        "cgroups",
        "node image",
        "node container",
        "ipvs",
        "node storage",
    ] {
        assert!(
            report.checks.iter().any(|c| c.name == name),
            "no {name} check in\n{report}"
        );
    }
    assert!(report.ipvs.is_some());
    let cluster = format!("shoal-doctor-{}", std::process::id());
    let left = host
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(&cluster)),
            ..Default::default()
        }))
        .await
        .expect("containers");
    assert!(left.is_empty(), "the doctor left containers: {left:?}");
    let _ = std::fs::remove_dir_all(&state_dir);
}

/// `GET /` over plain HTTP/1.0 at `address`; the whole answer.
async fn http_get(address: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(address),
    )
    .await??;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut answer)).await??;
    Ok(answer)
}
