//! The registry HTTP API v2, just enough to resolve a tag to its digest (`HEAD
//! /v2/<name>/manifests/<tag>` for the `Docker-Content-Digest`) and to list a repository's tags
//! (`GET /v2/<name>/tags/list`, page by page), answering a `401` with the
//! challenge it names: `Bearer` (a token from the realm, asked with the credentials when there
//! are any) or `Basic`. HTTPS through rustls with the certificates this machine trusts; plain
//! HTTP for loopback registries, as the Docker Engine treats them.

use super::auth::Credentials;
use crate::model::reference::Reference;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::HeaderMap;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (a manifest or a token).
const MAX_BODY: usize = 4 * 1024 * 1024;

const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

/// Why a digest could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached or broke the connection.
    #[error("cannot reach {url}: {message}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why not.
        message: String,
    },
    /// The registry answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// What was asked.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The registry refused the credentials sent (a wrong user or password).
    #[error("{url} refused the credentials of the docker config of the user running shoal: check the user and password, then `docker login` again")]
    Refused {
        /// What was asked.
        url: String,
    },
    /// The answer could not be used.
    #[error("{0}")]
    Invalid(String),
}

/// An HTTP answer.
pub(crate) struct Answer {
    /// The status code.
    pub(crate) status: u16,
    headers: HeaderMap,
    /// The body (at most [`MAX_BODY`] bytes).
    pub(crate) body: Bytes,
}

/// The digest `reference`'s tag points to now, asked with `credentials` when the registry
/// wants them.
pub async fn resolve_digest(
    reference: &Reference,
    credentials: Option<&Credentials>,
) -> Result<String, RegistryError> {
    let url = format!("{}/manifests/{}", repository_url(reference), reference.tag);
    let accept = [("accept", MANIFEST_TYPES.to_string())];
    let (answer, authorization) = authorized("HEAD", &url, &accept, credentials).await?;
    if let Some(digest) = header(&answer.headers, "docker-content-digest") {
        return Ok(digest);
    }
    let mut headers = accept.to_vec();
    headers.extend(authorization.map(|value| ("authorization", value)));
    let full = request("GET", &url, &headers).await?;
    Ok(header(&full.headers, "docker-content-digest")
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&full.body)))))
}

/// Most pages of a tag list followed (a registry whose `Link` never ends is cut off there).
const MAX_TAG_PAGES: usize = 200;
/// Most tags kept of one repository.
const MAX_TAGS: usize = 100_000;

/// The tags of `reference`'s repository (`GET /v2/<name>/tags/list`, following the `Link:
/// <…>; rel="next"` pages), asked with `credentials` when the registry wants them.
pub async fn list_tags(
    reference: &Reference,
    credentials: Option<&Credentials>,
) -> Result<Vec<String>, RegistryError> {
    let base = repository_url(reference);
    let origin = base[..base.find("/v2/").unwrap_or(base.len())].to_string();
    let mut url = format!("{base}/tags/list");
    let mut tags = Vec::new();
    for _ in 0..MAX_TAG_PAGES {
        let (answer, _) = authorized("GET", &url, &[], credentials).await?;
        let page: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| RegistryError::Invalid(format!("{url}: the tag list is not JSON: {e}")))?;
        match &page["tags"] {
            serde_json::Value::Array(items) => {
                tags.extend(items.iter().filter_map(|t| t.as_str().map(str::to_string)))
            }
            serde_json::Value::Null => {}
            _ => {
                return Err(RegistryError::Invalid(format!(
                    "{url}: `tags` is not a list"
                )))
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(RegistryError::Invalid(format!(
                "{base}/tags/list: more than {MAX_TAGS} tags"
            )));
        }
        match header(&answer.headers, "link").and_then(|link| next_page(&link)) {
            Some(next) if next.starts_with('/') => url = format!("{origin}{next}"),
            Some(next) if next.starts_with(&origin) => url = next,
            Some(next) => {
                return Err(RegistryError::Invalid(format!(
                    "{url}: the next page `{next}` is on another server"
                )))
            }
            None => {
                tags.sort();
                tags.dedup();
                return Ok(tags);
            }
        }
    }
    Err(RegistryError::Invalid(format!(
        "{base}/tags/list: more than {MAX_TAG_PAGES} pages of tags"
    )))
}

/// `http(s)://<registry>/v2/<path>`: where the registry API serves `reference`'s repository.
fn repository_url(reference: &Reference) -> String {
    let scheme = if reference.plain_http() {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{}/v2/{}", reference.api_host(), reference.path)
}

/// The target of a `Link` header's `rel="next"` (RFC 5988, as the registry API paginates).
fn next_page(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next")
            .then(|| target.to_string())
    })
}

