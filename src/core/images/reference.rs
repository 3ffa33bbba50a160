//! Image references as the docker CLI reads them (`distribution/reference`'s normalisation):
//! `nginx:1.27` is `docker.io/library/nginx:1.27`, a first component with a `.` or `:` (or
//! `localhost`) names a registry, the tag defaults to `latest`.

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
    /// Parses `reference`; `None` when it is not an image reference.
    pub fn parse(reference: &str) -> Option<Reference> {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_string())),
            None => (reference, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(at) if !rest[at..].contains('/') => (&rest[..at], &rest[at + 1..]),
            _ => (rest, "latest"),
        };
        if name.is_empty() || tag.is_empty() {
            return None;
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
        Some(Reference {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised_like_the_docker_cli() {
        for (text, domain, path, tag) in [
            ("nginx", "docker.io", "library/nginx", "latest"),
            ("nginx:1.27", "docker.io", "library/nginx", "1.27"),
            ("grafana/grafana:11", "docker.io", "grafana/grafana", "11"),
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000", "app", "1"),
            (
                "registry.example.com/shop/api",
                "registry.example.com",
                "shop/api",
                "latest",
            ),
            ("localhost/app:2", "localhost", "app", "2"),
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
        let pinned_ref = Reference::parse("app:1@sha256:abc").unwrap();
        assert_eq!(pinned_ref.digest.as_deref(), Some("sha256:abc"));
        assert!(Reference::parse("app:").is_none());
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
