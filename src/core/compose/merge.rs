//! Several compose files of one stack → one YAML tree, merged in order as `docker stack deploy
//! -c a.yml -c b.yml` merges them (the docker CLI's `cli/compose/loader/merge.go`):
//!
//! - top-level `networks`, `volumes`, `secrets` and `configs`: an entry of a later file replaces
//!   the earlier one of the same name as a whole; services merge by name;
//! - within a service, mappings merge key by key (`deploy`, `healthcheck`, ...), `environment`,
//!   `labels` and `sysctls` merge by variable whether written as a list or a mapping, scalars
//!   are replaced, and sequences are appended (`dns`, `cap_add`, `deploy.placement.constraints`,
//!   and, as the docker CLI does, `healthcheck.test`);
//! - `command` and `entrypoint` are replaced; `ports` merge by published port, `volumes` by
//!   target, `secrets` and `configs` by source, each sorted by that key;
//! - a service network's `aliases` are replaced; `logging` options merge when the driver is the
//!   same; each `ulimits` entry is replaced; a null or empty value never replaces anything.
//!
//! Every node keeps where it was written: [`tag_file`] moves the lines of the n-th file by
//! n × [`FILE_STRIDE`], and [`origin`] turns such a line back into the file and its line, so
//! that a problem in the merged tree names the file that introduced it.

use super::syntax::{parse_port, parse_volume};
use crate::yaml::{Entry, Node, Scalar, Value};
use std::collections::BTreeMap;

/// The line offset between two merged files (no accepted file has this many lines).
pub const FILE_STRIDE: usize = 1 << 24;

/// Marks every position of `node` as belonging to the `index`-th file of the stack.
pub fn tag_file(node: &mut Node, index: usize) {
    let shift = |line: &mut usize| {
        if *line > 0 {
            *line += index * FILE_STRIDE;
        }
    };
    shift(&mut node.pos.line);
    match &mut node.value {
        Value::Null | Value::Scalar(_) => {}
        Value::Seq(items) => items.iter_mut().for_each(|item| tag_file(item, index)),
        Value::Map(entries) => {
            for entry in entries {
                shift(&mut entry.key_pos.line);
                tag_file(&mut entry.value, index);
            }
        }
    }
}

/// The index of the file a tagged `line` belongs to, and its line in that file.
pub fn origin(line: usize) -> (usize, usize) {
    (line / FILE_STRIDE, line % FILE_STRIDE)
}

/// `over` merged onto `base`: two whole compose files.
pub fn merge_files(base: Node, over: Node) -> Node {
    merge_map(base, over, |key, base, over| match key {
        "services" => merge_map(base, over, |_, base, over| merge_service(base, over)),
        "networks" | "volumes" | "secrets" | "configs" => {
            merge_map(base, over, |_, base, over| replace(base, over))
        }
        _ => replace(base, over),
    })
}

/// `over` merged onto `base`: one service.
fn merge_service(base: Node, over: Node) -> Node {
    merge_map(base, over, |key, base, over| match key {
        "command" | "entrypoint" => replace(base, over),
        "ports" => merge_keyed(base, over, port_key),
        "volumes" => merge_keyed(base, over, volume_key),
        "secrets" | "configs" => merge_keyed(base, over, source_key),
        "environment" | "labels" | "sysctls" => merge_dict(base, over),
        "networks" => merge_networks(base, over),
        "logging" => merge_logging(base, over),
        "ulimits" => merge_map(base, over, |_, base, over| replace(base, over)),
        "deploy" => merge_map(base, over, |key, base, over| match key {
            "labels" => merge_dict(base, over),
            _ => merge_value(base, over),
        }),
        "healthcheck" => merge_map(base, over, |key, base, over| match key {
            "test" => merge_value(health_test(base), health_test(over)),
            _ => merge_value(base, over),
        }),
        _ => merge_value(base, over),
    })
}

/// Whether `node` is null or an empty scalar: such a value never replaces another.
fn is_empty(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Scalar(s) => s.text.is_empty(),
        _ => false,
    }
}

fn replace(base: Node, over: Node) -> Node {
    if is_empty(&over) {
        base
    } else {
        over
    }
}

