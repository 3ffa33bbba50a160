//! `shoal watch`: a level-triggered reconciler that follows a branch.
//!
//! Every wake-up goes into one channel: the branch moved (notify on the local `.git`: HEAD,
//! packed-refs, refs/heads), the resync timer (drift; the fetch of a remote), an event of the
//! engine (a service or node changed: see the `events` module), an authenticated webhook, SIGHUP, a
//! retry after a failure. The loop debounces it, then does the same thing
//! whatever woke it: fetch (a remote), read the branch's tip commit, load the files of that
//! commit (never the work tree), observe the cluster, plan, and apply under the driver's apply
//! lock. Every pass that reaches the cluster observes it, and `/status` shows that observation
//! and its time. A commit that changes nothing in the cluster is applied too: the swarm's
//! revision label follows it.
//!
//! A commit that does not load or plan (the tip is broken) is not applied: its error is logged,
//! counted as a failed pass and shown on `/status` and the page until a commit that loads
//! arrives, and meanwhile every pass heals drift against the last good commit (the last one
//! that loaded and planned since the watcher started; before one has, nothing is known to be
//! good and nothing is healed). A broken tip fails the same way until the branch moves, so it
//! is read again when the branch moves or on the resync timer, without backoff. Passes that
//! fail otherwise (the engine, the lock, a step) are retried with exponential backoff (1 s
//! doubling to 5 min), and a held lock is retried when it expires at the latest.
//!
//! SIGTERM or SIGINT lets the running pass finish (an apply is never cut in the middle), starts
//! no new one, and exits 0; a second signal interrupts the pass, releases the lock and exits 1.
//! Two watchers on one cluster never apply at once: the apply lock refuses the second, which
//! backs off and retries.
//!
//! HTTP on `--listen` ([`DEFAULT_LISTEN`]): `/healthz`, `/readyz`, `/metrics` (OpenMetrics),
//! `/status` (JSON, [`StatusReport`]), `/` (an HTML page) and `POST /hooks/git`.

mod backoff;
mod driver;
mod events;
mod http;
mod images;
mod metrics;
pub mod page;
mod reconcile;
pub mod state;
mod trigger;
pub mod webhook;

pub use state::{
    ApplyInfo, ErrorInfo, HistoryEntry, PassInfo, PassResult, PlanInfo, SourceInfo, StatusReport,
    TargetInfo, TargetKind,
};
pub use trigger::Trigger;

use crate::apply::ApplyOptions;
use crate::clock::unix_now;
use crate::config::notifications::NotifyEvent;
use crate::drivers::lock::LockHolder;
use crate::model::DriverKind;
use crate::notify::{Notice, Pacing};
use crate::source::follow::{FollowError, LocalBranch};
use crate::source::remote::{default_cache_dir, env_secret, RemoteBranch};
use backoff::Backoff;
use metrics::{ActionLabel, Metrics};
use reconcile::{Followed, Pass, Reconciler};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where `--listen` defaults to.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9808";
/// The resync (and fetch) interval `--interval` defaults to.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The environment variable holding the webhook secret (or, with `_FILE`, naming a file that does).
pub const WEBHOOK_SECRET_VAR: &str = "SHOAL_WEBHOOK_SECRET";

/// Where the desired state comes from.
#[derive(Clone, Debug)]
pub enum WatchSource {
    /// A repository on this machine: the folder holding machines.yml (a subfolder of a work
    /// tree, or a bare repository).
    Local(PathBuf),
    /// A remote repository, cloned into a cache folder and fetched every interval.
    Remote {
        /// The URL (`https://`, `ssh://`, `git@host:path`, `file://` or a path).
        url: String,
        /// The cache folder; default `$XDG_CACHE_HOME/shoal/<hash of the URL>`.
        cache: Option<PathBuf>,
        /// The folder holding machines.yml inside the repository ('' for its root).
        path: String,
    },
}

