//! The engine's event stream as a trigger source: the watcher follows `GET /events` of a
//! manager it observed (the leader when it is ready), so drift and lost nodes wake the loop at
//! once instead of at the next resync.
//!
//! The manager's stream comes from the driver's own engine ([`Swarm::events`]): the same
//! connection observation and writes use (TLS with the machine's certificates, ssh through
//! shoal's forward with strict host keys and the configured key), never a client of its own.
//!
//! Service and node events wake the loop ([`Trigger::Event`]); container events of the
//! manager are counted, and wake it at most every [`CONTAINER_GAP`] (swarm restarts failed
//! tasks itself: the pass only refreshes their health). Every event is counted in
//! `shoal_events_total{type}`. A stream that cannot be opened or ends is opened again with
//! backoff (1 s doubling to 30 s), from the time of the last event seen, and a stream of a
//! manager that the newest observation no longer picks (not ready, or no longer the leader) is
//! left for the one it picks; meanwhile the resync
//! timer still runs. A driver whose engines are not Docker engines (the sim) has no events:
//! the timer alone wakes the loop. The machines' own events, when the driver has them
//! ([`crate::drivers::Driver::machine_events`]: with the dind driver, the host engine's `die`,
//! `stop`, `kill`, `destroy` of the cluster's machine containers), wake the loop too, counted
//! as `machine`: a removed machine is noticed at once, not when swarm marks its node down.

use super::backoff::Backoff;
use super::metrics::EventLabel;
use super::reconcile::Reconciler;
use super::trigger::{self, Trigger};
use super::Shared;
use crate::engine::{EventQuery, EventStream, Swarm};

use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The event types followed.
const TYPES: [&str; 3] = ["service", "node", "container"];
/// How often the followed manager is compared with the one the newest observation picks.
const MANAGER_CHECK: Duration = Duration::from_secs(5);
/// How often a follower looks for a cluster to follow before the first pass has observed one.
const NOT_YET_POLL: Duration = Duration::from_millis(500);
/// The shortest time between two wake-ups by container events.
pub(crate) const CONTAINER_GAP: Duration = Duration::from_secs(10);

/// Follows the events of the manager the last pass observed (and those of the machines, when
/// the driver has them) until `triggers` closes.
pub(crate) fn spawn(
    reconciler: Arc<Reconciler>,
    shared: Arc<Shared>,
    triggers: mpsc::Sender<Trigger>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let host = {
            let (reconciler, shared, triggers) =
                (reconciler.clone(), shared.clone(), triggers.clone());
            retrying("host", triggers.clone(), move |since| {
                let (reconciler, shared, triggers) =
                    (reconciler.clone(), shared.clone(), triggers.clone());
                async move {
                    let mut at = since;
                    let followed = follow_host(&reconciler, &shared, &triggers, &mut at).await;
                    (followed, at)
                }
            })
        };
        let manager = retrying("manager", triggers.clone(), move |since| {
            let (reconciler, shared, triggers) =
                (reconciler.clone(), shared.clone(), triggers.clone());
            async move {
                let mut at = since;
                let followed = follow(&reconciler, &shared, &triggers, &mut at).await;
                (followed, at)
            }
        });
        tokio::join!(host, manager);
    })
}

