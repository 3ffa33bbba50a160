//! Rewriting image references in a compose file's text, in place: only the characters of the
//! scalar that change (the tag or the digest) are replaced, so comments, quoting, anchors and
//! layout stay as the user wrote them. The scalar is found at the position the YAML layer gives
//! it, and checked to hold the expected reference verbatim before anything is changed: a scalar
//! written across lines or with escapes is refused rather than guessed at.

use crate::yaml::Pos;

/// One change: the scalar at `pos` that reads `from` becomes `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// Where the scalar starts (its opening quote, when quoted).
    pub pos: Pos,
    /// The reference as written.
    pub from: String,
    /// The new reference.
    pub to: String,
}

/// Why an edit could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: the image `{from}` is not written there as one plain or quoted scalar on one line ({why}), so it is not rewritten: write it as `image: {from}`")]
pub struct RewriteError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The reference expected there.
    pub from: String,
    /// What was found instead.
    pub why: String,
}

/// `text` with every edit made. Edits at the same position (an anchored scalar that several
/// services alias) are made once; edits at one position that disagree are refused.
pub fn rewrite(file: &str, text: &str, edits: &[Edit]) -> Result<String, RewriteError> {
    let mut spans: Vec<(usize, usize, &str)> = Vec::new();
    let mut done: Vec<&Edit> = Vec::new();
    for edit in edits {
        if let Some(same) = done.iter().find(|d| d.pos == edit.pos) {
            if same.to != edit.to || same.from != edit.from {
                return Err(error(
                    file,
                    edit,
                    "two services want different references there",
                ));
            }
            continue;
        }
        done.push(edit);
        let start = scalar_start(text, edit.pos)
            .ok_or_else(|| error(file, edit, "the position is outside the file"))?;
        let rest = &text[start..];
        let (quote, body) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &rest[1..]),
            _ => (None, rest),
        };
        let content_start = start + (rest.len() - body.len());
        if !body.starts_with(edit.from.as_str()) {
            let found: String = body.chars().take_while(|c| *c != '\n').collect();
            return Err(error(file, edit, &format!("found `{found}`")));
        }
        let after = body[edit.from.len()..].chars().next();
        let ends = match quote {
            Some(q) => after == Some(q),
            None => after.is_none_or(|c| matches!(c, ' ' | '\t' | '\r' | '\n' | ',' | '}' | ']')),
        };
        if !ends {
            return Err(error(file, edit, "the scalar goes on past the reference"));
        }
        // Only the differing middle is replaced: the shared repository name stays untouched.
        let prefix = common_prefix(&edit.from, &edit.to);
        let suffix = common_suffix(&edit.from[prefix..], &edit.to[prefix..]);
        let replaced_from = content_start + prefix;
        let replaced_to = content_start + edit.from.len() - suffix;
        spans.push((
            replaced_from,
            replaced_to,
            &edit.to[prefix..edit.to.len() - suffix],
        ));
    }
    spans.sort_by_key(|(from, _, _)| *from);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (from, to, new) in spans {
        out.push_str(&text[at..from]);
        out.push_str(new);
        at = to;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

fn error(file: &str, edit: &Edit, why: &str) -> RewriteError {
    RewriteError {
        file: file.to_string(),
        line: edit.pos.line,
        column: edit.pos.column,
        from: edit.from.clone(),
        why: why.to_string(),
    }
}

/// The byte offset of the 1-based line and character column `pos` in `text`.
fn scalar_start(text: &str, pos: Pos) -> Option<usize> {
    let line_start = if pos.line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(pos.line - 2)?.0 + 1
    };
    let line = &text[line_start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let offset = match line.char_indices().nth(pos.column.checked_sub(1)?) {
        Some((offset, _)) => offset,
        None => return None,
    };
    Some(line_start + offset)
}

/// The length in bytes of the longest common prefix, at a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

/// The length in bytes of the longest common suffix, at a character boundary.
fn common_suffix(a: &str, b: &str) -> usize {
    a.chars()
        .rev()
        .zip(b.chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::sites::sites;

    const FILE: &str = "# the app stack\nx-app: &app-image \"localhost:5001/app:1.2.0\"   # pinned by shoal\nservices:\n  app:\n    image: *app-image\n  worker:\n    image: *app-image\n  web:\n    image: 'localhost:5001/web:1.2.0' # quoted\n  db:\n    image:    localhost:5001/db:1.2.0\n    environment:\n      VERSION: \"1.2.0\"\n";

    fn edits_for(text: &str, from: &str, to: &str) -> Vec<Edit> {
        let (found, _) = sites("c.yml", text.as_bytes());
        found
            .into_iter()
            .filter(|s| s.image == from)
            .map(|s| Edit {
                pos: s.pos,
                from: s.image,
                to: to.to_string(),
            })
            .collect()
    }

    /// The lines of `a` and `b` that differ.
    fn changed_lines<'t>(a: &'t str, b: &'t str) -> Vec<(&'t str, &'t str)> {
        a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect()
    }

    #[test]
    fn only_the_tag_changes_in_a_commented_quoted_anchored_file() {
        let edits = edits_for(FILE, "localhost:5001/app:1.2.0", "localhost:5001/app:1.3.0");
        assert_eq!(edits.len(), 2, "both aliases point at the anchor");
        let out = rewrite("c.yml", FILE, &edits).unwrap();
        assert_eq!(out, FILE.replacen("app:1.2.0", "app:1.3.0", 1));
        assert_eq!(
            changed_lines(FILE, &out),
            [(
                "x-app: &app-image \"localhost:5001/app:1.2.0\"   # pinned by shoal",
                "x-app: &app-image \"localhost:5001/app:1.3.0\"   # pinned by shoal"
            )]
        );
        let quoted = edits_for(
            FILE,
            "localhost:5001/web:1.2.0",
            "localhost:5001/web:1.10.0",
        );
        let plain = edits_for(FILE, "localhost:5001/db:1.2.0", "localhost:5001/db:1.2.1");
        let both: Vec<Edit> = quoted.into_iter().chain(plain).collect();
        let out = rewrite("c.yml", FILE, &both).unwrap();
        assert_eq!(
            changed_lines(FILE, &out),
            [
                (
                    "    image: 'localhost:5001/web:1.2.0' # quoted",
                    "    image: 'localhost:5001/web:1.10.0' # quoted"
                ),
                (
                    "    image:    localhost:5001/db:1.2.0",
                    "    image:    localhost:5001/db:1.2.1"
                )
            ]
        );
        assert!(out.contains("VERSION: \"1.2.0\""));
    }

    #[test]
    fn a_digest_is_added_after_the_tag() {
        let text = "services:\n  app:\n    image: localhost:5001/app:main # follows main\n";
        let edits = edits_for(
            text,
            "localhost:5001/app:main",
            "localhost:5001/app:main@sha256:ab",
        );
        let out = rewrite("c.yml", text, &edits).unwrap();
        assert_eq!(
            out,
            "services:\n  app:\n    image: localhost:5001/app:main@sha256:ab # follows main\n"
        );
    }

    #[test]
    fn a_scalar_that_does_not_hold_the_reference_verbatim_is_refused() {
        let folded = "services:\n  app:\n    image: \"localhost:5001/\\\n      app:1.2.0\"\n";
        let edits = edits_for(
            folded,
            "localhost:5001/app:1.2.0",
            "localhost:5001/app:1.3.0",
        );
        assert_eq!(edits.len(), 1);
        let error = rewrite("c.yml", folded, &edits).unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.to_string().contains("c.yml:3:"), "{error}");
        let stale = Edit {
            pos: Pos {
                line: 99,
                column: 1,
            },
            from: "a:1".into(),
            to: "a:2".into(),
        };
        assert!(rewrite("c.yml", folded, &[stale]).is_err());
        let beyond = Edit {
            pos: Pos {
                line: 3,
                column: 400,
            },
            from: "a:1".into(),
            to: "a:2".into(),
        };
        assert!(rewrite("c.yml", folded, &[beyond]).is_err());
    }

    #[test]
    fn multibyte_text_before_the_scalar_keeps_columns_right() {
        let text = "services:\n  app: {labels: {é: ü}, image: localhost:5001/app:1.2.0}\n";
        let edits = edits_for(text, "localhost:5001/app:1.2.0", "localhost:5001/app:1.3.0");
        assert_eq!(
            rewrite("c.yml", text, &edits).unwrap(),
            text.replace("1.2.0", "1.3.0")
        );
        let text = "services:\n  é:\n    image: \"localhost:5001/app:1.2.0\"\n";
        let edits = edits_for(text, "localhost:5001/app:1.2.0", "localhost:5001/app:1.3.0");
        assert_eq!(
            rewrite("c.yml", text, &edits).unwrap(),
            text.replace("1.2.0", "1.3.0")
        );
    }
}
