//! The listener: the router served on hyper connections with the limits a public endpoint
//! needs, so that slow or idle clients cannot starve the forge's deliveries or `/healthz`.
//!
//! - a new connection's first byte and its request's headers must arrive within
//!   [`HEADER_READ_TIMEOUT`] each;
//! - a whole request, body included, is answered within [`REQUEST_TIMEOUT`] (408 otherwise):
//!   GitHub gives a receiver 10 s, so a slower body is not the forge's;
//! - at most [`MAX_CONNECTIONS`] connections at once; beyond that, accepting waits;
//! - headers larger than hyper's buffer ([`MAX_HEADER_BYTES`]) are refused with 431;
//! - HTTP/1 only (see [`connection`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take from its headers to its answer, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// The largest request head (request line and headers) read.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Answers 408 when a request (reading its body included) takes longer than
/// [`REQUEST_TIMEOUT`].
pub async fn request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response(),
    }
}

/// Serves `app` on `listener` until `stop` turns true; then stops accepting and lets the
/// connections finish the requests they are in. The connections are this future's own tasks:
/// dropped (its task aborted, as in a crash), it ends them too, so that no kept-alive
/// connection goes on storing deliveries for a service that is gone.
pub async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {} // the ended ones
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // closed: never happens while we hold `slots`
            },
            _ = stopped(&mut stop) => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little, then go on.
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            connection(stream, app, stop).await;
            drop(permit);
        });
    }
    while connections.join_next().await.is_some() {}
}

/// Until `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Whether a new connection opens with HTTP/2's preface (`PRI * HTTP/2.0`), waiting for its
/// first bytes. Such connections are not served: the forges deliver over HTTP/1.1, and an
/// HTTP/2 connection that opens and then idles has no header timeout to end it (enough of
/// them would hold every slot). hyper-util cannot be built without HTTP/2 here (the forge
/// clients' TLS stack turns it on), so the listener looks for itself.
async fn opens_http2(stream: &tokio::net::TcpStream) -> std::io::Result<bool> {
    const PREFACE: &[u8] = b"PRI ";
    let mut opening = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut opening).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if !PREFACE.starts_with(&opening[..n]) {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: wait for more.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// One HTTP/1 connection, with the timeouts above.
async fn connection(stream: tokio::net::TcpStream, app: Router, mut stop: watch::Receiver<bool>) {
    // hyper's header timer starts with the first byte: a client that never sends one is
    // closed here.
    let opening = tokio::time::timeout(HEADER_READ_TIMEOUT, opens_http2(&stream)).await;
    if !matches!(opening, Ok(Ok(false))) {
        return;
    }
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    let service = TowerToHyperService::new(app);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended with an error");
            }
            return;
        }
        _ = stopped(&mut stop) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(err) = conn.await {
        tracing::debug!(%err, "connection ended with an error");
    }
}
