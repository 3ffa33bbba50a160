//! The API version of each engine: negotiated once per connection, then sent in every path.
//!
//! bollard 0.21.1 builds `/v1.53<path>` and then joins the absolute path onto it, which drops
//! the prefix (`src/uri.rs`, fussybeaver/bollard#736): every request goes out unversioned
//! (`/info`), and the daemon answers in its own newest version. Upstream deprecated unversioned
//! paths. So shoal negotiates as the docker CLI does (one unversioned probe, `GET /version`,
//! then the lower of the engine's version and bollard's), and a request modifier puts
//! `/v<version>` in front of every later path: a 20.10 engine is spoken to as API 1.41, 26.1
//! as 1.45, 28.5 as 1.51. Plain reads ([`super::raw`]) use [`versioned_path`].

use bollard::{BollardRequest, ClientVersion, Docker, API_DEFAULT_VERSION};
use hyper::Uri;

/// The version to speak with an engine whose `GET /_ping` named `pinged` in its `Api-Version`
/// header: the lower of it and bollard's own, as the docker CLI agrees on one; `None` when it
/// named none that reads as a version (then `GET /version` is asked, see [`negotiated`]).
pub(crate) fn agreed(pinged: Option<&str>) -> Option<ClientVersion> {
    let (major, minor) = pinged?.trim().split_once('.')?;
    let pinged = ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    };
    let ours = *API_DEFAULT_VERSION;
    let key = |v: &ClientVersion| (v.major_version, v.minor_version);
    Some(if key(&pinged) < key(&ours) {
        pinged
    } else {
        ours
    })
}

/// Negotiates the API version with the engine behind `docker` (one unversioned `GET
/// /version`), and returns the client sending that version in every later request's path.
///
/// # Errors
///
/// bollard's error when the engine does not answer or gives no version.
pub(crate) async fn negotiated(docker: Docker) -> Result<Docker, bollard::errors::Error> {
    Ok(pinned(docker.negotiate_version().await?))
}

/// `docker` sending its client version in every request's path, without asking the engine:
/// for an engine whose version was negotiated before.
pub(crate) fn pinned(docker: Docker) -> Docker {
    let version = docker.client_version().to_string();
    docker.with_request_modifier(move |request| with_version(request, &version))
}

/// `path_and_query` under `/v<version>`, unless it already names a version.
pub(crate) fn versioned_path(version: &str, path_and_query: &str) -> String {
    if names_a_version(path_and_query) {
        path_and_query.to_string()
    } else {
        format!("/v{version}{path_and_query}")
    }
}

/// Whether a path starts with `/v<digits>.`.
fn names_a_version(path: &str) -> bool {
    path.strip_prefix("/v")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, _)| !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()))
}

/// `request` with its path under `/v<version>`.
fn with_version(mut request: BollardRequest, version: &str) -> BollardRequest {
    let uri = request.uri().clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if names_a_version(path) {
        return request;
    }
    let Ok(path) = versioned_path(version, path).parse() else {
        return request;
    };
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(path);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::body_full;
    use hyper::body::Bytes;

    fn request(uri: &str) -> BollardRequest {
        hyper::Request::get(uri)
            .body(body_full(Bytes::new()))
            .unwrap()
    }

    #[test]
    fn the_pinged_version_is_agreed_unless_newer_than_bollards() {
        let text = |v: Option<ClientVersion>| v.map(|v| v.to_string());
        assert_eq!(text(agreed(Some("1.41"))).as_deref(), Some("1.41"));
        assert_eq!(text(agreed(Some(" 1.51\r"))).as_deref(), Some("1.51"));
        let newest = API_DEFAULT_VERSION.to_string();
        assert_eq!(text(agreed(Some("1.99"))), Some(newest.clone()));
        assert_eq!(text(agreed(Some("2.0"))), Some(newest));
        assert_eq!(text(agreed(Some("1.x"))), None);
        assert_eq!(text(agreed(Some(""))), None);
        assert_eq!(text(agreed(None)), None);
    }

    #[test]
    fn paths_carry_the_negotiated_version() {
        let sent = with_version(request("unix://2f72756e/info"), "1.41");
        assert_eq!(sent.uri().to_string(), "unix://2f72756e/v1.41/info");
        let sent = with_version(
            request("http://127.0.0.1:2375/services?status=true"),
            "1.51",
        );
        assert_eq!(
            sent.uri().to_string(),
            "http://127.0.0.1:2375/v1.51/services?status=true"
        );
        let kept = with_version(request("http://127.0.0.1:2375/v1.45/info"), "1.51");
        assert_eq!(kept.uri().to_string(), "http://127.0.0.1:2375/v1.45/info");
        assert_eq!(versioned_path("1.45", "/tasks"), "/v1.45/tasks");
        assert_eq!(versioned_path("1.45", "/volumes/x"), "/v1.45/volumes/x");
    }
}
