//! Where a run's time went: timed phases are `tracing` spans with the target [`TARGET`], made
//! with [`phase`]; a [`TimingLayer`] records when each began and how long it took, and
//! [`crate::render::timings::render_timings`] prints them (`shoal --timings`).
//!
//! The spans cost nothing when no layer wants them; `--log-format json` at debug level shows
//! them as well, with every other event.

use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of the timed phases.
pub const TARGET: &str = "shoal::timing";

/// A span timing one phase, `name` (connect, lock, observe, plan, a write...) with `detail`
/// (the machine, the step); enter it, or `.instrument()` a future with it.
#[macro_export]
macro_rules! phase {
    ($name:expr) => {
        tracing::info_span!(target: "shoal::timing", "phase", phase = $name, detail = "")
    };
    ($name:expr, $detail:expr) => {
        tracing::info_span!(target: "shoal::timing", "phase", phase = $name, detail = %$detail)
    };
}

pub use crate::model::timing::Timing;

/// The phases recorded so far, shared between the layer and whoever prints them.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    recorded: Arc<Mutex<Vec<Timing>>>,
    origin: Arc<Mutex<Option<Instant>>>,
}

impl Timings {
    /// The phases closed so far, in the order they began.
    pub fn finished(&self) -> Vec<Timing> {
        let mut list = self
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        list.sort_by(|a, b| a.start.total_cmp(&b.start));
        list
    }

    /// The layer that records into these timings.
    pub fn layer(&self) -> TimingLayer {
        TimingLayer {
            timings: self.clone(),
        }
    }

    fn since_origin(&self, at: Instant) -> f64 {
        let mut origin = self.origin.lock().unwrap_or_else(|e| e.into_inner());
        let origin = *origin.get_or_insert(at);
        at.saturating_duration_since(origin).as_secs_f64()
    }
}

/// A `tracing_subscriber` layer recording the spans of target [`TARGET`].
#[derive(Clone, Debug)]
pub struct TimingLayer {
    timings: Timings,
}

/// What the layer keeps on a span while it is open.
struct Open {
    phase: String,
    detail: String,
    depth: usize,
    began: Instant,
}

#[derive(Default)]
struct Fields {
    phase: String,
    detail: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "phase" => self.phase = value.to_string(),
            "detail" => self.detail = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for TimingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != TARGET {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let depth = span
            .scope()
            .skip(1)
            .filter(|s| s.metadata().target() == TARGET)
            .count();
        span.extensions_mut().insert(Open {
            phase: fields.phase,
            detail: fields.detail,
            depth,
            began: Instant::now(),
        });
        self.timings.since_origin(Instant::now());
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let timing = Timing {
            phase: open.phase,
            detail: open.detail,
            depth: open.depth,
            start: self.timings.since_origin(open.began),
            seconds: open.began.elapsed().as_secs_f64(),
        };
        self.timings
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(timing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn phases_are_recorded_nested_in_start_order_and_other_spans_ignored() {
        let timings = Timings::default();
        let subscriber = tracing_subscriber::registry().with(timings.layer());
        tracing::subscriber::with_default(subscriber, || {
            let outer = phase!("observe");
            let _in_outer = outer.enter();
            let _other = tracing::info_span!("not timed").entered();
            {
                let _read = phase!("read", "services").entered();
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {}.instrument(phase!("write", "update_service web")));
        });
        let list = timings.finished();
        let names: Vec<(&str, &str, usize)> = list
            .iter()
            .map(|t| (t.phase.as_str(), t.detail.as_str(), t.depth))
            .collect();
        assert_eq!(
            names,
            [
                ("observe", "", 0),
                ("read", "services", 1),
                ("write", "update_service web", 1),
            ]
        );
        assert!(list.windows(2).all(|w| w[0].start <= w[1].start));
        assert!(list[0].seconds >= list[1].seconds);
    }
}
