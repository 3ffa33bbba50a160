//! `shoal env`'s output: shell statements that both `eval $(shoal env M)` (unquoted, as
//! docker-machine users type it) and `eval "$(shoal env M)"` run as written.
//!
//! Unquoted, the shell splits the output on blanks and newlines and `eval` joins the words with
//! single spaces, so every line ends up on one line: each statement ends with `;`, the
//! comments come last (a `#` swallows what follows it), and every value is written so that
//! neither the splitting nor the pathname expansion that follows it can change it.

use std::fmt::Write as _;

/// Every variable `shoal env` may set: `--unset` clears them all together, since a
/// `DOCKER_TLS_VERIFY` left without its `DOCKER_HOST` sends the docker CLI to
/// tcp://localhost:2376.
pub const ENV_VARIABLES: [&str; 4] = [
    "DOCKER_TLS_VERIFY",
    "DOCKER_HOST",
    "DOCKER_CERT_PATH",
    "DOCKER_MACHINE_NAME",
];

/// The statements that set `exports` and unset the other variables of [`ENV_VARIABLES`] (but
/// `DOCKER_MACHINE_NAME`, which only docker-machine's own exports set), followed by the
/// comment that shows `command`, the command that printed them.
pub fn render_env(exports: &[(String, String)], command: &str) -> String {
    let mut out = String::new();
    let stale: Vec<&str> = ENV_VARIABLES
        .iter()
        .copied()
        .filter(|v| *v != "DOCKER_MACHINE_NAME" && !exports.iter().any(|(name, _)| name == v))
        .collect();
    if !stale.is_empty() {
        let _ = writeln!(out, "unset {};", stale.join(" "));
    }
    for (name, value) in exports {
        let _ = writeln!(out, "export {name}={};", shell_quote(value));
    }
    out.push_str(&hint(command));
    out
}

/// The statement that unsets every variable of [`ENV_VARIABLES`], and the comment that shows
/// `command`.
pub fn render_unset(command: &str) -> String {
    format!("unset {};\n{}", ENV_VARIABLES.join(" "), hint(command))
}

/// docker-machine's closing comment; last, so that unquoted it comments out nothing else.
fn hint(command: &str) -> String {
    format!("# Run this command to configure your shell:\n# eval $({command})\n")
}

/// `value` as one shell word that means the same after `eval` whether the output was quoted or
/// not: as it is when it holds only plain characters; single-quoted when its only blanks are
/// lone spaces (splitting and joining gives each back) and it has no pattern character, quote
/// or backslash; else
/// through `printf` with octal escapes, so that the word holds no blank and no pattern
/// character at all. A trailing newline of the value is lost in that last form.
pub fn shell_quote(value: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/:._-@=,+%^".contains(&b);
    if !value.is_empty() && value.bytes().all(plain) {
        return value.to_string();
    }
    let lone_spaces = !value.contains("  ")
        && value
            .chars()
            .all(|c| c == ' ' || !(c.is_whitespace() || c.is_control()));
    // Pattern characters, and those that make a word a pattern in some bash versions.
    let pattern = value.contains(['*', '?', '[', '\\', '\'']);
    if lone_spaces && !pattern {
        return format!("'{value}'");
    }
    let mut format = String::new();
    for b in value.bytes() {
        if plain(b) && b != b'%' {
            format.push(b as char);
        } else {
            let _ = write!(format, "\\{b:03o}");
        }
    }
    format!("\"$(printf '{format}')\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What bash's `$DOCKER_HOST`, `$DOCKER_CERT_PATH` and `$DOCKER_TLS_VERIFY` (`-` when
    /// unset) are after `eval` of `output`, quoted or not, in a shell where they were set.
    fn after_eval(output: &str, quoted: bool) -> Vec<String> {
        let eval = if quoted {
            r#"eval "$(printf '%s' "$1")""#
        } else {
            r#"eval $(printf '%s' "$1")"#
        };
        let script = format!(
            "cd \"$2\"; export DOCKER_HOST=old DOCKER_CERT_PATH=old DOCKER_TLS_VERIFY=old; {eval}; \
             printf '%s\\0' \"${{DOCKER_HOST--}}\" \"${{DOCKER_CERT_PATH--}}\" \"${{DOCKER_TLS_VERIFY--}}\""
        );
        // Files that a pattern in an unquoted word could match, and nullglob, which would
        // remove a word that matches nothing.
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b", "DOCKER_HOST=x"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let out = Command::new("bash")
            .args(["-O", "nullglob", "-c", &script, "bash", output])
            .arg(dir.path())
            .output()
            .expect("bash");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "bash: {}\n{output}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(str::to_string)
            .collect()
    }

    fn exports(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_dind_socket_is_set_and_the_tls_variables_unset_by_either_eval() {
        let output = render_env(
            &exports(&[("DOCKER_HOST", "unix:///run/shoal/app-m/docker.sock")]),
            "shoal env --repo . m",
        );
        for quoted in [false, true] {
            assert_eq!(
                after_eval(&output, quoted),
                ["unix:///run/shoal/app-m/docker.sock", "-", "-"],
                "quoted: {quoted}\n{output}"
            );
        }
    }

    #[test]
    fn every_statement_ends_with_a_semicolon_and_the_comment_comes_last() {
        let output = render_env(
            &exports(&[
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_HOST", "tcp://10.0.0.7:2376"),
            ]),
            "shoal env --repo . m",
        );
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(
            lines,
            [
                "unset DOCKER_CERT_PATH;",
                "export DOCKER_TLS_VERIFY=1;",
                "export DOCKER_HOST=tcp://10.0.0.7:2376;",
                "# Run this command to configure your shell:",
                "# eval $(shoal env --repo . m)",
            ]
        );
    }

    #[test]
    fn values_with_blanks_quotes_and_patterns_survive_either_eval() {
        for value in [
            "/home/me/My Projects/certs",
            "/home/me/two  spaces/and\ta tab",
            "it's \"quoted\" $HOME `id`",
            "/certs/*",
            "tcp://[::1]:2376",
            "a\nb",
            " leading and trailing ",
            "100%",
            "back\\slash",
            "ünïcode",
            "~/certs",
            "it's",
            "",
        ] {
            let output = render_env(
                &exports(&[
                    ("DOCKER_TLS_VERIFY", "1"),
                    ("DOCKER_HOST", "tcp://h:2376"),
                    ("DOCKER_CERT_PATH", value),
                ]),
                "shoal env m",
            );
            for quoted in [false, true] {
                assert_eq!(
                    after_eval(&output, quoted),
                    ["tcp://h:2376", value, "1"],
                    "quoted: {quoted}\n{output}"
                );
            }
        }
    }

    #[test]
    fn unset_clears_every_variable_by_either_eval() {
        let output = render_unset("shoal env --unset");
        for quoted in [false, true] {
            assert_eq!(after_eval(&output, quoted), ["-", "-", "-"], "{output}");
        }
    }

    #[test]
    fn a_hint_with_a_newline_stays_a_comment() {
        let command = format!("shoal env --repo {} m", shell_quote("/tmp/a\ntouch x"));
        let output = render_env(&exports(&[("DOCKER_HOST", "unix:///s")]), &command);
        assert_eq!(output.lines().count(), 4, "{output}");
        for quoted in [false, true] {
            assert_eq!(after_eval(&output, quoted)[0], "unix:///s");
        }
    }
}
