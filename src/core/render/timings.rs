//! The `--timings` table: each timed phase, indented under the one enclosing it, with when it
//! began and how long it took.

use crate::model::timing::Timing;
use std::fmt::Write;

/// Renders timed phases (in the order they began) as an indented table; phases under 0.1 ms
/// are folded into a count per parent so that a 200-service run stays readable.
pub fn render_timings(timings: &[Timing]) -> String {
    let mut out = String::from("timings     start      took  phase\n");
    let mut folded = 0usize;
    for timing in timings {
        if timing.seconds < 0.000_1 && timing.depth > 0 {
            folded += 1;
            continue;
        }
        let label = if timing.detail.is_empty() {
            timing.phase.clone()
        } else {
            format!("{} {}", timing.phase, timing.detail)
        };
        let _ = writeln!(
            out,
            "         {:>7.3}s {:>8.3}s  {}{label}",
            timing.start,
            timing.seconds,
            "  ".repeat(timing.depth)
        );
    }
    if folded > 0 {
        let _ = writeln!(out, "         ({folded} phase(s) under 0.1 ms not shown)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(phase: &str, detail: &str, depth: usize, start: f64, seconds: f64) -> Timing {
        Timing {
            phase: phase.to_string(),
            detail: detail.to_string(),
            depth,
            start,
            seconds,
        }
    }

    #[test]
    fn phases_are_indented_under_their_parent_and_tiny_ones_folded() {
        let text = render_timings(&[
            timing("observe", "", 0, 0.0, 0.031),
            timing("read", "services", 1, 0.001, 0.012),
            timing("read", "secrets", 1, 0.001, 0.000_01),
            timing("plan", "", 0, 0.032, 0.002),
        ]);
        insta::assert_snapshot!(text);
    }
}
