//! Masking of secret values and credentials in what plans show, print and save, as Terraform
//! hides sensitive values (pure).
//!
//! Two kinds of values are hidden:
//! - the values of secret-looking keys ([`is_sensitive`]): `KEY=value` entries of `Env`, labels
//!   and driver options whose key holds one of [`SENSITIVE_WORDS`];
//! - credentials inside any other value, found by [`mask_words`], the one place that knows the
//!   rules: URL userinfo (`postgres://user:pass@db`), `name=value` pairs of a sensitive name
//!   (`?password=…`, `;Password=…;`, `PGPASSWORD=…`), `--*password*=…` / `--*token*=…` flags
//!   and their two-word form (`--password VALUE`), and the password options of known clients
//!   (`mysql -pVALUE`, `redis-cli -a VALUE`, ...).
//!
//! Keys named in `policy.show_values` are shown as they are. Masking is idempotent: a masked
//! value masks to itself, so a saved plan compares equal to a fresh one.

use super::model::{FieldChange, Step, StepOp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Words that make a key's value secret, matched anywhere in the key, case-insensitively.
pub const SENSITIVE_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "PRIVATE",
    "AUTH",
    "SALT",
    "SIGNATURE",
];

/// What a masked value is shown as.
pub const MASKED: &str = "(sensitive value)";
/// What a masked value that changes is shown as, on the new side.
pub const MASKED_CHANGED: &str = "(sensitive value, changed)";

/// The spec fields that are maps keyed by the user (labels, driver options, sysctls): an entry
/// whose key looks secret is hidden whole.
const USER_MAPS: &[&str] = &["Labels", "labels", "Options", "DriverOpts", "Sysctls"];
/// The spec fields that are command lines, one word per item.
const COMMAND_LINES: &[&str] = &["Args", "Command", "Test", "Entrypoint"];

/// A command-line client whose own options carry a password.
struct Client {
    /// Its program names.
    names: &'static [&'static str],
    /// Options whose value is glued to them (`-pVALUE`).
    attached: &'static [&'static str],
    /// Options whose value is the next word (`-a VALUE`).
    separate: &'static [&'static str],
}

/// The clients whose password options are masked after their name.
const CLIENTS: &[Client] = &[
    Client {
        names: &[
            "mysql",
            "mysqladmin",
            "mysqldump",
            "mysqlcheck",
            "mysqlimport",
            "mysqlshow",
            "mysqlslap",
            "mysqlpump",
            "mariadb",
            "mariadb-admin",
            "mariadb-dump",
            "mariadb-check",
            "mariadb-import",
            "mariadb-show",
            "mariadb-slap",
        ],
        // `-p` alone asks on the terminal; `-p WORD` names a database.
        attached: &["-p"],
        separate: &[],
    },
    Client {
        names: &["redis-cli", "valkey-cli", "keydb-cli"],
        attached: &["-a"],
        separate: &["-a"],
    },
    Client {
        names: &[
            "mongo",
            "mongosh",
            "mongodump",
            "mongorestore",
            "mongoexport",
            "mongoimport",
        ],
        attached: &[],
        separate: &["-p"],
    },
    Client {
        names: &["sshpass"],
        attached: &["-p"],
        separate: &["-p"],
    },
    Client {
        names: &["curl"],
        attached: &["-u"],
        separate: &["-u", "--user"],
    },
];

/// Whether the value of `key` is hidden: it holds one of [`SENSITIVE_WORDS`] and is not
/// listed in `show` (`policy.show_values` in machines.yml).
pub fn is_sensitive(key: &str, show: &[String]) -> bool {
    let upper = key.to_ascii_uppercase();
    SENSITIVE_WORDS.iter().any(|w| upper.contains(w)) && !show.iter().any(|s| s == key)
}