/// One request to the registry, answering a `401` with the challenge it names: the 200 answer
/// and the `Authorization` that won it (none when none was asked for).
async fn authorized(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    credentials: Option<&Credentials>,
) -> Result<(Answer, Option<String>), RegistryError> {
    let mut authorization: Option<String> = None;
    for attempt in 0..2 {
        let mut sent = headers.to_vec();
        if let Some(value) = &authorization {
            sent.push(("authorization", value.clone()));
        }
        let answer = request(method, url, &sent).await?;
        match answer.status {
            200 => return Ok((answer, authorization)),
            401 if attempt == 0 => {
                let challenge = header(&answer.headers, "www-authenticate").ok_or_else(|| {
                    RegistryError::Invalid(format!("{url} answered 401 without a challenge"))
                })?;
                authorization = Some(authorize(&challenge, credentials, url).await?);
            }
            401 if credentials.is_some() => {
                return Err(RegistryError::Refused {
                    url: url.to_string(),
                })
            }
            status => {
                return Err(RegistryError::Status {
                    url: url.to_string(),
                    status,
                })
            }
        }
    }
    Err(RegistryError::Status {
        url: url.to_string(),
        status: 401,
    })
}

/// The status `GET <base>/v2/` answers with (200, or 401 for a registry that wants
/// credentials): whether a registry serves at `base` (`http://127.0.0.1:5000`).
pub async fn ping(base: &str) -> Result<u16, RegistryError> {
    let url = format!("{}/v2/", base.trim_end_matches('/'));
    Ok(request("GET", &url, &[]).await?.status)
}

/// The `Authorization` value answering `challenge`.
async fn authorize(
    challenge: &str,
    credentials: Option<&Credentials>,
    url: &str,
) -> Result<String, RegistryError> {
    let (scheme, params) = parse_challenge(challenge);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => credentials
            .map(|c| format!("Basic {}", c.basic()))
            .ok_or_else(|| RegistryError::Invalid(format!("{url} needs credentials: add them with `docker login` to the docker config of the user running shoal"))),
        "bearer" => {
            let realm = params.get("realm").ok_or_else(|| {
                RegistryError::Invalid(format!("{url}: the bearer challenge names no realm"))
            })?;
            let mut query: Vec<String> = Vec::new();
            for key in ["service", "scope"] {
                if let Some(value) = params.get(key) {
                    query.push(format!("{key}={}", percent_encode(value)));
                }
            }
            let token_url = if query.is_empty() {
                realm.clone()
            } else {
                format!("{realm}{}{}", if realm.contains('?') { '&' } else { '?' }, query.join("&"))
            };
            let mut headers = Vec::new();
            if let Some(c) = credentials {
                headers.push(("authorization", format!("Basic {}", c.basic())));
            }
            let answer = request("GET", &token_url, &headers).await?;
            if answer.status == 401 && credentials.is_some() {
                return Err(RegistryError::Refused { url: realm.clone() });
            }
            if answer.status != 200 {
                return Err(RegistryError::Status {
                    url: realm.clone(),
                    status: answer.status,
                });
            }
            let json: serde_json::Value = serde_json::from_slice(&answer.body)
                .map_err(|e| RegistryError::Invalid(format!("{realm}: the token answer is not JSON: {e}")))?;
            let token = json["token"]
                .as_str()
                .or_else(|| json["access_token"].as_str())
                .ok_or_else(|| RegistryError::Invalid(format!("{realm} returned no token")))?;
            Ok(format!("Bearer {token}"))
        }
        other => Err(RegistryError::Invalid(format!(
            "{url} asks for `{other}` authentication, which shoal does not speak"
        ))),
    }
}

/// `Bearer realm="…",service="…",scope="…"` → the scheme and its parameters.
pub(crate) fn parse_challenge(challenge: &str) -> (String, BTreeMap<String, String>) {
    let (scheme, rest) = challenge
        .trim()
        .split_once(' ')
        .unwrap_or((challenge.trim(), ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start_matches([',', ' ']);
    }
    (scheme.to_string(), params)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// One HTTP/1.1 request to `url`, within [`REQUEST_TIMEOUT`].
async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
) -> Result<Answer, RegistryError> {
    tokio::time::timeout(REQUEST_TIMEOUT, send(method, url, headers))
        .await
        .map_err(|_| RegistryError::Unreachable {
            url: url.to_string(),
            message: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        })?
}

async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
) -> Result<Answer, RegistryError> {
    send_body(method, url, headers, Bytes::new()).await
}

