//! Variables: `${VAR}` interpolation of compose values, the repository's `.env` file, and the
//! services' `env_file`s.

use super::decode::Ctx;
use super::{Node, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The variables interpolation reads: the process environment first, then `.env`
/// (the environment wins, as in docker compose).
#[derive(Clone, Debug, Default)]
pub struct Vars {
    /// The process environment.
    pub env: BTreeMap<String, String>,
    /// The repository's `.env` file.
    pub dotenv: BTreeMap<String, String>,
}

impl Vars {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .map(String::as_str)
    }
}

/// The result of interpolating one string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpolated {
    /// The text with variables replaced.
    pub text: String,
    /// Variables that were used without being set (they became empty strings).
    pub unset: Vec<String>,
}

/// Replaces `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
/// `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` in `text`. Defaults and alternatives
/// may themselves hold variables. The error is the message to show.
pub fn interpolate(text: &str, vars: &Vars) -> Result<Interpolated, String> {
    let mut out = Interpolated {
        text: String::with_capacity(text.len()),
        unset: Vec::new(),
    };
    substitute(text, text, vars, &mut out)?;
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn invalid(whole: &str) -> String {
    format!("invalid interpolation format in `{whole}`: write `$$` for a literal `$`")
}

fn substitute(text: &str, whole: &str, vars: &Vars, out: &mut Interpolated) -> Result<(), String> {
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.text.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let next = after.chars().next();
        match next {
            Some('$') => {
                out.text.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_len = braced_len(&after[1..]).ok_or_else(|| invalid(whole))?;
                expand_braced(&after[1..1 + body_len], whole, vars, out)?;
                rest = &after[1 + body_len + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
                let name = &after[..len];
                match vars.get(name) {
                    Some(value) => out.text.push_str(value),
                    None => out.unset.push(name.to_string()),
                }
                rest = &after[len..];
            }
            _ => return Err(invalid(whole)),
        }
    }
    out.text.push_str(rest);
    Ok(())
}

/// Length of the body of `${...}` (after the `{`), up to the matching `}`.
fn braced_len(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn expand_braced(
    body: &str,
    whole: &str,
    vars: &Vars,
    out: &mut Interpolated,
) -> Result<(), String> {
    let name_len = body.find(|c| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..name_len];
    if !name.starts_with(is_name_start) {
        return Err(invalid(whole));
    }
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let operator_and_word = &body[name_len..];
    let (operator, word) = [":-", "-", ":?", "?", ":+", "+"]
        .iter()
        .find_map(|op| operator_and_word.strip_prefix(op).map(|w| (*op, w)))
        .unwrap_or(("", operator_and_word));
    match operator {
        "" if word.is_empty() => match value {
            Some(v) => out.text.push_str(v),
            None => out.unset.push(name.to_string()),
        },
        ":-" if set_nonempty => out.text.push_str(value.unwrap_or_default()),
        "-" if value.is_some() => out.text.push_str(value.unwrap_or_default()),
        ":-" | "-" => substitute(word, whole, vars, out)?,
        ":?" | "?" if set_nonempty || (operator == "?" && value.is_some()) => {
            out.text.push_str(value.unwrap_or_default())
        }
        ":?" | "?" => {
            let mut message = Interpolated {
                text: String::new(),
                unset: Vec::new(),
            };
            substitute(word, whole, vars, &mut message)?;
            return Err(format!(
                "required variable {name} is missing a value: {}",
                message.text
            ));
        }
        ":+" if set_nonempty => substitute(word, whole, vars, out)?,
        "+" if value.is_some() => substitute(word, whole, vars, out)?,
        ":+" | "+" => {}
        _ => return Err(invalid(whole)),
    }
    Ok(())
}

/// Interpolates every scalar value (not the keys) of a tree, recording problems in `ctx`:
/// an unset variable is a warning (once per variable), a failed `${VAR:?message}` an error.
pub fn interpolate_tree(node: &mut Node, vars: &Vars, ctx: &mut Ctx) {
    let mut warned = BTreeSet::new();
    walk(node, vars, ctx, &mut warned);
}

fn walk(node: &mut Node, vars: &Vars, ctx: &mut Ctx, warned: &mut BTreeSet<String>) {
    match &mut node.value {
        Value::Null => {}
        Value::Scalar(scalar) => {
            if !scalar.text.contains('$') {
                return;
            }
            match interpolate(&scalar.text, vars) {
                Ok(done) => {
                    scalar.text = done.text;
                    for name in done.unset {
                        if warned.insert(name.clone()) {
                            ctx.warn_help(
                                node.pos,
                                format!("variable {name} is not set, using an empty string"),
                                format!("set {name} in the environment or in .env, or write a default: ${{{name}:-value}}"),
                            );
                        }
                    }
                }
                Err(message) => {
                    ctx.error(node.pos, message);
                    ctx.quiet.insert(node.pos);
                }
            }
        }
        Value::Seq(items) => {
            for item in items {
                walk(item, vars, ctx, warned);
            }
        }
        Value::Map(entries) => {
            for entry in entries {
                walk(&mut entry.value, vars, ctx, warned);
            }
        }
    }
}

/// A problem in an env file: 1-based line and the message.
pub type LineError = (usize, String);

/// Parses a `.env` file: `KEY=VALUE` lines, `#` comments, an optional `export ` prefix,
/// values optionally in single (literal) or double quotes (with `\n`, `\t`, `\"`, `\\` escapes),
/// and ` # comments` after unquoted values. As in docker compose, unquoted and double-quoted
/// values may reference variables (`${A}`, `${A:-default}`): the process environment `env`
/// first, then the values set on earlier lines; single-quoted values are literal.
pub fn parse_dotenv(
    text: &str,
    env: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<LineError>) {
    let mut vars = BTreeMap::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            errors.push((line_no, format!("expected KEY=VALUE, found `{line}`")));
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| is_name_char(c) || c == '.' || c == '-') {
            errors.push((line_no, format!("`{key}` is not a variable name")));
            continue;
        }
        let value = value.trim_start();
        let expanded = dotenv_value(value).and_then(|text| {
            if value.starts_with('\'') || !text.contains('$') {
                return Ok(text);
            }
            let known = Vars {
                env: env.clone(),
                dotenv: vars.clone(),
            };
            interpolate(&text, &known).map(|done| done.text)
        });
        match expanded {
            Ok(value) => {
                vars.insert(key.to_string(), value);
            }
            Err(message) => errors.push((line_no, message)),
        }
    }
    (vars, errors)
}

