//! HTTP(S) GET from the package archive (through the registry client's one request), streamed
//! to memory or to a file, following redirects.

use crate::http::SendError;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

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
    crate::http::open("GET", url, &[], bytes::Bytes::new())
        .await
        .map_err(|e| match e {
            SendError::Invalid(message) | SendError::Unreachable(message) => message,
        })
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