/// How a watcher runs.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// What to follow.
    pub source: WatchSource,
    /// The branch; default: the branch checked out (local) or the remote's default branch.
    pub branch: Option<String>,
    /// Resync interval: drift is looked for, and a remote fetched, this often.
    pub interval: Duration,
    /// Where to serve HTTP; `None` serves nothing.
    pub listen: Option<SocketAddr>,
    /// Run one pass and return: 0 when it succeeded, 1 when not.
    pub once: bool,
    /// A driver instead of the one machines.yml names.
    pub driver_override: Option<DriverKind>,
    /// The webhook secret; without one, `POST /hooks/git` answers 403.
    pub webhook_secret: Option<String>,
    /// The environment for `${VAR}` interpolation in compose files.
    pub env: BTreeMap<String, String>,
    /// How long the loop waits after a wake-up for more before it starts a pass.
    pub debounce: Duration,
    /// The first retry delay after a failure.
    pub backoff_min: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// How apply runs (its `holder` names this watcher in the apply lock).
    pub apply: ApplyOptions,
    /// How often the image policies' pass runs (`--images-every`); `None`: never.
    pub images_every: Option<Duration>,
}

impl WatchOptions {
    /// The defaults for `source`: the environment of this process (with the webhook secret
    /// from `SHOAL_WEBHOOK_SECRET` or the file `SHOAL_WEBHOOK_SECRET_FILE` names), a 60 s
    /// interval, HTTP on 127.0.0.1:9808.
    pub fn new(source: WatchSource) -> WatchOptions {
        WatchOptions {
            source,
            branch: None,
            interval: DEFAULT_INTERVAL,
            listen: DEFAULT_LISTEN.parse().ok(),
            once: false,
            driver_override: None,
            webhook_secret: env_secret(WEBHOOK_SECRET_VAR),
            env: crate::source::interpolation_env(),
            debounce: Duration::from_millis(100),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            apply: ApplyOptions {
                holder: LockHolder::this_process("shoal watch"),
                ..ApplyOptions::default()
            },
            images_every: None,
        }
    }
}

/// Parses `--interval`: a Go-style duration (`30s`, `5m`, `1h30m`) of at least a second.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let nanos = crate::yaml::units::parse_duration(text)?;
    let interval = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    if interval < Duration::from_secs(1) {
        return Err(format!(
            "`{text}` is too short an interval: use at least 1s (e.g. 30s, 5m)"
        ));
    }
    Ok(interval)
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The repository or branch cannot be followed.
    #[error(transparent)]
    Follow(#[from] FollowError),
    /// The HTTP address cannot be bound.
    #[error("cannot listen on {addr}: {source}. Pass another address with --listen")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Signal handlers cannot be installed.
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
}

/// What the loop, the HTTP handlers and the caller share.
pub(crate) struct Shared {
    report: RwLock<StatusReport>,
    metrics: Metrics,
    alive: AtomicBool,
    ready: AtomicBool,
    webhook_secret: Option<String>,
    triggers: mpsc::Sender<Trigger>,
}

impl Shared {
    /// The status as it is now.
    fn report(&self) -> StatusReport {
        self.report
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .with_readiness(self.ready.load(Ordering::SeqCst))
    }

    fn update(&self, change: impl FnOnce(&mut StatusReport)) {
        let mut report = self
            .report
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut report);
    }
}

/// How far a stop has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Running,
    /// Finish the running pass, start no other.
    Graceful,
    /// Interrupt the running pass.
    Now,
}

/// Steers a running watcher; cheap to clone.
#[derive(Clone)]
pub struct Control {
    stop: watch::Sender<Stop>,
    triggers: mpsc::Sender<Trigger>,
}

impl Control {
    /// Wakes the loop, as a webhook or SIGHUP does.
    pub fn trigger(&self) {
        trigger::send(&self.triggers, Trigger::Signal);
    }

