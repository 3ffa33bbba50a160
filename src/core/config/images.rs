//! The `images:` block of `machines.yml` (DESIGN §1, §9): per image repository, a `semver`
//! range or `digest: true`, and an optional `tags:` regular expression, read into
//! [`ImageTrack`]s with every problem located.

use crate::images::policy::{Follow, ImageTrack, TagFilter};
use crate::model::reference::Reference;
use crate::yaml::decode::Ctx;
use crate::yaml::Node;

/// The keys of one policy.
const KEYS: &[&str] = &["semver", "digest", "tags"];

/// Reads `images:`: a mapping from repository (`localhost:5001/app`) to its policy.
pub fn read(ctx: &mut Ctx, node: &Node) -> Vec<ImageTrack> {
    let Some(entries) = ctx.mapping(node, "images") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = format!("images.{}", entry.key);
        match Reference::parse(&entry.key) {
            Ok(reference)
                if reference.digest.is_none()
                    && !entry.key.ends_with(&format!(":{}", reference.tag)) => {}
            _ => {
                ctx.error_help(
                    entry.key_pos,
                    format!("`{}` in `images` is not an image repository", entry.key),
                    "name the repository without a tag or digest, e.g. `localhost:5001/app`",
                );
                continue;
            }
        }
        let Some(fields) = ctx.fields(&entry.value, &path, KEYS, false) else {
            continue;
        };
        let semver = fields.get("semver");
        let digest = fields
            .get("digest")
            .and_then(|n| ctx.bool(n, &format!("{path}.digest")).map(|on| (n, on)));
        let follow = match (semver, digest) {
            (Some(range_node), Some((_, true))) => {
                ctx.error_help(
                    range_node.pos,
                    format!("`{path}` has both `semver` and `digest: true`"),
                    "keep one: `semver: \"^1.2\"` follows versions, `digest: true` follows the written tag's digest",
                );
                continue;
            }
            (Some(range_node), _) => {
                let Some(written) = ctx.string(range_node, &format!("{path}.semver")) else {
                    continue;
                };
                match semver::VersionReq::parse(&written) {
                    Ok(range) => Follow::Semver { range, written },
                    Err(e) => {
                        ctx.error_help(
                            range_node.pos,
                            format!("`{path}.semver` `{written}` is not a version range: {e}"),
                            "write a range such as \"^1.2\", \"~1.4.0\" or \">=2, <3\"",
                        );
                        continue;
                    }
                }
            }
            (None, Some((_, true))) => Follow::Digest,
            (None, _) => {
                ctx.error_help(
                    entry.key_pos,
                    format!("`{path}` has neither `semver` nor `digest: true`"),
                    "add `semver: \"^1.2\"` (the highest matching tag) or `digest: true` (the written tag's digest)",
                );
                continue;
            }
        };
        let tags = match fields.get("tags") {
            None => None,
            Some(tags_node) => {
                let Some(pattern) = ctx.string(tags_node, &format!("{path}.tags")) else {
                    continue;
                };
                match regex::Regex::new(&pattern) {
                    Ok(re) => Some(TagFilter(re)),
                    Err(e) => {
                        let first = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("")
                            .trim()
                            .to_string();
                        ctx.error_help(
                            tags_node.pos,
                            format!("`{path}.tags` `{pattern}` is not a regular expression: {first}"),
                            "write a regular expression (Rust `regex` syntax), e.g. '^1\\.[0-9]+\\.[0-9]+$'",
                        );
                        continue;
                    }
                }
            }
        };
        out.push(ImageTrack {
            repository: entry.key.clone(),
            pos: entry.key_pos,
            follow,
            tags,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::machines;
    use crate::config::MemSource;
    use crate::diag::{Diagnostic, Severity};
    use crate::images::policy::Follow;

    fn run(text: &str) -> (machines::Machines, Vec<Diagnostic>) {
        let source = MemSource::new("repo", vec![("machines.yml", text)]);
        let mut diags = Vec::new();
        let out = machines::load(&source, &mut diags);
        (out, diags)
    }

    fn shown(diags: &[Diagnostic]) -> String {
        diags.iter().map(|d| format!("{d}\n")).collect()
    }

    #[test]
    fn reads_semver_digest_and_tags() {
        let (out, diags) = run(
            "images:\n  localhost:5001/app:\n    semver: \"^1.2\"\n    tags: '^v?1\\.'\n  nginx:\n    digest: true\n",
        );
        assert!(diags.is_empty(), "{}", shown(&diags));
        assert_eq!(out.images.len(), 2);
        assert_eq!(out.images[0].repository, "localhost:5001/app");
        assert_eq!(out.images[0].describe(), "semver ^1.2, tags /^v?1\\./");
        assert_eq!(out.images[0].pos.line, 2);
        assert_eq!(out.images[1].follow, Follow::Digest);
    }

    #[test]
    fn problems_are_located() {
        let (out, diags) = run(
            "images:\n  localhost:5001/app:\n    semver: \"^1.2\"\n    digest: true\n  localhost:5001/b:\n    semver: \"not a range\"\n  localhost:5001/c:\n    semver: ^1\n    tags: \"(\"\n  localhost:5001/d:\n    semvr: ^1\n  localhost:5001/e:1.0:\n    semver: ^1\n  localhost:5001/f:\n    digest: false\n",
        );
        assert!(out.images.is_empty(), "{:?}", out.images);
        assert!(diags.iter().all(|d| d.severity == Severity::Error));
        let lines: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.column)).collect();
        assert_eq!(
            lines,
            [
                (3, 13),
                (6, 13),
                (9, 11),
                (11, 5),
                (10, 3),
                (12, 3),
                (14, 3)
            ],
            "{}",
            shown(&diags)
        );
        let text = shown(&diags);
        assert!(text.contains("both `semver` and `digest: true`"), "{text}");
        assert!(text.contains("is not a version range"), "{text}");
        assert!(text.contains("is not a regular expression"), "{text}");
        assert!(text.contains("did you mean `semver`?"), "{text}");
        assert!(text.contains("not an image repository"), "{text}");
        assert!(
            text.contains("neither `semver` nor `digest: true`"),
            "{text}"
        );
    }
}
