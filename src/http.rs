//! One HTTP/1.1 request over a fresh connection, `http://` or `https://` (rustls, with the
//! certificates this machine trusts): the transport of the registry client, of notifications
//! and of the Debian archive reader.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;

/// Why a request could not be sent.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The URL or a header is not valid.
    Invalid(String),
    /// The server could not be reached, or broke the connection.
    Unreachable(String),
}

/// The TLS settings of https requests: the certificates this machine trusts (`SSL_CERT_FILE`
/// and `SSL_CERT_DIR` are honoured), read once.
fn system_trust() -> Result<Arc<rustls::ClientConfig>, String> {
    static TRUST: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    TRUST
        .get_or_init(|| {
            crate::docker::tls::install_provider();
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (_, _) = roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(format!(
                    "this machine trusts no certificate authority{why}: install the ca-certificates package, or name a bundle in SSL_CERT_FILE"
                ));
            }
            Ok(Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ))
        })
        .clone()
}

/// Sends one HTTP/1.1 request with `body` to `url` (`http://` or `https://`, TLS through
/// rustls with the system's trusted certificates) and returns the response, its body still to be
/// read.
pub(crate) async fn open(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<hyper::Response<Incoming>, SendError> {
    let unreachable = |e: &dyn std::fmt::Display| SendError::Unreachable(e.to_string());
    let invalid = |why: &str| SendError::Invalid(format!("`{url}` is not an http(s) URL: {why}"));
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    let tls = match parsed.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(invalid(&format!("the scheme is `{other}`"))),
    };
    let host = match parsed.host() {
        Some(url::Host::Domain(name)) => name.to_string(),
        Some(url::Host::Ipv4(address)) => address.to_string(),
        Some(url::Host::Ipv6(address)) => address.to_string(),
        None => return Err(invalid("it names no host")),
    };
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| invalid("it names no port"))?;
    let authority = match (parsed.host_str(), parsed.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => return Err(invalid("it names no host")),
    };
    let target = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unreachable(&e))?;
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(target)
        .header("host", authority)
        .header("user-agent", concat!("shoal/", env!("CARGO_PKG_VERSION")));
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| SendError::Invalid(format!("a header for {url} is not valid")))?;
        builder = builder.header(*name, value);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| SendError::Invalid(e.to_string()))?;
    if tls {
        let name = rustls_pki_types::ServerName::try_from(host)
            .map_err(|e| SendError::Invalid(format!("`{url}`: {e}")))?;
        let stream =
            tokio_rustls::TlsConnector::from(system_trust().map_err(SendError::Unreachable)?)
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(&e))?;
        exchange(TokioIo::new(stream), request).await
    } else {
        exchange(TokioIo::new(tcp), request).await
    }
    .map_err(SendError::Unreachable)
}

async fn exchange<T>(
    io: T,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}
