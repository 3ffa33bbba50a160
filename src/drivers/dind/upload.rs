//! `docker import` through the API: a root filesystem written as a tar stream, sent to
//! `POST /images/create?fromSrc=-` while it is being written.

use super::DindError;
use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions};
use bollard::Docker;
use bytes::Bytes;
use futures::StreamExt;
use std::io::{self, Write};
use tokio::sync::mpsc;

/// Size of the chunks handed to the HTTP body.
const CHUNK: usize = 1 << 20;

/// A `Write` that hands full chunks to an async channel (from a blocking thread).
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
    written: u64,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the image",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buffer.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// Imports the tar that `write` produces as image `repo:tag` with the Dockerfile-style `changes`
/// (ENTRYPOINT, ENV, VOLUME, LABEL …). `write` runs on a blocking thread; if it fails, the
/// upload is aborted so no half image is created. An image the tag named before is removed
/// unless something still uses it. Returns the bytes sent and the image ID.
pub(crate) async fn import<F>(
    docker: &Docker,
    repo: &str,
    tag: &str,
    changes: Vec<String>,
    write: F,
) -> Result<(u64, String), DindError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
{
    let reference = format!("{repo}:{tag}");
    let previous = docker
        .inspect_image(&reference)
        .await
        .ok()
        .and_then(|i| i.id);
    let (sender, mut receiver) = mpsc::channel::<io::Result<Bytes>>(4);
    let producer = tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK),
            written: 0,
        };
        let result = write(&mut writer).and_then(|()| writer.flush());
        if let Err(e) = &result {
            let _ = sender.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        result.map(|()| writer.written)
    });
    let body = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let options = CreateImageOptions {
        from_src: Some("-".to_string()),
        repo: Some(repo.to_string()),
        tag: Some(tag.to_string()),
        changes,
        ..Default::default()
    };
    let mut progress =
        docker.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
    let mut image_id = String::new();
    let mut failure = None;
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if let Some(status) = info.status {
                    if status.starts_with("sha256:") {
                        image_id = status.trim().to_string();
                    }
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(progress);
    let produced = producer
        .await
        .map_err(|e| DindError::Other(format!("the image writer panicked: {e}")))?;
    if let Some(e) = failure {
        return Err(DindError::docker(
            format!("cannot import image {repo}:{tag}"),
            e,
        ));
    }
    let written =
        produced.map_err(|e| DindError::io(format!("cannot write the image {repo}:{tag}"), e))?;
    if let Some(previous) = previous.filter(|p| *p != image_id) {
        match docker
            .remove_image(&previous, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_) => tracing::debug!(image = %previous, "removed the image {reference} replaced"),
            Err(e) => {
                tracing::debug!(image = %previous, error = %e, "kept the image {reference} replaced")
            }
        }
    }
    Ok((written, image_id))
}