fn dotenv_value(value: &str) -> Result<String, String> {
    let after_quote = |rest: &str| -> Result<(), String> {
        let rest = rest.trim();
        if rest.is_empty() || rest.starts_with('#') {
            Ok(())
        } else {
            Err(format!("unexpected `{rest}` after the closing quote"))
        }
    };
    if let Some(body) = value.strip_prefix('\'') {
        let end = body.find('\'').ok_or("missing closing `'`")?;
        after_quote(&body[end + 1..])?;
        return Ok(body[..end].to_string());
    }
    if let Some(body) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    after_quote(&body[i + 1..])?;
                    return Ok(out);
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(other) => {
                        if other == '$' {
                            out.push('$');
                        } else if other != '"' && other != '\\' {
                            out.push('\\');
                        }
                        out.push(other);
                    }
                    None => out.push('\\'),
                },
                _ => out.push(c),
            }
        }
        return Err("missing closing `\"`".to_string());
    }
    let value = match value.find(" #").or_else(|| value.find("\t#")) {
        Some(at) => &value[..at],
        None => value,
    };
    Ok(value.trim_end().to_string())
}

/// Parses a service's `env_file` as the docker CLI does: `KEY=VALUE` lines taken verbatim
/// (no quote handling), `#` comments, and a bare `KEY` taken from `vars` when set there.
/// Returns the `KEY=VALUE` pairs in file order.
pub fn parse_env_file(text: &str, vars: &Vars) -> Result<Vec<(String, String)>, LineError> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() {
            return Err((line_no, format!("no variable name on line `{line}`")));
        }
        if key.contains([' ', '\t']) {
            return Err((line_no, format!("variable `{key}` contains whitespace")));
        }
        match value {
            Some(value) => out.push((key.to_string(), value.to_string())),
            None => {
                if let Some(value) = vars.get(key) {
                    out.push((key.to_string(), value.to_string()));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut env = BTreeMap::new();
        env.insert("TAG".to_string(), "1.2".to_string());
        env.insert("EMPTY".to_string(), String::new());
        env.insert("WINS".to_string(), "env".to_string());
        let mut dotenv = BTreeMap::new();
        dotenv.insert("FROM_FILE".to_string(), "file".to_string());
        dotenv.insert("WINS".to_string(), "dotenv".to_string());
        Vars { env, dotenv }
    }

    fn text(s: &str) -> String {
        interpolate(s, &vars()).unwrap().text
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(text("web:$TAG"), "web:1.2");
        assert_eq!(text("web:${TAG}-x"), "web:1.2-x");
        assert_eq!(text("$FROM_FILE"), "file");
        assert_eq!(text("$WINS"), "env");
        assert_eq!(text("cost $$5 and $${TAG}"), "cost $5 and ${TAG}");
        assert_eq!(text("no vars"), "no vars");
    }

    #[test]
    fn defaults() {
        assert_eq!(text("${NOPE:-d}"), "d");
        assert_eq!(text("${EMPTY:-d}"), "d");
        assert_eq!(text("${NOPE-d}"), "d");
        assert_eq!(text("${EMPTY-d}"), "");
        assert_eq!(text("${TAG:-d}"), "1.2");
        assert_eq!(text("${NOPE:-${TAG}}"), "1.2");
        assert_eq!(text("${NOPE:-a:b}"), "a:b");
    }

    #[test]
    fn alternatives() {
        assert_eq!(text("${TAG:+yes}"), "yes");
        assert_eq!(text("${EMPTY:+yes}"), "");
        assert_eq!(text("${EMPTY+yes}"), "yes");
        assert_eq!(text("${NOPE+yes}"), "");
    }

    #[test]
    fn required() {
        let err = interpolate("${NOPE:?set NOPE please}", &vars()).unwrap_err();
        assert_eq!(
            err,
            "required variable NOPE is missing a value: set NOPE please"
        );
        assert!(interpolate("${EMPTY:?x}", &vars()).is_err());
        assert_eq!(text("${EMPTY?x}"), "");
        assert!(interpolate("${NOPE?x}", &vars()).is_err());
        assert_eq!(text("${TAG:?x}"), "1.2");
    }

    #[test]
    fn unset_is_reported() {
        let done = interpolate("a${NOPE}b$ALSO_NOPE", &vars()).unwrap();
        assert_eq!(done.text, "ab");
        assert_eq!(done.unset, ["NOPE", "ALSO_NOPE"]);
        assert!(interpolate("${NOPE:-x}", &vars()).unwrap().unset.is_empty());
    }

    #[test]
    fn invalid_formats() {
        assert!(interpolate("price: $ 5", &vars()).is_err());
        assert!(interpolate("${TAG", &vars()).is_err());
        assert!(interpolate("${1A}", &vars()).is_err());
        assert!(interpolate("${TAG!x}", &vars()).is_err());
        assert!(interpolate("trailing $", &vars()).is_err());
    }

    #[test]
    fn dotenv() {
        let (vars, errors) = parse_dotenv(
            "# comment\nA=1\nexport B = two \nC=\"x\\ny\" # c\nD='lit $X'\nE=v # note\nbroken\nF=\"open\n",
            &BTreeMap::new(),
        );
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two");
        assert_eq!(vars["C"], "x\ny");
        assert_eq!(vars["D"], "lit $X");
        assert_eq!(vars["E"], "v");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].0, 7);
        assert_eq!(errors[1].0, 8);
    }

    #[test]
    fn dotenv_values_reference_earlier_ones_and_the_environment() {
        let env = BTreeMap::from([("HOME_DIR".to_string(), "/home/u".to_string())]);
        let (vars, errors) = parse_dotenv(
            "A=1\nB=${A}-x\nC=\"$B and ${NOPE:-d}\"\nD='${A}'\nE=${HOME_DIR}/data\nF=\"\\$A\"\nG=${LATER}\nLATER=2\nH=${A:?needed}\nI=${NOPE:?set NOPE}\n",
            &env,
        );
        assert_eq!(vars["B"], "1-x");
        assert_eq!(vars["C"], "1-x and d");
        assert_eq!(vars["D"], "${A}");
        assert_eq!(vars["E"], "/home/u/data");
        assert_eq!(vars["F"], "$A");
        assert_eq!(vars["G"], "");
        assert_eq!(vars["H"], "1");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, 10);
    }

    #[test]
    fn env_file_is_verbatim() {
        let pairs = parse_env_file("# c\nA=\"quoted\"\n  B=2\nTAG\nUNSET\n", &vars()).unwrap();
        assert_eq!(
            pairs,
            [
                ("A".to_string(), "\"quoted\"".to_string()),
                ("B".to_string(), "2".to_string()),
                ("TAG".to_string(), "1.2".to_string()),
            ]
        );
        assert!(parse_env_file("BAD KEY=1\n", &vars()).is_err());
    }
}