/// The words of a command line (`command`, `entrypoint`, a healthcheck's `test`, or a text
/// split by [`mask_text`]) with every credential replaced by `placeholder`: the one function
/// that finds credentials. A word holding spaces is a script of its own (`sh -c "..."`,
/// `CMD-SHELL`) and is masked as a text.
pub fn mask_words(words: &[String], show: &[String], placeholder: &str) -> Vec<String> {
    let mut client: Option<&Client> = None;
    let mut value_next = false;
    let mut out = Vec::with_capacity(words.len());
    for word in words {
        let bare: String = word.chars().filter(|c| !matches!(c, '"' | '\'')).collect();
        let program = bare.rsplit('/').next().unwrap_or(&bare);
        let masked = if value_next && !bare.starts_with("--") {
            value_next = false;
            hidden("", word, placeholder)
        } else if let Some(script) = mask_script(word, show, placeholder) {
            value_next = false;
            script
        } else if let Some(found) = CLIENTS.iter().find(|c| c.names.contains(&program)) {
            value_next = false;
            client = Some(found);
            word.clone()
        } else {
            let (masked, takes_value) = mask_word(word, &bare, client, show, placeholder);
            value_next = takes_value;
            masked
        };
        out.push(masked);
        if matches!(bare.as_str(), ";" | "&&" | "||" | "|" | "&") || bare.ends_with(';') {
            client = None;
        }
    }
    out
}

/// `prefix` and the placeholder in place of `value`, keeping a `;` that ends the shell command.
fn hidden(prefix: &str, value: &str, placeholder: &str) -> String {
    let end = if value.ends_with(';') { ";" } else { "" };
    format!("{prefix}{placeholder}{end}")
}

/// `word` masked as a text when it is a script of its own (`sh -c "..."`'s argument, a
/// `CMD-SHELL` line, or such a script in quotes, its quotes kept); `None` for a single word.
fn mask_script(word: &str, show: &[String], placeholder: &str) -> Option<String> {
    let spans = word_spans(word);
    if spans.len() > 1 || spans.first().is_some_and(|&span| span != (0, word.len())) {
        return Some(mask_text(word, show, placeholder));
    }
    let quote = word.chars().next().filter(|c| matches!(c, '"' | '\''))?;
    let inner = word.strip_prefix(quote)?.strip_suffix(quote)?;
    inner
        .chars()
        .any(char::is_whitespace)
        .then(|| format!("{quote}{}{quote}", mask_text(inner, show, placeholder)))
}

/// One word of a command line, masked; and whether the next word is a value to hide.
fn mask_word(
    word: &str,
    bare: &str,
    client: Option<&Client>,
    show: &[String],
    placeholder: &str,
) -> (String, bool) {
    if let Some(client) = client {
        if client.separate.contains(&bare) {
            return (word.to_string(), true);
        }
        for flag in client.attached {
            if bare.len() > flag.len() && bare.starts_with(flag) && !bare.starts_with("--") {
                let at = word.find(flag).map_or(0, |i| i + flag.len());
                return (hidden(&word[..at], word, placeholder), false);
            }
        }
    }
    if bare.starts_with('-') {
        match bare.split_once('=') {
            Some((name, _)) if is_sensitive(name, show) => {
                let at = word.find('=').map_or(word.len(), |i| i + 1);
                return (hidden(&word[..at], word, placeholder), false);
            }
            None if bare.len() > 1 && is_sensitive(bare, show) => return (word.to_string(), true),
            _ => {}
        }
    }
    (mask_inline(word, show, placeholder), false)
}

/// A free text (an environment value, a label, a shell script): its shell words masked by
/// [`mask_words`], its spacing and quoting kept.
pub fn mask_text(text: &str, show: &[String], placeholder: &str) -> String {
    let spans = word_spans(text);
    let words: Vec<String> = spans.iter().map(|&(a, b)| text[a..b].to_string()).collect();
    let masked = mask_words(&words, show, placeholder);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (&(a, b), word) in spans.iter().zip(&masked) {
        out.push_str(&text[last..a]);
        out.push_str(word);
        last = b;
    }
    out.push_str(&text[last..]);
    out
}

/// Whether `word` is a placeholder this module writes.
fn is_masked(word: &str) -> bool {
    word == MASKED || word == MASKED_CHANGED
}

