//! The watcher's Prometheus metrics (OpenMetrics text on `/metrics`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::{Arc, RwLock};

/// The content type `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A plan action, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ActionLabel {
    /// The action's contract name (`scale_service`).
    pub action: String,
}

/// A commit, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RevisionLabel {
    /// The full commit hash.
    pub revision: String,
}

/// `shoal_applied_revision_info{revision}`: an OpenMetrics info metric whose label changes with
/// each applied commit, encoded from the current value at every scrape.
#[derive(Debug, Default)]
pub(crate) struct RevisionInfo(RwLock<Option<String>>);

impl RevisionInfo {
    fn set(&self, revision: &str) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(revision.to_string());
    }
}

impl Collector for RevisionInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(revision) = self.0.read().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Ok(());
        };
        let info = Info::new(RevisionLabel { revision });
        let metric = encoder.encode_descriptor(
            "applied_revision",
            "The commit recorded in the swarm as applied (io.shoal.revision)",
            None,
            info.metric_type(),
        )?;
        info.encode(metric)
    }
}

/// What woke the loop, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TriggerLabel {
    /// `start`, `git`, `timer`, `webhook`, `signal` or `retry`.
    pub source: String,
}

/// How a webhook request was answered, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    /// `accepted`, `unauthorized` or `disabled`.
    pub outcome: String,
}

/// An engine event type, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EventLabel {
    /// `service`, `node` or `container`.
    pub r#type: String,
}

/// A service's health state, as labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HealthLabel {
    /// The full service name.
    pub service: String,
    /// `healthy`, `progressing`, `degraded` or `missing`.
    pub state: String,
}

/// A notification's event and how it went, as labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NotificationLabel {
    /// `applied`, `failed`, `degraded`, `drift_healed`, `rolled_back` or `paused`.
    pub event: String,
    /// `sent` or `failed` (after its tries).
    pub result: String,
}

/// Every metric the watcher exports, registered under the `shoal_` prefix.
pub(crate) struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub errors: Counter,
    pub duration: Histogram,
    pub last_success: Gauge,
    pub last_reconcile_time: Gauge,
    pub tip_broken: Gauge,
    pub paused: Gauge,
    pub drift_steps: Counter,
    pub steps_applied: Family<ActionLabel, Counter>,
    applied_revision: Arc<RevisionInfo>,
    pub applied_revision_time: Gauge,
    pub triggers: Family<TriggerLabel, Counter>,
    pub webhooks: Family<OutcomeLabel, Counter>,
    pub fetch_errors: Counter,
    pub events: Family<EventLabel, Counter>,
    pub service_health: Family<HealthLabel, Gauge>,
    pub notifications: Family<NotificationLabel, Counter>,
}