/// Two mappings merged key by key with `merge` (an entry only in `over` is added); anything
/// else is replaced.
fn merge_map(base: Node, over: Node, merge: impl Fn(&str, Node, Node) -> Node + Copy) -> Node {
    let (Value::Map(mut entries), Value::Map(overs)) = (base.value.clone(), over.value.clone())
    else {
        return replace(base, over);
    };
    for entry in overs {
        match entries.iter_mut().find(|e| e.key == entry.key) {
            Some(existing) => {
                let old = std::mem::replace(&mut existing.value, null_at(&entry.value));
                existing.value = merge(&entry.key, old, entry.value);
            }
            None => entries.push(entry),
        }
    }
    Node {
        pos: base.pos,
        value: Value::Map(entries),
    }
}

fn null_at(node: &Node) -> Node {
    Node {
        pos: node.pos,
        value: Value::Null,
    }
}

/// The general rule: mappings merge, sequences append (a scalar beside a sequence counts as a
/// one-item sequence), anything else is replaced.
fn merge_value(base: Node, over: Node) -> Node {
    match (&base.value, &over.value) {
        (Value::Map(_), Value::Map(_)) => merge_map(base, over, |_, b, o| merge_value(b, o)),
        (Value::Seq(_) | Value::Scalar(_), Value::Seq(_)) | (Value::Seq(_), Value::Scalar(_))
            if !is_empty(&over) =>
        {
            let pos = base.pos;
            let mut items = into_items(base);
            items.extend(into_items(over));
            Node {
                pos,
                value: Value::Seq(items),
            }
        }
        _ => replace(base, over),
    }
}

fn into_items(node: Node) -> Vec<Node> {
    match node.value {
        Value::Seq(items) => items,
        _ => vec![node],
    }
}

/// A string `healthcheck.test` as the docker CLI reads it: `[CMD-SHELL, text]`.
fn health_test(node: Node) -> Node {
    match &node.value {
        Value::Scalar(s) if !s.text.is_empty() => Node {
            pos: node.pos,
            value: Value::Seq(vec![scalar_at(&node, "CMD-SHELL"), node.clone()]),
        },
        _ => node,
    }
}

fn scalar_at(node: &Node, text: &str) -> Node {
    Node {
        pos: node.pos,
        value: Value::Scalar(Scalar {
            text: text.to_string(),
            plain: false,
        }),
    }
}

/// A `KEY=VALUE` list turned into a mapping (a bare `KEY` maps to null); a mapping as it is.
fn as_dict(node: Node) -> Node {
    let Value::Seq(items) = &node.value else {
        return node;
    };
    let mut entries: Vec<Entry> = Vec::new();
    for item in items {
        let Value::Scalar(s) = &item.value else {
            return node;
        };
        let (key, value) = match s.text.split_once('=') {
            Some((key, value)) => (key.to_string(), scalar_at(item, value)),
            None => (s.text.clone(), null_at(item)),
        };
        entries.retain(|e| e.key != key);
        entries.push(Entry {
            key,
            key_pos: item.pos,
            value,
        });
    }
    Node {
        pos: node.pos,
        value: Value::Map(entries),
    }
}

/// `environment`-like keys: merged by variable, a later value winning (null included, as the
/// docker CLI's maps do).
fn merge_dict(base: Node, over: Node) -> Node {
    if matches!(over.value, Value::Null) {
        return base;
    }
    merge_map(as_dict(base), as_dict(over), |_, _, over| over)
}

/// A service's `networks`: a list is a mapping of nulls; a later non-null entry replaces the
/// aliases and sets the addresses it names.
fn merge_networks(base: Node, over: Node) -> Node {
    let to_map = |node: Node| -> Node {
        let Value::Seq(items) = &node.value else {
            return node;
        };
        let entries = items
            .iter()
            .filter_map(|item| match &item.value {
                Value::Scalar(s) => Some(Entry {
                    key: s.text.clone(),
                    key_pos: item.pos,
                    value: null_at(item),
                }),
                _ => None,
            })
            .collect();
        Node {
            pos: node.pos,
            value: Value::Map(entries),
        }
    };
    merge_map(to_map(base), to_map(over), |_, base, over| {
        if matches!(over.value, Value::Null) {
            return base;
        }
        let base = match base.value {
            Value::Map(entries) => Node {
                pos: base.pos,
                value: Value::Map(entries.into_iter().filter(|e| e.key != "aliases").collect()),
            },
            _ => base,
        };
        merge_map(base, over, |_, base, over| replace(base, over))
    })
}

