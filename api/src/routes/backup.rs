//! Online backup (admin): `GET /api/v1/system/backup` streams a consistent snapshot of the
//! whole store (resources, audit log, accounts) in the `berth-backup` format while berth keeps
//! serving.
//!
//! The snapshot runs on a blocking thread and is sent in chunks through a bounded channel, so
//! a slow client slows the snapshot down instead of making berth buffer it; only the small
//! trees (resources, accounts) are copied to memory, the audit log streams. A snapshot that
//! fails part-way aborts the response body: the client then holds a file without its trailing
//! checksum, which `berth backup` and `berth restore` refuse. Every backup, finished or not,
//! is recorded in the audit log as a `store.backup` event naming who took it.

use std::io::Write;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use berth_controller::store::{AuditEntry, AuditOutcome, StoreError};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorChain};
use crate::state::AppState;

/// The size of the chunks sent to the client.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the snapshot thread and the connection.
const CHUNKS_IN_FLIGHT: usize = 8;

type Chunk = Result<Bytes, std::io::Error>;

/// A [`Write`] that cuts what it is given into chunks and sends them to the response body,
/// waiting while the channel is full. Fails with `BrokenPipe` once the client has gone.
struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffered()
    }
}

/// `GET /api/v1/system/backup`: the snapshot as `application/octet-stream`.
///
/// # Errors
///
/// [`ApiError`] when the snapshot fails before its first chunk (the store is closed or
/// failing); a failure after that aborts the body.
pub async fn download(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let store = state.backup();
    let snapshot = tokio::task::spawn_blocking(move || {
        let mut sink = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        let result = store.backup_to(&mut sink);
        if let Err(e) = &result {
            // Aborts the body, so the client cannot mistake a prefix for a backup.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        result
    });
    let audit_state = state.clone();
    let ctx = principal.ctx();
    tokio::spawn(async move {
        let entry = match snapshot.await {
            Ok(Ok(summary)) => {
                AuditEntry::new(ctx, "store.backup", AuditOutcome::Success).message(format!(
                    "backup at revision {}: {} audit events, {} records, {} bytes",
                    summary.header.revision,
                    summary.header.audit_events,
                    summary.records,
                    summary.bytes
                ))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %ErrorChain(&e), "online backup failed");
                AuditEntry::new(ctx, "store.backup", AuditOutcome::Failure).message(failure(&e))
            }
            Err(e) => {
                tracing::error!(error = %e, "online backup task failed");
                AuditEntry::new(ctx, "store.backup", AuditOutcome::Failure)
                    .message("the backup task failed")
            }
        };
        if let Err(e) = audit_state.audit().append(entry).await {
            tracing::error!(error = %ErrorChain(&e), "cannot audit a backup");
        }
    });

    // Wait for the first chunk, so that a snapshot that cannot start is a proper error answer.
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "online backup failed before its first chunk");
            return Err(ApiError::internal(e));
        }
        None => return Err(ApiError::Unavailable("the backup failed to start".to_owned())),
    };
    let rest =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
        );
    let body = futures::StreamExt::chain(futures::stream::once(async { Ok(first) }), rest);
    let filename = format!("berth-{}.backup", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut resp = Body::from_stream(body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn failure(e: &StoreError) -> String {
    match e {
        StoreError::Backup { source: Some(io), .. }
            if io.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            "the client went away before the backup was complete".to_owned()
        }
        other => format!("the backup failed: {other}"),
    }
}
