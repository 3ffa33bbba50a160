//! The docs tell the truth. For README.md and every docs/*.md:
//!
//! - every relative link leads to a file that exists, and an anchor (`file.md#heading`, `#heading`)
//!   to a heading of that file;
//! - every `shoal ...` or `cargo run -- ...` command line in a ```sh or ```console block (and every
//!   `shoal ...` synopsis line in a ```text block) names a real subcommand and only flags that
//!   subcommand accepts, as the built binary's `--help` lists them;
//! - in a file holding the marker [`RUN_MARKER`], every ```console block is run: each `$ command`
//!   runs with `sh` in one copy of examples/dataapp (sim driver, the built binary first on PATH),
//!   and what it prints (standard output and error, as a pipe sees them) must be the lines shown
//!   below it. Numbers with a decimal point (durations) and long hex strings (revisions, IDs) may
//!   differ; a line `...` stands for any number of lines.
//!
//! No Docker: the sim driver only. The `checkers_catch_lies` test proves each check fails on a lie.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
/// A doc holding this line has its ```console blocks run and their output compared.
const RUN_MARKER: &str = "<!-- docs-test: run in a copy of examples/dataapp -->";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md, in a stable order.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Markdown: fenced code blocks, prose, headings
// ---------------------------------------------------------------------------------------------

/// A fenced code block: its info string's first word, the line of its first content line
/// (1-based) and its lines, with the fence's indentation removed.
struct Block {
    lang: String,
    line: usize,
    lines: Vec<String>,
}

/// The fenced code blocks of a Markdown text, and its prose lines (outside blocks) with their
/// line numbers.
fn split_markdown(text: &str) -> (Vec<Block>, Vec<(usize, String)>) {
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut open: Option<(String, usize, Block)> = None; // (fence, indent, block)
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.take() {
            Some((fence, fence_indent, mut block)) => {
                if trimmed.starts_with(&fence) && trimmed.trim_start_matches('`').trim().is_empty()
                {
                    blocks.push(block);
                } else {
                    let cut = line
                        .char_indices()
                        .take_while(|(i, c)| *i < fence_indent && c.is_whitespace())
                        .count();
                    block.lines.push(line[cut..].to_string());
                    open = Some((fence, fence_indent, block));
                }
            }
            None if trimmed.starts_with("```") => {
                let fence: String = trimmed.chars().take_while(|c| *c == '`').collect();
                let lang = trimmed[fence.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let block = Block {
                    lang,
                    line: number + 1,
                    lines: Vec::new(),
                };
                open = Some((fence, indent, block));
            }
            None => prose.push((number, line.to_string())),
        }
    }
    if let Some((_, _, block)) = open {
        blocks.push(block);
    }
    (blocks, prose)
}

/// A prose line without its inline code spans (a link inside code is not a link).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
        let after = &rest[start + ticks..];
        let fence = "`".repeat(ticks);
        match after.find(&fence) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The link targets of a prose line: inline links `[text](target)` and reference definitions
/// `[label]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        if let Some(close) = trimmed.find("]:") {
            if let Some(target) = trimmed[close + 2..].split_whitespace().next() {
                targets.push(target.to_string());
            }
        }
    }
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let target = after[..end].trim();
        let target = target.split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(['<', '>']).to_string());
        rest = &after[end.min(after.len())..];
    }
    targets
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings (GitHub numbers repeated ones: `name-1`, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let (_, prose) = split_markdown(text);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose {
        let trimmed = line.trim_start();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !trimmed[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&trimmed[hashes..].replace('`', ""));
        let count = seen.entry(base.clone()).or_insert(0);
        let anchor = if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        };
        *count += 1;
        anchors.insert(anchor);
    }
    anchors
}

