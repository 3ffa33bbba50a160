//! A plan as a pull-request review comment (`shoal plan --format markdown`): the cluster and
//! revision, the summary, a table row per step, each change's field diff in a collapsed
//! `<details>` block (values masked as in every output), warnings, what could not be seen, and
//! how to apply it.

use super::plan_text::{after, change_lines, extra, symbol};
use crate::plan::Plan;
use similar::ChangeTag;
use std::fmt::Write;

/// What the comment says besides the plan.
#[derive(Clone, Debug, Default)]
pub struct CommentContext<'a> {
    /// The cluster's name.
    pub cluster: &'a str,
    /// Commits the cluster's applied revision has that the planned one lacks (`--against-applied`):
    /// `<short id> <summary>` each; `None` when not asked.
    pub missing_applied: Option<Vec<String>>,
}

/// Text for a table cell: no line breaks, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

/// Text for an inline code span: backticks (which would end it) replaced.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'"))
}

/// Renders `plan` as a Markdown review comment.
pub fn render_plan_markdown(plan: &Plan, context: &CommentContext<'_>) -> String {
    let mut out = String::new();
    let revision = plan
        .revision
        .as_deref()
        .map(|r| code(&r[..r.len().min(12)]))
        .unwrap_or_else(|| "the working tree (uncommitted changes)".to_string());
    let _ = writeln!(
        out,
        "### shoal plan: cluster {} at {revision}\n",
        code(context.cluster)
    );
    let s = &plan.summary;
    if plan.is_empty() {
        let _ = writeln!(out, "**No changes.** The cluster matches {revision}.\n");
    } else {
        let _ = writeln!(
            out,
            "**Plan: {} to add, {} to change, {} to destroy.**\n",
            s.add, s.change, s.destroy
        );
    }
    if !plan.saw_everything() {
        let _ = writeln!(
            out,
            "> **Not everything could be seen**: this plan covers only what answered.\n>"
        );
        for part in &plan.unseen {
            let _ = writeln!(out, "> - {}: {}", cell(&part.what), cell(&part.why));
        }
        out.push('\n');
    }
    if let Some(missing) = &context.missing_applied {
        if !missing.is_empty() {
            let _ = writeln!(
                out,
                "> **This branch is behind the cluster**: the applied revision has {} commit(s) it lacks; applying it would undo them:\n>",
                missing.len()
            );
            for line in missing {
                let _ = writeln!(out, "> - {}", cell(line));
            }
            out.push('\n');
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "**Warnings**\n");
        for warning in &plan.warnings {
            let warning = warning.to_string();
            let warning = warning.strip_prefix("warning: ").unwrap_or(&warning);
            let _ = writeln!(out, "- {}", cell(warning));
        }
        out.push('\n');
    }
    if !plan.is_empty() {
        render_steps(&mut out, plan);
    }
    render_footer(&mut out, plan);
    out
}

fn render_steps(out: &mut String, plan: &Plan) {
    let _ = writeln!(out, "| # | | action | target | reason |");
    let _ = writeln!(out, "|---:|:---:|---|---|---|");
    for step in &plan.steps {
        let after = after(step).map(|a| format!(" {a}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}{} | {}{} |",
            step.id,
            code(symbol(step)),
            step.action().as_str(),
            code(&step.target),
            cell(&extra(step)),
            cell(&step.reason.to_string()),
            after
        );
    }
    out.push('\n');
    for step in &plan.steps {
        let changes = step.op.changes();
        if changes.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<details><summary>#{} {} <code>{}</code>: {} field(s)</summary>\n\n```diff",
            step.id,
            step.action().as_str(),
            step.target.replace('<', "&lt;"),
            changes.len()
        );
        for change in changes {
            let _ = writeln!(out, "@@ {} @@", change.path);
            for (tag, text) in change_lines(change) {
                let mark = match tag {
                    ChangeTag::Delete => '-',
                    ChangeTag::Insert => '+',
                    ChangeTag::Equal => ' ',
                };
                // A line of three backticks would end the block early.
                let _ = writeln!(out, "{mark}{}", text.replace("```", "'''"));
            }
        }
        let _ = writeln!(out, "```\n\n</details>\n");
    }
}

fn render_footer(out: &mut String, plan: &Plan) {
    let _ = writeln!(out, "---");
    match (&plan.revision, plan.is_empty()) {
        (_, true) => {
            let _ = writeln!(out, "Nothing to apply.");
        }
        (Some(revision), false) => {
            let _ = writeln!(
                out,
                "To apply exactly this plan: `shoal plan --rev {revision} --out plan.json`, then `shoal apply plan.json` (refused as stale when the cluster or the files changed since). A watcher following the branch applies it once merged."
            );
        }
        (None, false) => {
            let _ = writeln!(
                out,
                "Made from uncommitted files: commit them, then `shoal plan --rev <commit> --out plan.json` and `shoal apply plan.json`."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table_or_the_code_block() {
        assert_eq!(cell("a | b\nc"), "a \\| b c");
        assert_eq!(code("x`y"), "`x'y`");
    }
}