    /// Asks the loop to stop after the running pass; asked again, to stop at once.
    pub fn stop(&self) {
        self.stop.send_modify(|stop| {
            *stop = match *stop {
                Stop::Running => Stop::Graceful,
                _ => Stop::Now,
            }
        });
    }

    /// Asks the loop to interrupt the running pass, release the lock and stop.
    pub fn stop_now(&self) {
        self.stop.send_replace(Stop::Now);
    }
}

/// A running watcher.
pub struct Watcher {
    addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    control: Control,
    task: JoinHandle<u8>,
    http: Option<(JoinHandle<()>, watch::Sender<bool>)>,
    timer: Option<JoinHandle<()>>,
    events: Option<JoinHandle<()>>,
    images: Option<JoinHandle<()>>,
    git: Option<notify::RecommendedWatcher>,
}

impl Watcher {
    /// Starts following: binds the HTTP address, watches the repository, starts the timer
    /// and the loop, whose first pass begins at once. With `once`, only the loop runs.
    pub async fn start(options: WatchOptions) -> Result<Watcher, WatchError> {
        let followed = match &options.source {
            WatchSource::Local(dir) => {
                Followed::Local(LocalBranch::open(dir, options.branch.as_deref())?)
            }
            WatchSource::Remote { url, cache, path } => {
                let cache = cache.clone().unwrap_or_else(|| default_cache_dir(url));
                Followed::Remote(RemoteBranch::new(
                    url,
                    &cache,
                    options.branch.as_deref(),
                    path,
                ))
            }
        };
        let (triggers, receiver) = mpsc::channel(64);
        let (stop, stop_receiver) = watch::channel(Stop::Running);
        let shared = Arc::new(Shared {
            report: RwLock::new(StatusReport {
                source: followed.info(),
                ..StatusReport::default()
            }),
            metrics: Metrics::new(),
            alive: AtomicBool::new(true),
            ready: AtomicBool::new(false),
            webhook_secret: options.webhook_secret.clone(),
            triggers: triggers.clone(),
        });
        let mut http = None;
        let mut addr = None;
        if let (Some(listen), false) = (options.listen, options.once) {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| WatchError::Listen {
                    addr: listen,
                    source,
                })?;
            let bound = listener.local_addr().map_err(|source| WatchError::Listen {
                addr: listen,
                source,
            })?;
            addr = Some(bound);
            let (closed, closed_receiver) = watch::channel(false);
            let router = http::router(shared.clone());
            let server = tokio::spawn(http::serve(listener, router, closed_receiver));
            http = Some((server, closed));
            tracing::info!("listening on http://{bound}");
        }
        let mut git = None;
        let mut timer = None;
        if !options.once {
            if let Followed::Local(local) = &followed {
                match trigger::watch_git(local, triggers.clone()) {
                    Ok(watcher) => git = Some(watcher),
                    Err(e) => tracing::warn!(
                        "cannot watch {} for new commits ({e}); they are noticed every {:?} instead",
                        local.dir().display(),
                        options.interval
                    ),
                }
            }
            timer = Some(trigger::spawn_timer(triggers.clone(), options.interval));
        }
        let info = followed.info();
        tracing::info!(
            "following {} {}, branch {}",
            info.kind,
            info.location,
            info.branch.as_deref().unwrap_or("(the remote's default)")
        );
        let followed = Arc::new(followed);
        let images = match (options.images_every, options.once) {
            (Some(every), false) => Some(images::spawn(followed.clone(), every, triggers.clone())),
            _ => None,
        };
        let reconciler = Arc::new(Reconciler::new(
            followed,
            options.driver_override,
            options.env.clone(),
            options.apply.clone(),
        ));
        let events = (!options.once)
            .then(|| events::spawn(reconciler.clone(), shared.clone(), triggers.clone()));
        let settings = LoopSettings {
            once: options.once,
            interval: options.interval,
            debounce: options.debounce,
            backoff: Backoff::new(options.backoff_min, options.backoff_max),
        };
        let task = tokio::spawn(run_loop(
            reconciler,
            shared.clone(),
            receiver,
            stop_receiver,
            settings,
        ));
        Ok(Watcher {
            addr,
            shared,
            control: Control { stop, triggers },
            task,
            http,
            timer,
            events,
            images,
            git,
        })
    }

    /// The HTTP address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// A handle to wake or stop the watcher.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// The status, as `/status` serves it.
    pub fn status(&self) -> StatusReport {
        self.shared.report()
    }

    /// The metrics, as `/metrics` serves them.
    pub fn metrics(&self) -> String {
        self.shared.metrics.encode()
    }

    /// Waits for the loop to end (after [`Control::stop`], or after the one pass of `once`),
    /// then stops the HTTP server and the watches; returns the exit code.
    pub async fn wait(self) -> u8 {
        let Watcher {
            shared,
            task,
            http,
            timer,
            events,
            images,
            git,
            ..
        } = self;
        let code = match task.await {
            Ok(code) => code,
            Err(e) => {
                tracing::error!("the reconcile loop failed: {e}");
                1
            }
        };
        shared.alive.store(false, Ordering::SeqCst);
        drop(git);
        if let Some(timer) = timer {
            timer.abort();
        }
        if let Some(events) = events {
            events.abort();
        }
        if let Some(images) = images {
            images.abort();
        }
        if let Some((server, closed)) = http {
            let _ = closed.send(true);
            let _ = server.await;
        }
        code
    }
}