/// Problems with the relative links of one doc (`text`, at `path`).
fn link_problems(path: &Path, text: &str) -> Vec<String> {
    let (_, prose) = split_markdown(text);
    let dir = path.parent().expect("a doc has a folder");
    let mut problems = Vec::new();
    for (number, line) in prose {
        for target in link_targets(&line) {
            if target.is_empty()
                || target.contains("://")
                || target.starts_with("mailto:")
                || target.starts_with("//")
            {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let at = format!("{}:{number}: link `{target}`", rel(path));
            let linked = if file.is_empty() {
                path.to_path_buf()
            } else {
                dir.join(file)
            };
            if !file.is_empty() && !linked.exists() {
                problems.push(format!("{at}: {} does not exist", linked.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if linked.extension().is_none_or(|ext| ext != "md") {
                continue;
            }
            let target_text = if file.is_empty() {
                text.to_string()
            } else {
                read(&linked)
            };
            if !anchors(&target_text).contains(anchor) {
                problems.push(format!("{at}: no heading with the anchor #{anchor}"));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Command lines, checked against the binary's --help
// ---------------------------------------------------------------------------------------------

/// What `shoal [SUBCOMMAND...] --help` lists.
#[derive(Debug, Default)]
struct Help {
    /// Flag (`--repo`, `-h`) → whether it takes a value.
    flags: BTreeMap<String, bool>,
    subcommands: BTreeSet<String>,
}

fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.trim_end_matches(':');
            continue;
        }
        let trimmed = line.trim_start();
        match section {
            "Commands" if line.starts_with("  ") => {
                if let Some(name) = trimmed.split_whitespace().next() {
                    help.subcommands.insert(name.to_string());
                }
            }
            "Options" if trimmed.starts_with('-') => {
                let words: Vec<&str> = trimmed.split_whitespace().collect();
                for (i, word) in words.iter().enumerate() {
                    let word = word.trim_end_matches(',');
                    if !word.starts_with('-') || word.len() < 2 {
                        break;
                    }
                    let (name, inline_value) = match word.split_once('=') {
                        Some((name, _)) => (name, true),
                        None => (word, false),
                    };
                    let takes_value = inline_value
                        || words
                            .get(i + 1)
                            .is_some_and(|next| next.starts_with('<') || next.starts_with("[<"));
                    help.flags.insert(name.to_string(), takes_value);
                }
            }
            _ => {}
        }
    }
    help
}

/// `shoal <path> --help`, parsed, cached per subcommand path.
struct HelpCache(HashMap<Vec<String>, Option<Help>>);

impl HelpCache {
    fn new() -> HelpCache {
        HelpCache(HashMap::new())
    }

    fn get(&mut self, path: &[String]) -> Option<&Help> {
        self.0
            .entry(path.to_vec())
            .or_insert_with(|| {
                let output = Command::new(SHOAL)
                    .args(path)
                    .arg("--help")
                    .output()
                    .expect("the shoal binary runs");
                output
                    .status
                    .success()
                    .then(|| parse_help(&String::from_utf8_lossy(&output.stdout)))
            })
            .as_ref()
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    /// `;`, `&&`, `||`, `|`, `&`, `(`, `)`, `$(`: a new command starts after it.
    Separator,
    /// `>`, `>>`, `<`, `2>&1`, ...: the next word is not an argument.
    Redirect,
}

/// Splits a shell line into words and operators (quotes kept together, not expanded).
fn tokenize(line: &str) -> Vec<Token> {
    // "$(...)" is a command substitution like $(...).
    let line = line.replace("\"$(", " $( ").replace(")\"", " ) ");
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    word.push(q);
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut tokens),
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                end_word(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Separator);
            }
            ';' | '&' | '|' | '(' | ')' => {
                end_word(&mut word, &mut in_word, &mut tokens);
                if matches!(c, '&' | '|') && chars.peek() == Some(&c) {
                    chars.next();
                }
                tokens.push(Token::Separator);
            }
            '>' | '<' => {
                // `2>`: the file descriptor is part of the redirection.
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                end_word(&mut word, &mut in_word, &mut tokens);
                while matches!(chars.peek(), Some('>') | Some('&')) {
                    chars.next();
                }
                tokens.push(Token::Redirect);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut tokens);
    tokens
}

/// The shoal argument lists of a shell line: what follows `shoal` (any path to it) or
/// `cargo run [OPTIONS] --` in each command of the line.
fn shoal_invocations(line: &str) -> Vec<Vec<String>> {
    let mut commands: Vec<Vec<String>> = vec![Vec::new()];
    let mut skip_next = false;
    for token in tokenize(line) {
        match token {
            Token::Separator => commands.push(Vec::new()),
            Token::Redirect => skip_next = true,
            Token::Word(word) if skip_next => {
                skip_next = false;
                let _ = word;
            }
            Token::Word(word) => commands.last_mut().expect("one command").push(word),
        }
    }
    let mut invocations = Vec::new();
    for words in commands {
        let mut words = words.as_slice();
        // Prefixes that run the command that follows them.
        while let Some(first) = words.first() {
            let assignment = first.contains('=') && !first.starts_with('-');
            if assignment
                || ["eval", "sudo", "exec", "time", "env", "then", "do"].contains(&first.as_str())
            {
                words = &words[1..];
            } else {
                break;
            }
        }
        let Some(program) = words.first() else {
            continue;
        };
        if program.rsplit('/').next() == Some("shoal") {
            invocations.push(words[1..].to_vec());
        } else if program == "cargo" && words.get(1).is_some_and(|w| w == "run") {
            let Some(dashes) = words.iter().position(|w| w == "--") else {
                continue;
            };
            let cargo_args = &words[2..dashes];
            let other_target = cargo_args.iter().enumerate().any(|(i, w)| {
                w.starts_with("--example")
                    || (w == "--bin" && cargo_args.get(i + 1).is_some_and(|b| b != "shoal"))
            });
            if !other_target {
                invocations.push(words[dashes + 1..].to_vec());
            }
        }
    }
    invocations
}

/// What is wrong with one shoal argument list, checked against `--help`.
fn invocation_problem(help: &mut HelpCache, args: &[String]) -> Option<String> {
    let mut path: Vec<String> = Vec::new();
    let mut i = 0;
    let mut asks_for_help = false;
    while i < args.len() {
        let arg = &args[i];
        let current = help.get(&path)?;
        let shown = if path.is_empty() {
            "shoal".to_string()
        } else {
            format!("shoal {}", path.join(" "))
        };
        if arg == "--" {
            break;
        }
        if arg.starts_with('-') && arg.len() > 1 {
            let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
            match current.flags.get(name) {
                None => {
                    let known: Vec<&str> = current.flags.keys().map(String::as_str).collect();
                    return Some(format!(
                        "`{shown}` has no flag {name} (its --help lists {})",
                        known.join(" ")
                    ));
                }
                Some(takes_value) => {
                    asks_for_help |= ["-h", "--help", "-V", "--version"].contains(&name);
                    if *takes_value && !arg.contains('=') {
                        i += 1;
                    }
                }
            }
        } else if !current.subcommands.is_empty() && path.len() < 2 {
            if !current.subcommands.contains(arg) {
                let known: Vec<&str> = current.subcommands.iter().map(String::as_str).collect();
                return Some(format!(
                    "`{shown}` has no subcommand {arg} (its --help lists {})",
                    known.join(", ")
                ));
            }
            path.push(arg.clone());
        }
        i += 1;
    }
    let needs_subcommand = help.get(&path).is_some_and(|h| !h.subcommands.is_empty());
    (needs_subcommand && !asks_for_help).then(|| "names no subcommand".to_string())
}

/// The shell lines of a block: ```sh lines, or ```console lines after a `$ ` prompt;
/// continuation lines (ending in `\`) joined. With their line numbers.
fn shell_lines(block: &Block) -> Vec<(usize, String)> {
    let console = block.lang == "console";
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (offset, line) in block.lines.iter().enumerate() {
        let number = block.line + offset;
        let text = match pending.take() {
            Some((start, mut joined)) => {
                joined.push(' ');
                joined.push_str(line.trim());
                (start, joined)
            }
            None => {
                let text = if console {
                    match line.strip_prefix("$ ") {
                        Some(command) => command,
                        None => continue,
                    }
                } else {
                    line.strip_prefix("$ ").unwrap_or(line)
                };
                (number, text.trim().to_string())
            }
        };
        match text.1.strip_suffix('\\') {
            Some(head) => pending = Some((text.0, head.to_string())),
            None => lines.push(text),
        }
    }
    lines.extend(pending);
    lines
}

/// Problems with the command lines of one doc.
fn command_problems(path: &Path, text: &str, help: &mut HelpCache) -> (Vec<String>, usize) {
    let (blocks, _) = split_markdown(text);
    let mut problems = Vec::new();
    let mut checked = 0;
    for block in &blocks {
        match block.lang.as_str() {
            "sh" | "console" | "bash" | "shell" => {
                for (number, line) in shell_lines(block) {
                    for args in shoal_invocations(&line) {
                        checked += 1;
                        if let Some(problem) = invocation_problem(help, &args) {
                            problems.push(format!("{}:{number}: `{line}`: {problem}", rel(path)));
                        }
                    }
                }
            }
            // Synopsis lines (`shoal plan [--repo DIR] [--json]`): the subcommand and every flag.
            "text" | "" => {
                for (offset, line) in block.lines.iter().enumerate() {
                    // Output lines start with "shoal " too; a synopsis names flags.
                    let Some(rest) = line.trim_start().strip_prefix("shoal ") else {
                        continue;
                    };
                    if !rest.contains("--") {
                        continue;
                    }
                    checked += 1;
                    let number = block.line + offset;
                    let mut args: Vec<String> = Vec::new();
                    if let Some(sub) = rest.split_whitespace().next() {
                        args.push(sub.to_string());
                    }
                    for word in rest.split(|c: char| c.is_whitespace() || "[]|".contains(c)) {
                        if word.starts_with("--") && word.len() > 2 {
                            args.push(word.trim_end_matches([',', '.', ':']).to_string());
                        }
                    }
                    // Flags in a synopsis stand alone: check each name, never a value.
                    let sub: Vec<String> = args.iter().take(1).cloned().collect();
                    let problem = invocation_problem(help, &sub)
                        .filter(|p| p != "names no subcommand")
                        .or_else(|| {
                            args[1..].iter().find_map(|flag| {
                                let known = help.get(&sub).map(|h| h.flags.contains_key(flag));
                                (known == Some(false))
                                    .then(|| format!("`shoal {}` has no flag {flag}", sub[0]))
                            })
                        });
                    if let Some(problem) = problem {
                        problems.push(format!(
                            "{}:{number}: `{}`: {problem}",
                            rel(path),
                            line.trim()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    (problems, checked)
}

// ---------------------------------------------------------------------------------------------
// Console sessions, run for real on the sim driver
// ---------------------------------------------------------------------------------------------

/// Replaces what changes from run to run: numbers with a decimal point (durations, seconds)
/// and hex strings of 12 or more characters holding a digit (revisions, IDs, digests).
fn normalize(line: &str) -> String {
    let chars: Vec<char> = line.trim_end().chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let hex_len = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        let boundary = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if boundary
            && hex_len >= 12
            && chars[i..i + hex_len].iter().any(|c| c.is_ascii_digit())
            && chars
                .get(i + hex_len)
                .is_none_or(|c| !c.is_ascii_alphanumeric())
        {
            out.push_str("<hex>");
            i += hex_len;
            continue;
        }
        if chars[i].is_ascii_digit() {
            let int = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if chars.get(i + int) == Some(&'.')
                && chars.get(i + int + 1).is_some_and(|c| c.is_ascii_digit())
            {
                let frac = chars[i + int + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                out.push_str("<n>");
                i += int + 1 + frac;
                continue;
            }
            out.extend(&chars[i..i + int]);
            i += int;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn trim_blank(lines: &[String]) -> &[String] {
    let start = lines
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(lines.len());
    let end = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(start, |e| e + 1);
    &lines[start..end]
}

/// Whether `actual` is what `expected` shows (`...` standing for any lines).
fn output_matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual.split_first().is_some_and(|(line, more)| {
            normalize(first) == normalize(line) && output_matches(rest, more)
        }),
    }
}

/// The commands of a console block with the output shown below each, and their line numbers.
fn console_steps(block: &Block) -> Vec<(usize, String, Vec<String>)> {
    let mut steps: Vec<(usize, String, Vec<String>)> = Vec::new();
    for (offset, line) in block.lines.iter().enumerate() {
        match line.strip_prefix("$ ") {
            Some(command) => steps.push((block.line + offset, command.to_string(), Vec::new())),
            None => match steps.last_mut() {
                Some(step) => step.2.push(line.clone()),
                None => panic!(
                    "a console block's first line must be a `$ ` command (line {})",
                    block.line + offset
                ),
            },
        }
    }
    steps
}

/// Copies examples/dataapp's files (not a `.shoal` folder a earlier run left) into `dir`.
fn copy_example(dir: &Path) {
    for entry in std::fs::read_dir(root().join("examples/dataapp")).expect("examples/dataapp") {
        let path = entry.expect("an entry").path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().expect("a name"))).expect("copy");
        }
    }
}

/// Runs `command` with `sh` in `dir`, the built shoal first on PATH; standard output and
/// error as one pipe sees them.
fn run_shell(dir: &Path, command: &str) -> Vec<String> {
    let bin = Path::new(SHOAL).parent().expect("a folder");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&1\n{command}"))
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("SHOAL_LOG")
        .env_remove("RUST_LOG")
        .env_remove("SHOAL_AGE_KEY")
        .env_remove("SHOAL_AGE_KEY_FILE")
        .output()
        .expect("sh runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs the console blocks of one doc in a fresh copy of examples/dataapp; the mismatches.
fn session_problems(path: &Path, text: &str) -> (Vec<String>, usize) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    copy_example(dir.path());
    let (blocks, _) = split_markdown(text);
    let mut problems = Vec::new();
    let mut ran = 0;
    for block in blocks.iter().filter(|b| b.lang == "console") {
        for (number, command, expected) in console_steps(block) {
            ran += 1;
            let actual = run_shell(dir.path(), &command);
            let expected = trim_blank(&expected);
            let actual = trim_blank(&actual);
            if !output_matches(expected, actual) {
                problems.push(format!(
                    "{}:{number}: `{command}` printed\n{}\n--- but the doc shows ---\n{}\n",
                    rel(path),
                    actual.join("\n"),
                    expected.join("\n")
                ));
            }
        }
    }
    (problems, ran)
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn relative_links_lead_to_files_and_headings() {
    let mut problems = Vec::new();
    for path in doc_files() {
        problems.extend(link_problems(&path, &read(&path)));
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn command_lines_name_real_subcommands_and_flags() {
    let mut help = HelpCache::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for path in doc_files() {
        let (found, count) = command_problems(&path, &read(&path), &mut help);
        problems.extend(found);
        checked += count;
    }
    assert!(
        checked > 20,
        "only {checked} command lines found: is the parser broken?"
    );
    assert!(
        problems.is_empty(),
        "command lines the binary does not accept:\n{}",
        problems.join("\n")
    );
}

#[test]
fn shown_output_is_what_the_sim_prints() {
    let mut problems = Vec::new();
    let mut ran = 0;
    let mut plans = 0;
    for path in doc_files() {
        let text = read(&path);
        if !text.lines().any(|l| l.trim() == RUN_MARKER) {
            continue;
        }
        let (found, count) = session_problems(&path, &text);
        problems.extend(found);
        ran += count;
        plans += text
            .lines()
            .filter(|l| l.starts_with("$ shoal plan"))
            .count();
    }
    assert!(
        plans > 0,
        "no doc shows a `$ shoal plan` that this test runs"
    );
    assert!(ran > 0, "no console block was run");
    assert!(
        problems.is_empty(),
        "docs show output the binary does not print:\n{}",
        problems.join("\n")
    );
}

/// Each checker fails on a lie: a broken link or anchor, an unknown subcommand or flag, and
/// output the binary does not print.
#[test]
fn checkers_catch_lies() {
    let docs = root().join("docs");
    let fake = docs.join("fake.md");
    let text = "# Title\n\nSee [the README](../README.md), [gone](no-such-file.md), \
                [bad anchor](../README.md#no-such-heading), [here](#title), [there](#nowhere).\n\
                `[in code](nowhere.md)`\n";
    let problems = link_problems(&fake, text);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("no-such-file.md"));
    assert!(problems[1].contains("#no-such-heading"));
    assert!(problems[2].contains("#nowhere"));

    let mut help = HelpCache::new();
    let text = "```sh\nshoal plan --repo x --json\nshoal plan --jsn\ncargo run -- aply --yes\n\
                eval $(shoal env --unset)\nX=1 shoal status --json 2>&1 | jq .\n\
                shoal sim kill-machine vm-worker2 --force\ncargo run --example plan_figures -- --quick\n```\n\
                ```text\nshoal apply [--yes] [--no-such-flag]\n```\n";
    let (problems, checked) = command_problems(&fake, text, &mut help);
    assert_eq!(checked, 7, "{problems:#?}");
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[0].contains("has no flag --jsn"), "{}", problems[0]);
    assert!(
        problems[1].contains("has no subcommand aply"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].contains("has no flag --force"),
        "{}",
        problems[2]
    );
    assert!(problems[3].contains("--no-such-flag"), "{}", problems[3]);

    let text = format!(
        "{RUN_MARKER}\n```console\n$ shoal validate\nValid: cluster dataapp, 3 machine(s), 1 stack(s), 1 service(s).\n\
         $ shoal plan --detailed-exitcode; echo $?\n...\nPlan: 6 to add, 0 to change, 0 to destroy.\n2\n```\n"
    );
    let (problems, ran) = session_problems(&fake, &text);
    assert_eq!(ran, 2);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("2 machine(s)"), "{}", problems[0]);
}

#[test]
fn normalizing_keeps_what_matters() {
    assert_eq!(normalize("done in 0.0s"), normalize("done in 12.3s"));
    assert_eq!(normalize("\"seconds\": 0.000485678,"), "\"seconds\": <n>,");
    assert_eq!(normalize("revision 3f2c1e0aa1b2c3d4e5f6"), "revision <hex>");
    assert_ne!(normalize("5/5 healthy"), normalize("3/5 healthy"));
    assert_eq!(normalize("dataapp_dataservice"), "dataapp_dataservice");
}