/// The byte spans of the shell words of `text`: split at whitespace outside quotes, a
/// placeholder ([`MASKED`], [`MASKED_CHANGED`]) counting as part of a word.
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if quote.is_none() && c.is_whitespace() {
            if let Some(a) = start.take() {
                spans.push((a, i));
            }
            continue;
        }
        start.get_or_insert(i);
        let rest = &text[i..];
        if quote.is_none() {
            if let Some(p) = [MASKED_CHANGED, MASKED]
                .iter()
                .find(|p| rest.starts_with(**p))
            {
                let end = i + p.len();
                while chars.peek().is_some_and(|&(j, _)| j < end) {
                    chars.next();
                }
                continue;
            }
        }
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (Some('"'), '\\') => {
                chars.next();
            }
            _ => {}
        }
    }
    if let Some(a) = start {
        spans.push((a, text.len()));
    }
    spans
}

/// The credentials inside one word: URL userinfo, and `name=value` pairs of a sensitive
/// name (a whole-word assignment is hidden to its end, a pair in a query or connection
/// string to the next `&`, `;` or `,`).
fn mask_inline(word: &str, show: &[String], placeholder: &str) -> String {
    let word = mask_userinfo(word, placeholder);
    let mut out = String::with_capacity(word.len());
    let mut rest = word.as_str();
    let mut at_start = true;
    while let Some(eq) = rest.find('=') {
        let name_start = rest[..eq]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .map_or(0, |i| i + 1);
        let (prefix, name, value) = (&rest[..name_start], &rest[name_start..eq], &rest[eq + 1..]);
        let whole = at_start && prefix.chars().all(|c| matches!(c, '"' | '\''));
        let separated = whole || prefix.ends_with(['?', '&', ';', ',', ':']);
        at_start = false;
        if name.is_empty() || !separated || value.starts_with('=') || !is_sensitive(name, show) {
            out.push_str(&rest[..=eq]);
            rest = value;
            continue;
        }
        let already = [MASKED_CHANGED, MASKED]
            .into_iter()
            .find(|p| value.starts_with(p));
        let end = match already {
            Some(shown) => shown.len(),
            None if whole => value.len(),
            None => value.find(['&', ';', ',']).unwrap_or(value.len()),
        };
        if let Some(shown) = already {
            out.push_str(&rest[..=eq]);
            out.push_str(shown);
            rest = &value[end..];
            continue;
        }
        out.push_str(&rest[..=eq]);
        if end > 0 {
            out.push_str(placeholder);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// `scheme://user:password@host` with the password hidden, and an `http(s)://` userinfo
/// without a password (a token: `https://TOKEN@github.com`) hidden whole; a database's
/// `postgres://user@db` names only a user. The host follows the last `@`, so a raw `@`, `/` or
/// `:` in the password is hidden with it.
fn mask_userinfo(word: &str, placeholder: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(scheme) = rest.find("://") {
        let web = rest[..scheme]
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
            .next()
            .is_some_and(|name| {
                let name = name.to_ascii_lowercase();
                name.ends_with("http") || name.ends_with("https")
            });
        let start = scheme + 3;
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let region = &rest[..rest.find(['"', '\'']).unwrap_or(rest.len())];
        let Some(at) = region.rfind('@') else {
            continue;
        };
        let userinfo = &region[..at];
        let colon = userinfo.find(':');
        let path = userinfo.find(['/', '?', '#']);
        if path.is_some_and(|p| colon.is_none_or(|c| c > p)) || is_masked(userinfo) {
            continue;
        }
        match colon {
            Some(c) if c + 1 == at => out.push_str(userinfo),
            Some(c) => {
                if !is_masked(&userinfo[c + 1..]) {
                    out.push_str(&userinfo[..=c]);
                    out.push_str(placeholder);
                } else {
                    out.push_str(userinfo);
                }
            }
            None if web => out.push_str(placeholder),
            None => out.push_str(userinfo),
        }
        rest = &rest[at..];
    }
    out.push_str(rest);
    out
}

/// An `Env` list's `KEY=value` entries, masked: a secret-looking key's value whole, any other
/// value's credentials. An entry whose value differs from `before`'s for the same key, but
/// would look the same, shows [`MASKED_CHANGED`].
fn mask_env(items: &mut [Value], before: Option<&BTreeMap<String, String>>, show: &[String]) {
    for item in items.iter_mut() {
        let Some((key, value)) = item.as_str().and_then(|t| t.split_once('=')) else {
            continue;
        };
        if show.iter().any(|s| s == key) {
            continue;
        }
        let hide = |value: &str, placeholder: &str| {
            if is_sensitive(key, show) {
                placeholder.to_string()
            } else {
                mask_text(value, show, placeholder)
            }
        };
        let mut shown = hide(value, MASKED);
        if let Some(old) = before.and_then(|b| b.get(key)) {
            if old != value && hide(old, MASKED) == shown {
                shown = hide(value, MASKED_CHANGED);
            }
        }
        *item = Value::String(format!("{key}={shown}"));
    }
}

/// `value`, found under `key` (an entry of a user-keyed map when `in_map`), with its secret
/// values and credentials replaced by `placeholder`.
fn mask_json(
    value: &mut Value,
    key: Option<&str>,
    in_map: bool,
    show: &[String],
    placeholder: &str,
) {
    if in_map {
        let key = key.unwrap_or_default();
        if show.iter().any(|s| s == key) {
            return;
        }
        if is_sensitive(key, show) {
            if let Value::String(text) = value {
                *text = placeholder.to_string();
            }
            return;
        }
    }
    match (key, value) {
        (Some("Env"), Value::Array(items)) => mask_env(items, None, show),
        (Some(name), Value::Array(items))
            if COMMAND_LINES.contains(&name) && items.iter().all(Value::is_string) =>
        {
            let words: Vec<String> = items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            *items = mask_words(&words, show, placeholder)
                .into_iter()
                .map(Value::String)
                .collect();
        }
        (Some(name), Value::Object(map)) if USER_MAPS.contains(&name) => {
            for (k, v) in map.iter_mut() {
                mask_json(v, Some(k), true, show, placeholder);
            }
        }
        (_, Value::Object(map)) => {
            for (k, v) in map.iter_mut() {
                mask_json(v, Some(k), false, show, placeholder);
            }
        }
        (_, Value::Array(items)) => {
            for v in items {
                mask_json(v, None, false, show, placeholder);
            }
        }
        (_, Value::String(text)) => *text = mask_text(text, show, placeholder),
        _ => {}
    }
}

/// A copy of `value` (a service, network or object spec, or a map of labels, found under
/// `key`) with its secret values and credentials masked. A value that does not read back
/// after masking is shown as its default, never as it was.
pub fn masked<T: Serialize + DeserializeOwned + Default>(
    value: &T,
    key: Option<&str>,
    show: &[String],
) -> T {
    let Ok(mut json) = serde_json::to_value(value) else {
        return T::default();
    };
    mask_json(&mut json, key, false, show, MASKED);
    serde_json::from_value(json).unwrap_or_default()
}

/// Masks, in the field changes of every `update_service` step, secret values and credentials
/// (see [`mask_change`]).
pub fn mask_steps(steps: &mut [Step], show: &[String]) {
    for step in steps {
        if let StepOp::UpdateService { changes, .. } = &mut step.op {
            for change in changes.iter_mut() {
                mask_change(change, show);
            }
        }
    }
}

/// Masks the secret values and credentials of one field change. A masked value that changes
/// stays visible as changed ([`MASKED_CHANGED`] on the new side).
pub fn mask_change(change: &mut FieldChange, show: &[String]) {
    let segments: Vec<&str> = change.path.split('.').collect();
    // A user-keyed map's key may hold dots (`Labels.com.example.password`).
    let (key, in_map) = match segments
        .iter()
        .position(|s| USER_MAPS.contains(s))
        .filter(|&i| i + 1 < segments.len())
    {
        Some(i) => (
            change.path.splitn(i + 2, '.').last().unwrap_or_default(),
            true,
        ),
        None => (segments.last().copied().unwrap_or_default(), false),
    };
    if key == "Env" {
        let before = env_pairs(&change.before);
        for (side, old) in [
            (&mut change.before, None),
            (&mut change.after, Some(&before)),
        ] {
            if let Value::Array(items) = side {
                mask_env(items, old, show);
            }
        }
        return;
    }
    let raw_after = change.after.clone();
    let raw_before = change.before.clone();
    mask_json(&mut change.before, Some(key), in_map, show, MASKED);
    mask_json(&mut change.after, Some(key), in_map, show, MASKED);
    // What changed but looks the same once masked is shown as changed: item by item in lists
    // of the same length, else whole.
    match (
        &raw_before,
        &raw_after,
        &mut change.before,
        &mut change.after,
    ) {
        (Value::Array(rb), Value::Array(ra), Value::Array(mb), Value::Array(ma))
            if rb.len() == ra.len() =>
        {
            // Masked as a whole list, so that a command line keeps its context.
            let mut marked = Value::Array(ra.clone());
            mask_json(&mut marked, Some(key), in_map, show, MASKED_CHANGED);
            let Value::Array(marked) = marked else { return };
            for (i, item) in ma.iter_mut().enumerate() {
                if rb[i] != ra[i] && mb[i] == *item {
                    if let Some(shown) = marked.get(i) {
                        *item = shown.clone();
                    }
                }
            }
        }
        (_, _, before, after)
            if raw_before != raw_after && !before.is_null() && before == after =>
        {
            *after = raw_after;
            mask_json(after, Some(key), in_map, show, MASKED_CHANGED);
        }
        _ => {}
    }
}

/// The `KEY=value` entries of an `Env` list, by key.
fn env_pairs(value: &Value) -> BTreeMap<String, String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::ServiceSpec;
    use crate::plan::diff::field_changes;

    fn words(line: &[&str]) -> Vec<String> {
        let line: Vec<String> = line.iter().map(|w| w.to_string()).collect();
        mask_words(&line, &[], MASKED)
    }

    fn text(text: &str) -> String {
        mask_text(text, &[], MASKED)
    }

    #[test]
    fn url_userinfo_is_masked() {
        assert_eq!(
            text("postgres://user:pass@db/app"),
            "postgres://user:(sensitive value)@db/app"
        );
        // Percent-encoded, and raw `@`, `/` or `:` in the password: the host follows the last `@`.
        assert_eq!(
            text("postgres://user:p%40ss%3Aw@db:5432/app?sslmode=require"),
            "postgres://user:(sensitive value)@db:5432/app?sslmode=require"
        );
        assert_eq!(
            text("mysql://root:p@ss/w:rd@db/app"),
            "mysql://root:(sensitive value)@db/app"
        );
        // A userinfo without a password is often a token.
        assert_eq!(
            text("https://ghp_abc123@github.com/o/r.git"),
            "https://(sensitive value)@github.com/o/r.git"
        );
        // A user name alone; not userinfo: an `@` in the path, a URL without one.
        for plain in [
            "postgres://dataapp@db:5432/dataapp",
            "https://registry.npmjs.org/@scope/pkg",
            "http://web:8080/x",
            "a@b.c",
        ] {
            assert_eq!(text(plain), plain);
        }
        assert_eq!(
            text("--db=redis://:hunter2@cache:6379/0"),
            "--db=redis://:(sensitive value)@cache:6379/0"
        );
    }

    #[test]
    fn sensitive_pairs_in_queries_and_connection_strings_are_masked() {
        assert_eq!(
            text("jdbc:mysql://db/app?user=u&password=hunter2&ssl=true"),
            "jdbc:mysql://db/app?user=u&password=(sensitive value)&ssl=true"
        );
        assert_eq!(
            text("Server=db;User Id=sa;Password=hunter2;Encrypt=true"),
            "Server=db;User Id=sa;Password=(sensitive value);Encrypt=true"
        );
        assert_eq!(
            text("addr=10.0.0.1,username=u,password=hunter2"),
            "addr=10.0.0.1,username=u,password=(sensitive value)"
        );
        // A shell assignment is hidden to the end of its word.
        assert_eq!(
            text("PGPASSWORD=a,b;c psql -h db"),
            "PGPASSWORD=(sensitive value) psql -h db"
        );
        // Placement constraints are not assignments.
        assert_eq!(text("node.labels.auth==yes"), "node.labels.auth==yes");
        assert_eq!(text("MODE=fast"), "MODE=fast");
    }

    #[test]
    fn sensitive_flags_are_masked_in_both_forms() {
        assert_eq!(
            words(&[
                "app",
                "--db-password=hunter2",
                "--api-token",
                "t0k",
                "--verbose"
            ]),
            [
                "app",
                "--db-password=(sensitive value)",
                "--api-token",
                MASKED,
                "--verbose"
            ]
        );
        assert_eq!(
            words(&[
                "java",
                "-Dspring.datasource.password=hunter2",
                "-jar",
                "app.jar"
            ]),
            [
                "java",
                "-Dspring.datasource.password=(sensitive value)",
                "-jar",
                "app.jar"
            ]
        );
        // A flag without a value is not followed by one to hide.
        assert_eq!(
            words(&["app", "--secret-file", "--port", "80"]),
            ["app", "--secret-file", "--port", "80"]
        );
        assert_eq!(
            words(&["app", "--password", "a phrase with spaces"]),
            ["app", "--password", MASKED]
        );
        assert_eq!(
            words(&["app", "--port=80", "-v"]),
            ["app", "--port=80", "-v"]
        );
    }

    #[test]
    fn client_password_options_are_masked_after_the_client() {
        assert_eq!(
            words(&[
                "CMD",
                "mysqladmin",
                "ping",
                "-h",
                "localhost",
                "-uroot",
                "-phunter2"
            ]),
            [
                "CMD",
                "mysqladmin",
                "ping",
                "-h",
                "localhost",
                "-uroot",
                "-p(sensitive value)"
            ]
        );
        assert_eq!(
            words(&["/usr/bin/mariadb", "-p'hunter 2'", "-P3306"]),
            ["/usr/bin/mariadb", "-p(sensitive value)", "-P3306"]
        );
        // `-p` alone asks; `-p` of another program is its own.
        assert_eq!(words(&["mysql", "-p", "app"]), ["mysql", "-p", "app"]);
        assert_eq!(words(&["nc", "-p1234"]), ["nc", "-p1234"]);
        assert_eq!(
            words(&["redis-cli", "-a", "hunter2", "ping"]),
            ["redis-cli", "-a", MASKED, "ping"]
        );
        assert_eq!(
            text("curl -fsS -u admin:hunter2 http://localhost/health"),
            "curl -fsS -u (sensitive value) http://localhost/health"
        );
        // The client's options end at the shell's separators.
        assert_eq!(
            text("mysqladmin ping -phunter2; nc -p1234 x"),
            "mysqladmin ping -p(sensitive value); nc -p1234 x"
        );
    }

    #[test]
    fn scripts_are_masked_inside_words_and_quotes() {
        assert_eq!(
            words(&["CMD-SHELL", "mysqladmin ping -uroot -phunter2 || exit 1"]),
            [
                "CMD-SHELL",
                "mysqladmin ping -uroot -p(sensitive value) || exit 1"
            ]
        );
        assert_eq!(
            words(&["sh", "-c", "PGPASSWORD=hunter2 psql -h db -c 'select 1'"]),
            [
                "sh",
                "-c",
                "PGPASSWORD=(sensitive value) psql -h db -c 'select 1'"
            ]
        );
        assert_eq!(
            text("bash -c \"mysql -phunter2 -e 'select 1'\""),
            "bash -c \"mysql -p(sensitive value) -e 'select 1'\""
        );
        assert_eq!(
            text("app --password=\"two words\" --x"),
            "app --password=(sensitive value) --x"
        );
    }

    #[test]
    fn masking_is_idempotent() {
        for line in [
            "postgres://user:pass@db/app",
            "https://tok@github.com",
            "mysqladmin ping -phunter2",
            "app --password hunter2 --token=t",
            "jdbc:x://db?password=p&a=b",
            "PGPASSWORD=x psql",
        ] {
            let once = text(line);
            assert_eq!(text(&once), once, "{line}");
            let changed = mask_text(line, &[], MASKED_CHANGED);
            assert_eq!(mask_text(&changed, &[], MASKED_CHANGED), changed, "{line}");
        }
    }

    #[test]
    fn shown_keys_are_not_masked() {
        let show = ["API_KEY".to_string(), "--db-password".to_string()];
        assert!(!is_sensitive("API_KEY", &show));
        let line = ["app".to_string(), "--db-password=visible".to_string()];
        assert_eq!(mask_words(&line, &show, MASKED), line);
    }

    fn service(env: &[&str], args: &[&str], test: &[&str]) -> ServiceSpec {
        let mut spec = ServiceSpec::default();
        let container = &mut spec.task_template.container_spec;
        container.env = env.iter().map(|e| e.to_string()).collect();
        container.args = Some(args.iter().map(|e| e.to_string()).collect());
        container.healthcheck = Some(crate::model::spec::HealthConfig {
            test: test.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        });
        spec.labels.insert("db_password".into(), "hunter2".into());
        spec.labels
            .insert("com.example.dsn".into(), "redis://:hunter2@c".into());
        spec
    }

    #[test]
    fn a_whole_spec_is_masked_and_reads_back() {
        let spec = service(
            &[
                "DB_PASSWORD=hunter2",
                "DATABASE_URL=postgres://u:hunter2@db/app",
                "MODE=x",
            ],
            &["--db-password=hunter2"],
            &["CMD-SHELL", "mysqladmin ping -phunter2"],
        );
        let shown = masked(&spec, None, &[]);
        let json = serde_json::to_string(&shown).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains("DB_PASSWORD=(sensitive value)"), "{json}");
        assert!(
            json.contains("postgres://u:(sensitive value)@db/app"),
            "{json}"
        );
        assert!(json.contains("MODE=x"), "{json}");
        assert_eq!(masked(&shown, None, &[]), shown);
    }

    #[test]
    fn driver_options_are_masked_by_key_and_by_content() {
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "TaskTemplate": {
                "ContainerSpec": {"Mounts": [{"Type": "volume", "Target": "/data", "VolumeOptions": {
                    "DriverConfig": {"Name": "local", "Options": {"type": "cifs", "o": "addr=nas,username=u,password=hunter2"}}
                }}]},
                "LogDriver": {"Name": "splunk", "Options": {"splunk-token": "hunter2", "splunk-url": "https://logs:8088"}}
            }
        }))
        .unwrap();
        let json = serde_json::to_string(&masked(&spec, None, &[])).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(
            json.contains("username=u,password=(sensitive value)"),
            "{json}"
        );
        assert!(json.contains("https://logs:8088"), "{json}");
    }

    #[test]
    fn secret_looking_values_are_masked_unless_shown() {
        let mut a = ServiceSpec::default();
        a.task_template.container_spec.env = vec![
            "DB_PASSWORD=hunter2".into(),
            "API_KEY=k1".into(),
            "MODE=fast".into(),
        ];
        let mut b = a.clone();
        b.task_template.container_spec.env = vec![
            "DB_PASSWORD=hunter3".into(),
            "API_KEY=k2".into(),
            "MODE=slow".into(),
        ];
        let mut change = field_changes(&a, &b).remove(0);
        mask_change(&mut change, &["API_KEY".to_string()]);
        let text = format!("{} {}", change.before, change.after);
        assert!(!text.contains("hunter"), "{text}");
        assert!(
            text.contains("DB_PASSWORD=(sensitive value, changed)"),
            "{text}"
        );
        assert!(
            text.contains("API_KEY=k1") && text.contains("MODE=slow"),
            "{text}"
        );
    }

    #[test]
    fn credentials_in_changes_are_masked_and_shown_as_changed() {
        let a = service(
            &["DATABASE_URL=postgres://u:old-pass@db/app"],
            &["--token", "old-token", "-v"],
            &["CMD", "mysqladmin", "ping", "-pold-pass"],
        );
        let b = service(
            &["DATABASE_URL=postgres://u:new-pass@db/app"],
            &["--token", "new-token", "-v"],
            &["CMD", "mysqladmin", "ping", "-pnew-pass"],
        );
        let mut changes = field_changes(&a, &b);
        assert_eq!(changes.len(), 3, "{changes:?}");
        for change in &mut changes {
            mask_change(change, &[]);
            let text = format!("{} {}", change.before, change.after);
            assert!(!text.contains("old-") && !text.contains("new-"), "{text}");
            assert!(text.contains(MASKED_CHANGED), "{text}");
        }
        let mut label = FieldChange {
            path: "Labels.com.example.password".into(),
            before: Value::String("hunter2".into()),
            after: Value::String("hunter3".into()),
        };
        mask_change(&mut label, &[]);
        assert_eq!(label.before, Value::String(MASKED.into()));
        assert_eq!(label.after, Value::String(MASKED_CHANGED.into()));
    }
}