/// `logging`: options merge when the drivers agree (or one is unset); else replaced.
fn merge_logging(base: Node, over: Node) -> Node {
    let driver = |node: &Node| {
        node.get("driver").and_then(|d| match &d.value {
            Value::Scalar(s) if !s.text.is_empty() => Some(s.text.clone()),
            _ => None,
        })
    };
    match (driver(&base), driver(&over)) {
        (Some(a), Some(b)) if a != b => replace(base, over),
        _ => merge_map(base, over, |key, base, over| match key {
            "options" => merge_map(base, over, |_, base, over| replace(base, over)),
            _ => replace(base, over),
        }),
    }
}

/// How the docker CLI keys a list it merges by key: numbers sort before text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Number(u32),
    Text(String),
    /// An item that could not be read: kept as it is, for validation to report.
    Unread(usize),
}

/// Two lists merged by `key`: an item of `over` replaces the item of `base` with its key; the
/// result is sorted by key.
fn merge_keyed(base: Node, over: Node, key: fn(&Node) -> Option<Key>) -> Node {
    let (Value::Seq(_), Value::Seq(_)) = (&base.value, &over.value) else {
        return merge_value(base, over);
    };
    let pos = base.pos;
    let mut merged = BTreeMap::new();
    for (i, item) in into_items(base)
        .into_iter()
        .chain(into_items(over))
        .enumerate()
    {
        merged.insert(key(&item).unwrap_or(Key::Unread(i)), item);
    }
    Node {
        pos,
        value: Value::Seq(merged.into_values().collect()),
    }
}

fn text_of(node: Option<&Node>) -> Option<&str> {
    match &node?.value {
        Value::Scalar(s) => Some(&s.text),
        _ => None,
    }
}

/// A port by its published port (0 when none); a short range keeps its text.
fn port_key(node: &Node) -> Option<Key> {
    match &node.value {
        Value::Scalar(s) => {
            let ports = parse_port(&s.text).ok()?.ports;
            match ports.as_slice() {
                [port] => Some(Key::Number(port.published)),
                _ => Some(Key::Text(s.text.clone())),
            }
        }
        Value::Map(_) => match text_of(node.get("published")) {
            Some(text) => text.parse().ok().map(Key::Number),
            None => Some(Key::Number(0)),
        },
        _ => None,
    }
}

/// A volume by its target.
fn volume_key(node: &Node) -> Option<Key> {
    match &node.value {
        Value::Scalar(s) => Some(Key::Text(parse_volume(&s.text).ok()?.volume.target)),
        Value::Map(_) => text_of(node.get("target")).map(|t| Key::Text(t.to_string())),
        _ => None,
    }
}

