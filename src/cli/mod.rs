//! The command line: the arguments, and a dispatch to one small module per command.

mod apply;
mod common;
mod destroy;
mod doctor;
mod env;
mod images;
mod pause;
mod plan;
mod sim;
mod status;
mod unlock;
mod validate;
mod watch;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use shoal::model::DriverKind;
use shoal::timings::Timings;
use sim::SimAction;
use std::path::PathBuf;
use watch::WatchArgs;

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
    /// Print where the time went on standard error at the end (connect, lock, each observation
    /// read, plan, each write, the wait).
    #[arg(long, global = true)]
    pub timings: bool,
    #[command(subcommand)]
    command: Command,
}

fn parse_driver(text: &str) -> Result<DriverKind, String> {
    DriverKind::named(text).ok_or_else(|| {
        format!(
            "unknown driver {text}: use one of {}",
            DriverKind::NAMES.join(", ")
        )
    })
}

#[derive(clap::Args, Debug, Clone)]
struct RevArg {
    /// Read the files from this commit instead of the working tree.
    #[arg(long)]
    rev: Option<String>,
}

/// `shoal images` subcommands.
#[derive(Subcommand, Debug, Clone, Copy)]
enum ImagesAction {
    /// Rewrite the compose files' references to what the policies choose (only the tag or
    /// digest; comments, quoting and layout kept); `--commit` commits, `--push` pushes.
    Update,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check machines.yml and the compose files; exit 0 when valid, 1 when not.
    Validate,
    /// Show what apply would change, like `terraform plan`.
    Plan(PlanArgs),
    /// Carry out the plan (or a saved one).
    Apply(ApplyArgs),
    /// Show the machines, nodes and services.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stale apply lock left by a process that died elsewhere (its ID is in the
    /// "locked" message). A lock whose process died on this host is taken over by itself.
    Unlock {
        /// The lock's ID.
        lock_id: String,
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
        #[arg(required_unless_present = "unset")]
        machine: Option<String>,
        /// Print the commands that unset the variables instead.
        #[arg(long)]
        unset: bool,
    },
    /// Pause the cluster: apply refuses to write and the watcher only observes, until `shoal resume`.
    Pause {
        /// Why, shown to whoever meets the pause.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused cluster.
    Resume,
    /// What the driver and the engine can do here: API version, privileges, cgroups, IPVS, storage.
    Doctor {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Image policies (machines.yml `images:`): what the compose files name and what the
    /// registries offer; `update` rewrites the references.
    Images {
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
        /// With `update`: commit the change as `shoal`, a line per change in the message.
        #[arg(long, global = true)]
        commit: bool,
        /// With `update`: push the commit to the branch's remote (implies --commit).
        #[arg(long, global = true)]
        push: bool,
        #[command(subcommand)]
        action: Option<ImagesAction>,
    },
    /// Follow a branch: apply each new commit, heal drift, serve /metrics, /status and webhooks.
    Watch(WatchArgs),
    /// Inject faults and drift into the sim driver's cluster.
    Sim {
        #[command(subcommand)]
        action: SimAction,
    },
}

/// `shoal plan`'s arguments.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    rev: RevArg,
    /// How to print the plan: text for people, json, or markdown for a pull-request comment.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// Print the plan as JSON (the same as `--format json`).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Also list the commits of the cluster's applied revision that the planned revision lacks
    /// (applying it would undo them: a stale branch).
    #[arg(long)]
    against_applied: bool,
    /// Save the plan as JSON for `shoal apply FILE`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error or when part of the
    /// cluster could not be seen.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Allow a plan that removes every service of a stack or every machine.
    #[arg(long)]
    allow_destroy_all: bool,
}

/// How `shoal plan` prints the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// For people, like `terraform plan`.
    #[default]
    Text,
    /// The plan's JSON (DESIGN §2).
    Json,
    /// A pull-request review comment.
    Markdown,
}

/// `shoal apply`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
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
    /// How long to wait for the services the apply created or changed to become healthy; a
    /// service not healthy by then (or whose update swarm paused or rolled back) is exit 1.
    #[arg(long, default_value = "5m", value_parser = shoal::watch::parse_interval)]
    timeout: std::time::Duration,
    /// Apply although the cluster is paused (`shoal pause`); the pause stays.
    #[arg(long)]
    ignore_pause: bool,
    /// Send no notification to the `notify:` webhooks of machines.yml.
    #[arg(long)]
    no_notify: bool,
    /// Do not wait for the services to become healthy: exit once the steps are done.
    #[arg(long, conflicts_with = "timeout")]
    no_wait: bool,
    /// When a service the apply changed ends degraded, apply the services, secrets and configs
    /// of the last healthy revision again (never machines), and mark the commit failed.
    #[arg(long, conflicts_with_all = ["no_wait", "dry_run"])]
    rollback_on_failure: bool,
    /// A plan saved with `shoal plan --out`; refused when stale.
    planfile: Option<PathBuf>,
}

/// Sets up `tracing` on standard error, filtered by SHOAL_LOG or RUST_LOG; with `timings`, also
/// records the timed phases there (whatever the filter).
pub fn init_logging(format: LogFormat, default_filter: &str, timings: Option<&Timings>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
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
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let timing = timings.map(|t| {
        t.layer()
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target() == shoal::timings::TARGET
            }))
    });
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(timing)
        .try_init();
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
    let driver = cli.driver;
    let repo = cli.repo.as_path();
    match cli.command {
        Command::Validate => validate::run(repo, driver),
        Command::Plan(args) => plan::run(repo, driver, args).await,
        Command::Apply(args) => apply::run(repo, driver, args).await,
        Command::Status { json } => status::run(repo, driver, json).await,
        Command::Destroy { yes } => destroy::run(repo, driver, yes).await,
        Command::Unlock { lock_id } => unlock::run(repo, driver, &lock_id).await,
        Command::Env { machine, unset } => {
            env::run(repo, driver, machine.as_deref().unwrap_or_default(), unset).await
        }
        Command::Doctor { json } => doctor::run(repo, driver, json).await,
        Command::Pause { reason } => pause::run(repo, driver, true, reason.as_deref()).await,
        Command::Resume => pause::run(repo, driver, false, None).await,
        Command::Images {
            json,
            commit,
            push,
            action,
        } => {
            let update = match action {
                Some(ImagesAction::Update) => Some(images::UpdateFlags {
                    commit: commit || push,
                    push,
                }),
                None if commit || push => anyhow::bail!(
                    "--commit and --push go with `shoal images update`: run `shoal images update --commit --push`"
                ),
                None => None,
            };
            images::run(repo, json, update).await
        }
        Command::Watch(args) => watch::run(repo, driver, args).await,
        Command::Sim { action } => sim::run(repo, action),
    }
}