/// Runs a watcher until SIGTERM or SIGINT (or, with `once`, for one pass); SIGHUP wakes it.
/// Returns the exit code: 0 after a signal or a good pass, 1 after a failed `once` pass or an
/// interrupted one.
pub async fn run(options: WatchOptions) -> Result<u8, WatchError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(WatchError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(WatchError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(WatchError::Signals)?;
    let watcher = Watcher::start(options).await?;
    let control = watcher.control();
    let wait = watcher.wait();
    tokio::pin!(wait);
    loop {
        tokio::select! {
            code = &mut wait => return Ok(code),
            _ = terminate.recv() => stop_on_signal(&control, "SIGTERM"),
            _ = interrupt.recv() => stop_on_signal(&control, "SIGINT"),
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reconciling");
                control.trigger();
            }
        }
    }
}

fn stop_on_signal(control: &Control, name: &str) {
    let first = *control.stop.borrow() == Stop::Running;
    if first {
        tracing::info!("{name}: stopping after the running pass (send it again to interrupt)");
    } else {
        tracing::warn!("{name} again: interrupting the running pass");
    }
    control.stop();
}

struct LoopSettings {
    once: bool,
    interval: Duration,
    debounce: Duration,
    backoff: Backoff,
}

/// Whether a wake-up waits for the retry a failed pass scheduled: engine events do (a failing
/// cluster emits them all the time, and a pass per event would undo the backoff); the branch,
/// the timer, a webhook or a signal never do.
fn backing_off(
    woken: Trigger,
    retry_at: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
) -> bool {
    woken == Trigger::Event && retry_at.is_some_and(|at| at > now)
}

/// Marks the loop dead when it ends, however it ends (a panic included).
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
    }
}