/// A secret or config by its source.
fn source_key(node: &Node) -> Option<Key> {
    match &node.value {
        Value::Scalar(s) => Some(Key::Text(s.text.clone())),
        Value::Map(_) => text_of(node.get("source")).map(|t| Key::Text(t.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn tree(text: &str) -> Node {
        yaml::parse(text.as_bytes()).unwrap().root.unwrap()
    }

    /// The files merged, compared as plain YAML with the expected tree.
    fn merged(files: &[&str]) -> serde_json::Value {
        let mut nodes = files.iter().map(|f| tree(f));
        let first = nodes.next().unwrap();
        plain(&nodes.fold(first, merge_files))
    }

    fn plain(node: &Node) -> serde_json::Value {
        match &node.value {
            Value::Null => serde_json::Value::Null,
            Value::Scalar(s) => serde_json::Value::String(s.text.clone()),
            Value::Seq(items) => items.iter().map(plain).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|e| (e.key.clone(), plain(&e.value)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    fn expect(files: &[&str], want: &str) {
        assert_eq!(merged(files), plain(&tree(want)));
    }

    #[test]
    fn mappings_merge_and_scalars_replace() {
        expect(
            &[
                "services:\n  web:\n    image: a:1\n    deploy: {replicas: 1, resources: {limits: {memory: 1G}}}\n",
                "services:\n  web:\n    image: a:2\n    deploy: {replicas: 3, resources: {limits: {cpus: '1'}}}\n  db:\n    image: pg\n",
            ],
            "services:\n  web:\n    image: a:2\n    deploy: {replicas: 3, resources: {limits: {memory: 1G, cpus: '1'}}}\n  db:\n    image: pg\n",
        );
    }

    #[test]
    fn sequences_append_but_commands_replace() {
        expect(
            &[
                "services:\n  web:\n    command: [a, b]\n    entrypoint: sh\n    dns: 1.1.1.1\n    cap_add: [NET_ADMIN]\n    deploy: {placement: {constraints: [node.role==worker]}}\n    healthcheck: {test: [CMD, a]}\n",
                "services:\n  web:\n    command: c\n    entrypoint: [bash]\n    dns: [8.8.8.8]\n    cap_add: [SYS_TIME]\n    deploy: {placement: {constraints: [node.labels.zone==a]}}\n    healthcheck: {test: b}\n",
            ],
            "services:\n  web:\n    command: c\n    entrypoint: [bash]\n    dns: [1.1.1.1, 8.8.8.8]\n    cap_add: [NET_ADMIN, SYS_TIME]\n    deploy: {placement: {constraints: [node.role==worker, node.labels.zone==a]}}\n    healthcheck: {test: [CMD, a, CMD-SHELL, b]}\n",
        );
    }

    #[test]
    fn environment_and_labels_merge_by_key_in_either_form() {
        expect(
            &[
                "services:\n  web:\n    environment: [A=1, B=2, C]\n    labels: {x: '1'}\n    deploy: {labels: [a=1]}\n",
                "services:\n  web:\n    environment: {B: '3', D: '4'}\n    labels: [y=2]\n    deploy: {labels: {a: '2'}}\n",
            ],
            "services:\n  web:\n    environment: {A: '1', B: '3', C: null, D: '4'}\n    labels: {x: '1', y: '2'}\n    deploy: {labels: {a: '2'}}\n",
        );
    }

    #[test]
    fn ports_volumes_secrets_merge_by_key_sorted() {
        expect(
            &[
                "services:\n  web:\n    ports: ['9000:80', '8080:80']\n    volumes: [data:/var/b, /host:/var/a:ro]\n    secrets: [s2, {source: s1, target: one}]\n",
                "services:\n  web:\n    ports: [{target: 81, published: 8080}]\n    volumes: [{type: volume, source: other, target: /var/b}]\n    secrets: [{source: s1, target: uno}]\n",
            ],
            "services:\n  web:\n    ports: [{target: 81, published: 8080}, '9000:80']\n    volumes: [/host:/var/a:ro, {type: volume, source: other, target: /var/b}]\n    secrets: [{source: s1, target: uno}, s2]\n",
        );
    }

    #[test]
    fn top_level_definitions_are_replaced_whole() {
        expect(
            &[
                "networks:\n  front: {driver: overlay, attachable: true}\nsecrets:\n  s: {file: a.txt}\nservices: {}\n",
                "networks:\n  front: {external: true}\n  back: {}\nsecrets:\n  s: {file: b.txt}\n",
            ],
            "networks:\n  front: {external: true}\n  back: {}\nsecrets:\n  s: {file: b.txt}\nservices: {}\n",
        );
    }

    #[test]
    fn networks_logging_ulimits_and_nulls() {
        expect(
            &[
                "services:\n  web:\n    image: a\n    networks: {front: {aliases: [x]}, back: {aliases: [y]}}\n    logging: {driver: json-file, options: {max-size: 1m}}\n    ulimits: {nofile: {soft: 1, hard: 2}, nproc: 5}\n",
                "services:\n  web:\n    image:\n    networks: [back, other]\n    logging: {options: {max-file: '3'}}\n    ulimits: {nofile: {soft: 3}}\n",
            ],
            "services:\n  web:\n    image: a\n    networks: {front: {aliases: [x]}, back: {aliases: [y]}, other: null}\n    logging: {driver: json-file, options: {max-size: 1m, max-file: '3'}}\n    ulimits: {nofile: {soft: 3}, nproc: 5}\n",
        );
        expect(
            &[
                "services:\n  web:\n    logging: {driver: json-file, options: {max-size: 1m}}\n    networks: {front: {aliases: [x]}}\n",
                "services:\n  web:\n    logging: {driver: syslog}\n    networks: {front: {ipv4_address: 10.0.0.2}}\n",
            ],
            "services:\n  web:\n    logging: {driver: syslog}\n    networks: {front: {ipv4_address: 10.0.0.2}}\n",
        );
    }

    #[test]
    fn positions_name_their_file() {
        let mut second = tree("services:\n  web:\n    image: a\n");
        tag_file(&mut second, 2);
        let web = second.get("services").unwrap().get("web").unwrap();
        assert_eq!(origin(web.get("image").unwrap().pos.line), (2, 3));
        assert_eq!(origin(7), (0, 7));
    }
}
