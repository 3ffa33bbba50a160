//! `depends_on` (DESIGN §9): read in its list or map form (`condition: service_started |
//! service_healthy | service_completed_successfully`), then checked across the stack: every
//! service named exists, `service_completed_successfully` names a job (a service's tasks never
//! complete), and no service waits for itself through a cycle, which is spelled out with the
//! line of each of its entries.
//!
//! `docker stack deploy` ignores `depends_on` (and its v3 schema takes the list form only);
//! shoal honours it when it plans and applies ([`crate::plan::rules::depends_on`]).

use super::merge::origin;
use super::types::{ComposeFile, DependsOn, DeployMode};
use crate::diag::did_you_mean;
use crate::model::Condition;
use crate::yaml::decode::{join, Ctx};
use crate::yaml::{Node, Pos, Value};
use std::collections::BTreeMap;

/// The keys of a map-form entry.
const ENTRY_KEYS: &[&str] = &["condition", "required", "restart"];

/// Reads a service's `depends_on` at `path`; problems go to `ctx`.
pub fn read(ctx: &mut Ctx, node: &Node, path: &str) -> Vec<DependsOn> {
    let mut out: Vec<DependsOn> = Vec::new();
    match &node.value {
        Value::Map(entries) => {
            for entry in entries {
                let item = join(path, &entry.key);
                let condition = match entry.value.value {
                    Value::Null => Condition::default(),
                    _ => entry_condition(ctx, &entry.value, &item),
                };
                out.push(DependsOn {
                    service: entry.key.clone(),
                    condition,
                    pos: entry.key_pos,
                });
            }
        }
        _ => {
            for (i, item) in ctx.list(node, path).unwrap_or_default().iter().enumerate() {
                let Some(service) = ctx.string(item, &format!("{path}[{i}]")) else {
                    continue;
                };
                if out.iter().any(|d| d.service == service) {
                    ctx.error_help(
                        item.pos,
                        format!("`{path}` names `{service}` twice"),
                        "name each service once",
                    );
                    continue;
                }
                out.push(DependsOn {
                    service,
                    condition: Condition::default(),
                    pos: item.pos,
                });
            }
        }
    }
    out
}

/// The condition of a map-form entry (`db: {condition: service_healthy}`).
fn entry_condition(ctx: &mut Ctx, node: &Node, path: &str) -> Condition {
    let Some(fields) = ctx.fields(node, path, ENTRY_KEYS, false) else {
        return Condition::default();
    };
    for key in ["required", "restart"] {
        if let Some(pos) = fields.key_pos(key) {
            ctx.warn_help(
                pos,
                format!(
                    "ignoring `{path}.{key}`: shoal reads only `condition` of a `depends_on` entry"
                ),
                "remove it; every dependency named must exist in the stack",
            );
        }
    }
    let Some(n) = fields.get("condition") else {
        return Condition::default();
    };
    let names: Vec<&str> = Condition::ALL.iter().map(|c| c.as_str()).collect();
    ctx.one_of(n, &join(path, "condition"), &names)
        .and_then(|text| Condition::ALL.into_iter().find(|c| c.as_str() == text))
        .unwrap_or_default()
}

/// Checks the `depends_on` of every service of `compose` against the others.
pub fn check(ctx: &mut Ctx, compose: &ComposeFile) {
    let names: Vec<&str> = compose.services.keys().map(String::as_str).collect();
    let mut graph: BTreeMap<&str, Vec<(&str, Pos)>> = BTreeMap::new();
    for (name, service) in &compose.services {
        let edges = graph.entry(name).or_default();
        for dep in &service.depends_on {
            let Some(target) = compose.services.get(&dep.service) else {
                let help = match did_you_mean(&dep.service, names.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => {
                        "name a service of this stack (shoal orders services within a stack only)"
                            .to_string()
                    }
                };
                ctx.error_help(
                    dep.pos,
                    format!(
                        "`services.{name}.depends_on`: undefined service `{}`",
                        dep.service
                    ),
                    help,
                );
                continue;
            };
            let job = matches!(
                target.deploy.mode,
                DeployMode::ReplicatedJob | DeployMode::GlobalJob
            );
            if dep.condition == Condition::ServiceCompletedSuccessfully && !job {
                ctx.error_help(
                    dep.pos,
                    format!(
                        "`services.{name}.depends_on.{}`: `service_completed_successfully` waits for a job, but `{}` is a {} service: its tasks never complete",
                        dep.service,
                        dep.service,
                        if target.deploy.mode == DeployMode::Global { "global" } else { "replicated" },
                    ),
                    format!("give `{}` `deploy.mode: replicated-job`, or wait for `service_healthy`", dep.service),
                );
            }
            edges.push((dep.service.as_str(), dep.pos));
        }
    }
    for cycle in cycles(&graph) {
        let (_, first_pos) = cycle[0];
        let spelled: Vec<String> = cycle
            .iter()
            .map(|(name, pos)| format!("{name} (line {})", origin(pos.line).1))
            .chain(std::iter::once(cycle[0].0.to_string()))
            .collect();
        ctx.error_help(
            first_pos,
            format!("`depends_on` forms a cycle: {}", spelled.join(" -> ")),
            "a service cannot wait for itself: remove one of these entries",
        );
    }
}

