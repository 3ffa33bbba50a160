//! Prints shoal beside `docker stack deploy` on one dind manager: for 30 and 200 services,
//! the first submit (`shoal apply --no-wait` vs the CLI's deploy), a no-op redeploy, and one
//! changed service, as whole-process wall times (median of several runs) and writes sent; the
//! watcher's pass on the unchanged cluster (`shoal watch`, woken by SIGHUP, each pass's own
//! time as `/status` reports it); then shoal's `--timings` breakdown of a first submit and a
//! no-op. Run with `cargo run --release --example fastpath_figures` (`-- --quick` for 30
//! services, 3 runs).
//!
//! The CLI deploys with `--resolve-image never`: it asks no registry (none is reachable here,
//! and shoal asks none either unless `policy.images: pin`).
//!
//! Needs the local Docker Engine, its docker CLI and the demo image `dataservice:1`
//! (`images/dataservice/build.sh`, built here when missing). The cluster, `fastpath<pid>`, is
//! destroyed at the end, also after a failure. The figures are printed, never asserted.

#[path = "support/shoal_bin.rs"]
mod shoal_bin;

use shoal_bin::shoal_binary;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// One cluster's repository and the programs that act on it.
struct Bench {
    repo: PathBuf,
    shoal: PathBuf,
    docker_host: String,
}