impl Metrics {
    /// A fresh set, all at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("shoal");
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconcile passes run (read the tip, observe, plan, apply)",
            reconciles.clone(),
        );
        let errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Reconcile passes that failed: a commit that does not load or plan, a held lock, a failed step",
            errors.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.005, 2.5, 12));
        registry.register(
            "reconcile_duration_seconds",
            "Wall time of a reconcile pass",
            duration.clone(),
        );
        let last_success = Gauge::default();
        registry.register(
            "last_reconcile_success",
            "1 when the last reconcile pass succeeded, 0 when it failed",
            last_success.clone(),
        );
        let last_reconcile_time = Gauge::default();
        registry.register(
            "last_reconcile_timestamp_seconds",
            "Unix time the last reconcile pass ended",
            last_reconcile_time.clone(),
        );
        let tip_broken = Gauge::default();
        registry.register(
            "tip_broken",
            "1 while the branch tip does not load or plan (drift is healed against the last good commit meanwhile)",
            tip_broken.clone(),
        );
        let paused = Gauge::default();
        registry.register(
            "paused",
            "1 while the cluster is paused (`shoal pause`): the watcher observes and plans, and writes nothing",
            paused.clone(),
        );
        let drift_steps = Counter::default();
        registry.register(
            "drift_steps",
            "Steps planned while the commit had not changed since it was applied: drift healed",
            drift_steps.clone(),
        );
        let steps_applied = Family::<ActionLabel, Counter>::default();
        registry.register(
            "steps_applied",
            "Plan steps carried out, by action",
            steps_applied.clone(),
        );
        let applied_revision = Arc::new(RevisionInfo::default());
        registry.register_collector(Box::new(applied_revision.clone()));
        let applied_revision_time = Gauge::default();
        registry.register(
            "applied_revision_timestamp_seconds",
            "Unix time this watcher applied the recorded commit, or first saw it recorded",
            applied_revision_time.clone(),
        );
        let triggers = Family::<TriggerLabel, Counter>::default();
        registry.register(
            "triggers",
            "Wake-ups of the reconcile loop by source, each source counted once per debounce window",
            triggers.clone(),
        );
        let webhooks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook requests, by outcome",
            webhooks.clone(),
        );
        let fetch_errors = Counter::default();
        registry.register(
            "fetch_errors",
            "Fetches of the remote that failed (the last fetched commit is used meanwhile)",
            fetch_errors.clone(),
        );
        let events = Family::<EventLabel, Counter>::default();
        registry.register(
            "events",
            "Events received from the engine of the manager the watcher follows, by type",
            events.clone(),
        );
        let service_health = Family::<HealthLabel, Gauge>::default();
        registry.register(
            "service_health",
            "1 for each service's current health state, 0 for its other states",
            service_health.clone(),
        );
        let notifications = Family::<NotificationLabel, Counter>::default();
        registry.register(
            "notifications",
            "Notifications to the notify: webhooks of machines.yml, by event and result (sent, or failed after its tries)",
            notifications.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            last_success,
            last_reconcile_time,
            tip_broken,
            paused,
            drift_steps,
            steps_applied,
            applied_revision,
            applied_revision_time,
            triggers,
            webhooks,
            fetch_errors,
            events,
            service_health,
            notifications,
        }
    }

    /// Counts a notification that ended, sent or failed.
    pub fn count_notification(&self, event: &str, result: &str) {
        self.notifications
            .get_or_create(&NotificationLabel {
                event: event.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Sets `shoal_service_health{service,state}`: 1 for each service's state, 0 for the
    /// others; services no longer listed are dropped.
    pub fn set_health<'a>(
        &self,
        services: impl IntoIterator<Item = (&'a str, crate::health::HealthState)>,
    ) {
        self.service_health.clear();
        for (service, current) in services {
            for state in crate::health::HealthState::ALL {
                self.service_health
                    .get_or_create(&HealthLabel {
                        service: service.to_string(),
                        state: state.as_str().to_string(),
                    })
                    .set(i64::from(state == current));
            }
        }
    }

    /// Counts a wake-up.
    pub fn count_trigger(&self, source: &str) {
        self.triggers
            .get_or_create(&TriggerLabel {
                source: source.to_string(),
            })
            .inc();
    }

    /// Counts a webhook request.
    pub fn count_webhook(&self, outcome: &str) {
        self.webhooks
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Sets the applied revision, replacing the previous one.
    pub fn set_applied_revision(&self, revision: &str, at: u64) {
        self.applied_revision.set(revision);
        self.applied_revision_time
            .set(i64::try_from(at).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("cannot encode the metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_the_revision_is_replaced() {
        let metrics = Metrics::new();
        metrics.errors.inc();
        metrics.last_success.set(0);
        metrics.set_applied_revision("aaa", 10);
        metrics.set_applied_revision("bbb", 20);
        metrics
            .steps_applied
            .get_or_create(&ActionLabel {
                action: "scale_service".into(),
            })
            .inc();
        let text = metrics.encode();
        assert!(text.contains("shoal_reconcile_errors_total 1"), "{text}");
        assert!(text.contains("shoal_last_reconcile_success 0"), "{text}");
        assert!(text.contains("shoal_applied_revision_info{revision=\"bbb\"} 1"));
        assert!(!text.contains("revision=\"aaa\""));
        assert!(text.contains("shoal_applied_revision_timestamp_seconds 20"));
        assert!(text.contains("shoal_steps_applied_total{action=\"scale_service\"} 1"));
        assert!(
            text.contains("# TYPE shoal_applied_revision info"),
            "{text}"
        );
        metrics.count_notification("failed", "sent");
        assert!(
            metrics
                .encode()
                .contains("shoal_notifications_total{event=\"failed\",result=\"sent\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