async fn run_loop(
    reconciler: Arc<Reconciler>,
    shared: Arc<Shared>,
    mut triggers: mpsc::Receiver<Trigger>,
    mut stop: watch::Receiver<Stop>,
    mut settings: LoopSettings,
) -> u8 {
    let _alive = AliveGuard(shared.clone());
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut first = true;
    let mut told: BTreeMap<NotifyEvent, Notice> = BTreeMap::new();
    loop {
        if first {
            first = false;
            shared.metrics.count_trigger(Trigger::Start.as_str());
        } else {
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let woken = tokio::select! {
                _ = stop.wait_for(|s| *s != Stop::Running) => None,
                received = triggers.recv() => received,
                _ = retry => Some(Trigger::Retry),
            };
            let Some(woken) = woken else {
                break;
            };
            if backing_off(woken, retry_at, tokio::time::Instant::now()) {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(settings.debounce) => {}
                _ = stop.wait_for(|s| *s != Stop::Running) => break,
            }
            // One pass answers every wake-up of the window; each source counts once in it.
            let mut sources = vec![woken];
            while let Ok(more) = triggers.try_recv() {
                if !sources.contains(&more) {
                    sources.push(more);
                }
            }
            for source in sources {
                shared.metrics.count_trigger(source.as_str());
            }
        }
        retry_at = None;
        let synced = shared
            .report
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .synced_revision
            .clone();
        let pass_reconciler = reconciler.clone();
        let mut task = tokio::spawn(async move { pass_reconciler.pass(synced).await });
        let joined = tokio::select! {
            joined = &mut task => Some(joined),
            _ = stop.wait_for(|s| *s == Stop::Now) => None,
        };
        let Some(joined) = joined else {
            task.abort();
            let _ = task.await;
            reconciler.release_lock().await;
            tracing::warn!(
                "the running pass was interrupted; the next start carries on from where it stopped"
            );
            return 1;
        };
        let pass = joined.unwrap_or_else(|e| Pass {
            error: Some(format!("the reconcile pass failed: {e}")),
            ..Pass::default()
        });
        let converged = pass.converged();
        record(&shared, reconciler.followed(), &pass, unix_now());
        let sending = notify(&shared, &pass, &mut told);
        shared.ready.store(true, Ordering::SeqCst);
        if settings.once {
            reconciler.released().await;
            if let Some(sending) = sending {
                if tokio::time::timeout(NOTIFY_WAIT, sending).await.is_err() {
                    tracing::warn!(
                        "some notifications were still being sent after {} s; they were given up",
                        NOTIFY_WAIT.as_secs()
                    );
                }
            }
            return if pass.ok() { 0 } else { 1 };
        }
        if pass.error.is_none() && converged {
            // A broken tip fails the same way until the branch moves: no retry of its own.
            settings.backoff.reset();
            if pass.replan {
                tracing::info!("planning again at once: the cluster changed during the pass");
                retry_at = Some(tokio::time::Instant::now());
            }
            if pass.broken_tip.is_some() {
                tracing::info!(
                    "the tip is read again when the branch moves, or in {:?}",
                    settings.interval
                );
            }
        } else {
            let mut delay = settings.backoff.next_delay();
            if let Some(expires_at) = pass.locked_until {
                // Retry when the lock expires, not a whole backoff step after.
                let expiry = Duration::from_secs(expires_at.saturating_sub(unix_now()) + 1);
                delay = delay.min(expiry);
            }
            tracing::info!("retrying in {delay:?}");
            retry_at = Some(tokio::time::Instant::now() + delay);
        }
        if *stop.borrow() != Stop::Running {
            break;
        }
    }
    reconciler.released().await;
    tracing::info!("stopped");
    0
}

/// How long `watch --once` waits, before it exits, for the notifications still being sent.
const NOTIFY_WAIT: Duration = Duration::from_secs(12);

/// Sends the pass's notices to the webhooks that want them, in the background; each delivery
/// is counted in `shoal_notifications_total` and kept on `/status` when it ends. A `paused` or
/// `failed` notice the same as the last one of its event is not sent again while nothing else
/// was told (a paused cluster is planned at every pass, a failing one retried). The task ends
/// when every delivery has.
fn notify(
    shared: &Arc<Shared>,
    pass: &Pass,
    told: &mut BTreeMap<NotifyEvent, Notice>,
) -> Option<JoinHandle<()>> {
    let mut telling = Vec::new();
    for notice in &pass.notices {
        let repeats = matches!(notice.event, NotifyEvent::Paused | NotifyEvent::Failed);
        if !repeats {
            told.clear();
        } else if told.get(&notice.event) == Some(notice) {
            continue;
        } else {
            told.insert(notice.event, notice.clone());
        }
        telling.push(notice.clone());
    }
    let sending = crate::notify::spawn_in_order(&pass.notify, &telling, Pacing::default());
    if sending.is_empty() {
        return None;
    }
    let shared = shared.clone();
    Some(tokio::spawn(async move {
        for one in sending {
            let Ok(delivery) = one.handle.await else {
                continue;
            };
            shared
                .metrics
                .count_notification(delivery.event.as_str(), delivery.result());
            shared.update(|report| {
                report.notifications.insert(0, delivery);
                report.notifications.truncate(state::NOTIFICATIONS_SHOWN);
            });
        }
    }))
}