/// Each cycle of `graph` once, as the services on it in order, each with the position of its
/// entry naming the next (the last names the first). Found from the services in name order.
pub fn cycles<'a>(graph: &BTreeMap<&'a str, Vec<(&'a str, Pos)>>) -> Vec<Vec<(&'a str, Pos)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = graph.keys().map(|k| (*k, Mark::New)).collect();
    let mut found = Vec::new();
    for start in graph.keys() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative depth-first search: each frame is a service and the next edge to follow.
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::OnPath);
        while let Some((node, next)) = path.last().copied() {
            let edges = graph.get(node).map(Vec::as_slice).unwrap_or_default();
            let Some((to, _)) = edges.get(next).copied() else {
                marks.insert(node, Mark::Done);
                path.pop();
                continue;
            };
            if let Some(frame) = path.last_mut() {
                frame.1 += 1;
            }
            match marks.get(to).copied() {
                Some(Mark::New) => {
                    marks.insert(to, Mark::OnPath);
                    path.push((to, 0));
                }
                Some(Mark::OnPath) => {
                    let from = path.iter().position(|(n, _)| *n == to).unwrap_or(0);
                    let cycle = path[from..]
                        .iter()
                        .map(|(n, taken)| (*n, graph[n][taken - 1].1))
                        .collect();
                    found.push(cycle);
                }
                _ => {}
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: usize) -> Pos {
        Pos { line, column: 5 }
    }

    #[test]
    fn a_cycle_is_found_once_with_each_entry() {
        let graph: BTreeMap<&str, Vec<(&str, Pos)>> = BTreeMap::from([
            ("db", vec![]),
            ("migrate", vec![("db", pos(9)), ("web", pos(10))]),
            ("web", vec![("migrate", pos(4))]),
        ]);
        let found = cycles(&graph);
        assert_eq!(found, [vec![("migrate", pos(10)), ("web", pos(4))]]);
    }

    #[test]
    fn a_service_waiting_for_itself_is_a_cycle() {
        let graph = BTreeMap::from([("web", vec![("web", pos(3))])]);
        assert_eq!(cycles(&graph), [vec![("web", pos(3))]]);
    }

    #[test]
    fn a_long_chain_and_a_long_cycle_need_no_deep_recursion() {
        let names: Vec<String> = (0..20_000).map(|i| format!("s{i:05}")).collect();
        let mut graph: BTreeMap<&str, Vec<(&str, Pos)>> = BTreeMap::new();
        for pair in names.windows(2) {
            graph.insert(&pair[0], vec![(&pair[1], pos(1))]);
        }
        graph.insert(&names[names.len() - 1], vec![]);
        assert!(cycles(&graph).is_empty());
        graph.insert(&names[names.len() - 1], vec![(&names[0], pos(2))]);
        let found = cycles(&graph);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].len(), names.len());
    }

    #[test]
    fn a_diamond_is_no_cycle() {
        let graph = BTreeMap::from([
            ("a", vec![("b", pos(1)), ("c", pos(2))]),
            ("b", vec![("d", pos(3))]),
            ("c", vec![("d", pos(4))]),
            ("d", vec![]),
        ]);
        assert!(cycles(&graph).is_empty());
    }
}