/// One HTTP/1.1 request to an http(s) `url` with `body` (https through the system's TLS and
/// certificates, [`crate::http::open`]), its answer read whole, without a timeout: the caller
/// bounds it. Also sends notifications ([`crate::notify`]).
pub(crate) async fn send_body(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<Answer, RegistryError> {
    let unreachable = |message: String| RegistryError::Unreachable {
        url: url.to_string(),
        message,
    };
    let response = crate::http::open(method, url, headers, body)
        .await
        .map_err(|e| match e {
            crate::http::SendError::Invalid(message) => RegistryError::Invalid(message),
            crate::http::SendError::Unreachable(message) => unreachable(message),
        })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = if method == "HEAD" {
        Bytes::new()
    } else {
        let limited = http_body_util::Limited::new(response.into_body(), MAX_BODY);
        limited
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry on 127.0.0.1 that answers every request 401 with a basic challenge; its port.
    async fn refusing_registry() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn a_wrong_password_is_told_as_refused_credentials() {
        let port = refusing_registry().await;
        let reference = Reference::parse(&format!("127.0.0.1:{port}/app:1")).unwrap();
        let without = resolve_digest(&reference, None).await.unwrap_err();
        assert!(without.to_string().contains("docker login"), "{without}");
        let wrong = Credentials {
            username: "u".into(),
            password: "wrong".into(),
            identity_token: None,
            server: format!("127.0.0.1:{port}"),
        };
        let refused = resolve_digest(&reference, Some(&wrong)).await.unwrap_err();
        assert!(
            matches!(refused, RegistryError::Refused { .. }),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("refused the credentials"),
            "{refused}"
        );
    }

    /// A registry on 127.0.0.1 whose answers `answer` makes from the request line and headers;
    /// its port.
    async fn scripted_registry(answer: fn(&str) -> String) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 8192];
                let read = stream.read(&mut buffer).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buffer[..read]).to_string();
                let _ = stream.write_all(answer(&request).as_bytes()).await;
            }
        });
        port
    }

    fn json_answer(extra_headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn tags_are_listed_page_by_page_behind_basic_auth() {
        let port = scripted_registry(|request| {
            let line = request.lines().next().unwrap_or("");
            if !request.to_ascii_lowercase().contains("authorization: basic dtpwdw==") {
                return "HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string();
            }
            if line.contains("last=1.3.0") {
                json_answer("", r#"{"name":"app","tags":["latest","2.0.0"]}"#)
            } else {
                json_answer(
                    "Link: </v2/app/tags/list?n=2&last=1.3.0>; rel=\"next\"\r\n",
                    r#"{"name":"app","tags":["1.2.0","1.3.0"]}"#,
                )
            }
        })
        .await;
        let reference = Reference::parse(&format!("127.0.0.1:{port}/app:1.2.0")).unwrap();
        let credentials = Credentials {
            username: "u".into(),
            password: "pw".into(),
            identity_token: None,
            server: format!("127.0.0.1:{port}"),
        };
        let tags = list_tags(&reference, Some(&credentials)).await.unwrap();
        assert_eq!(tags, ["1.2.0", "1.3.0", "2.0.0", "latest"]);
        let without = list_tags(&reference, None).await.unwrap_err();
        assert!(without.to_string().contains("docker login"), "{without}");
    }

    #[tokio::test]
    async fn a_tag_list_that_never_ends_or_leaves_the_server_is_refused() {
        let endless = scripted_registry(|_| {
            json_answer(
                "Link: </v2/app/tags/list?last=x>; rel=\"next\"\r\n",
                r#"{"tags":["1.0.0"]}"#,
            )
        })
        .await;
        let reference = Reference::parse(&format!("127.0.0.1:{endless}/app")).unwrap();
        let error = list_tags(&reference, None).await.unwrap_err();
        assert!(error.to_string().contains("pages of tags"), "{error}");
        let elsewhere = scripted_registry(|_| {
            json_answer(
                "Link: <http://203.0.113.9/v2/app/tags/list?last=x>; rel=\"next\"\r\n",
                r#"{"tags":["1.0.0"]}"#,
            )
        })
        .await;
        let reference = Reference::parse(&format!("127.0.0.1:{elsewhere}/app")).unwrap();
        let error = list_tags(&reference, None).await.unwrap_err();
        assert!(error.to_string().contains("another server"), "{error}");
        let garbage = scripted_registry(|_| json_answer("", r#"{"tags":"nope"}"#)).await;
        let reference = Reference::parse(&format!("127.0.0.1:{garbage}/app")).unwrap();
        assert!(list_tags(&reference, None).await.is_err());
    }

    #[test]
    fn next_pages_are_read_from_link_headers() {
        assert_eq!(
            next_page(r#"</v2/app/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/app/tags/list?n=2&last=b")
        );
        assert_eq!(next_page(r#"</x>; rel="prev""#), None);
        assert_eq!(next_page("garbage"), None);
    }

    #[test]
    fn challenges_are_parsed() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/nginx:pull");
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(params["realm"], "Registry Realm");
        assert_eq!(
            percent_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