/// Puts a pass's outcome into the status and the metrics.
fn record(shared: &Shared, followed: &Followed, pass: &Pass, now: u64) {
    let metrics = &shared.metrics;
    metrics.reconciles.inc();
    metrics.duration.observe(pass.seconds);
    metrics
        .last_reconcile_time
        .set(i64::try_from(now).unwrap_or(i64::MAX));
    metrics.last_success.set(if pass.ok() { 1 } else { 0 });
    if !pass.ok() {
        metrics.errors.inc();
    }
    if pass.tip.is_some() {
        metrics
            .tip_broken
            .set(if pass.broken_tip.is_some() { 1 } else { 0 });
    }
    if let Some(status) = &pass.status {
        metrics.paused.set(i64::from(status.paused.is_some()));
    }
    if pass.drift_steps > 0 {
        metrics.drift_steps.inc_by(pass.drift_steps as u64);
    }
    if let Some(Some(_)) = &pass.fetch {
        metrics.fetch_errors.inc();
    }
    if let Some(report) = &pass.report {
        for step in &report.steps {
            if step.status == crate::plan::report::StepStatus::Done {
                metrics
                    .steps_applied
                    .get_or_create(&ActionLabel {
                        action: step.action.as_str().to_string(),
                    })
                    .inc();
            }
        }
    }
    let recorded = pass.status.as_ref().and_then(|s| s.revision.clone());
    shared.update(|report| {
        report.source = followed.info();
        if let Some(revision) = &recorded {
            if report.revision.as_ref() != Some(revision) {
                metrics.set_applied_revision(revision, now);
            }
        }
        if pass.status.is_some() {
            report.revision = recorded.clone();
        }
        report.reconciles += 1;
        report.last_reconcile = Some(PassInfo {
            at: now,
            seconds: pass.seconds,
            ok: pass.ok(),
        });
        if let Some(tip) = &pass.tip {
            report.tip = Some(tip.clone());
            report.tip_error = pass.broken_tip.as_ref().map(|message| ErrorInfo {
                at: now,
                revision: Some(tip.commit.clone()),
                message: message.clone(),
            });
        }
        if let Some(target) = &pass.target {
            report.target = Some(TargetInfo {
                revision: target.tip.commit.clone(),
                summary: target.tip.summary.clone(),
                kind: target.kind,
            });
        }
        if let Some(fetch) = &pass.fetch {
            report.fetch_error = fetch.clone();
        }
        if let Some(plan) = &pass.plan {
            report.last_plan = Some(PlanInfo::of(plan));
        }
        if let Some(applied) = &pass.report {
            report.last_apply = Some(ApplyInfo {
                revision: applied.revision.clone(),
                writes: applied.writes,
                converged: applied.converged,
                seconds: applied.seconds,
                failed: applied.failed_steps(),
                remaining: applied.remaining.clone(),
                at: now,
            });
        }
        if let Some(status) = &pass.status {
            metrics.set_health(
                status
                    .services
                    .iter()
                    .map(|s| (s.name.as_str(), s.health.state)),
            );
            report.cluster = Some(status.clone());
            report.observed_at = pass.observed_at;
        }
        if !pass.ok() {
            report.errors += 1;
        }
        if let Some(message) = pass.error.as_ref().or(pass.broken_tip.as_ref()) {
            let revision = match (&pass.error, &pass.tip) {
                (None, Some(tip)) => Some(tip.commit.clone()),
                _ => pass.failed_revision().map(str::to_string),
            };
            report.last_error = Some(ErrorInfo {
                at: now,
                revision,
                message: message.clone(),
            });
        }
        if pass.ok() {
            report.last_success_at = Some(now);
        }
        if pass.error.is_none() && pass.converged() {
            if let Some(target) = &pass.target {
                report.synced_revision = Some(target.tip.commit.clone());
            }
        }
        report.pending_plan = pending_plan(pass).map(PlanInfo::of);
        state::push_history(&mut report.history, history_entry(pass, now));
    });
}

