//! HTTP(S) GET from the package archive, streamed to memory or to a file, following redirects.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long connecting and the response headers may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a body may go without a byte arriving.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// Sends `GET url` and returns the response of the final location, or why not (in words).
async fn get(url: &str) -> Result<hyper::Response<Incoming>, String> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let response = tokio::time::timeout(CONNECT_TIMEOUT, send(&url))
            .await
            .map_err(|_| format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))??;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| format!("HTTP {status} without a Location"))?;
            url = if location.starts_with("http://") || location.starts_with("https://") {
                location.to_string()
            } else {
                let (scheme, rest) = url.split_once("://").unwrap_or(("http", &url));
                let authority = rest.split('/').next().unwrap_or_default();
                format!(
                    "{scheme}://{authority}/{}",
                    location.trim_start_matches('/')
                )
            };
            continue;
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        return Ok(response);
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

async fn send(url: &str) -> Result<hyper::Response<Incoming>, String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err("not an http:// or https:// URL".to_string()),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("bad port {port}"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_matches(['[', ']']);
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let request = hyper::Request::builder()
        .uri(path)
        .header("host", authority)
        .header("user-agent", concat!("shoal/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if tls {
        let connector = native_tls::TlsConnector::new().map_err(|e| e.to_string())?;
        let stream = tokio_native_tls::TlsConnector::from(connector)
            .connect(host, tcp)
            .await
            .map_err(|e| e.to_string())?;
        exchange(TokioIo::new(stream), request).await
    } else {
        exchange(TokioIo::new(tcp), request).await
    }
}

async fn exchange<T>(
    io: T,
    request: hyper::Request<http_body_util::Empty<Bytes>>,
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

/// The body of `url`, at most `limit` bytes.
pub async fn bytes(url: &str, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = get(url).await?.into_body();
    let mut data = Vec::new();
    while let Some(frame) = next_frame(&mut body).await? {
        data.extend_from_slice(&frame);
        if data.len() > limit {
            return Err(format!("more than {limit} bytes"));
        }
    }
    Ok(data)
}

/// Writes the body of `url` to `path`; returns its length.
pub async fn to_file(url: &str, path: &std::path::Path) -> Result<u64, String> {
    let mut body = get(url).await?.into_body();
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut length = 0;
    while let Some(frame) = next_frame(&mut body).await? {
        length += frame.len() as u64;
        file.write_all(&frame)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    file.flush()
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(length)
}

async fn next_frame(body: &mut Incoming) -> Result<Option<Bytes>, String> {
    loop {
        let frame = tokio::time::timeout(READ_TIMEOUT, body.frame())
            .await
            .map_err(|_| format!("no data for {} s", READ_TIMEOUT.as_secs()))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}
