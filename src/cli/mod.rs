//! Commands: parse arguments, load the files, observe, plan, render, apply.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use shoal::apply::progress::{Bar, Lines, Progress};
use shoal::apply::{apply, unix_now, ApplyOptions};
use shoal::drivers::dind::doctor;
use shoal::drivers::sim::SimDriver;
use shoal::drivers::{open_driver, Driver};
use shoal::model::{Desired, DriverKind, Observed};
use shoal::observe::observe;
use shoal::plan::{plan, Plan, PlanOptions, FORMAT_VERSION};
use shoal::render::{render_plan, render_report, render_status, Status, Style};
use shoal::source::{at_revision, working_tree, Source};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// shoal: run a Docker Swarm cluster from git. Plan and apply machines, nodes and stacks.
#[derive(Parser, Debug)]
#[command(name = "shoal", version, about, long_about = None)]
pub struct Cli {
    /// Log format on standard error (filter with SHOAL_LOG or RUST_LOG, e.g. SHOAL_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Use this driver instead of the one machines.yml names (e.g. `sim` to try a repository without Docker).
    #[arg(long, global = true, value_parser = parse_driver)]
    pub driver: Option<DriverKind>,
    /// The cluster repository (the folder holding machines.yml).
    #[arg(long, global = true, default_value = ".")]
    pub repo: PathBuf,
    #[command(subcommand)]
    command: Command,
}

fn parse_driver(text: &str) -> Result<DriverKind, String> {
    match text {
        "dind" => Ok(DriverKind::Dind),
        "sim" => Ok(DriverKind::Sim),
        "generic" => Ok(DriverKind::Generic),
        "docker-machine" => Ok(DriverKind::DockerMachine),
        other => Err(format!(
            "unknown driver {other}: use dind, sim, generic or docker-machine"
        )),
    }
}