/// Runs `attempt` again and again with backoff until `triggers` closes or it is off; each
/// attempt starts from the time of the last event the previous one saw.
async fn retrying<F, Fut>(what: &str, triggers: mpsc::Sender<Trigger>, attempt: F)
where
    F: Fn(Option<i64>) -> Fut,
    Fut: std::future::Future<Output = (Followed, Option<i64>)>,
{
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut since: Option<i64> = None;
    let mut last_problem = String::new();
    loop {
        if triggers.is_closed() {
            return;
        }
        let (followed, at) = attempt(since).await;
        since = at;
        match followed {
            Followed::Streamed => backoff.reset(),
            Followed::Off => return,
            // Nothing to follow until the first pass has observed the cluster: look again
            // soon, so the stream opens right after that pass, not a grown backoff later.
            Followed::NotYet => {
                backoff.reset();
                tokio::time::sleep(NOT_YET_POLL).await;
                continue;
            }
            Followed::Failed(problem) => {
                if problem != last_problem {
                    tracing::info!(
                        "engine events ({what}): {problem}; the resync timer still runs"
                    );
                    last_problem = problem;
                }
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// How one attempt to follow the stream ended.
enum Followed {
    /// Events came, then the stream ended (a request timeout, the manager restarting).
    Streamed,
    /// Why no stream could be read.
    Failed(String),
    /// This source does not apply to the cluster's driver.
    Off,
    /// No pass has observed the cluster (or a ready manager of it) yet.
    NotYet,
}

/// A manager the last observation saw: the leader if it is ready, else any ready manager.
fn manager(shared: &Shared) -> Option<String> {
    let report = shared.report();
    let cluster = report.cluster.as_ref()?;
    let ready = |m: &&crate::render::status::MachineStatus| {
        m.role == crate::model::Role::Manager && m.node_state == "ready"
    };
    cluster
        .machines
        .iter()
        .filter(ready)
        .find(|m| m.leader)
        .or_else(|| cluster.machines.iter().find(ready))
        .map(|m| m.name.clone())
}

async fn follow(
    reconciler: &Reconciler,
    shared: &Shared,
    triggers: &mpsc::Sender<Trigger>,
    since: &mut Option<i64>,
) -> Followed {
    let Some(driver) = reconciler.current_driver().await else {
        return Followed::NotYet;
    };
    let Some(machine) = manager(shared) else {
        return Followed::NotYet;
    };
    let engine: std::sync::Arc<dyn Swarm> = match driver.engine(&machine).await {
        Ok(engine) => engine,
        Err(e) => return Followed::Failed(format!("cannot connect to {machine}: {e}")),
    };
    let query = EventQuery {
        filters: BTreeMap::from([(
            "type".to_string(),
            TYPES.iter().map(|t| (*t).to_string()).collect(),
        )]),
        since_nano: *since,
    };
    let Some(events) = engine.events(query) else {
        tracing::info!("{machine} has no engine events: the resync timer alone wakes the loop");
        return Followed::Off;
    };
    let followed = stream(
        events,
        EventSource::Manager(&machine),
        shared,
        triggers,
        since,
    );
    tokio::pin!(followed);
    // A manager that froze or lost its network keeps the stream open without events: follow
    // the one the newest observation picks instead.
    let mut check = tokio::time::interval(MANAGER_CHECK);
    loop {
        tokio::select! {
            followed = &mut followed => return followed,
            _ = check.tick() => {
                let picked = manager(shared);
                if picked.as_ref().is_some_and(|m| *m != machine) {
                    tracing::info!(
                        "engine events: following {} instead of {machine}",
                        picked.unwrap_or_default()
                    );
                    return Followed::Streamed;
                }
            }
        }
    }
}

/// Follows the events of the machines themselves, when the driver has them
/// ([`crate::drivers::Driver::machine_events`]: the dind host engine's machine containers): one
/// that dies or is removed wakes the loop at once, long before swarm marks its node down.
async fn follow_host(
    reconciler: &Reconciler,
    shared: &Shared,
    triggers: &mpsc::Sender<Trigger>,
    since: &mut Option<i64>,
) -> Followed {
    let Some(driver) = reconciler.current_driver().await else {
        return Followed::NotYet;
    };
    let events = match driver.machine_events(*since).await {
        None => return Followed::Off,
        Some(Err(e)) => {
            return Followed::Failed(format!("cannot follow the machines' events: {e}"))
        }
        Some(Ok(events)) => events,
    };
    stream(events, EventSource::Host, shared, triggers, since).await
}

/// Whose events a stream carries.
#[derive(Clone, Copy)]
enum EventSource<'a> {
    /// A manager's (by machine name): swarm's services, nodes and containers.
    Manager(&'a str),
    /// The dind host engine's: the cluster's machine containers.
    Host,
}

impl std::fmt::Display for EventSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventSource::Manager(machine) => f.write_str(machine),
            EventSource::Host => f.write_str("the host engine"),
        }
    }
}

/// Whether an engine event may mean drift or a lost machine: health checks run as `exec_*`
/// events every few seconds and report `health_status`, and neither changes a spec, a task's
/// desired state or a node, so they never wake the watcher.
fn can_change_the_cluster(kind: &str, action: &str) -> bool {
    !(kind == "container" && (action.starts_with("exec_") || action.starts_with("health_status")))
}

/// Reads one event stream until it ends: counts each event, and wakes the loop.
async fn stream(
    mut stream: EventStream,
    source: EventSource<'_>,
    shared: &Shared,
    triggers: &mpsc::Sender<Trigger>,
    since: &mut Option<i64>,
) -> Followed {
    tracing::debug!("following the engine events of {source}");
    let host = matches!(source, EventSource::Host);
    let mut streamed = false;
    let mut last_container_wake: Option<Instant> = None;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) if streamed => {
                tracing::debug!("the event stream of {source} ended: {e}");
                break;
            }
            Err(e) => return Followed::Failed(format!("events of {source}: {e}")),
        };
        streamed = true;
        // A stream opened again from the last event's time repeats the events of that instant.
        if let (Some(time), Some(last)) = (event.time_nano, *since) {
            if time <= last {
                continue;
            }
        }
        if let Some(time) = event.time_nano {
            *since = Some(time);
        }
        let label = if host {
            "machine".to_string()
        } else {
            event.kind.clone()
        };
        shared
            .metrics
            .events
            .get_or_create(&EventLabel {
                r#type: label.clone(),
            })
            .inc();
        let wake = match label.as_str() {
            _ if !can_change_the_cluster(&label, &event.action) => false,
            "container" => {
                let due = last_container_wake.is_none_or(|at| at.elapsed() >= CONTAINER_GAP);
                if due {
                    last_container_wake = Some(Instant::now());
                }
                due
            }
            _ => true,
        };
        if wake {
            tracing::debug!("engine event: {label} {}", event.action);
            trigger::send(triggers, Trigger::Event);
        }
    }
    if streamed {
        Followed::Streamed
    } else {
        Followed::Failed(format!("the event stream of {source} closed"))
    }
}

#[cfg(test)]
mod tests {
    use super::can_change_the_cluster;

    #[test]
    fn health_checks_never_wake_the_watcher() {
        for action in [
            "exec_create: /bin/sh -c curl -f localhost",
            "exec_start: /bin/sh -c curl -f localhost",
            "exec_die",
            "health_status: healthy",
        ] {
            assert!(!can_change_the_cluster("container", action), "{action}");
        }
        for (kind, action) in [
            ("container", "die"),
            ("service", "update"),
            ("node", "update"),
        ] {
            assert!(can_change_the_cluster(kind, action), "{kind} {action}");
        }
    }
}