impl Bench {
    fn shoal(&self, args: &[&str]) -> Output {
        let output = Command::new(&self.shoal)
            .arg("--repo")
            .arg(&self.repo)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run shoal");
        assert!(
            output.status.success(),
            "shoal {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The docker CLI on the manager. A deploy that meets "update out of sequence" (the
    /// CLI's read-then-update racing the swarm's own update of a service) is run again, as a
    /// person would, and that run's time counts.
    fn cli(&self, args: &[&str]) -> Output {
        let mut output = self.cli_once(args);
        for _ in 0..3 {
            if output.status.success()
                || !String::from_utf8_lossy(&output.stderr).contains("out of sequence")
            {
                break;
            }
            output = self.cli_once(args);
        }
        assert!(
            output.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn cli_once(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["-H", &self.docker_host])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the docker CLI")
    }

    /// `docker stack deploy` of `file` as stack `cli`, asking no registry.
    fn deploy(&self, file: &str) -> Output {
        self.cli(&[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            file,
            "cli",
        ])
    }

    /// Seconds of one run of `run`.
    fn timed(run: impl FnOnce() -> Output) -> (f64, Output) {
        let started = Instant::now();
        let output = run();
        (started.elapsed().as_secs_f64(), output)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = Command::new(&self.shoal)
            .arg("--repo")
            .arg(&self.repo)
            .args(["destroy", "--yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.repo);
    }
}

/// A compose file of `services` demo services, the one at `changed` with another value.
fn compose(services: usize, changed: Option<usize>) -> String {
    let mut text = String::from("version: \"3.8\"\nservices:\n");
    for index in 0..services {
        let value = if changed == Some(index) {
            "changed"
        } else {
            "first"
        };
        writeln!(
            text,
            "  s{index:03}:\n    image: dataservice:1\n    environment:\n      VALUE: {value}\n    deploy:\n      replicas: 1"
        )
        .unwrap();
    }
    text
}

/// A `shoal watch` of the bench repository, stopped (by its process ID) when dropped.
struct Watcher {
    child: std::process::Child,
    port: u16,
}

impl Watcher {
    /// `/status` of the watcher, once it answers.
    fn status(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        for _ in 0..600 {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(b"GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if let Some((_, body)) = answer.split_once("\r\n\r\n") {
                    if let Ok(status) = serde_json::from_str(body) {
                        return status;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the watcher's /status never answered");
    }

    /// Waits until the watcher has run `passes` passes; the last one's seconds.
    fn after_pass(&self, passes: u64) -> f64 {
        loop {
            let status = self.status();
            if status["reconciles"].as_u64().unwrap_or(0) >= passes {
                assert_eq!(
                    status["last_reconcile"]["ok"], true,
                    "a watcher pass failed: {status:#}"
                );
                return status["last_reconcile"]["seconds"].as_f64().unwrap_or(0.0);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Watcher {
    /// Stops the watcher as a person would (SIGTERM: it ends its pass and releases the lock),
    /// killing it only when it has not stopped within 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the CLI's stack and waits until its services are gone: with 200 services each, the
/// two stacks' tasks exhaust the ingress network's addresses, and the watcher would judge the
/// cluster by tasks that can never run.
fn remove_cli_stack(bench: &Bench) {
    bench.cli(&["stack", "rm", "cli"]);
    for _ in 0..600 {
        let left = bench.cli(&[
            "service",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.stack.namespace=cli",
        ]);
        let tasks = bench.cli(&["ps", "-q", "--filter", "name=cli_"]);
        if left.stdout.is_empty() && tasks.stdout.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the CLI's stack was not removed within two minutes");
}

/// The seconds of `runs` watcher passes on the unchanged cluster, each woken by SIGHUP (the
/// first pass, which records the commit as the applied revision, is left out). The repository
/// becomes a git repository for it (the watcher follows commits).
fn watcher_passes(bench: &Bench, runs: usize) -> Vec<f64> {
    remove_cli_stack(bench);
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .arg("-C")
            .arg(&bench.repo)
            .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("run git");
        assert!(status.success(), "git {args:?} failed");
    };
    git(&["init", "-q"]);
    git(&["add", "machines.yml", "bench.yml"]);
    git(&["commit", "-q", "-m", "bench"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&bench.shoal)
        .arg("--repo")
        .arg(&bench.repo)
        .args(["watch", "--interval", "1h", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run shoal watch");
    let watcher = Watcher { child, port };
    watcher.after_pass(1);
    (0..runs)
        .map(|run| {
            let woken = Command::new("kill")
                .args(["-HUP", &watcher.child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(woken.success(), "could not wake the watcher");
            watcher.after_pass(run as u64 + 2)
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The `writes` of an apply's JSON report.
fn writes(output: &Output) -> u64 {
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("apply --json prints its report");
    report["writes"].as_u64().unwrap_or_default()
}

fn ensure_demo_image(root: &Path) {
    let present = Command::new("docker")
        .args(["image", "inspect", "dataservice:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let status = Command::new(root.join("images/dataservice/build.sh"))
            .status()
            .expect("run images/dataservice/build.sh");
        assert!(status.success(), "images/dataservice/build.sh failed");
    }
}

/// `runs` rounds of `prepare(round)`, then shoal's apply and the CLI's deploy, each timed:
/// shoal's seconds, the most writes one of its applies sent, the CLI's seconds.
fn rounds(
    bench: &Bench,
    runs: usize,
    cli_file: &str,
    prepare: impl Fn(usize),
) -> (Vec<f64>, u64, Vec<f64>) {
    let (mut shoal, mut most_writes, mut cli) = (Vec::new(), 0, Vec::new());
    for round in 0..runs {
        prepare(round);
        let (seconds, out) =
            Bench::timed(|| bench.shoal(&["apply", "--yes", "--no-wait", "--json"]));
        shoal.push(seconds);
        most_writes = most_writes.max(writes(&out));
        cli.push(Bench::timed(|| bench.deploy(cli_file)).0);
    }
    (shoal, most_writes, cli)
}

/// Measures one size; returns the table rows.
fn measure(shoal: &Path, services: usize, runs: usize) -> String {
    let cluster = format!("fastpath{}", std::process::id() % 100_000);
    let repo = std::env::temp_dir().join(format!("{cluster}-{services}"));
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("machines.yml"),
        format!(
            "cluster: {cluster}\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1]\nmachines:\n  m:\n    role: manager\nstacks:\n  bench: bench.yml\n"
        ),
    )
    .unwrap();
    std::fs::write(repo.join("bench.yml"), "version: \"3.8\"\nservices: {}\n").unwrap();
    std::fs::write(repo.join("cli.yml"), compose(services, None)).unwrap();
    let mut bench = Bench {
        repo,
        shoal: shoal.to_path_buf(),
        docker_host: String::new(),
    };
    // The machine and the swarm first: they are not what is compared.
    bench.shoal(&["apply", "--yes", "--no-wait"]);
    let env = String::from_utf8(bench.shoal(&["env", "m"]).stdout).unwrap();
    bench.docker_host = env
        .split(|c: char| c.is_whitespace() || c == ';')
        .find_map(|w| w.strip_prefix("DOCKER_HOST="))
        .map(|v| v.trim_matches('"').to_string())
        .expect("DOCKER_HOST in shoal env");

    let compose_file = bench.repo.join("bench.yml");
    let cli_file = bench.repo.join("cli.yml");
    let cli_file = cli_file.to_str().unwrap();
    std::fs::write(&compose_file, compose(services, None)).unwrap();
    let (first, first_writes, cli_first) = rounds(&bench, 1, cli_file, |_| {});
    let (shoal_first, cli_first) = (first[0], cli_first[0]);
    // The breakdown of a first submit: all services but the first removed (it keeps the
    // stack's network, which swarm frees only once their tasks are gone), then submitted again.
    std::fs::write(&compose_file, compose(1, None)).unwrap();
    bench.shoal(&["apply", "--yes", "--no-wait"]);
    std::fs::write(&compose_file, compose(services, None)).unwrap();
    let first_breakdown = String::from_utf8_lossy(
        &bench
            .shoal(&["--timings", "apply", "--yes", "--no-wait"])
            .stderr,
    )
    .lines()
    .filter(|line| !line.contains("create_service") && !line.starts_with('['))
    .collect::<Vec<_>>()
    .join("\n");

    let (shoal_noop, noop_writes, cli_noop) = rounds(&bench, runs, cli_file, |_| {});
    let (shoal_change, change_writes, cli_change) = rounds(&bench, runs, cli_file, |run| {
        let changed = Some(run % services);
        std::fs::write(&compose_file, compose(services, changed)).unwrap();
        std::fs::write(cli_file, compose(services, changed)).unwrap();
    });
    let watcher = watcher_passes(&bench, runs);
    let noop_breakdown = String::from_utf8_lossy(
        &bench
            .shoal(&["--timings", "apply", "--yes", "--no-wait"])
            .stderr,
    )
    .into_owned();

    let mut rows = String::new();
    let row = |rows: &mut String,
               what: &str,
               shoal: f64,
               writes: String,
               cli: f64,
               cli_writes: String| {
        writeln!(
            rows,
            "| {services} | {what} | {shoal:.3} s | {writes} | {cli:.3} s | {cli_writes} |"
        )
        .unwrap();
    };
    row(
        &mut rows,
        "first submit",
        shoal_first,
        first_writes.to_string(),
        cli_first,
        format!("{services} services created"),
    );
    row(
        &mut rows,
        "no-op redeploy (median)",
        median(shoal_noop),
        noop_writes.to_string(),
        median(cli_noop),
        format!("{services} service updates"),
    );
    row(
        &mut rows,
        "one changed service (median)",
        median(shoal_change),
        change_writes.to_string(),
        median(cli_change),
        format!("{services} service updates"),
    );
    writeln!(
        rows,
        "| {services} | watcher pass, unchanged (median) | {:.3} s | 0 | | |",
        median(watcher)
    )
    .unwrap();
    writeln!(
        rows,
        "\nshoal first submit breakdown, {services} services:\n{first_breakdown}\nshoal no-op breakdown, {services} services:\n{noop_breakdown}"
    )
    .unwrap();
    drop(bench);
    rows
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let quick = std::env::args().any(|a| a == "--quick");
    let (sizes, runs): (&[usize], usize) = if quick { (&[30], 3) } else { (&[30, 200], 5) };
    let shoal = shoal_binary();
    ensure_demo_image(&root);
    println!("| services | run | shoal | shoal writes | docker stack deploy | CLI writes |");
    println!("|---|---|---|---|---|---|");
    let mut breakdowns = String::new();
    for &services in sizes {
        let rows = measure(&shoal, services, runs);
        let (table, breakdown) = rows.split_once("\n\n").unwrap_or((&rows, ""));
        println!("{table}");
        breakdowns.push_str(breakdown);
    }
    println!("\n{breakdowns}");
}
