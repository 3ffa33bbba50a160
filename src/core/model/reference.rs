//! Image references, the one parser of them: checked as the docker CLI checks them before a
//! deploy (lowercase path components, tag and digest syntax) and normalised as
//! `distribution/reference` does: `nginx:1.27` is `docker.io/library/nginx:1.27`, a first
//! component with a `.` or `:` (or `localhost`) names a registry, the tag defaults to `latest`.

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The registry host (`docker.io`, `registry.example.com:5000`).
    pub domain: String,
    /// The repository path in the registry (`library/nginx`).
    pub path: String,
    /// The tag (`latest` when none is written).
    pub tag: String,
    /// The digest, when the reference is pinned.
    pub digest: Option<String>,
}

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

impl Reference {
    /// Parses and checks `reference`; the error says what is wrong with it.
    pub fn parse(reference: &str) -> Result<Reference, String> {
        check_syntax(reference)?;
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_string())),
            None => (reference, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(at) if !rest[at..].contains('/') => (&rest[..at], &rest[at + 1..]),
            _ => (rest, "latest"),
        };
        if name.is_empty() || tag.is_empty() {
            return Err(format!("invalid image reference `{reference}`"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
            None => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        // distribution/reference's splitDockerDomain: Docker Hub written out is Docker Hub, and
        // its one-component names are official images (`docker.io/x` is `library/x`).
        let domain = if domain == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            domain
        };
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        Ok(Reference {
            domain,
            path,
            tag: tag.to_string(),
            digest,
        })
    }

    /// The host the registry API answers on (Docker Hub's is `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.domain
        }
    }

    /// Whether the registry is reached over plain HTTP: loopback registries, as the Docker
    /// Engine treats `127.0.0.0/8` and `localhost` as insecure registries.
    pub fn plain_http(&self) -> bool {
        let host = self
            .domain
            .rsplit_once(':')
            .map_or(self.domain.as_str(), |(host, _)| host);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

/// `written` pinned to `digest` as the docker CLI writes it: `nginx:1.27@sha256:…`.
pub fn pinned(written: &str, digest: &str) -> String {
    let unpinned = written.split_once('@').map_or(written, |(name, _)| name);
    format!("{unpinned}@{digest}")
}

/// Checks the syntax of an image reference (`[registry[:port]/]name[:tag][@digest]`), as the
/// docker CLI does before deploying.
fn check_syntax(image: &str) -> Result<(), String> {
    let invalid = || format!("invalid image reference `{image}`");
    if image.len() == 64 && image.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(());
    }
    let (name_and_tag, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let (algorithm, hex) = digest.split_once(':').ok_or_else(invalid)?;
        let algorithm_ok = algorithm.starts_with(|c: char| c.is_ascii_alphabetic())
            && algorithm
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.'));
        if !algorithm_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid());
        }
    }
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        let tag_ok = tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !tag_ok {
            return Err(format!("invalid tag in image reference `{image}`"));
        }
    }
    if name.is_empty() || name.len() > 255 {
        return Err(invalid());
    }
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components[0];
    let has_domain = components.len() > 1
        && (first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first);
    if has_domain {
        // `[fc00::1]:5000`: an IPv6 address in brackets, then the port.
        let (host_ok, port) = match first.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((address, rest)) => (
                !address.is_empty() && address.chars().all(|c| c.is_ascii_hexdigit() || c == ':'),
                rest.strip_prefix(':').unwrap_or(rest),
            ),
            None => {
                let (host, port) = first.split_once(':').unwrap_or((first, ""));
                let host_ok = !host.is_empty()
                    && host.split('.').all(|part| {
                        !part.is_empty()
                            && !part.starts_with('-')
                            && !part.ends_with('-')
                            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    });
                (host_ok, port)
            }
        };
        let port_ok = port.chars().all(|c| c.is_ascii_digit()) && !(first.ends_with(':'));
        if !host_ok || !port_ok {
            return Err(invalid());
        }
        components.remove(0);
    }
    for component in components {
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "invalid image reference `{image}`: repository name must be lowercase"
            ));
        }
        if !path_component_ok(component) {
            return Err(invalid());
        }
    }
    Ok(())
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn path_component_ok(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_are_normalised_like_the_docker_cli() {
        for (text, domain, path, tag) in [
            ("nginx", "docker.io", "library/nginx", "latest"),
            ("nginx:1.27", "docker.io", "library/nginx", "1.27"),
            (
                "library/nginx:1.25-alpine",
                "docker.io",
                "library/nginx",
                "1.25-alpine",
            ),
            ("grafana/grafana:11", "docker.io", "grafana/grafana", "11"),
            (
                "docker.io/grafana",
                "docker.io",
                "library/grafana",
                "latest",
            ),
            ("index.docker.io/team/app:2", "docker.io", "team/app", "2"),
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000", "app", "1"),
            (
                "registry.example.com/shop/api",
                "registry.example.com",
                "shop/api",
                "latest",
            ),
            (
                "registry.example.com:5000/team/app:v1.2",
                "registry.example.com:5000",
                "team/app",
                "v1.2",
            ),
            ("localhost/app:2", "localhost", "app", "2"),
            ("localhost:5001/app", "localhost:5001", "app", "latest"),
            (
                "ghcr.io/a/b__c/d-e--f:latest",
                "ghcr.io",
                "a/b__c/d-e--f",
                "latest",
            ),
            ("[fc00::1]:5000/app:3", "[fc00::1]:5000", "app", "3"),
            (
                "Registry.Example.com/app",
                "Registry.Example.com",
                "app",
                "latest",
            ),
        ] {
            let reference = Reference::parse(text).unwrap();
            assert_eq!(
                (
                    reference.domain.as_str(),
                    reference.path.as_str(),
                    reference.tag.as_str()
                ),
                (domain, path, tag),
                "{text}"
            );
        }
        let pinned_ref = Reference::parse(&format!("app:1@{DIGEST}")).unwrap();
        assert_eq!(pinned_ref.digest.as_deref(), Some(DIGEST));
        assert_eq!(pinned_ref.tag, "1");
    }

    #[test]
    fn what_the_docker_cli_refuses_is_refused_with_the_reason() {
        assert!(Reference::parse("MyApp:1")
            .unwrap_err()
            .contains("lowercase"));
        assert!(Reference::parse("app:-x")
            .unwrap_err()
            .contains("invalid tag"));
        for bad in [
            "",
            "app:",
            "a b",
            "app@sha256:xyz",
            "app@sha256:abc",
            "-app",
            "app-",
            "app//x",
            "app/",
            "/app",
            "app:1:2",
            "app...x",
            "registry.example.com:port/app",
            "-registry.example.com/app",
            "docker://quay.io/app",
            "$$$",
            "::",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        let long_tag = format!("app:{}", "a".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        assert!(Reference::parse(&format!("app:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn hosts_and_schemes() {
        assert_eq!(
            Reference::parse("nginx").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert!(Reference::parse("127.0.0.1:5000/app").unwrap().plain_http());
        assert!(Reference::parse("localhost:5000/app").unwrap().plain_http());
        assert!(!Reference::parse("registry.example.com/app")
            .unwrap()
            .plain_http());
        assert_eq!(pinned("app:1@sha256:old", "sha256:new"), "app:1@sha256:new");
        assert_eq!(pinned("app:1", "sha256:new"), "app:1@sha256:new");
    }
}