#[derive(clap::Args, Debug, Clone)]
struct RevArg {
    /// Read the files from this commit instead of the working tree.
    #[arg(long)]
    rev: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check machines.yml and the compose files; exit 0 when valid, 1 when not.
    Validate,
    /// Show what apply would change, like `terraform plan`.
    Plan {
        #[command(flatten)]
        rev: RevArg,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Save the plan as JSON for `shoal apply FILE`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exit 0 when there are no changes, 2 when there are, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Allow a plan that removes every service of a stack or every machine.
        #[arg(long)]
        allow_destroy_all: bool,
    },
    /// Carry out the plan (or a saved one).
    Apply {
        #[command(flatten)]
        rev: RevArg,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Walk the real execution path but record the writes instead of sending them.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Allow a plan that removes every service of a stack or every machine.
        #[arg(long)]
        allow_destroy_all: bool,
        /// A plan saved with `shoal plan --out`; refused when stale.
        planfile: Option<PathBuf>,
    },
    /// Show the machines, nodes and services.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Destroy every machine of the cluster.
    Destroy {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Print the DOCKER_HOST export that reaches a machine's engine, like `docker-machine env`.
    Env {
        /// The machine.
        machine: String,
    },
    /// What the driver and the engine can do here: API version, privileges, cgroups, IPVS, storage.
    Doctor {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow a branch: apply each new commit, heal drift, serve /metrics, /status and webhooks.
    Watch(WatchArgs),
    /// Inject faults and drift into the sim driver's cluster.
    Sim {
        #[command(subcommand)]
        action: SimAction,
    },
}

/// `shoal watch` (the library's `shoal::watch` documents the loop).
#[derive(clap::Args, Debug)]
struct WatchArgs {
    /// Follow this remote repository (https://, ssh://, git@host:path, file:// or a path) instead of --repo.
    #[arg(long)]
    remote: Option<String>,
    /// The branch to follow [default: the checked-out branch, or the remote's default branch].
    #[arg(long)]
    branch: Option<String>,
    /// With --remote: the folder holding machines.yml inside the repository.
    #[arg(long, requires = "remote")]
    path: Option<String>,
    /// With --remote: where to keep its clone [default: $XDG_CACHE_HOME/shoal/<hash of the URL>].
    #[arg(long, requires = "remote")]
    cache: Option<PathBuf>,
    /// How often to look for drift and fetch the remote (e.g. 30s, 5m).
    #[arg(long, default_value = "60s", value_parser = shoal::watch::parse_interval)]
    interval: std::time::Duration,
    /// Where to serve /healthz, /readyz, /metrics, /status, / and POST /hooks/git.
    #[arg(long, default_value = shoal::watch::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
    /// Reconcile once and exit: 0 when it succeeded, 1 when not.
    #[arg(long)]
    once: bool,
}

#[derive(Subcommand, Debug)]
enum SimAction {
    /// The machine vanishes; its node goes down.
    KillMachine {
        /// Machine name.
        name: String,
    },
    /// The machine stops; its node goes down.
    DownNode {
        /// Machine name.
        name: String,
    },
    /// The machine and its node come back.
    UpNode {
        /// Machine name.
        name: String,
    },
    /// Change a service's replicas by hand, as `docker service scale` would.
    SetReplicas {
        /// Full service name (`dataapp_dataservice`).
        service: String,
        /// Replica count.
        replicas: u64,
    },
}

/// Sets up `tracing` on standard error, filtered by SHOAL_LOG or RUST_LOG.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = std::env::var("SHOAL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_filter.to_string());
    // bollard traces request bodies, which hold join tokens and secret data: keep it quieter
    // unless asked for by name.
    let filter = if filter.contains("bollard") {
        filter
    } else {
        format!("{filter},bollard=info")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn style_for_stdout() -> Style {
    Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

impl Cli {
    /// The log filter when SHOAL_LOG and RUST_LOG are unset: the watcher, a background service,
    /// logs what it does; one-shot commands only warn.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Watch(_) => "warn,shoal=info",
            _ => "warn",
        }
    }
}

/// Runs a command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    let driver_override = cli.driver;
    let repo = cli.repo.as_path();
    match cli.command {
        Command::Validate => {
            let (desired, _) = load(repo, None, driver_override)?;
            for warning in &desired.warnings {
                eprintln!("{warning}");
            }
            let services: usize = desired.stacks.values().map(|s| s.services.len()).sum();
            println!(
                "Valid: cluster {}, {} machine(s), {} stack(s), {} service(s).",
                desired.cluster,
                desired.machines.len(),
                desired.stacks.len(),
                services
            );
            Ok(0)
        }
        Command::Plan {
            rev,
            json,
            out,
            detailed_exitcode,
            allow_destroy_all,
        } => {
            let (desired, revision) = load(repo, rev.rev.as_deref(), driver_override)?;
            let driver = open_driver(&desired, repo).await?;
            let observed = observe_now(&driver).await?;
            let plan = make_plan(&desired, &observed, revision, allow_destroy_all, &driver)?;
            if let Some(path) = &out {
                let text = serde_json::to_string_pretty(&plan)?;
                std::fs::write(path, text + "\n")
                    .with_context(|| format!("cannot write the plan to {}", path.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", render_plan(&plan, style_for_stdout()));
                if let Some(path) = &out {
                    println!(
                        "\nSaved the plan to {}: apply it with `shoal apply {}`.",
                        path.display(),
                        path.display()
                    );
                }
            }
            Ok(if detailed_exitcode && !plan.is_empty() {
                2
            } else {
                0
            })
        }
        Command::Apply {
            rev,
            yes,
            dry_run,
            json,
            allow_destroy_all,
            planfile,
        } => {
            run_apply(
                repo,
                rev.rev.as_deref(),
                driver_override,
                ApplyFlags {
                    yes,
                    dry_run,
                    json,
                    allow_destroy_all,
                },
                planfile.as_deref(),
            )
            .await
        }
        Command::Status { json } => {
            let (desired, _) = load(repo, None, driver_override)?;
            let driver = open_driver(&desired, repo).await?;
            let observed = observe_now(&driver).await?;
            let status = Status::new(&desired, &observed);
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render_status(&status, style_for_stdout()));
            }
            Ok(0)
        }
        Command::Destroy { yes } => {
            let (desired, _) = load(repo, None, driver_override)?;
            let driver = open_driver(&desired, repo).await?;
            let machines = driver.list().await?;
            if machines.is_empty() {
                println!(
                    "Cluster {} has no machines: nothing to destroy.",
                    desired.cluster
                );
                return Ok(0);
            }
            let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
            println!(
                "This destroys cluster {}: {} machine(s) ({}) and everything on them.",
                desired.cluster,
                names.len(),
                names.join(", ")
            );
            confirm(yes, "destroy")?;
            driver.destroy_all().await?;
            println!("Destroyed cluster {}.", desired.cluster);
            Ok(0)
        }
        Command::Env { machine } => {
            let (desired, _) = load(repo, None, driver_override)?;
            let driver = open_driver(&desired, repo).await?;
            let endpoint = driver.endpoint(&machine).await?;
            println!("export DOCKER_HOST={endpoint}");
            println!("# Run this command to configure your shell:");
            println!("# eval $(shoal env --repo {} {machine})", repo.display());
            Ok(0)
        }
        Command::Doctor { json } => {
            let (desired, _) = load(repo, None, driver_override)?;
            if desired.driver != DriverKind::Dind {
                println!(
                    "Driver {} needs no checks: it runs in memory, without Docker.",
                    desired.driver.as_str()
                );
                return Ok(0);
            }
            let report = doctor(&shoal::drivers::driver_options(&desired)).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for check in &report.checks {
                    println!(
                        "{:<8} {:<28} {}",
                        format!("{:?}", check.status).to_lowercase(),
                        check.name,
                        check.detail
                    );
                }
                println!("\n{}", report.verdict);
            }
            Ok(if report.ok() { 0 } else { 1 })
        }
        Command::Watch(args) => {
            let source = match args.remote {
                Some(url) => shoal::watch::WatchSource::Remote {
                    url,
                    cache: args.cache,
                    path: args.path.unwrap_or_default(),
                },
                None => shoal::watch::WatchSource::Local(repo.to_path_buf()),
            };
            Ok(shoal::watch::run(shoal::watch::WatchOptions {
                branch: args.branch,
                interval: args.interval,
                listen: Some(args.listen),
                once: args.once,
                driver_override,
                ..shoal::watch::WatchOptions::new(source)
            })
            .await?)
        }
        Command::Sim { action } => {
            let (desired, _) = load(repo, None, Some(DriverKind::Sim).or(driver_override))?;
            let sim = SimDriver::open(repo, &desired.cluster)?;
            match action {
                SimAction::KillMachine { name } => sim.kill_machine(&name)?,
                SimAction::DownNode { name } => sim.down_node(&name, unix_now())?,
                SimAction::UpNode { name } => sim.up_node(&name)?,
                SimAction::SetReplicas { service, replicas } => {
                    sim.set_replicas(&service, replicas)?
                }
            }
            println!("Done.");
            Ok(0)
        }
    }
}

