//! Engine endpoints, and plain JSON reads where bollard's models lose data.
//!
//! bollard 0.21 deserializes every answer into its models, which spell the service health
//! check `HealthCheck` while the daemon writes `Healthcheck`, so a service read through bollard
//! comes back without its health check. Services are therefore read with a plain HTTP/1.1 `GET`
//! over the same endpoint (a unix socket, TCP, or `docker system dial-stdio` through `ssh`), and
//! the JSON is converted by [`super::convert`].

use super::error::classify;
use crate::engine::EngineError;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, HOST};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The port a `tcp://` endpoint without one uses (the daemon's plain-HTTP port).
const DEFAULT_TCP_PORT: u16 = 2375;

/// Where an engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket, `unix:///var/run/docker.sock`.
    Unix(PathBuf),
    /// Plain HTTP, `tcp://host:port`, kept as `host:port`.
    Tcp(String),
    /// `ssh://[user@]host[:port]`: `docker system dial-stdio` run on the host through `ssh`.
    Ssh {
        /// `[user@]host`.
        destination: String,
        /// The ssh port, when given.
        port: Option<u16>,
    },
}

impl Endpoint {
    /// Parses `unix://PATH` (or a bare absolute path), `tcp://HOST[:PORT]` (also `http://`)
    /// and `ssh://[USER@]HOST[:PORT]`.
    pub(crate) fn parse(endpoint: &str) -> Result<Endpoint, EngineError> {
        let unsupported = || {
            EngineError::Other(format!(
                "unsupported Docker endpoint {endpoint:?}: use unix:///path/docker.sock, tcp://host:port or ssh://user@host"
            ))
        };
        if let Some(path) = endpoint.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(unsupported());
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if endpoint.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(endpoint)));
        }
        if let Some(rest) = endpoint
            .strip_prefix("tcp://")
            .or_else(|| endpoint.strip_prefix("http://"))
        {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') || authority.contains('@') {
                return Err(unsupported());
            }
            return Ok(Endpoint::Tcp(if has_port(authority) {
                authority.to_string()
            } else {
                format!("{authority}:{DEFAULT_TCP_PORT}")
            }));
        }
        if let Some(rest) = endpoint.strip_prefix("ssh://") {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(unsupported());
            }
            let (user, host_port) = match authority.rsplit_once('@') {
                Some((user, host_port)) => (Some(user), host_port),
                None => (None, authority),
            };
            let (host, port) = if has_port(host_port) {
                let (host, port) = host_port.rsplit_once(':').ok_or_else(unsupported)?;
                (host, Some(port.parse::<u16>().map_err(|_| unsupported())?))
            } else {
                (host_port, None)
            };
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty()
                || host.starts_with('-')
                || (host.contains(':') && !authority.contains('['))
                || user.is_some_and(str::is_empty)
            {
                return Err(unsupported());
            }
            let destination = match user {
                Some(user) => format!("{user}@{host}"),
                None => host.to_string(),
            };
            return Ok(Endpoint::Ssh { destination, port });
        }
        Err(unsupported())
    }

    /// The value of the `Host` header for requests to this endpoint.
    fn host_header(&self) -> &str {
        match self {
            Endpoint::Tcp(authority) => authority,
            Endpoint::Unix(_) | Endpoint::Ssh { .. } => "docker",
        }
    }

    async fn open(&self, tls: Option<&Arc<rustls::ClientConfig>>) -> io::Result<Box<dyn Stream>> {
        match self {
            Endpoint::Unix(path) => Ok(Box::new(tokio::net::UnixStream::connect(path).await?)),
            Endpoint::Tcp(authority) => {
                let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
                let Some(config) = tls else {
                    return Ok(Box::new(stream));
                };
                let host = authority
                    .rsplit_once(':')
                    .map_or(authority.as_str(), |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls_pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Ok(Box::new(connector.connect(name, stream).await?))
            }
            Endpoint::Ssh { destination, port } => {
                let mut command = tokio::process::Command::new("ssh");
                command.args(["-o", "BatchMode=yes"]);
                if let Some(port) = port {
                    command.arg("-p").arg(port.to_string());
                }
                let mut child = command
                    .arg("--")
                    .arg(destination)
                    .args(["docker", "system", "dial-stdio"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()?;
                let broken = || io::Error::new(io::ErrorKind::BrokenPipe, "ssh has no stdio");
                let stdin = child.stdin.take().ok_or_else(broken)?;
                let stdout = child.stdout.take().ok_or_else(broken)?;
                Ok(Box::new(SshStream {
                    _child: child,
                    stdin,
                    stdout,
                }))
            }
        }
    }
}

/// Whether `authority` (`host[:port]`, IPv6 hosts in brackets) names a port.
fn has_port(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

/// A byte stream to an engine.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The stdio of `ssh HOST docker system dial-stdio`; the process ends when this is dropped.
struct SshStream {
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl AsyncRead for SshStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stdin).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_shutdown(cx)
    }
}

/// Upper-case hexadecimal digits.
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Percent-encodes a query parameter value.
pub(crate) fn query_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            escaped.push(char::from(byte));
        } else {
            escaped.push('%');
            escaped.push(char::from(HEX[usize::from(byte >> 4)]));
            escaped.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    escaped
}

/// The message of an error answer: the `message` member of a JSON body, else the body.
pub(crate) fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// `GET path_and_query` on the engine (over TLS when `tls` is given), answered with JSON;
/// error answers are classified.
pub(crate) async fn get_json(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    path_and_query: &str,
    timeout: Duration,
) -> Result<Value, EngineError> {
    get_as(endpoint, tls, path_and_query, timeout).await
}

