//! Which Debian archive this machine uses, read from its apt sources: the deb822 files
//! (`/etc/apt/sources.list.d/*.sources`) and the one-line format (`/etc/apt/sources.list`,
//! `*.list`). Pure: the callers read the files.

/// The archive used when the machine names none.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// One `deb` source: where the archive is and which suites it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The archive's root URL, without a trailing `/`.
    pub uri: String,
    /// The suites named with it.
    pub suites: Vec<String>,
}

/// The `deb` sources of a deb822 `.sources` file (stanzas with `Enabled: no` left out).
pub fn parse_deb822(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        let mut last = String::new();
        for line in stanza.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let (key, value) = if line.starts_with([' ', '\t']) {
                (last.as_str(), line.trim())
            } else if let Some((key, value)) = line.split_once(':') {
                last = key.trim().to_ascii_lowercase();
                (last.as_str(), value.trim())
            } else {
                continue;
            };
            let words = value.split_whitespace().map(str::to_string);
            match key {
                "types" => types.extend(words),
                "uris" => uris.extend(words),
                "suites" => suites.extend(words),
                "enabled" => enabled = !value.eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") {
            sources.extend(uris.into_iter().map(|uri| Source {
                uri: uri.trim_end_matches('/').to_string(),
                suites: suites.clone(),
            }));
        }
    }
    sources
}

/// The `deb` lines of a one-line sources file (`deb [options] URI SUITE COMPONENT...`).
pub fn parse_one_line(text: &str) -> Vec<Source> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            let rest = match rest.strip_prefix('[') {
                Some(options) => options.split_once(']')?.1,
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?;
            let suite = words.next()?;
            Some(Source {
                uri: uri.trim_end_matches('/').to_string(),
                suites: vec![suite.to_string()],
            })
        })
        .collect()
}

/// The Debian archive among `sources`: the first whose path ends in `/debian` and serves a
/// suite that is not a security one; `None` when there is none (another distribution).
pub fn debian_archive(sources: &[Source]) -> Option<String> {
    sources
        .iter()
        .find(|s| {
            s.uri.ends_with("/debian")
                && (s.uri.starts_with("http://") || s.uri.starts_with("https://"))
                && s.suites.iter().any(|suite| !suite.contains("security"))
        })
        .map(|s| s.uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's `/etc/apt/sources.list.d/debian.sources`.
    const DEBIAN_SOURCES: &str = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn deb822_sources_name_the_archive() {
        let sources = parse_deb822(DEBIAN_SOURCES);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            debian_archive(&sources).as_deref(),
            Some("http://deb.debian.org/debian")
        );
    }

    #[test]
    fn disabled_and_source_only_stanzas_are_left_out() {
        let text = "Types: deb-src\nURIs: http://a.example/debian\nSuites: sid\n\nTypes: deb\nEnabled: no\nURIs: http://b.example/debian\nSuites: sid\n\nTypes: deb deb-src\nURIs: https://c.example/debian/\nSuites: trixie\n";
        let sources = parse_deb822(text);
        assert_eq!(
            debian_archive(&sources).as_deref(),
            Some("https://c.example/debian")
        );
    }

    #[test]
    fn one_line_sources_with_options_are_read() {
        let text = "# comment\ndeb-src http://x.example/debian sid main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ trixie main contrib\ndeb http://security.debian.org/debian-security trixie-security main\n";
        let sources = parse_one_line(text);
        assert_eq!(sources.len(), 2);
        assert_eq!(
            debian_archive(&sources).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn another_distribution_names_no_debian_archive() {
        let sources = parse_one_line("deb http://archive.ubuntu.com/ubuntu noble main\n");
        assert_eq!(debian_archive(&sources), None);
    }
}