struct ApplyFlags {
    yes: bool,
    dry_run: bool,
    json: bool,
    allow_destroy_all: bool,
}

async fn run_apply(
    repo: &Path,
    rev: Option<&str>,
    driver_override: Option<DriverKind>,
    flags: ApplyFlags,
    planfile: Option<&Path>,
) -> Result<u8> {
    let saved: Option<Plan> = match planfile {
        None => None,
        Some(path) => Some(read_plan(path)?),
    };
    let rev = rev.or(saved.as_ref().and_then(|p| p.revision.as_deref()));
    let (desired, revision) = load(repo, rev, driver_override)?;
    let driver = open_driver(&desired, repo).await?;
    let observed = observe_now(&driver).await?;
    let fresh = make_plan(
        &desired,
        &observed,
        revision,
        flags.allow_destroy_all,
        &driver,
    )?;
    let plan = match saved {
        None => fresh,
        Some(mut saved) => {
            if saved.fingerprint != fresh.fingerprint {
                bail!("the saved plan is stale: the cluster changed since it was made. Run `shoal plan --out FILE` again and apply the new plan");
            }
            if saved.revision != fresh.revision
                || serde_json::to_value(&saved.steps)? != serde_json::to_value(&fresh.steps)?
            {
                bail!("the saved plan is stale: the files changed since it was made (revision {} now). Run `shoal plan --out FILE` again", fresh.revision.as_deref().unwrap_or("none, uncommitted changes"));
            }
            saved.steps = fresh.steps;
            saved
        }
    };
    let style = style_for_stdout();
    if !flags.json {
        print!("{}", render_plan(&plan, style));
    }
    if !plan.is_empty() && !flags.dry_run && planfile.is_none() {
        confirm(flags.yes, "apply")?;
    }
    let options = ApplyOptions {
        dry_run: flags.dry_run,
        ..ApplyOptions::default()
    };
    let progress: Box<dyn Progress> = if std::io::stderr().is_terminal() && !flags.json {
        Box::new(Bar::new(plan.steps.len()))
    } else {
        Box::new(Lines)
    };
    let report = apply(&plan, &desired, driver, &options, progress.as_ref()).await?;
    if flags.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !plan.is_empty() || flags.dry_run {
        print!("\n{}", render_report(&report, style));
    }
    let failed = report
        .steps
        .iter()
        .any(|s| s.status != shoal::plan::report::StepStatus::Done);
    Ok(if failed { 1 } else { 0 })
}

/// Reads and checks a saved plan.
fn read_plan(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan file {}", path.display()))?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}:{}:{}: not a shoal plan: {e}. Make one with `shoal plan --out FILE`",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    if plan.format_version != FORMAT_VERSION {
        bail!(
            "{}: plan format {} is not the format {FORMAT_VERSION} this shoal reads: make the plan again with this version",
            path.display(),
            plan.format_version
        );
    }
    Ok(plan)
}

/// Asks on a terminal; refuses without `--yes` elsewhere.
fn confirm(yes: bool, verb: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to {verb} without --yes: standard input is not a terminal, so nobody can confirm");
    }
    print!("\nDo you want to {verb}? Only 'yes' will be accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("{verb} cancelled: nothing was changed");
    }
    Ok(())
}

/// Loads the desired state from the working tree or a commit; prints nothing.
fn load(
    repo: &Path,
    rev: Option<&str>,
    driver_override: Option<DriverKind>,
) -> Result<(Desired, Option<String>)> {
    let Source { files, revision } = match rev {
        Some(rev) => at_revision(repo, rev)?,
        None => working_tree(repo)?,
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut desired =
        shoal::config::load(files.as_ref(), &env).map_err(|invalid| anyhow!("{invalid}"))?;
    if let Some(driver) = driver_override {
        desired.driver = driver;
    }
    Ok((desired, revision))
}

async fn observe_now(driver: &Arc<dyn Driver>) -> Result<Observed> {
    Ok(observe(driver, unix_now()).await?)
}

fn make_plan(
    desired: &Desired,
    observed: &Observed,
    revision: Option<String>,
    allow_destroy_all: bool,
    driver: &Arc<dyn Driver>,
) -> Result<Plan> {
    Ok(plan(
        desired,
        observed,
        &PlanOptions {
            revision,
            allow_destroy_all,
            routing_mesh: driver.routing_mesh(),
        },
    )?)
}