/// [`get_json`] read straight into `T` (no JSON tree in between: for the parts of a large
/// answer that matter).
pub(crate) async fn get_as<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    path_and_query: &str,
    timeout: Duration,
) -> Result<T, EngineError> {
    match tokio::time::timeout(timeout, get(endpoint, tls, path_and_query)).await {
        Ok(Ok((status, body))) if (200..300).contains(&status) => serde_json::from_slice(&body)
            .map_err(|e| EngineError::Other(format!("unexpected answer from the engine: {e}"))),
        Ok(Ok((status, body))) => Err(classify(status, &error_message(&body))),
        Ok(Err(e)) => Err(EngineError::Unreachable(super::error::with_causes(
            e.as_ref(),
        ))),
        Err(_) => Err(EngineError::Unreachable(
            "the engine did not answer in time".to_string(),
        )),
    }
}

/// The API version the engine names in the `Api-Version` header of `GET /_ping` (what the
/// docker CLI negotiates with: a ping costs the daemon nothing, while `GET /version` asks
/// containerd and runc for theirs); `None` when it names none.
pub(crate) async fn pinged_api_version(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Option<String>, EngineError> {
    let ping = async {
        let (_, headers, _) = exchange(endpoint, tls, "/_ping").await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
            headers
                .get("api-version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        )
    };
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(version)) => Ok(version),
        Ok(Err(e)) => Err(EngineError::Unreachable(super::error::with_causes(
            e.as_ref(),
        ))),
        Err(_) => Err(EngineError::Unreachable(
            "the engine did not answer in time".to_string(),
        )),
    }
}

async fn get(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    path_and_query: &str,
) -> Result<(u16, Bytes), Box<dyn std::error::Error + Send + Sync>> {
    let (status, _, body) = exchange(endpoint, tls, path_and_query).await?;
    Ok((status, body))
}

/// One `GET` on its own connection: the status, the headers and the body.
async fn exchange(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    path_and_query: &str,
) -> Result<(u16, hyper::HeaderMap, Bytes), Box<dyn std::error::Error + Send + Sync>> {
    let stream = endpoint.open(tls).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("engine connection closed: {e}");
        }
    });
    let request = hyper::Request::get(path_and_query)
        .header(HOST, endpoint.host_header())
        .header(ACCEPT, "application/json")
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("unix:///run/shoal/n1/docker.sock"),
            Ok(Endpoint::Unix("/run/shoal/n1/docker.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("/var/run/docker.sock"),
            Ok(Endpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375"),
            Ok(Endpoint::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://localhost"),
            Ok(Endpoint::Tcp("localhost:2375".into()))
        );
        assert_eq!(
            Endpoint::parse("http://[::1]:2376/"),
            Ok(Endpoint::Tcp("[::1]:2376".into()))
        );
        assert_eq!(
            Endpoint::parse("ssh://ubuntu@host.example:2222"),
            Ok(Endpoint::Ssh {
                destination: "ubuntu@host.example".into(),
                port: Some(2222)
            })
        );
        assert_eq!(
            Endpoint::parse("ssh://host.example"),
            Ok(Endpoint::Ssh {
                destination: "host.example".into(),
                port: None
            })
        );
        for bad in [
            "unix://relative.sock",
            "npipe:////./pipe/docker_engine",
            "https://host:2376",
            "ssh://-oProxyCommand=x",
            "ssh://@host",
            "ssh://host:port",
            "tcp://",
            "docker.sock",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(EngineError::Other(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn queries_are_escaped() {
        assert_eq!(
            query_escape(r#"{"label":{"com.docker.stack.namespace":true}}"#),
            "%7B%22label%22%3A%7B%22com.docker.stack.namespace%22%3Atrue%7D%7D"
        );
    }

    #[test]
    fn error_messages_are_read() {
        assert_eq!(
            error_message(br#"{"message":"This node is not a swarm manager."}"#),
            "This node is not a swarm manager."
        );
        assert_eq!(error_message(b"page not found\n"), "page not found");
    }

    /// An HTTP answer with a JSON body.
    fn answer(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// Serves one canned HTTP answer on a unix socket in a temporary folder; the server task
    /// returns the request head it read.
    fn serve_once(
        answer: String,
    ) -> (tempfile::TempDir, Endpoint, tokio::task::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (dir, Endpoint::Unix(path), server)
    }

    #[tokio::test]
    async fn json_is_read_over_a_unix_socket() {
        let (_dir, endpoint, server) = serve_once(answer("200 OK", r#"[{"ID":"a"}]"#));
        let value = get_json(
            &endpoint,
            None,
            "/services?status=true",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(value, serde_json::json!([{"ID": "a"}]));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /services?status=true HTTP/1.1\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn error_answers_are_classified() {
        let body = r#"{"message":"This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state."}"#;
        let (_dir, endpoint, _server) = serve_once(answer("503 Service Unavailable", body));
        assert!(matches!(
            get_json(&endpoint, None, "/services", Duration::from_secs(5)).await,
            Err(EngineError::NotManager(_))
        ));
    }

    #[tokio::test]
    async fn a_missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint::Unix(dir.path().join("none.sock"));
        assert!(matches!(
            get_json(&endpoint, None, "/services", Duration::from_secs(5)).await,
            Err(EngineError::Unreachable(_))
        ));
    }
}