/// The plan `pass` did not carry out: while paused, or when the pass failed before its steps
/// were all done (not when they were and a service ended unhealthy, nor after a rollback).
fn pending_plan(pass: &Pass) -> Option<&crate::plan::Plan> {
    let carried_out = (pass.report.as_ref()).is_some_and(|r| {
        (r.steps.iter()).all(|s| s.status == crate::plan::report::StepStatus::Done)
    });
    (pass.plan.as_ref())
        .filter(|plan| !plan.steps.is_empty() && pass.rollback.is_none())
        .filter(|_| pass.paused || (!pass.ok() && !carried_out))
}

/// What `pass` amounted to, for the revision history.
fn result_of(pass: &Pass) -> PassResult {
    if pass.rollback.is_some() {
        PassResult::RolledBack
    } else if pass.error.is_some() {
        PassResult::Failed
    } else if pass.broken_tip.is_some() {
        PassResult::BrokenTip
    } else if pass.paused {
        PassResult::Paused
    } else if pass.drift_steps > 0 {
        PassResult::DriftHealed
    } else if pass.report.is_some() {
        PassResult::Applied
    } else {
        PassResult::Unchanged
    }
}

/// The revision history's entry of `pass`, ended at `now`.
fn history_entry(pass: &Pass, now: u64) -> HistoryEntry {
    let result = result_of(pass);
    let target = pass.target.as_ref().map(|t| &t.tip);
    // A broken or rolled-back tip is what the entry is about, not the commit held to instead.
    let commit = match result {
        PassResult::BrokenTip | PassResult::RolledBack => pass.tip.as_ref().or(target),
        _ => target.or(pass.tip.as_ref()),
    };
    HistoryEntry {
        at: now,
        commit: commit.map(|t| t.commit.clone()),
        result,
        seconds: pass.seconds,
        writes: (pass.report.iter().chain(&pass.rollback))
            .map(|r| r.writes)
            .sum(),
        passes: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_amounts_to_one_result() {
        let failed = Pass {
            error: Some("x".into()),
            ..Pass::default()
        };
        assert_eq!(result_of(&failed), PassResult::Failed);
        let rolled = Pass {
            error: Some("x".into()),
            rollback: Some(crate::plan::report::ApplyReport {
                revision: Some("a".into()),
                steps: Vec::new(),
                writes: 3,
                converged: true,
                seconds: 1.0,
                remaining: Vec::new(),
                dry_run_writes: Vec::new(),
                health: Default::default(),
                waited_for: Vec::new(),
                drift: Vec::new(),
            }),
            ..Pass::default()
        };
        assert_eq!(result_of(&rolled), PassResult::RolledBack);
        assert_eq!(history_entry(&rolled, 7).writes, 3);
        let paused = Pass {
            paused: true,
            ..Pass::default()
        };
        assert_eq!(result_of(&paused), PassResult::Paused);
        let healed = Pass {
            drift_steps: 2,
            ..Pass::default()
        };
        assert_eq!(result_of(&healed), PassResult::DriftHealed);
        assert_eq!(result_of(&Pass::default()), PassResult::Unchanged);
        let broken = Pass {
            broken_tip: Some("bad".into()),
            ..Pass::default()
        };
        assert_eq!(result_of(&broken), PassResult::BrokenTip);
    }

    fn tip(commit: &str) -> crate::source::follow::Tip {
        crate::source::follow::Tip {
            commit: commit.into(),
            summary: String::new(),
            time: 0,
        }
    }

    fn report(status: crate::plan::report::StepStatus) -> crate::plan::report::ApplyReport {
        crate::plan::report::ApplyReport {
            revision: Some("a".into()),
            steps: vec![crate::plan::report::StepReport {
                id: crate::plan::StepId(1),
                action: crate::plan::Action::ScaleService,
                target: "app_web".into(),
                status,
                seconds: 0.1,
                error: None,
            }],
            writes: 1,
            converged: true,
            seconds: 1.0,
            remaining: Vec::new(),
            dry_run_writes: Vec::new(),
            health: Default::default(),
            waited_for: Vec::new(),
            drift: Vec::new(),
        }
    }

    #[test]
    fn a_rolled_back_entry_names_the_failed_tip_and_a_held_one_the_target() {
        let rolled = Pass {
            tip: Some(tip("bbb")),
            target: Some(reconcile::Target {
                tip: tip("aaa"),
                kind: TargetKind::Held,
            }),
            error: Some("x".into()),
            rollback: Some(report(crate::plan::report::StepStatus::Done)),
            ..Pass::default()
        };
        assert_eq!(history_entry(&rolled, 1).commit.as_deref(), Some("bbb"));
        let held = Pass {
            rollback: None,
            error: None,
            ..rolled
        };
        assert_eq!(history_entry(&held, 1).commit.as_deref(), Some("aaa"));
    }

    #[test]
    fn the_pending_plan_is_what_was_not_carried_out() {
        use crate::plan::report::StepStatus;
        let plan = crate::plan::Plan {
            format_version: crate::plan::FORMAT_VERSION,
            revision: Some("a".into()),
            fingerprint: String::new(),
            summary: Default::default(),
            warnings: Vec::new(),
            unseen: Vec::new(),
            steps: vec![crate::plan::Step {
                id: crate::plan::StepId(1),
                target: "app_web".into(),
                depends_on: Vec::new(),
                waits: Vec::new(),
                reason: crate::plan::Reason::Rebalance,
                op: crate::plan::StepOp::ScaleService {
                    id: "svc".into(),
                    replicas: 3,
                    observed_spec: None,
                },
            }],
            show_values: Vec::new(),
            new_content_key: None,
        };
        let paused = Pass {
            plan: Some(plan.clone()),
            paused: true,
            ..Pass::default()
        };
        assert!(pending_plan(&paused).is_some());
        let locked = Pass {
            plan: Some(plan.clone()),
            error: Some("locked".into()),
            ..Pass::default()
        };
        assert!(pending_plan(&locked).is_some());
        let step_failed = Pass {
            report: Some(report(StepStatus::Failed)),
            ..locked
        };
        assert!(pending_plan(&step_failed).is_some());
        let degraded = Pass {
            report: Some(report(StepStatus::Done)),
            ..step_failed
        };
        assert!(pending_plan(&degraded).is_none(), "its steps were all done");
        let applied = Pass {
            plan: Some(plan),
            report: Some(report(StepStatus::Done)),
            ..Pass::default()
        };
        assert!(pending_plan(&applied).is_none());
    }

    #[test]
    fn engine_events_wait_for_the_backoff_and_the_branch_does_not() {
        let now = tokio::time::Instant::now();
        let later = Some(now + Duration::from_secs(30));
        assert!(backing_off(Trigger::Event, later, now));
        assert!(!backing_off(Trigger::Event, None, now));
        assert!(!backing_off(Trigger::Event, Some(now), now));
        for trigger in [
            Trigger::Git,
            Trigger::Timer,
            Trigger::Webhook,
            Trigger::Signal,
        ] {
            assert!(!backing_off(trigger, later, now), "{trigger:?}");
        }
    }
}
