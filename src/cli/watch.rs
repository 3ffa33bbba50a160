//! `shoal watch`: follow a branch (the library's `shoal::watch` documents the loop).

use anyhow::Result;
use shoal::model::DriverKind;
use shoal::watch::{WatchOptions, WatchSource};
use std::path::{Path, PathBuf};

/// `shoal watch`'s arguments.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
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
    /// Run the image policies (machines.yml `images:`) this often (e.g. 5m): a newer image is
    /// committed as shoal on the branch followed (pushed, with --remote), then deployed.
    #[arg(long, value_parser = shoal::watch::parse_interval)]
    images_every: Option<std::time::Duration>,
}

/// Runs the watcher until a signal stops it (or one pass with `--once`).
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, args: WatchArgs) -> Result<u8> {
    let source = match args.remote {
        Some(url) => WatchSource::Remote {
            url,
            cache: args.cache,
            path: args.path.unwrap_or_default(),
        },
        None => WatchSource::Local(repo.to_path_buf()),
    };
    Ok(shoal::watch::run(WatchOptions {
        branch: args.branch,
        interval: args.interval,
        listen: Some(args.listen),
        once: args.once,
        images_every: args.images_every,
        driver_override,
        ..WatchOptions::new(source)
    })
    .await?)
}
